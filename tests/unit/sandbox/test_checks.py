"""The sandbox reads an upload as the server does: opencsv's records, ZipInputStream's entries.

Each case states the server's answer. The ZIP answers were checked against Java 17's
`ZipInputStream` driven as the server's `DeptProvFileUploadService.unzip` drives it.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest

from daemon.sandbox import checks
from daemon.sandbox.checks import ReceivedFile, Verdict, judge_upload, unzip
from daemon.sandbox.form import Part, RequestError, UploadForm
from daemon.sandbox.zipstream import StreamEntry, ZipStreamError, entries
from unit.zips import zip_of

USERS = (
    b"user_id,login_id,first_name,last_name,email,status\r\n"
    b"u1,guest@example.edu,Ada,Lovelace,guest@example.edu,active\r\n"
)
MESSAGE = b"sender=noreply@example.edu\nsubject=Welcome\nbody=Hello\n"
UNZIP_FAILED = (400, "Unable to unzip uploaded file", None)
NO_FILES = (400, "No files to process", None)
ACCEPTED = (200, checks.ACCEPTED, None)


def answer(data: bytes, *, notify: bool = False) -> tuple[int, str, list[str] | None]:
    """The zip endpoint's status, message and the files named in its fileErrors."""
    form = UploadForm({}, [Part("deptFileUpload", "batch.zip", None, data)], notify)
    verdict, _ = judge_upload("zip", form)
    return verdict.status, verdict.message, _named(verdict)


def files_answer(files: dict[str, bytes]) -> tuple[int, str, list[str] | None]:
    """The files endpoint's answer to one part per file."""
    parts = [Part("deptFileUpload", name, None, data) for name, data in files.items()]
    verdict, _ = judge_upload("files", UploadForm({}, parts, False))
    return verdict.status, verdict.message, _named(verdict)


def _named(verdict: Verdict) -> list[str] | None:
    if verdict.file_errors is None:
        return None
    prefix, suffix = "The format of ", " did not conform to any of the documented formats."
    return [
        error["title"].removeprefix(prefix).removesuffix(suffix) for error in verdict.file_errors
    ]


def parse_failed(*names: str) -> tuple[int, str, list[str]]:
    return (400, checks.PARSE_FAILED, list(names))


# The ZIP as ZipInputStream reads it


def test_zip_behind_a_stub_has_no_entries_so_no_files_to_process() -> None:
    data = b'#!/bin/sh\nexec unzip "$0"\n' + zip_of({"users.csv": USERS})
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["users.csv"]  # Python finds it
    assert answer(data) == NO_FILES


def test_stored_entry_with_a_data_descriptor_is_unable_to_unzip() -> None:
    data = zip_of({"users.csv": USERS}, zipfile.ZIP_STORED, seekable=False)
    assert zipfile.ZipFile(io.BytesIO(data)).read("users.csv") == USERS  # Python reads it
    assert answer(data) == UNZIP_FAILED


def test_deflated_entry_with_a_data_descriptor_is_read() -> None:
    data = zip_of({"users.csv": USERS}, seekable=False)
    assert answer(data) == ACCEPTED
    assert unzip(data) == [ReceivedFile("users.csv", USERS, "users.csv")]


def test_macos_compress_is_refused_with_the_resource_fork_among_the_file_errors() -> None:
    data = zip_of(
        {
            "export/users.csv": USERS,
            "__MACOSX/._export": b"\x00\x05\x16\x07",  # parent __MACOSX: skipped
            "__MACOSX/export/._users.csv": b"\x00\x05\x16\x07\x00\x02\x00\x00",  # parent export
        }
    )
    assert answer(data) == parse_failed("._users.csv")
    assert [file.entry for file in unzip(data)] == [
        "export/users.csv",
        "__MACOSX/export/._users.csv",
    ]


def test_entries_are_taken_by_base_name() -> None:
    data = zip_of({"/users.csv": USERS, "a/b/./message.properties": MESSAGE})
    assert [file.name for file in unzip(data)] == ["users.csv", "message.properties"]
    assert answer(data, notify=True) == ACCEPTED


@pytest.mark.parametrize("name", ["../users.csv", "a/../../users.csv", "a/..", ".", "./"])
def test_entry_outside_the_folder_is_unable_to_unzip(name: str) -> None:
    assert answer(zip_of({"users.csv": USERS, name: USERS})) == UNZIP_FAILED


def test_entry_outside_the_folder_fails_even_when_it_would_be_skipped() -> None:
    assert answer(zip_of({"users.csv": USERS, "../__MACOSX/x": b""})) == UNZIP_FAILED


def test_file_where_a_folder_must_go_and_folder_where_a_file_is_are_unable_to_unzip() -> None:
    assert answer(zip_of({"a": USERS, "a/users.csv": USERS})) == UNZIP_FAILED
    assert answer(zip_of({"users.csv/": b"", "users.csv": USERS})) == UNZIP_FAILED


def test_two_entries_of_one_base_name_are_both_read() -> None:
    data = zip_of({"a/users.csv": USERS, "b/users.csv": b"nonsense\n"})
    assert answer(data) == parse_failed("users.csv")


def test_entry_name_that_is_not_utf8_is_a_500() -> None:
    data = zip_of({"users.csv": USERS}).replace(b"users.csv", b"user\xff.csv")
    with pytest.raises(RequestError) as raised:
        answer(data)
    assert raised.value.status == 500


