"""The one place that makes database engines and applies migrations.

SQLite (a file in the data dir) by default: WAL, busy timeout, foreign keys on, and every
transaction opened with BEGIN IMMEDIATE (SQLAlchemy's documented pysqlite recipe) so a
read-then-write transaction waits for the write lock instead of failing with "database is
locked". `DATABASE_URL` switches to any SQLAlchemy URL; PostgreSQL uses psycopg 3.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from db.errors import DatabaseUnavailableError, SchemaOutdatedError

DEFAULT_DATA_DIR = "./data"
DATABASE_FILE = "arena.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_POOL_SIZE = 20  # connections kept open per engine (one per concurrent voter)
POSTGRES_MAX_OVERFLOW = 20  # extra connections under bursts (PostgreSQL's default limit is 100)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def data_dir() -> Path:
    """The data directory (`ARENA_DATA_DIR`, default `./data`), created if missing."""
    path = Path(os.environ.get("ARENA_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`DATABASE_URL` if set, else the SQLite file `arena.sqlite3` in the data dir."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / DATABASE_FILE}"


def normalize_url(url: str | URL) -> URL:
    """Parse `url`; plain `postgresql://` / `postgres://` URLs get the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(
    url: str | URL | None = None,
    *,
    sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    **kwargs: Any,
) -> Engine:
    """An engine for `url` (default `database_url()`), configured for safe concurrent use.

    On SQLite: WAL journal, `busy_timeout`, `foreign_keys=ON` on every connection, and
    BEGIN IMMEDIATE for each transaction (`session_factory(readonly=True)` for transactions that
    only read). A locked or read-only SQLite file raises DatabaseUnavailableError. Other
    dialects are left as SQLAlchemy configures them; `kwargs` go to `create_engine`.
    """
    parsed = normalize_url(url if url is not None else database_url())
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database not in (None, "", ":memory:") and "uri" not in parsed.query:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    gate = None
    if is_sqlite and parsed.get_driver_name() == "pysqlite":
        gate = _WriteGate(sqlite_busy_timeout_ms / 1000)
        kwargs["connect_args"] = {"factory": _GatedConnection, **kwargs.get("connect_args", {})}
    if parsed.get_backend_name() == "postgresql":
        # Streamlit runs every session in its own thread on this one engine: with
        # SQLAlchemy's default pool (5 + 10) 20 busy voters starve for a connection past the
        # 30 s pool timeout (bench/load_test.py); keep one per expected concurrent voter.
        kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
        kwargs.setdefault("max_overflow", POSTGRES_MAX_OVERFLOW)
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, gate, sqlite_busy_timeout_ms)
    return engine


