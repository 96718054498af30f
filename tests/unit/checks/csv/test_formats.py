"""Tests of the provider's formats as the checks take them (daemon/checks/csv/formats.py)."""

from __future__ import annotations

import random

import pytest

from daemon.checks.csv.formats import _EMAIL, emails_taken


@pytest.mark.parametrize(
    ("column", "taken"),
    [
        (["a@example.edu", "b.c@example.edu", "d+e@example.edu"], True),
        (["a@example.edu", "b@mail.example.org", "c@example.edu"], True),  # another domain
        (["a@example.edu", "b@example", "c@example.edu"], False),
        (["a@example.edu", "b@example.edu.", "c@example.edu"], False),  # the domain as a prefix
        (["a@example.edu", "b c@example.edu"], False),
        (["a@example.edu", "@example.edu"], False),
        (["a@b", "c@example.edu"], False),  # the first one not taken
        (["a@example.edu", "b@exampleXedu"], False),  # the dot is no wildcard
        (["a@example.edu", "b@x.exampleXedu"], True),  # x. then a top-level exampleXedu
        ([], False),
    ],
)
def test_emails_taken_is_the_pattern_value_by_value(column: list[str], taken: bool) -> None:
    assert emails_taken(column) is taken
    assert taken == (bool(column) and all(_EMAIL.fullmatch(v) for v in column))


def test_emails_taken_agrees_with_the_pattern_on_random_columns() -> None:
    rng = random.Random(11)
    parts = ["a", "Z9", ".", "@", "example", "edu", " ", "\t", "é", "-", "x.y"]
    for _ in range(3000):
        column = ["".join(rng.choices(parts, k=rng.randrange(1, 7))) for _ in range(3)]
        if rng.random() < 0.5:
            column = [f"u{n}@example.edu" for n in range(3)] + column[: rng.randrange(2)]
        expected = all(_EMAIL.fullmatch(value) for value in column)
        assert emails_taken(column) is expected, column
