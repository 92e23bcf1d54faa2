"""Errors that reach the user as one line: bad input names the file, the field and what is expected."""

from __future__ import annotations


class DsfleetError(Exception):
    """Base class: anything dsfleet reports to the user without a traceback."""


class InputError(DsfleetError):
    """Bad user input: an inventory, waiver, snapshot or option.

    ``str()`` is the one line shown to the user: ``<file>: <field>: expected <expectation>[, got <value>]``.
    """

    def __init__(self, file: str, field: str, expected: str, got: object = None) -> None:
        self.file, self.field, self.expected, self.got = file, field, expected, got
        message = f"{file}: {field}: expected {expected}"
        if got is not None:
            text = repr(got)
            message += f", got {text[:80] + '...' if len(text) > 80 else text}"
        super().__init__(message)


class GatherError(DsfleetError):
    """A fact could not be gathered; the message is recorded in the snapshot as the reason."""


class AuthError(GatherError):
    """The remote system refused our credentials (HTTP 401/403, InvalidLogin)."""
