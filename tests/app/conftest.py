"""Page-test fixtures: a tiny real study in a temp data dir, and a clean Streamlit cache."""

import pytest
import streamlit as st
from sqlalchemy.orm import Session
from tiny_study import TinyStudy, build_tiny_study

from db.engine import make_engine


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The engine (cache_resource) and the results (cache_data) belong to one data dir."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ARENA_ADMIN_TOKEN", raising=False)
    return tmp_path


@pytest.fixture
def tiny(data_dir) -> TinyStudy:
    return build_tiny_study(data_dir)


@pytest.fixture
def db(data_dir):
    """A session on the test's database, for checking what the pages stored. Its transactions
    are DEFERRED, so a read left open does not hold the write lock the page needs."""
    engine = make_engine().execution_options(sqlite_begin="DEFERRED")
    with Session(engine) as s:
        yield s
    engine.dispose()
