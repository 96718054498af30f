"""The guard's decision and its words (daemon/checks/guard.py), and what packing does with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.base.errors import GuardError
from daemon.base.timestamps import utc_now
from daemon.checks.guard import (
    GuardSettings,
    Offence,
    held_reason,
    offences,
    over_limit,
    percent,
    row_guard,
)
from daemon.config.model import Group, Validation
from daemon.delivery.packing import pack
from daemon.spool.manifest import BatchState
from daemon.spool.store import Spool

DEFAULT = GuardSettings()
USERS_HEADER = b"user_id,login_id,first_name,last_name,email,status\n"


@pytest.mark.parametrize(
    ("rows", "deleted", "settings", "held"),
    [
        (200, 100, DEFAULT, False),  # exactly at 50%: not more than it
        (200, 101, DEFAULT, True),
        (100, 51, DEFAULT, True),  # min_rows_for_guard rows: the guard looks
        (99, 99, DEFAULT, False),  # fewer: it does not
        (0, 0, GuardSettings(50, 1), False),
        (200, 200, GuardSettings(0, 100), False),  # 0: the guard is off
        (200, 200, GuardSettings(100, 100), False),  # 100%: nothing is ever over it
        (1000, 333, GuardSettings(33.3, 100), False),  # 33.3% exactly, not the float's 33.29…
        (1000, 334, GuardSettings(33.3, 100), True),
        (3, 2, GuardSettings(66.66, 1), True),  # 66.67% > 66.66%
        (3, 2, GuardSettings(66.67, 1), False),
    ],
)
def test_guard_over_limit_is_more_than_the_share(
    rows: int, deleted: int, settings: GuardSettings, held: bool
) -> None:
    assert over_limit(rows, deleted, settings) is held


def test_guard_offences_counts_each_file_alone() -> None:
    rows = {"users.csv": 200, "enrollments.csv": 1000, "listings.csv": 500, "few.csv": 10}
    deleted = {"users.csv": 150, "enrollments.csv": 400, "few.csv": 10, "stray.csv": 9}
    found = offences(rows, deleted, DEFAULT)
    assert found == [Offence("users.csv", 200, 150, 50.0)]
    assert found[0].to_json() == {
        "file": "users.csv",
        "rows": 200,
        "deleted": 150,
        "share": 75.0,
        "limit": 50.0,
    }
    assert Offence("e.csv", 3, 2, 50).share == 66.67


def test_guard_settings_of_a_group_and_off() -> None:
    group = Group("music", "test", Path("/d"), "music", "Music", max_deleted_percent=12.5)
    assert GuardSettings.of(group) == GuardSettings(12.5, 100)
    assert row_guard(GuardSettings(0, 100)) is None


def test_guard_row_guard_raises_with_every_offence() -> None:
    check = row_guard(DEFAULT)
    assert check is not None
    check({"a.csv": 200}, {"a.csv": 100})  # at the limit: passes
    with pytest.raises(GuardError) as caught:
        check({"a.csv": 200, "b.csv": 300}, {"a.csv": 150, "b.csv": 300})
    assert [o.file for o in caught.value.offences] == ["a.csv", "b.csv"]


def test_guard_reason_names_the_files_the_shares_and_what_to_do() -> None:
    found = [Offence("enrollments.csv", 2000, 1500, 50), Offence("users.csv", 150, 120, 50)]
    reason = held_reason("B1", "music", found)
    assert reason == (
        '"enrollments.csv" has 1,500 of its 2,000 rows deleted (75%) and "users.csv" 120 of 150 '
        "(80%), more than max_deleted_percent (50%) lets through, so the batch waits in "
        "held/B1: if the deletions are meant, send it with `dropd release music B1`; if not, "
        "fix the export and remove that folder"
    )
    with_config = held_reason("B1", "music", found, " --config /srv/dropd.toml")
    assert "`dropd release --config /srv/dropd.toml music B1`" in with_config
    assert percent(33.333) == "33.33%" and percent(50.0) == "50%" and percent(12.5) == "12.5%"


@pytest.mark.parametrize("validation", list(Validation))
def test_guard_pack_raises_before_building_any_zip(tmp_path: Path, validation: Validation) -> None:
    spool = Spool(tmp_path, "music")
    spool.open()
    manifest = spool.open_batch(utc_now())
    rows = b"".join(b"u%d,u%d@x.edu,A,B,u%d@x.edu,deleted\n" % (i, i, i) for i in range(100))
    (spool.files_dir(manifest.batch) / "users.csv").write_bytes(USERS_HEADER + rows)
    with pytest.raises(GuardError) as caught:
        pack(spool, manifest, 0, validation, row_guard(DEFAULT))
    assert caught.value.offences[0].share == 100.0
    assert not spool.zip_path(manifest.batch).exists()
    assert manifest.state is BatchState.OPEN

    pack(spool, manifest, 0, validation, None)  # released: the same files go
    assert spool.zip_path(manifest.batch).is_file()
