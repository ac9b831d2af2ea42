"""Process-wide resources of the app: the database engine (migrated once) and the data dir.

`engine()` is an `st.cache_resource`: one engine per server process, shared by every session.
On its first call it applies the migrations and, on a fresh install with no admin, creates one
and prints its one-time login link on the server console (as Jupyter does).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db import auth
from db.auth import BOOTSTRAP_NOTICE, ensure_bootstrap_admin
from db.engine import data_dir, make_engine, session_factory, upgrade


@st.cache_resource(show_spinner=False)
def engine() -> Engine:
    """The shared engine, with the schema at head and a bootstrap admin announced if needed."""
    eng = make_engine()
    upgrade(eng)
    with session_factory(eng).begin() as s:
        token = ensure_bootstrap_admin(s)
    if token is not None:
        print(f"\n  {BOOTSTRAP_NOTICE}\n  {login_link(token)}\n", file=sys.stderr, flush=True)
    return eng


def login_link(token: str) -> str:
    """The personal link for `token` on this server (address and port from its options)."""
    address = st.get_option("browser.serverAddress") or "localhost"
    port = st.get_option("browser.serverPort") or st.get_option("server.port") or 8501
    return auth.login_link(f"http://{address}:{port}", token)


@contextmanager
def transaction(readonly: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on an exception.

    `readonly` opens a DEFERRED transaction on SQLite: page reads then run beside other
    sessions' votes instead of queueing for the write lock (BEGIN IMMEDIATE).
    """
    bind = engine().execution_options(sqlite_begin="DEFERRED") if readonly else engine()
    with session_factory(bind).begin() as s:
        yield s


def image_file(relative: str) -> Path:
    """The absolute path of an image stored (relative to the data dir) in the database."""
    return data_dir() / relative


def ensure_entry_point() -> None:
    """Make sure app.py (st.navigation, sidebar, layout) runs around the page.

    Workaround for Streamlit's deep-link-on-first-load bug (streamlit/streamlit#9624), the one
    place the app touches a Streamlit internal: with a `pages/` folder beside app.py, a server
    starts in the old multipage mode, and when its very first request is a deep link such as
    `/vote?token=...` it runs the page file alone; the first run of app.py (st.navigation) ends
    that mode for the process. Streamlit 1.67 offers no public switch for it and the `pages/`
    layout is fixed, so the page leaves that mode itself and reruns, which hands the request to
    app.py. tests/e2e/test_vote_keys.py (a deep link as a fresh server's first request) and
    tests/app/test_access.py (the switch still exists) fail when an upgrade changes this.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
