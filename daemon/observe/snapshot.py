"""One group as the scheduler saw it at a moment: what the status file, the metrics and
systemd's STATUS= line show of it. The runtime fills it; what observes the daemon reads only
this, never the runtime's live state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group's figures and problem at one moment."""

    group: str  # the group's key
    friendly_name: str
    owner: bool  # this dropd holds the folder's lock (else it stands by)
    error: tuple[str, str] | None  # (step, reason) while something needs a person
    held: tuple[tuple[str, str], ...]  # (batch, reason) of each batch in held/, oldest first
    last_upload: str | None  # when the last batch was sent, as status.json writes it
    failed_batches: int
    files_seen: int  # files in the folder not yet claimed
    files_waiting: int  # files dropped and not yet sent or failed
    open_batch: str | None  # the batch files are joining
    batches_in_line: int  # closed batches in line, the one in flight included
    in_flight: str | None  # the batch being uploaded
    error_batch: str | None = None  # the failed batch `error` is about, when it is one's
    last_failed: str | None = None  # the newest batch in failed/

    @property
    def busy(self) -> bool:
        """True while a batch is open, in line or being uploaded."""
        return bool(self.in_flight or self.batches_in_line or self.open_batch)

    @property
    def batches_held(self) -> int:
        return len(self.held)
