"""Cutting a batch into uploads: server order, message.properties with users, no file cut."""

from __future__ import annotations

import pytest

from daemon.delivery.parts import (
    ARCHIVE_OVERHEAD,
    Sized,
    TooBig,
    entry_cost,
    plan_parts,
    server_order,
)


def test_server_order_puts_users_first_and_properties_after_them() -> None:
    kinds: dict[str, str | None] = {
        "a.csv": "enrollments",
        "b.csv": "users",
        "c.csv": "courses",
        "d.csv": None,
        "e.csv": "sections",
        "f.csv": "listings",
    }
    names = [*kinds, "message.properties"]
    assert server_order(names, kinds) == [
        "b.csv",
        "message.properties",
        "c.csv",
        "e.csv",
        "a.csv",
        "f.csv",
        "d.csv",
    ]


def test_plan_parts_keeps_everything_in_one_part_when_it_fits() -> None:
    items = [Sized("users.csv", 100), Sized("courses.csv", 100)]
    assert plan_parts(items, 10_000) == [["users.csv", "courses.csv"]]


def test_plan_parts_cuts_in_order_and_each_part_fits() -> None:
    items = [Sized(f"f{i}.csv", 400) for i in range(6)]
    limit = ARCHIVE_OVERHEAD + 2 * entry_cost(items[0])
    parts = plan_parts(items, limit)
    assert parts == [["f0.csv", "f1.csv"], ["f2.csv", "f3.csv"], ["f4.csv", "f5.csv"]]


def test_plan_parts_keeps_message_properties_with_its_users_file() -> None:
    items = [Sized("courses.csv", 10), Sized("users.csv", 400), Sized("message.properties", 50)]
    items = [items[1], items[2], items[0]]
    limit = ARCHIVE_OVERHEAD + entry_cost(items[0]) + entry_cost(items[1])
    assert plan_parts(items, limit) == [["users.csv", "message.properties"], ["courses.csv"]]


def test_plan_parts_refuses_a_file_that_cannot_fit_alone() -> None:
    with pytest.raises(TooBig) as caught:
        plan_parts([Sized("small.csv", 10), Sized("huge.csv", 5000)], 1000)
    assert caught.value.name == "huge.csv"
    assert caught.value.needs > 1000


def test_server_order_puts_message_properties_in_any_case_after_users() -> None:
    kinds = {"e.csv": "enrollments", "u.csv": "users"}
    ordered = server_order(["e.csv", "Message.Properties", "u.csv"], kinds)
    assert ordered == ["u.csv", "Message.Properties", "e.csv"]
