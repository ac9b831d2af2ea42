"""Which study this browser session works on: a plain session-state key shared by all pages.

Voters see studies open for voting (open, or still generating with at least one rendered pair);
admins see every study. A `?study=NAME` in the link preselects one; otherwise a voter lands on
the newest study where they still have a rendered pair to judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import streamlit as st

from arena_ui.identity import User
from arena_ui.resources import transaction
from db.models import VOTABLE_STATUSES
from db.queries import list_studies, rendered_pairs

STUDY_KEY = "arena_study_id"
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|:~$=^&\"'])")


@dataclass(frozen=True)
class StudyChoice:
    id: int
    name: str
    status: str
    results_visible_to_voters: bool
    rendered: int = 0  # regular pairs with both images rendered
    to_judge: int = 0  # of those, pairs the user has not judged yet
    reason_tags: tuple[str, ...] = ()  # the admin's reason tags, toggled by keys 1..6
    stop_when_settled: bool = False  # settled comparisons are no longer served
    alpha: float = 0.05  # decision settings (decision-rules.md)
    delta: float = 0.1
    vote_cap: int | None = None

    @property
    def votable(self) -> bool:
        """Open for voting: open or generating, with at least one rendered pair."""
        return self.status in VOTABLE_STATUSES and self.rendered > 0


def plain(text: str) -> str:
    """`text` (typed by someone else, e.g. in a link) escaped so Markdown shows it verbatim."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def waiting_studies() -> list[str]:
    """Names of studies open or generating that have no rendered pair yet, newest first."""
    with transaction(readonly=True) as s:
        rendered = rendered_pairs(s, annotator_id=0)
        return [
            study.name
            for study in list_studies(s, VOTABLE_STATUSES, newest_first=True)
            if study.id not in rendered
        ]


def visible_studies(user: User) -> list[StudyChoice]:
    """The studies `user` may pick, newest first (a voter's: the votable ones only)."""
    statuses = None if user.is_admin else VOTABLE_STATUSES
    with transaction(readonly=True) as s:
        counts = rendered_pairs(s, user.id)
        studies = [
            StudyChoice(
                study.id,
                study.name,
                study.status,
                study.results_visible_to_voters,
                *counts.get(study.id, (0, 0)),
                reason_tags=tuple(study.reason_tags or ()),
                stop_when_settled=study.stop_when_settled,
                alpha=study.alpha,
                delta=study.delta,
                vote_cap=study.vote_cap,
            )
            for study in list_studies(s, statuses, newest_first=True)
        ]
    return [x for x in studies if user.is_admin or x.votable]


def selected_study(user: User, studies: list[StudyChoice] | None = None) -> StudyChoice | None:
    """The session's study, else the `?study=` one, else the newest where the user still has a
    rendered pair to judge, else the newest visible one (of `studies`, default: the visible
    ones); None when there is none."""
    studies = visible_studies(user) if studies is None else studies
    by_id = {study.id: study for study in studies}
    chosen = by_id.get(st.session_state.get(STUDY_KEY))
    if chosen is None and (wanted := st.query_params.get("study")):
        chosen = next((x for x in studies if x.name == wanted), None)
        if chosen is None:
            st.warning(f"No study named “{plain(wanted)}” is open to you; showing another one.")
    if chosen is None:
        chosen = next((x for x in studies if x.votable and x.to_judge > 0), None)
    if chosen is None and studies:
        chosen = studies[0]
    if chosen is not None:
        st.session_state[STUDY_KEY] = chosen.id
    return chosen


def study_picker(user: User) -> StudyChoice | None:
    """A selectbox over the visible studies that writes the session's study; returns it."""
    studies = visible_studies(user)
    current = selected_study(user, studies)
    if not studies:
        return None
    names = [study.name for study in studies]
    picked = st.selectbox("Study", names, index=names.index(current.name), key="arena_study_picker")
    chosen = studies[names.index(picked)]
    st.session_state[STUDY_KEY] = chosen.id
    return chosen
