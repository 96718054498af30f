"""The reference CSV reader on its own: line numbers, notes, chunks, odd line ends, sizes.

That its records are opencsv's is proven against the real opencsv in
tests/unit/checks/csv/test_opencsv.py.
"""

from __future__ import annotations

import itertools
import random

import pytest

from daemon.base import opencsv
from daemon.base.opencsv import (
    Note,
    NoteKind,
    PlainRows,
    Record,
    Unterminated,
    decode,
    header_key,
    read_records,
    read_rows,
)

MIXED = (
    "user_id,login_id,first_name\r\n"
    "1,a@b.edu,Ann\r\n"
    '2,"c@d.edu","Bo, Jr."\r\n'
    "3,e@f.edu,Art\\Design\r\n"
    '4,g@h.edu,"two\r\nlines"\r\n'
    "\r\n"
    "5,i@j.edu,Renée 😀\r\n"
)


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def _read(text: str) -> list[Record]:
    return list(read_records([text]))


def test_records_number_their_first_and_last_physical_line() -> None:
    records = _read(MIXED)
    assert [(r.line, r.last_line) for r in records] == [
        (1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (7, 7), (8, 8)
    ]  # fmt: skip
    assert records[4].fields == ("4", "g@h.edu", "two\nlines")
    assert records[5].fields == ("",)


@pytest.mark.parametrize("size", [1, 2, 7, 4096])
def test_the_same_records_whatever_the_chunk_size(size: int) -> None:
    data = (MIXED * 50).encode()
    assert list(read_records(decode(_pieces(data, size)))) == list(read_records(decode([data])))


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_text_chunks_split_anywhere_even_inside_crlf(size: int) -> None:
    text = MIXED * 50
    chunks = [text[start : start + size] for start in range(0, len(text), size)]
    assert list(read_records(chunks)) == _read(text)


def test_cr_only_line_ends_are_line_ends() -> None:
    records = _read('a,b\r1,"x\ry"\r\r2,z')
    assert [r.fields for r in records] == [("a", "b"), ("1", "x\ny"), ("",), ("2", "z")]
    assert [r.line for r in records] == [1, 2, 4, 5]


def test_a_cr_at_a_chunk_end_then_lf_is_one_line_end() -> None:
    assert [r.fields for r in read_records(["a\r", "\nb\r", "\r", "\n"])] == [
        ("a",), ("b",), ("",)
    ]  # fmt: skip


def test_a_byte_order_mark_stays_in_the_first_field() -> None:
    records = list(read_records(decode([b"\xef\xbb\xbfuser_id,login_id\n"])))
    assert records[0].fields == ("\ufeffuser_id", "login_id")
    assert header_key(records[0]) == "\ufeffuser_id,login_id"


def test_header_key_joins_the_fields_as_the_server_types_a_file() -> None:
    assert header_key(_read('user_id, "login_id",status\n')[0]) == "user_id,login_id,status"


Shape = tuple[int, int, list[list[str]]] | Record


def _shapes(text: list[str]) -> list[Shape]:
    """What `read_rows` gives: a bulk as (first line, last line, its rows), a Record as is."""
    return [
        (part.line, part.last_line, part.rows()) if isinstance(part, PlainRows) else part
        for part in read_rows(text)
    ]


def test_plain_lines_come_in_bulk_and_the_others_one_by_one() -> None:
    shapes = _shapes(['a,b\nc,d\n1,"x"\ne,\\f\ng,h\n'])
    vanished = Note(NoteKind.VANISHED, 4, 4, "\\f", "f")
    assert shapes == [
        (1, 3, [["a", "b"], ["c", "d"], ["1", "x"]]),
        Record(("e", "f"), 4, 4, (vanished,)),
        (5, 5, [["g", "h"]]),
    ]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_a_bulk_keeps_blank_lines_and_java_line_ends_only(end: str) -> None:
    text = end.join(["a,b", "", "c\x85,d\u2028", ",", "e"]) + end
    parts = [part for part in read_rows([text]) if isinstance(part, PlainRows)]
    assert [row for part in parts for row in part.rows()] == [
        ["a", "b"],
        [""],
        ["c\x85", "d\u2028"],
        ["", ""],
        ["e"],
    ]
    assert (parts[0].line, parts[-1].last_line) == (1, 5)


def test_a_bulk_gives_its_columns_where_every_record_has_the_width() -> None:
    (bulk,) = read_rows(['a,b,c\n"d,e",f,g\nh,,i\n'])
    assert isinstance(bulk, PlainRows) and bulk.count == 3
    assert bulk.uniform(3) and not bulk.uniform(2) and not bulk.uniform(0)
    assert [bulk.column(k, 3) for k in range(3)] == [
        ["a", "d,e", "h"],
        ["b", "f", ""],
        ["c", "g", "i"],
    ]
    # As many fields in all, but not three to a record: not uniform.
    (uneven,) = read_rows(["a,b,c,d\ne,f\n"])
    assert isinstance(uneven, PlainRows) and not uneven.uniform(3)
    assert uneven.rows() == [["a", "b", "c", "d"], ["e", "f"]]


def test_empty_text_has_no_record() -> None:
    assert _read("") == []
    assert list(read_records(decode([]))) == []


def test_a_huge_quoted_field_is_one_value() -> None:
    value = "x, " * 1_000_000 + "\n" + "y" * 300_000
    chunks = ['1,"' + value[:700_000], value[700_000:], '",2\n3\n']
    records = list(read_records(chunks))
    assert [r.fields for r in records] == [("1", value, "2"), ("3",)]
    assert (records[0].line, records[0].last_line, records[1].line) == (1, 2, 3)


def test_a_huge_plain_file_is_read_in_pieces() -> None:
    line = "u1,login@example.edu,First,Last,login@example.edu,active\n"
    parts = list(read_rows([line * 20_000]))
    assert len(parts) > 1 and all(isinstance(part, PlainRows) for part in parts)
    assert sum(part.count for part in parts if isinstance(part, PlainRows)) == 20_000
    assert all(part.uniform(6) for part in parts if isinstance(part, PlainRows))


def test_a_quote_never_closed_is_refused_with_its_lines() -> None:
    with pytest.raises(Unterminated) as raised:
        _read('h\n1,ok\n2,"fine"\n3,x\n4,"open\n5,y\n')
    assert (raised.value.line, raised.value.record_line) == (5, 5)
    assert raised.value.sentence().startswith(
        'line 5: the quote opened here ("open\\n5,y\\n") never closes, so the '
        "server refuses the whole upload"
    )


def test_the_line_of_the_quote_left_open_not_of_the_record() -> None:
    with pytest.raises(Unterminated) as raised:
        _read('1,"a\nb" then "open\n')
    assert (raised.value.line, raised.value.record_line) == (2, 1)


def test_mid_field_quotes_joining_lines_are_noted_with_the_rows_lost() -> None:
    records = _read('id,name\nc1,O"Brien\nc2,Plain\nc3,12" Pipe\nc4,x\n')
    joined = records[1]
    assert (joined.line, joined.last_line) == (2, 4)
    assert joined.notes == (
        Note(NoteKind.JOINED, 2, 4, 'O"Brien', 'O"Brien\nc2,Plain\nc3,12" Pipe'),
    )
    assert joined.notes[0].sentence() == (
        'lines 2-4: the quote in "O"Brien" opens a quoted field that only '
        "closes on line 4; the server joins lines 2-4 into one record, so 2 rows vanish; "
        'write the quote as "" inside a quoted field, or remove it'
    )


def test_a_vanishing_backslash_is_noted() -> None:
    (record,) = _read("1,Art\\Design\n")
    assert record.fields == ("1", "ArtDesign")
    assert record.notes == (Note(NoteKind.VANISHED, 1, 1, "Art\\Design", "ArtDesign"),)
    assert record.notes[0].sentence() == (
        'line 1: the server reads "Art\\Design" as "ArtDesign": it drops a '
        'backslash that escapes nothing; write "\\\\" for one backslash'
    )


def test_a_backslash_escape_is_noted() -> None:
    (record,) = _read('1,O\\"Brien,x\n')
    assert record.fields == ("1", 'O"Brien', "x")
    assert [note.kind for note in record.notes] == [NoteKind.ESCAPED]
    assert 'reads "O\\"Brien" as "O"Brien"' in record.notes[0].sentence()


def test_a_quoted_line_break_is_noted_once() -> None:
    (record,) = _read('1,"two\nlines",3\n')
    assert record.notes == (Note(NoteKind.LINE_BREAK, 1, 2, "two\nlines", "two\nlines"),)
    assert record.notes[0].sentence() == (
        'lines 1-2: the quoted field "two\\nlines" holds a line break; the server '
        "keeps it in the value"
    )


def test_a_quote_that_changes_a_value_is_noted_and_one_that_does_not_is_not() -> None:
    changed, unchanged = _read('"abc"def,1\nabc"d"e,2\n')
    assert changed.fields == ('abc"def', "1")
    assert changed.notes == (Note(NoteKind.QUOTE, 1, 1, '"abc"def', 'abc"def'),)
    assert unchanged.fields == ('abc"d"e', "2") and unchanged.notes == ()


def test_regular_quoting_is_not_noted() -> None:
    records = _read('1,"a, b","say ""hi""", "c"\n')
    assert records == [Record(("1", "a, b", 'say "hi"', "c"), 1, 1)]


def test_long_values_are_cut_in_sentences() -> None:
    note = Note(NoteKind.VANISHED, 3, 3, "A\\" + "b" * 100, "A" + "b" * 100)
    assert "A" + "b" * 36 + "..." in note.sentence()


def test_bytes_that_are_not_utf8_read_as_java_reads_them() -> None:
    data = b"Ren\xe9e,\xed\xa0\x80,\xed\xa0A,\xf0\x9f\x98,\xed\xa0"
    expected = "Ren\ufffde,\ufffd,\ufffdA,\ufffd,\ufffd"
    assert "".join(decode([data])) == expected
    assert "".join(decode(_pieces(data, 1))) == expected


def test_escape_before_5_5_2_leaves_a_field_unopened() -> None:
    assert _read('\\"a,b\n')[0].fields == ('"a', "b")
    with pytest.raises(Unterminated):
        list(read_records(['\\"a,b\n'], escape_opens_field=False))


def test_lines_quoted_only_at_field_edges_read_as_they_look_in_the_bulk() -> None:
    text = '1,"Núñez, Jr.",x\r\n"",a,""\r\n"a,b"\r\n2,plain\r\n""\r\n3,"y"\r\n'
    assert _shapes([text]) == [
        (1, 4, [["1", "Núñez, Jr.", "x"], ["", "a", ""], ["a,b"], ["2", "plain"]]),
        Record(("",), 5, 5),  # a lone empty quoted field: a Record, never taken for a blank line
        (6, 6, [["3", "y"]]),
    ]


def test_a_quote_not_at_a_field_edge_still_takes_the_state_machine() -> None:
    (record,) = _read('1, "a",x"y",z\n')  # whitespace dropped; a mid-field quote
    assert record.fields == ("1", "a", 'x"y', "z")
    assert [note.kind for note in record.notes] == [NoteKind.QUOTE]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_every_line_end_reads_the_same_records_in_any_chunks(end: str) -> None:
    text = MIXED.replace("\r\n", end) * 20
    expected = [r.fields for r in _read(MIXED.replace("\r\n", "\n") * 20)]
    for size in (1, 3, 1000):
        chunks = [text[start : start + size] for start in range(0, len(text), size)]
        assert [r.fields for r in read_records(chunks)] == expected


def test_mixed_line_ends_in_one_piece_are_each_one_line_end() -> None:
    records = _read('a\r\nb\nc\rd\r\n"e"\rf\n')
    assert [r.fields for r in records] == [("a",), ("b",), ("c",), ("d",), ("e",), ("f",)]
    assert [r.line for r in records] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_characters_python_takes_for_line_ends_stay_in_the_field(char: str) -> None:
    text = f"a{char}b,c\r\nd,e\r\n"
    assert [r.fields for r in _read(text)] == [(f"a{char}b", "c"), ("d", "e")]


def test_a_line_longer_than_a_piece_with_cr_ends() -> None:
    long = "x" * 200_000
    records = _read(f"a\r{long},{long}\r\nb\r")
    assert [r.fields for r in records] == [("a",), (long, long), ("b",)]


# What the reader must tell apart: plain runs, fields quoted at their edges, quotes and
# backslashes inside fields, quoted line ends, every line end.
_PARTS = (
    *("ab", "1", "é", "😀", " ", ",", ",", ",", '"x, y"', '"a"', '"', '""'),
    *("\\", "\\\\", "\\,", "Art\\Design", 'O"Brien', "\n", "\n", "\n", "\r\n", "\r"),
)


def _outcome(text: str) -> list[list[Record]] | tuple[int, int]:
    """The records of each part `read_rows` gives."""
    try:
        parts = list(read_rows([text]))
    except Unterminated as exc:
        return (exc.line, exc.record_line)
    return [list(part.records()) if isinstance(part, PlainRows) else [part] for part in parts]


def _records(text: str) -> list[Record] | tuple[int, int]:
    try:
        return list(read_records([text]))
    except Unterminated as exc:
        return (exc.line, exc.record_line)


@pytest.mark.parametrize("piece", [1, 3, 40, 1 << 16])
def test_the_same_records_and_notes_whatever_the_piece(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    # A piece of one character reads each line alone; larger ones gather lines in bulk
    # around the quoted and backslashed ones, or end a piece inside an open quote.
    rng = random.Random(piece)
    texts = ["".join(rng.choice(_PARTS) for _ in range(rng.randint(1, 90))) for _ in range(400)]
    expected = [_records(text) for text in texts]
    monkeypatch.setattr(opencsv, "_PIECE", piece)
    assert [_records(text) for text in texts] == expected
    for text in texts:  # each bulk's lines are numbered from where it starts
        outcome = _outcome(text)
        if isinstance(outcome, list):
            records = [record for part in outcome for record in part]
            assert all(a.last_line < b.line for a, b in itertools.pairwise(records)), text


def test_a_line_whose_backslashes_escape_nothing_reads_as_the_state_machine_reads_it() -> None:
    rng = random.Random(3)
    words = ("ab", "é", ",", ",", "\\", "Art\\Design", "x\\", " ", "\\t")
    for _ in range(2_000):
        line = "".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        if "\\\\" in line or "\\," in line:
            continue  # an escape taken: the state machine's alone
        machine = opencsv._Reader(escape_opens_field=True)
        machine.record_line = machine.field_line = 1
        machine._line(line)
        assert opencsv._vanishing(line, 1) == Record(
            tuple(machine.fields), 1, 1, tuple(machine.notes)
        ), line
