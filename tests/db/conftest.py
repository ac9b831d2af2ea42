"""Database fixtures: every DB test runs on a fresh SQLite file and, when TEST_DATABASE_URL
(a PostgreSQL server URL, e.g. from tests/db/start_postgres.sh) is set, on a fresh PostgreSQL
database too; without it the PostgreSQL cases are skipped."""

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, normalize_url, session_factory, upgrade
from db.models import Base
from db.synthetic import create_synthetic_study, create_voters
from tests.migrated import migrated_sqlite


def _url_with_database(server: str, name: str) -> str:
    return normalize_url(server).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database():
    """URL of a PostgreSQL database migrated to head once per test session (created on the
    TEST_DATABASE_URL server, dropped at the end)."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL not set (start one with tests/db/start_postgres.sh)")
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"arena_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = _url_with_database(server, name)
    migrated = make_engine(url)
    upgrade(migrated)
    migrated.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A URL of a database with no rows: a new SQLite file (no tables yet), or the session's
    migrated PostgreSQL database with every table emptied (skipped without TEST_DATABASE_URL;
    a fresh database per test costs ~1 s on this machine, TRUNCATE ~0.05 s)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'arena.sqlite3'}"
    url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url):
    """An engine on a migrated (Alembic head) empty database (SQLite: a copy of one migrated
    once per process, tests/migrated.py)."""
    if db_url.startswith("sqlite:///"):
        engine = migrated_sqlite(Path(db_url.removeprefix("sqlite:///")))
    else:
        engine = make_engine(db_url)
        upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def study(sessions):
    """A small synthetic study (3 comparisons x 2 labels x 4 prompts x 1 seed = 24 pairs) and
    two voters; returns (study_id, [(annotator_id, token), ...])."""
    with sessions.begin() as s:
        study = create_synthetic_study(s, "s1", n_comparisons=3, n_prompts=4, seeds=(0,))
        voters = create_voters(s, 2)
        return study.id, voters
