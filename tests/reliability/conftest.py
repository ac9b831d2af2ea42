"""Fixtures of the reliability tests: database URLs for SQLite and, when TEST_DATABASE_URL is set
(tests/db/start_postgres.sh prints one), a throwaway PostgreSQL database per test."""

import os
import uuid

import pytest

from db.engine import make_engine, normalize_url


def _throwaway_postgres():
    """Yield the URL of a new PostgreSQL database on the TEST_DATABASE_URL server, then drop
    it (skips the test without TEST_DATABASE_URL)."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL not set (start one with tests/db/start_postgres.sh)")
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"arena_reliability_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield normalize_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path):
    """URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'arena.sqlite3'}"
        return
    yield from _throwaway_postgres()


@pytest.fixture
def postgres_url():
    """URL of a new empty PostgreSQL database (skipped without TEST_DATABASE_URL)."""
    yield from _throwaway_postgres()
