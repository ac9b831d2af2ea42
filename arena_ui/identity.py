"""Who is using the app: a personal token from the link (`?token=...`), checked on every run.

The token is looked up (hashed) in the database on each page run, so revoking an annotator
takes effect at their next click. It is kept in a plain session-state key so that it survives
page switches, and put back into the URL so that a reload keeps the user signed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from arena_ui.resources import ensure_entry_point, transaction
from db.auth import authenticate

TOKEN_KEY = "arena_token"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str  # "admin" or "voter"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_user() -> User | None:
    """The signed-in annotator, or None (no token, unknown token, revoked account)."""
    ensure_entry_point()
    token = st.query_params.get("token") or st.session_state.get(TOKEN_KEY)
    if not token:
        return None
    with transaction(readonly=True) as s:
        annotator = authenticate(s, token)
        user = None if annotator is None else User(annotator.id, annotator.name, annotator.role)
    if user is None:
        st.session_state.pop(TOKEN_KEY, None)
        return None
    st.session_state[TOKEN_KEY] = token
    if st.query_params.get("token") != token:
        st.query_params["token"] = token
    return user


def require_user() -> User:
    """The signed-in user; otherwise the page stops with a refusal."""
    user = current_user()
    if user is None:
        st.error(
            "You are not signed in, or your link is no longer valid. Open the personal link "
            "your admin gave you (it ends in `?token=...`)."
        )
        st.stop()
    return user


def require_admin() -> User:
    """The signed-in admin; a voter (or nobody) gets a refusal and the page stops."""
    user = require_user()
    if not user.is_admin:
        st.error(f"Access denied: this page is for admins only, and {user.name!r} is a voter.")
        st.stop()
    return user
