"""Specific exceptions of the storage layer; pages and CLIs turn them into messages."""


class DbError(Exception):
    """Base class of every error `db/` raises on purpose."""


class NotFoundError(DbError, LookupError):
    """A study, pair, annotator... with that id or name does not exist (or is not yours)."""


class DuplicateVoteError(DbError):
    """The annotator already has a live vote on this pair (undo it first)."""


class DuplicateNameError(DbError, ValueError):
    """An annotator (or other uniquely named row) with that name already exists."""


class InvalidValueError(DbError, ValueError):
    """An argument has a value outside what the column allows (choice, side, role, name)."""


class AccessDeniedError(DbError, PermissionError):
    """The annotator is disabled or lacks the role the action needs."""


class UnsupportedDatabaseError(DbError):
    """The operation exists only for another backend (e.g. the SQLite online backup)."""


class DatabaseUnavailableError(DbError):
    """The database cannot be used right now: locked too long by another program, or read-only."""


class StudyClosedError(AccessDeniedError):
    """The study is not taking votes (draft, closed or archived): only open or generating
    studies accept them."""


class StudyStatusError(DbError, ValueError):
    """A study cannot move from its status to the one asked (e.g. archive an open study)."""


class SchemaOutdatedError(DbError):
    """The database does not exist yet or is not at the newest migration: run `python -m db
    upgrade`."""