def test_a_broken_entry_fails_the_zip_even_when_it_is_skipped() -> None:
    data = bytearray(zip_of({"users.csv": USERS, "__MACOSX/._users.csv": b"x" * 100}))
    at = data.index(b"__MACOSX/._users.csv") + len("__MACOSX/._users.csv")
    data[at : at + 4] = b"\xff\xff\xff\xff"  # the deflate stream is garbage
    assert answer(bytes(data)) == UNZIP_FAILED


def test_stored_entry_with_a_wrong_crc_is_unable_to_unzip_unless_it_is_empty() -> None:
    def with_crc(files: dict[str, bytes]) -> bytes:
        data = bytearray(zip_of(files, zipfile.ZIP_STORED))
        data[14:18] = b"\x01\x02\x03\x04"  # the first local header's CRC
        return bytes(data)

    assert answer(with_crc({"users.csv": USERS})) == UNZIP_FAILED
    assert answer(with_crc({"empty/": b"", "users.csv": USERS})) == ACCEPTED


def test_truncated_local_header_at_the_end_is_the_end_of_the_entries() -> None:
    data = zip_of({"users.csv": USERS})
    entry = data[: data.index(b"PK\x01\x02")]  # the local header and data, no directory
    assert answer(entry + b"PK\x03\x04\x14\x00") == ACCEPTED


def test_zip64_local_sizes_are_read_from_the_extra_field() -> None:
    deflated = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflated.compress(USERS) + deflated.flush()
    name, extra = b"users.csv", struct.pack("<HHQQ", 1, 16, len(USERS), len(body))
    header = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 8, 0, 0, zlib.crc32(USERS),
        0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra),
    )  # fmt: skip
    assert list(entries(header + name + extra + body)) == [StreamEntry("users.csv", USERS)]


def test_a_deflate_stream_cut_short_raises() -> None:
    with pytest.raises(ZipStreamError):
        list(entries(zip_of({"users.csv": USERS * 50})[:50]))


# Every file read as CSV by opencsv's reading


def test_a_quote_that_never_closes_is_a_file_error_wherever_it_is() -> None:
    tail = b'u2,x,"O\\"Brien,y,z,active\n'  # \" escapes the closing quote: never closes
    assert files_answer({"users.csv": USERS + tail}) == parse_failed("users.csv")


def test_an_empty_file_is_a_file_error() -> None:
    assert files_answer({"users.csv": USERS, "courses.csv": b""}) == parse_failed("courses.csv")


def test_the_header_is_its_fields_joined_as_opencsv_reads_them() -> None:
    spaced = USERS.replace(b"login_id,", b' "login_id",')  # whitespace before a quote is dropped
    assert files_answer({"users.csv": spaced}) == ACCEPTED
    crlf_only = USERS.replace(b"\r\n", b"\r")  # CR-only line ends (Excel for Mac)
    assert files_answer({"users.csv": crlf_only}) == ACCEPTED


def test_a_byte_order_mark_stays_in_the_header_so_the_file_has_no_kind() -> None:
    assert files_answer({"users.csv": b"\xef\xbb\xbf" + USERS}) == parse_failed("users.csv")


def test_a_bad_quote_after_the_header_window_still_fails_the_file() -> None:
    row = b"u1,guest@example.edu,Ada,Lovelace,guest@example.edu,active\n"
    late = USERS + row * 5000 + b'u9,"open,x,y,z,active\n'
    assert files_answer({"users.csv": late}) == parse_failed("users.csv")


def test_message_properties_is_found_by_name_in_any_case() -> None:
    assert files_answer({"users.csv": USERS, "Message.PROPERTIES": MESSAGE}) == ACCEPTED
    # Java compares char by char in upper case: the long s is an S there.
    assert files_answer({"users.csv": USERS, "me\u017f\u017fage.properties": MESSAGE}) == ACCEPTED
    assert files_answer({"users.csv": USERS, "message.properties.txt": MESSAGE}) == (
        parse_failed("message.properties.txt")
    )


def test_message_properties_with_an_unbalanced_quote_fails_parsing() -> None:
    broken = b'sender=a@b.edu\nsubject=Welcome\nbody=Click "Accept\n'
    assert files_answer({"users.csv": USERS, "message.properties": broken}) == (
        parse_failed("message.properties")
    )


def test_zip64_data_descriptor_on_an_entry_under_4_gib_is_unable_to_unzip() -> None:
    # Java 17 reads a 24-byte descriptor only past 4 GiB of data: a 16-byte reading of
    # this one finds the sizes wrong.
    deflated = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflated.compress(USERS) + deflated.flush()
    name, extra = b"users.csv", struct.pack("<HHQQ", 1, 16, 0, 0)
    header = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 8, 8, 0, 0, 0,
        0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra),
    )  # fmt: skip
    descriptor = struct.pack("<4sLQQ", b"PK\x07\x08", zlib.crc32(USERS), len(body), len(USERS))
    assert answer(header + name + extra + body + descriptor) == UNZIP_FAILED
    short = struct.pack("<4sLLL", b"PK\x07\x08", zlib.crc32(USERS), len(body), len(USERS))
    assert answer(header + name + extra + body + short) == ACCEPTED
