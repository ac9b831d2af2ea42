"""Database fixtures: every DB test runs on a fresh SQLite file and, when TEST_DATABASE_URL
(a PostgreSQL server URL, e.g. from tests/db/start_postgres.sh) is set, on a fresh PostgreSQL
database too; without it the PostgreSQL cases are skipped."""

import os
import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, normalize_url, session_factory, upgrade
from db.synthetic import create_synthetic_study, create_voters


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request, tmp_path):
    """A URL of an empty database (no tables yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'arena.sqlite3'}"
        return
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL not set (start one with tests/db/start_postgres.sh)")
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"arena_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalize_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine(db_url):
    """An engine on a migrated (Alembic head) empty database."""
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
