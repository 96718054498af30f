"""The checks that span tables: group folders stand apart from each other and from the
state_dir, as written and once symbolic links are followed."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.config.model import Group
from daemon.config.toml import join_key

__all__ = ["check_folders_apart", "check_state_apart"]


class _Overlap(enum.Enum):
    """How one path lies to another."""

    SAME = "same"
    INSIDE = "inside"
    HOLDS = "holds"


# How the other path lies to the one, from how the one lies to the other.
_TURNED = {
    _Overlap.SAME: _Overlap.SAME,
    _Overlap.INSIDE: _Overlap.HOLDS,
    _Overlap.HOLDS: _Overlap.INSIDE,
}


@dataclass(frozen=True, slots=True)
class _Placed:
    """A path as written in the config, and where it leads once links are followed."""

    path: Path
    real: Path

    @classmethod
    def of(cls, path: Path) -> _Placed:
        # realpath, not resolve(strict=True): a folder that does not exist yet (a state_dir
        # dropd makes at start) is still followed as far as it exists.
        return cls(path, Path(os.path.realpath(path)))

    def shown(self, through_links: bool) -> str:
        if through_links and self.real != self.path:
            return f"{self.path} ({self.real} once links are followed)"
        return str(self.path)


def check_folders_apart(groups: Sequence[Group], problems: list[str]) -> None:
    """Two groups sharing a folder, or one inside the other, would take each other's files."""
    placed = [(group, _Placed.of(group.folder)) for group in groups if group.folder.is_absolute()]
    for (index, other_index), (how, links) in _overlaps([folder for _, folder in placed]).items():
        (group, folder), (other, other_folder) = placed[index], placed[other_index]
        other_name = join_key("groups", other.key)
        shown = other_folder.shown(links)
        if how is _Overlap.SAME:
            also = f"the folder of {other_name}" + (f" {shown}" if links else "")
            why = f"is also {also}; give each group a folder of its own"
        elif how is _Overlap.INSIDE:
            why = f"is inside {other_name}'s folder {shown}; move it beside, not inside"
        else:
            why = f"holds {other_name}'s folder {shown}; move that beside, not inside"
        problems.append(f"{join_key('groups', group.key)}.folder: {folder.shown(links)} {why}")


def check_state_apart(state_dir: Path, groups: Sequence[Group], problems: list[str]) -> None:
    """dropd's state_dir and a group's folder never hold one another: as a drop folder, intake
    would take dropd's own status.json for a dropped file; inside one, dropd's state sits
    where the people who drop files reach it; holding one, the state_dir dropd makes 0700
    shuts them out."""
    state = _Placed.of(state_dir)
    placed = [(group, _Placed.of(group.folder)) for group in groups if group.folder.is_absolute()]
    keep = "keep dropd's state outside the drop folders (e.g. /var/lib/dropd)"
    found = _overlaps([state, *(folder for _, folder in placed)])
    for (index, other_index), (folder_to_state, links) in found.items():
        if other_index != 0:
            continue  # two folders: check_folders_apart's business
        group, folder = placed[index - 1]
        how = _TURNED[folder_to_state]
        name = join_key("groups", group.key)
        if how is _Overlap.SAME:
            why = f"is also {name}'s folder" + (f" {folder.shown(links)}" if links else "")
            why += f"; {keep}"
        elif how is _Overlap.INSIDE:
            why = f"is inside {name}'s folder {folder.shown(links)}; {keep}"
        else:
            why = (
                f"is not allowed: it holds {name}'s folder {folder.shown(links)}; give dropd's "
                "state a folder of its own, beside the drop folders (e.g. /var/lib/dropd)"
            )
        problems.append(f"daemon.state_dir: {state.shown(links)} {why}")


def _overlaps(placed: Sequence[_Placed]) -> dict[tuple[int, int], tuple[_Overlap, bool]]:
    """Every pair of `placed` paths that are not apart, in order, as {(i, j): (how path i
    lies to path j, whether only once links are followed)} with j < i."""
    written = _pairs([one.path for one in placed])
    real = _pairs([one.real for one in placed])
    return {
        pair: (written[pair], False) if pair in written else (real[pair], True)
        for pair in sorted(written.keys() | real.keys())
    }


def _pairs(paths: Sequence[Path]) -> dict[tuple[int, int], _Overlap]:
    """Every pair of `paths` that are not apart, as {(i, j): how path i lies to path j} with
    j < i. Looked up by ancestors, not compared pair by pair: 1,000 groups make half a
    million pairs."""
    found: dict[tuple[int, int], _Overlap] = {}
    at: dict[tuple[str, ...], list[int]] = {}  # a path: the indexes of the paths equal to it
    below: dict[tuple[str, ...], list[int]] = {}  # a path: the indexes of the paths inside it
    for index, path in enumerate(paths):
        parts = path.parts
        ancestors = [parts[:length] for length in range(1, len(parts))]
        for other in at.get(parts, []):
            found[index, other] = _Overlap.SAME
        for ancestor in ancestors:
            for other in at.get(ancestor, []):
                found[index, other] = _Overlap.INSIDE
        for other in below.get(parts, []):
            found[index, other] = _Overlap.HOLDS
        at.setdefault(parts, []).append(index)
        for ancestor in ancestors:
            below.setdefault(ancestor, []).append(index)
    return found
