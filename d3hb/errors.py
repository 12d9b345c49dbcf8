"""Exceptions shared by every layer, split by who is at fault.

Every error a user can meet is a :class:`D3hbError`: its text is one line
that names what was wrong and, after a semicolon, what to do.  The command
line prints it and exits with :attr:`D3hbError.status`; the menus show it in
the message section.  Nothing else should reach a user.
"""

from __future__ import annotations


class D3hbError(Exception):
    """A failure the user can act on; the data is as it was (exit 1)."""

    status = 1

    def __init__(self, what: str, todo: str | None = None) -> None:
        self.what = what
        self.todo = todo
        super().__init__(what if not todo else f"{what}; {todo}")


class UsageError(D3hbError):
    """The command was given wrongly (exit 2)."""

    status = 2


class NotFound(D3hbError):
    """An account, file, item, server or system that does not exist."""


class AlreadyExists(D3hbError):
    """Something to be created is already there."""


class Refused(D3hbError):
    """The operation is not allowed in the current state (slave, running server...)."""


class StoreError(D3hbError):
    """The database could not do what was asked (locked, full, corrupt)."""


class LocalProtocolError(D3hbError):
    """We tried to send or do something the protocol does not allow."""


class RemoteProtocolError(D3hbError):
    """The peer sent something malformed, unauthenticated or out of order."""


class TapeError(D3hbError):
    """A tape (file, pipe or stream) is unreadable, corrupt, truncated or of an unknown version."""
