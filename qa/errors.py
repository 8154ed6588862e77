"""Errors the library raises on purpose; the shells map them to a 4xx or a one-line message."""

from __future__ import annotations


class QAError(Exception):
    """A problem with what was asked, not a fault of the server."""

    status = 400

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class BadInput(QAError):
    status = 400


class NotFound(QAError):
    status = 404


class IndexMismatch(QAError):
    """The index on disk was built with another model or chunking than the settings ask for."""

    status = 409


class Busy(QAError):
    """Another writer holds the index."""

    status = 409


class Damaged(QAError):
    """A file of the index or of a model is unreadable or does not match its recorded checksum:
    refused, never served. The message names the file and what to do."""

    status = 503


class StorageFailed(QAError):
    """The disk refused a write (full, or an I/O error); nothing of that change was kept."""

    status = 507


class Unavailable(QAError):
    """The storage backend (a Milvus server) cannot be reached, or refused a request."""

    status = 503
