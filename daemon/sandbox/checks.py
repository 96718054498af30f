"""How the sandbox judges an upload as the real server does: the files, their kinds, the answer.

The request itself is read in `sandbox_form`, a message.properties in `java_properties`,
every file as CSV by the reference reader (`daemon.base.opencsv`), an uploaded ZIP by
`zipstream` as Java's `ZipInputStream` reads it.

The order of the checks and the messages follow the provider's public source
(indiana-university/lms-canvas-3rdparty-provisioning: `UploadRestController`,
`DeptProvFileUploadService`, `FileParsingUtil`, `CustomNotificationBuilder`):

    a ZIP entry name that is not UTF-8      500 (the server does not catch it)
    the ZIP cannot be read (zip endpoint)   400 "Unable to unzip uploaded file"
    no files                                400 "No files to process"
    the user is not authorized              403 "User (X) is not authorized to upload files"
    a file of no known kind, empty, with a  400 "Error parsing uploaded files" + fileErrors
      quote that never closes; users missing
    a bad \\uXXXX in message.properties     500 (the server does not catch it)
    notification without valid properties   400 "User indicated that custom user notification ..."
    otherwise                               200 "The files are being processed. ..."
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Re-exported: reading message.properties as the server does is one of the checks.
from daemon.base.headers import HEADER_KEYS
from daemon.base.java_properties import read_properties as read_properties
from daemon.base.opencsv import Record, Unterminated, decode, header_key, read_rows
from daemon.sandbox.form import RequestError, UploadForm
from daemon.sandbox.zipstream import MalformedName, ZipStreamError, entries

ACCEPTED = "The files are being processed. Summary emails will be sent at a later time."
NO_FILES = "No files to process"
UNZIP_FAILED = "Unable to unzip uploaded file"
PARSE_FAILED = "Error parsing uploaded files"
NOTIFICATION_INVALID = (
    "User indicated that custom user notification was desired, but either no "
    "message.properties file was supplied, or it was malformed"
)
_BAD_FORMAT_TITLE = "The format of {0} did not conform to any of the documented formats."
_BAD_FORMAT_DESCRIPTION = "No files will be processed. Correct {0} and try again."
_NO_USERS_TITLE = "No files found that match the 'users' format"
_NO_USERS_DESCRIPTION = (
    "You indicated that you wanted to send custom notifications to new guest users, but did "
    "not provide a users file.  Either provide a properly formatted file, or refrain from "
    "checking the notification option."
)
PROPERTIES_NAME = "message.properties"


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A file as the server processes it: a file part, or an entry of the uploaded ZIP."""

    name: str
    data: bytes
    entry: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The server's answer to an upload; `kinds` types each file of an accepted one."""

    status: int
    message: str
    file_errors: list[dict[str, str]] | None = None
    kinds: tuple[str, ...] = ()
    note: str = ""  # why, for the sandbox's log; never sent

    def body(self) -> dict[str, Any]:
        """The JSON body the server sends (its `FileUploadResult`)."""
        return {"message": self.message, "fileErrors": self.file_errors}


class UnzipError(ValueError):
    """The uploaded ZIP cannot be read the way the server's ZipInputStream reads it."""


def unzip(data: bytes) -> list[ReceivedFile]:
    """The files of a ZIP as the server's `unzip` gives them: base names, no folders.

    Each entry is placed in a folder as the server writes it there (`new File(dir, name)`,
    refused when its canonical path is not inside); a folder entry is made; an entry whose
    direct parent folder is `__MACOSX` is skipped, but not one deeper down
    (`__MACOSX/export/._users.csv` is a file named `._users.csv`). Raises UnzipError where
    the server's unzip throws an IOException, ValueError where it throws what it does not
    catch (a name that is not UTF-8: the server answers 500).
    """
    files: list[ReceivedFile] = []
    folders: set[tuple[str, ...]] = {()}
    written: set[tuple[str, ...]] = set()
    try:
        for entry in entries(data):
            parts = tuple(part for part in entry.name.split("/") if part)  # as java.io.File
            target = _canonical(parts)
            if target is None or not target:
                raise UnzipError(f"Entry is outside of the target dir: {entry.name}")
            if entry.is_directory:
                _make_folders(target, folders, written)
            elif len(parts) < 2 or parts[-2] != "__MACOSX":
                parent = _canonical(parts[:-1])
                assert parent is not None  # inside whenever the entry is
                _make_folders(parent, folders, written)
                if target in folders:
                    raise UnzipError(f"{entry.name} is a folder: the file cannot be written")
                written.add(target)
                files.append(ReceivedFile(name=parts[-1], data=entry.data, entry=entry.name))
    except ZipStreamError as exc:
        raise UnzipError(str(exc)) from exc
    except MalformedName as exc:
        raise ValueError(str(exc)) from exc
    return files


