"""One exception hierarchy for crossrec.

Every error a user can cause carries a one-line message that says what went wrong, where
(file, row, field when known) and what to do about it. The CLI prints ``str(error)`` and exits
with ``error.exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations


class CrossrecError(Exception):
    """Base class of every error crossrec raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class ConfigError(CrossrecError):
    """The workspace configuration is invalid."""

    exit_code = 2


class WorkspaceError(CrossrecError):
    """The directory is not a workspace, or the workspace cannot be used."""

    exit_code = 2


class SchemaVersionError(WorkspaceError):
    """The store was written by another schema version."""


class InputError(CrossrecError):
    """A command-line argument or API argument is invalid."""

    exit_code = 2


class InvalidIdError(InputError):
    """A raw account or item id breaks the identity rule (:mod:`crossrec.identity`).

    ``field`` names the id (``account``, ``item``...), ``reason`` is the text a quarantined
    row keeps (e.g. ``invalid account: control character U+000A``).
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(
            reason,
            hint="ids are trimmed, at most 512 characters, without control characters",
        )


class IngestError(CrossrecError):
    """A whole input file is refused (not a table, empty, unknown format)."""

    exit_code = 3


class NotFoundError(CrossrecError):
    """An account, item or model version the caller named does not exist."""

    exit_code = 4


class ModelError(CrossrecError):
    """A model is missing, stale or cannot be trained on the data at hand."""

    exit_code = 5


class CapacityError(CrossrecError):
    """A job would exceed a configured cap (candidate pairs, component size, memory)."""

    exit_code = 6