class _WriteGate:
    """An in-process queue in front of SQLite's single write lock.

    SQLite's busy handler makes a waiting writer sleep in growing steps (up to 100 ms), so
    threads of one process contending for BEGIN IMMEDIATE waste most of their time asleep. Threads
    wait here instead and are handed the turn as soon as the previous transaction ends. Other
    processes are still kept apart by SQLite's own lock and `busy_timeout`.
    """

    def __init__(self, timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._timeout_s = timeout_s

    def enter(self) -> bool:
        """Wait for the turn; False (no turn taken) when this thread already holds it or the
        wait timed out, in which case SQLite's busy timeout decides."""
        if self._owner == threading.get_ident():
            return False
        if not self._lock.acquire(timeout=self._timeout_s):
            return False
        self._owner = threading.get_ident()
        return True

    def leave(self) -> None:
        self._owner = None
        self._lock.release()


class _GatedConnection(sqlite3.Connection):
    """sqlite3 connection that gives the write turn back once its transaction has ended."""

    gate: _WriteGate | None = None
    holds_gate: bool = False

    def _leave_gate(self) -> None:
        if self.holds_gate:
            self.holds_gate = False
            self.gate.leave()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._leave_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._leave_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._leave_gate()


def _configure_sqlite(engine: Engine, gate: _WriteGate | None, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, _GatedConnection):
            dbapi_connection.gate = gate
        # Take transaction control away from the sqlite3 module (it would not BEGIN before
        # SELECTs and breaks SAVEPOINTs); the "begin" hook below emits our own BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:") and "mode=ro" not in str(engine.url):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # Turn the two SQLite failures a user can fix into a clear, specific error.
        message = str(context.original_exception)
        where = engine.url.database
        if "database is locked" in message or "database table is locked" in message:
            raise DatabaseUnavailableError(
                f"the SQLite database {where} stayed locked for {busy_timeout_ms / 1000:g} s "
                "(another program, e.g. a second worker or an SQLite browser, or a long "
                "transaction of this one holds the write lock): close it and retry"
            ) from context.original_exception
        if "database or disk is full" in message:
            raise DatabaseUnavailableError(
                f"cannot write the SQLite database {where}: database or disk is full. Free "
                "space on that disk and retry; the votes recorded so far are kept"
            ) from context.original_exception
        if "readonly database" in message or "unable to open database file" in message:
            raise DatabaseUnavailableError(
                f"cannot write the SQLite database {where}: {message}. Make the file and its "
                "folder writable (SQLite also writes the -wal and -shm files beside it) or set "
                "ARENA_DATA_DIR to a writable folder"
            ) from context.original_exception

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode not in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE"):
            raise ValueError(
                f"execution option sqlite_begin={mode!r}: expected 'IMMEDIATE', 'DEFERRED' "
                "or 'EXCLUSIVE'"
            )
        dbapi_connection = conn.connection.driver_connection
        if mode != "DEFERRED" and getattr(dbapi_connection, "gate", None) is not None:
            dbapi_connection.holds_gate = dbapi_connection.gate.enter()
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            if isinstance(dbapi_connection, _GatedConnection):
                dbapi_connection._leave_gate()
            raise


def session_factory(
    engine: Engine | None = None, *, readonly: bool = False
) -> sessionmaker[Session]:
    """A `sessionmaker` bound to `engine` (default `make_engine()`); objects stay usable
    after commit (`expire_on_commit=False`), which suits Streamlit reruns.

    Keep transactions short: on SQLite each one holds the write lock from its start. With
    `readonly=True` transactions start DEFERRED on SQLite and take no lock while they only read
    (for pages that only display; a write after a read there may fail with "database is
    locked").
    """
    engine = engine if engine is not None else make_engine()
    if readonly:
        engine = engine.execution_options(sqlite_begin="DEFERRED")
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Any:
    """The Alembic `Config` for the migrations in `db/migrations` (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(target: Engine | str | URL | None = None, revision: str = "head") -> None:
    """Apply the Alembic migrations to `target` (an engine or URL; default `database_url()`).

    On SQLite, foreign keys are switched off while the migration runs: batch migrations copy and
    drop tables, and with enforcement on a DROP would cascade into child rows. A foreign-key
    check runs afterwards.
    """
    from alembic import command

    engine = target if isinstance(target, Engine) else make_engine(target)
    config = alembic_config()
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # must happen outside a transaction: PRAGMA foreign_keys is a no-op inside one
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
            if engine.dialect.name == "sqlite":
                problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.commit()
                if problems:
                    raise RuntimeError(
                        f"migration to {revision!r} left rows whose foreign keys point nowhere: "
                        f"{problems[:5]}; restore the database from a backup"
                    )
        finally:
            if engine.dialect.name == "sqlite":
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
    if not isinstance(target, Engine):
        engine.dispose()


def require_current_schema(url: str | URL | None = None) -> None:
    """Raise SchemaOutdatedError unless the database at `url` (default `database_url()`) exists
    and is at the newest migration. Creates nothing: a missing SQLite file stays missing.

    For commands that work on an existing arena (`python -m evaluation generate`): without this
    they would create an empty database and fail with a traceback on the first query.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    parsed = normalize_url(url if url is not None else database_url())
    fix = "run `python -m db upgrade` (with the same ARENA_DATA_DIR / DATABASE_URL) first"
    where = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).expanduser().is_file():
            raise SchemaOutdatedError(f"no database at {parsed.database}; {fix}")
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_engine(parsed)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if current != head:
        state = "has no tables" if current is None else f"is at migration {current}"
        raise SchemaOutdatedError(f"the database {where} {state}, not {head}; {fix}")