def _canonical(parts: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path below the folder once `.` and `..` are resolved; None if it leaves it."""
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
        elif part != ".":
            resolved.append(part)
    return tuple(resolved)


def _make_folders(
    path: tuple[str, ...], folders: set[tuple[str, ...]], written: set[tuple[str, ...]]
) -> None:
    """`mkdirs`: it fails where a file written before stands in the way."""
    for end in range(1, len(path) + 1):
        if path[:end] in written:
            raise UnzipError(f"Failed to create directory {'/'.join(path)}")
        folders.add(path[:end])


READ_CHUNK = 1 << 20  # a file is read as text in pieces of this many bytes


def _first_record(data: bytes) -> Record | None:
    """The first record as `readAll` gives it, once the whole file has been read.

    Raises Unterminated where opencsv throws: a quote that never closes, anywhere.
    """
    first: Record | None = None
    for part in read_rows(decode(_pieces(data))):
        if first is None:
            first = part if isinstance(part, Record) else next(part.records())
    return first


def _pieces(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), READ_CHUNK):
        yield data[start : start + READ_CHUNK]


def file_kind(file: ReceivedFile) -> str | None:
    """The kind the server gives a file (a CSV kind or "properties"), None if it rejects it.

    Every file is read as CSV first, message.properties too: one opencsv cannot read, or
    an empty one (the server's `fileContents.get(0)` throws), is rejected.
    """
    try:
        first = _first_record(file.data)
    except Unterminated:
        return None
    if first is None:
        return None
    kind = HEADER_KEYS.get(header_key(first))
    if kind is None and _equals_ignore_case(file.name, PROPERTIES_NAME):
        return "properties"
    return kind


def _equals_ignore_case(one: str, other: str) -> bool:
    """Java's `String.equalsIgnoreCase`: char by char, upper case then lower case compared."""
    if len(one) != len(other):
        return False
    return all(
        a == b or _upper(a) == _upper(b) or _lower(_upper(a)) == _lower(_upper(b))
        for a, b in zip(one, other, strict=True)
    )


def _upper(char: str) -> str:
    upper = char.upper()
    return upper if len(upper) == 1 else char  # Java maps a char to one char


def _lower(char: str) -> str:
    lower = char.lower()
    return lower if len(lower) == 1 else char


def _blank(value: str | None) -> bool:
    # Java's Character.isWhitespace, unlike str.isspace, excludes the no-break spaces and NEL.
    return value is None or all(c.isspace() and c not in "\u00a0\u2007\u202f\x85" for c in value)


def notification_valid(properties: dict[str, str]) -> bool:
    """True when `sender`, `subject` and `body` are all present and not blank."""
    return not any(_blank(properties.get(key)) for key in ("sender", "subject", "body"))


def _format_errors(names: list[str], users_missing: bool) -> list[dict[str, str]]:
    errors = [
        {
            "title": _BAD_FORMAT_TITLE.format(name),
            "description": _BAD_FORMAT_DESCRIPTION.format(name),
        }
        for name in names
    ]
    if users_missing:
        errors.append({"title": _NO_USERS_TITLE, "description": _NO_USERS_DESCRIPTION})
    return errors


def judge_files(
    files: list[ReceivedFile], custom_notification: bool, refused_user: str | None = None
) -> Verdict:
    """The server's verdict on the files of an upload, `refused_user` being a user it refuses.

    Raises ValueError where the server fails with a 500 (a bad escape in message.properties).
    """
    if not files:
        return Verdict(400, NO_FILES)
    if refused_user is not None:  # the server checks its user only once it has files
        return Verdict(403, f"User ({refused_user}) is not authorized to upload files")
    kinds = [file_kind(file) for file in files]
    rejected = [file.name for file, kind in zip(files, kinds, strict=True) if kind is None]
    users_missing = custom_notification and "users" not in kinds
    if rejected or users_missing:
        return Verdict(400, PARSE_FAILED, _format_errors(rejected, users_missing))
    properties = [file for file, kind in zip(files, kinds, strict=True) if kind == "properties"]
    # Only the first message.properties is read, and it is read even when not asked for.
    valid = bool(properties) and notification_valid(read_properties(properties[0].data))
    if custom_notification and not valid:
        return Verdict(400, NOTIFICATION_INVALID)
    return Verdict(200, ACCEPTED, kinds=tuple(kind or "" for kind in kinds))


def judge_upload(
    endpoint: str, form: UploadForm, refused_user: str | None = None
) -> tuple[Verdict, list[ReceivedFile]]:
    """The server's verdict on an upload, and the files it read from it.

    Raises RequestError (500) where the server lets an exception escape.
    """
    try:
        if endpoint == "zip":
            files = unzip(form.parts[0].data)
        else:
            files = [ReceivedFile(part.filename or "", part.data) for part in form.parts]
    except UnzipError as exc:
        return Verdict(400, UNZIP_FAILED, note=str(exc)), []
    except ValueError as exc:  # an entry name the server cannot decode: it does not catch it
        raise RequestError(500, str(exc)) from exc
    try:
        return judge_files(files, form.custom_notification, refused_user), files
    except ValueError as exc:
        raise RequestError(500, str(exc)) from exc
