"""The one place that makes database engines and applies migrations.

SQLite (a file in the data dir) by default: WAL, busy timeout, foreign keys on, and every
transaction opened with BEGIN IMMEDIATE (SQLAlchemy's documented pysqlite recipe) so a
read-then-write transaction waits for the write lock instead of failing with "database is
locked". `DATABASE_URL` switches to any SQLAlchemy URL; PostgreSQL uses psycopg 3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATA_DIR = "./data"
DATABASE_FILE = "arena.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000
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


def make_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """An engine for `url` (default `database_url()`), configured for safe concurrent use.

    On SQLite: WAL journal, `busy_timeout`, `foreign_keys=ON` on every connection, and
    BEGIN IMMEDIATE for each transaction (pass `execution_options(sqlite_begin="DEFERRED")`
    on a connection or engine copy for a read-only transaction that should not take the
    write lock). Other dialects are left as SQLAlchemy configures them.
    """
    parsed = normalize_url(url if url is not None else database_url())
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would not BEGIN before
        # SELECTs and breaks SAVEPOINTs); the "begin" hook below emits our own BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode not in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE"):
            raise ValueError(
                f"execution option sqlite_begin={mode!r}: expected 'IMMEDIATE', 'DEFERRED' "
                "or 'EXCLUSIVE'"
            )
        conn.exec_driver_sql(f"BEGIN {mode}")


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    """A `sessionmaker` bound to `engine` (default `make_engine()`); objects stay usable
    after commit (`expire_on_commit=False`), which suits Streamlit reruns."""
    return sessionmaker(engine if engine is not None else make_engine(), expire_on_commit=False)


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
