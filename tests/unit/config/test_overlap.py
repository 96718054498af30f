"""Tests of the checks that keep group folders and the state_dir apart
(daemon/config/overlap.py); how they read in the loader's messages is in test_load.py."""

from __future__ import annotations

from pathlib import Path

from daemon.config.model import Group
from daemon.config.overlap import check_folders_apart, check_state_apart


def group(key: str, folder: str) -> Group:
    return Group(key, "test", Path(folder), key, key)


def test_state_dir_check_names_only_the_state_dir_when_folders_also_overlap() -> None:
    groups = [group("music", "/srv/drop/music"), group("art", "/srv/drop/music/art")]
    problems: list[str] = []
    check_folders_apart(groups, problems)
    check_state_apart(Path("/srv/drop/music/.state"), groups, problems)
    assert [problem.split(":")[0] for problem in problems] == [
        "groups.art.folder",
        "daemon.state_dir",
    ]
    assert "inside groups.music's folder /srv/drop/music;" in problems[1]


def test_state_dir_check_reports_each_group_in_the_config_order() -> None:
    groups = [group("zeta", "/srv/drop/zeta"), group("alpha", "/srv/drop/alpha")]
    problems: list[str] = []
    check_state_apart(Path("/srv/drop"), groups, problems)
    assert problems == [
        f"daemon.state_dir: /srv/drop is not allowed: it holds groups.{key}'s folder "
        f"/srv/drop/{key}; give dropd's state a folder of its own, beside the drop folders "
        "(e.g. /var/lib/dropd)"
        for key in ("zeta", "alpha")
    ]


def test_relative_folders_are_left_to_the_folder_key_check() -> None:
    groups = [group("music", "music"), group("art", "music")]
    problems: list[str] = []
    check_folders_apart(groups, problems)
    check_state_apart(Path("/var/lib/dropd"), groups, problems)
    assert problems == []


def test_a_thousand_groups_apart_are_checked_at_once() -> None:
    groups = [group(f"g{index}", f"/srv/drop/g{index}") for index in range(1000)]
    problems: list[str] = []
    check_folders_apart(groups, problems)
    check_state_apart(Path("/var/lib/dropd"), groups, problems)
    assert problems == []
