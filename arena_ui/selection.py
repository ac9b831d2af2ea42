"""Which study this browser session works on: a plain session-state key shared by all pages.

Voters see studies that are ready (or still generating: pairs whose images exist can be judged);
admins see every study. A `?study=NAME` in the link preselects one.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from sqlalchemy import select

from arena_ui.identity import User
from arena_ui.resources import transaction
from db.models import Study

STUDY_KEY = "arena_study_id"
VOTABLE_STATUSES = ("open", "generating")


@dataclass(frozen=True)
class StudyChoice:
    id: int
    name: str
    status: str
    results_visible_to_voters: bool


def visible_studies(user: User) -> list[StudyChoice]:
    """The studies `user` may pick, newest first."""
    query = select(Study).order_by(Study.created_at.desc(), Study.id.desc())
    if not user.is_admin:
        query = query.where(Study.status.in_(VOTABLE_STATUSES))
    with transaction(readonly=True) as s:
        return [
            StudyChoice(st_.id, st_.name, st_.status, st_.results_visible_to_voters)
            for st_ in s.scalars(query)
        ]


def selected_study(user: User) -> StudyChoice | None:
    """The session's study (else the `?study=` one, else the newest visible), or None."""
    studies = visible_studies(user)
    by_id = {study.id: study for study in studies}
    chosen = by_id.get(st.session_state.get(STUDY_KEY))
    if chosen is None and (wanted := st.query_params.get("study")):
        chosen = next((x for x in studies if x.name == wanted), None)
        if chosen is None:
            st.warning(f"No study named {wanted!r} is open to you; showing another one.")
    if chosen is None and studies:
        chosen = studies[0]
    if chosen is not None:
        st.session_state[STUDY_KEY] = chosen.id
    return chosen


def study_picker(user: User) -> StudyChoice | None:
    """A selectbox over the visible studies that writes the session's study; returns it."""
    current = selected_study(user)
    studies = visible_studies(user)
    if not studies:
        return None
    names = [study.name for study in studies]
    picked = st.selectbox("Study", names, index=names.index(current.name), key="arena_study_picker")
    chosen = studies[names.index(picked)]
    st.session_state[STUDY_KEY] = chosen.id
    return chosen
