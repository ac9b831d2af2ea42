"""Engine configuration and migrations."""

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from db.engine import (
    alembic_config,
    database_url,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)
from db.errors import DatabaseUnavailableError
from db.models import Base, Prompt, Vote
from db.queries import record_vote, study_pairs
from db.synthetic import create_synthetic_study, create_voters

REPO = Path(__file__).resolve().parents[2]


def test_migrated_schema_matches_the_models(engine):
    """Alembic's head produces exactly the models' schema: autogenerate finds no drift."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(conn).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_upgrade_twice_is_harmless(engine):
    """Running the migrations again on an up-to-date database changes nothing."""
    upgrade(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path):
    """Every SQLite connection has WAL, a busy timeout and foreign-key enforcement on."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path, monkeypatch):
    """Without DATABASE_URL the database is arena.sqlite3 inside ARENA_DATA_DIR (created)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path / "data"))
    assert database_url() == f"sqlite:///{tmp_path / 'data' / 'arena.sqlite3'}"
    assert (tmp_path / "data").is_dir()
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert database_url() == "postgresql://u@h/db"


@pytest.mark.parametrize(
    "url, driver",
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_plain_postgresql_urls_use_psycopg3(url, driver):
    """A DATABASE_URL written as postgresql:// works unchanged, through psycopg 3."""
    assert normalize_url(url).drivername == driver


def test_cli_upgrade_creates_the_schema(tmp_path):
    """`python -m db upgrade` on a fresh data dir creates the database at Alembic head."""
    env = {"ARENA_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "db", "upgrade"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    assert "votes" in inspect(engine).get_table_names()
    engine.dispose()


def test_a_readonly_session_is_not_blocked_by_an_open_write_transaction(tmp_path):
    """Pages that only read (session_factory(readonly=True)) see committed data while a writer
    holds SQLite's write lock, without waiting for it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    upgrade(engine)
    reader = session_factory(engine, readonly=True)
    with engine.begin() as writer:  # BEGIN IMMEDIATE: holds SQLite's write lock
        writer.exec_driver_sql(
            "INSERT INTO prompts (text, kind, parts) VALUES ('x', 'single', '[]')"
        )
        start = time.monotonic()
        with reader() as s:
            assert s.scalar(select(func.count(Prompt.id))) == 0
        assert time.monotonic() - start < 1.0
    with reader() as s:
        assert s.scalar(select(func.count(Prompt.id))) == 1
    engine.dispose()


def _db_with_a_pair(path):
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study = create_synthetic_study(s, "s", n_comparisons=1, n_prompts=1, labels=("e",))
        [(voter, _)] = create_voters(s, 1)
        pair_id = study_pairs(s, study.id)[0].id
    engine.dispose()
    return pair_id, voter


def test_a_database_locked_by_another_program_gives_a_clear_error(tmp_path):
    """When another program holds the write lock past the busy timeout, the vote fails with a
    message saying so, and nothing is recorded."""
    path = tmp_path / "a.sqlite3"
    pair_id, voter = _db_with_a_pair(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    engine = make_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=200)
    try:
        with pytest.raises(DatabaseUnavailableError, match="stayed locked for 0.2 s"):
            with session_factory(engine).begin() as s:
                record_vote(s, pair_id, voter, "a", "left", datetime.now(UTC))
    finally:
        other.execute("ROLLBACK")
        other.close()
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count(Vote.id))) == 0
    engine.dispose()


def test_a_read_only_database_gives_a_clear_error(tmp_path):
    """Writing to a read-only database file names the file and the fix."""
    path = tmp_path / "a.sqlite3"
    pair_id, voter = _db_with_a_pair(path)
    engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(DatabaseUnavailableError, match=r"cannot write .*writable"):
        with session_factory(engine).begin() as s:
            record_vote(s, pair_id, voter, "a", "left", datetime.now(UTC))
    with session_factory(engine, readonly=True)() as s:  # reading still works
        assert s.scalar(select(func.count(Vote.id))) == 0
    engine.dispose()


def test_migrations_downgrade_to_empty_and_back(engine):
    """Every migration can be undone and re-applied (downgrade to base, upgrade to head)."""
    from alembic import command

    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
        conn.commit()
        assert "votes" not in inspect(conn).get_table_names()
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
