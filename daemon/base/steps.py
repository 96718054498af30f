"""The steps of a batch's way through dropd, as error.json, status.json and the logs name them.

A step says where something went wrong, so a person knows where to look: the value is what
is written (`"step": "upload"`), and a `Step` is a `str`, so it goes into JSON, a log field
or a sentence as its value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Step"]


class Step(StrEnum):
    """Where a batch or a group stopped."""

    FOLDER = "folder"  # the drop folder, or one dropd writes in it, is gone, a link or replaced
    SPOOL = "spool"  # the batch on disk (.dropd/work) cannot be read, written or moved
    INTAKE = "intake"  # a file of the batch cannot be read as the regular file it was
    VALIDATE = "validate"  # the server would refuse the batch's files
    GUARD = "guard"  # the batch would delete too many rows: it is held for a person
    ZIP = "zip"  # the ZIP of the batch cannot be built
    TOKEN = "token"  # no token can be had, or a fresh one is refused
    UPLOAD = "upload"  # the provider refused the upload, or it could not be made
    INTERNAL = "internal"  # dropd met an error of its own
