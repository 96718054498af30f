"""How the sandbox judges an upload as the real server does: the files, their kinds, the answer.

The request itself is read in `sandbox_form`, a message.properties in `java_properties`.

The order of the checks and the messages follow the provider's public source
(indiana-university/lms-canvas-3rdparty-provisioning: `UploadRestController`,
`DeptProvFileUploadService`, `FileParsingUtil`, `CustomNotificationBuilder`):

    the ZIP cannot be read (zip endpoint)   400 "Unable to unzip uploaded file"
    no files                                400 "No files to process"
    the user is not authorized              403 "User (X) is not authorized to upload files"
    a file of no known kind, users missing  400 "Error parsing uploaded files" + fileErrors
    a bad \\uXXXX in message.properties     500 (the server does not catch it)
    notification without valid properties   400 "User indicated that custom user notification ..."
    otherwise                               200 "The files are being processed. ..."
"""

from __future__ import annotations

import csv
import io
import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

# Re-exported: reading message.properties as the server does is one of the checks.
from daemon.base.java_properties import read_properties as read_properties
from daemon.sandbox.form import RequestError, UploadForm

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


def _with_optional(base: str, *optional: str) -> list[str]:
    """`base` followed by every in-order subset of `optional` (the server lists each one)."""
    headers = [base]
    for column in optional:
        headers += [header + column for header in headers]
    return headers


def _header_kinds() -> dict[str, str]:
    dates = (",start_date", ",end_date")
    course_columns = (*dates, ",blueprint_course_id")
    kinds: dict[str, list[str]] = {
        # The server also takes courses without term_id, which the provider's table omits.
        "courses": _with_optional(
            "course_id,short_name,long_name,account_id,term_id,status", *course_columns
        )
        + _with_optional("course_id,short_name,long_name,account_id,status", *course_columns),
        "sections": _with_optional("section_id,course_id,name,status", *dates),
        "enrollments": _with_optional(
            "course_id,user_id,role,section_id,status", ",limit_section_privileges"
        ),
        "users": _with_optional("user_id,login_id,first_name,last_name,email,status", ",service"),
        "listings": _with_optional("user_id,listing_id", ",send_email"),
    }
    return {header: kind for kind, headers in kinds.items() for header in headers}


HEADER_KINDS = _header_kinds()


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
    """The files of a ZIP as the server's ZipInputStream sees them (flattened, no folders).

    Raises UnzipError where the server's unzip throws an IOException.
    """
    # ZipInputStream reads local headers from the start: bytes that do not open with one
    # (not a ZIP at all, or an empty ZIP) yield no entry rather than an error.
    if not data.startswith(b"PK\x03\x04"):
        return []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = [_read_entry(archive, info) for info in archive.infolist()]
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        raise UnzipError(str(exc)) from exc
    return [file for file in files if file is not None]


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> ReceivedFile | None:
    target = posixpath.normpath(info.filename.lstrip("/"))
    if target in (".", "..") or target.startswith("../"):
        raise UnzipError(f"Entry is outside of the target dir: {info.filename}")
    if info.is_dir() or posixpath.basename(posixpath.dirname(target)) == "__MACOSX":
        return None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnzipError(f"invalid compression method in {info.filename}")
    if info.flag_bits & 0x1:
        raise UnzipError(f"encrypted ZIP entry not supported: {info.filename}")
    return ReceivedFile(
        name=posixpath.basename(target), data=archive.read(info), entry=info.filename
    )


def _unterminated_quote(data: bytes) -> bool:
    """True where the server's CSV reader (opencsv) ends inside a quoted field and throws."""
    # opencsv toggles "in quotes" on every quote not escaped by a backslash, anywhere.
    # Counted on the bytes: a GB file is neither decoded nor listed match by match.
    return (data.count(b'"') - data.count(b'\\"')) % 2 == 1


HEADER_WINDOW = 1 << 16  # the header line is read from the file's start only


def file_kind(file: ReceivedFile) -> str | None:
    """The kind the server gives a file (a CSV kind or "properties"), None if it rejects it."""
    if _unterminated_quote(file.data):
        return None
    head = file.data[:HEADER_WINDOW].decode("utf-8", errors="replace")
    try:
        first = next(csv.reader(io.StringIO(head, newline="")), None)
    except csv.Error:
        return None
    if first is None:  # an empty file: the server's "first line" lookup fails
        return None
    kind = HEADER_KINDS.get(",".join(first))
    if kind is None and file.name.lower() == PROPERTIES_NAME:
        return "properties"
    return kind


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
    try:
        return judge_files(files, form.custom_notification, refused_user), files
    except ValueError as exc:
        raise RequestError(500, str(exc)) from exc
