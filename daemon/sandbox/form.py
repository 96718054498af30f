"""What the sandbox reads from an upload request: its multipart body, as Spring binds it.

The controller receives the `deptFileUpload` file parts and the text fields, from the
query string and the body; `customUsersNotification` is read as Spring reads a boolean.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qs

UPLOAD_FIELD = "deptFileUpload"
# Spring's StringToBooleanConverter; an empty value falls back to the default, false.
_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0", ""}


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class UploadForm:
    """What the controller receives: its text fields and its `deptFileUpload` file parts."""

    fields: dict[str, str]
    parts: list[Part]
    custom_notification: bool


class MultipartError(ValueError):
    """The body is not the multipart/form-data its Content-Type announces."""


class RequestError(ValueError):
    """Spring answers for the controller (a bad request, or an uncaught fault) with `status`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _header_params(header: str, value: str) -> Message:
    message = Message()
    message[header] = value
    return message


def multipart_boundary(content_type: str) -> str | None:
    """The boundary of a multipart/form-data Content-Type, or None for any other type."""
    message = _header_params("content-type", content_type)
    if message.get_content_type() != "multipart/form-data":
        return None
    return message.get_boundary()


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart/form-data body into its parts, keeping each part's bytes exactly.

    Raises MultipartError if the body has no closing delimiter or a part has no headers.
    """
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2 or not any(chunk.startswith(b"--") for chunk in chunks[1:]):
        raise MultipartError("the multipart body has no closing boundary")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(_parse_part(chunk))
    return parts


def _parse_part(chunk: bytes) -> Part:
    _padding, _, rest = chunk.partition(b"\r\n")  # whitespace may follow the boundary
    head, separator, data = rest.partition(b"\r\n\r\n")
    if not separator:
        raise MultipartError("a multipart part has no blank line after its headers")
    headers = {}
    for line in head.decode("utf-8", errors="replace").split("\r\n"):
        header, _, value = line.partition(":")
        headers[header.strip().lower()] = value.strip()
    disposition = _header_params("content-disposition", headers.get("content-disposition", ""))
    name = disposition.get_param("name", header="content-disposition")
    return Part(
        name=name if isinstance(name, str) else "",
        filename=disposition.get_filename(),
        content_type=headers.get("content-type"),
        data=data,
    )


def read_form(endpoint: str, content_type: str, body: bytes, query: str) -> UploadForm:
    """Read an upload request as Spring binds it for the controller.

    Raises RequestError (400) if it is not multipart, lacks a file part or has a bad flag.
    """
    boundary = multipart_boundary(content_type)
    if boundary is None:
        raise RequestError(400, "Current request is not a multipart request")
    try:
        parts = parse_multipart(body, boundary)
    except MultipartError as exc:
        raise RequestError(400, str(exc)) from exc
    fields = {name: values[0] for name, values in parse_qs(query).items()}
    for part in parts:
        if part.filename is None:
            fields.setdefault(part.name, part.data.decode("utf-8", errors="replace"))
    files = [part for part in parts if part.name == UPLOAD_FIELD and part.filename is not None]
    if not files:
        raise RequestError(400, f"Required request part '{UPLOAD_FIELD}' is not present")
    flag = fields.get("customUsersNotification", "").strip().lower()
    if flag not in _TRUE | _FALSE:
        raise RequestError(400, "customUsersNotification is not a boolean")
    # The zip endpoint binds a single file: the first part of that name.
    return UploadForm(fields, files[:1] if endpoint == "zip" else files, flag in _TRUE)
