"""The sandbox's store of accepted uploads: one numbered folder each, in arrival order.

Each folder holds the request's record and the bytes the server read:

    STORE/000001-GROUP/request.json   group, endpoint, path, client, time, form, parts, files
    STORE/000001-GROUP/upload.zip     the ZIP part, byte for byte (zip endpoint only)
    STORE/000001-GROUP/files/NAME     each file the server reads, byte for byte
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon.sandbox.checks import ReceivedFile, Verdict
from daemon.sandbox.form import UploadForm

_UPLOAD_FOLDER = re.compile(r"(?P<number>\d{6,})-.+")


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """How an accepted upload came: its group, its endpoint ("zip" or "files"), the path,
    when, from which client and with what Content-Type, as `request.json` records them."""

    group: str
    endpoint: str
    path: str
    received_at: str
    client_id: str
    content_type: str


def _digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _stored_names(files: list[ReceivedFile]) -> list[str]:
    """A path under `files/` for each file, unique even where a ZIP repeats a name."""
    names: list[str] = []
    for index, file in enumerate(files, start=1):
        base = re.split(r"[/\\]", file.name)[-1].strip()
        base = f"file-{index}" if base in ("", ".", "..") else base
        name, copy = base, 1
        while f"files/{name}" in names:
            copy += 1
            name = f"{copy}-{base}"
        names.append(f"files/{name}")
    return names


def _upload_record(
    folder: str,
    request: UploadRequest,
    form: UploadForm,
    files: list[ReceivedFile],
    verdict: Verdict,
    names: list[str],
) -> dict[str, Any]:
    """The content of `request.json`: what came, where it is kept, and the answer."""
    part_names = ["upload.zip"] if request.endpoint == "zip" else names
    parts = [
        {"filename": part.filename, "content_type": part.content_type, **_digest(part.data)}
        for part in form.parts
    ]
    kept = [
        {"name": file.name, "entry": file.entry, "kind": kind, **_digest(file.data)}
        for file, kind in zip(files, verdict.kinds, strict=True)
    ]
    for entry, name in zip([*parts, *kept], [*part_names, *names], strict=True):
        entry["stored_as"] = name
    record = {"upload": folder, **asdict(request), "form": form.fields}
    return record | {"parts": parts, "files": kept, "answer": verdict.body()}


class UploadStore:
    """The folder the accepted uploads are kept in, numbered on from those already there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._count = 0

    def open(self) -> None:
        """Create the folder and go on from the highest number in it; raises OSError if not."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._count = max((int(path.name.split("-")[0]) for path in self.folders()), default=0)

    def folders(self) -> list[Path]:
        """The folders of the accepted uploads, in arrival order."""
        if not self.root.is_dir():
            return []
        found = [
            (int(match["number"]), path)
            for path in self.root.iterdir()
            if path.is_dir() and (match := _UPLOAD_FOLDER.fullmatch(path.name))
        ]
        return [path for _, path in sorted(found)]

    def keep(
        self, request: UploadRequest, form: UploadForm, files: list[ReceivedFile], verdict: Verdict
    ) -> Path:
        """Write an accepted upload to its numbered folder; a rename makes it appear whole.

        Raises OSError if the store cannot be written.
        """
        with self._lock:
            self._count += 1
            group = re.sub(r"[^A-Za-z0-9._-]", "_", request.group)[:64]
            folder = self.root / f"{self._count:06d}-{group}"
            staging = self.root / f".incoming-{folder.name}"
            (staging / "files").mkdir(parents=True)
            names = _stored_names(files)
            for file, name in zip(files, names, strict=True):
                (staging / name).write_bytes(file.data)
            if request.endpoint == "zip":
                (staging / "upload.zip").write_bytes(form.parts[0].data)
            record = _upload_record(folder.name, request, form, files, verdict, names)
            (staging / "request.json").write_text(json.dumps(record, indent=2) + "\n")
            staging.rename(folder)
        return folder
