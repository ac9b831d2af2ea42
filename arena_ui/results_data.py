"""The results page's data, cached per study until its votes change.

A cheap fingerprint of the study's votes (count, newest id, undone count) keys the caches, so
widget clicks on the results page (drill-down, grid, count mode) do not reload every vote or
refit the bootstrap leaderboard, while a new vote or an undo shows up at once.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import func, select

from arena_ui.resources import transaction
from db.models import Comparison, ImagePair, Vote
from db.queries import live_votes_frame
from evaluation.ranking import bootstrap_leaderboard

LEADERBOARD_ROUNDS = 200


def vote_fingerprint(study_id: int) -> tuple[int, int, int]:
    """(votes, newest vote id, superseded votes) of the study: changes with every vote/undo."""
    with transaction(readonly=True) as s:
        row = s.execute(
            select(func.count(Vote.id), func.max(Vote.id), func.count(Vote.superseded_at))
            .join(ImagePair, Vote.pair_id == ImagePair.id)
            .join(Comparison, ImagePair.comparison_id == Comparison.id)
            .where(Comparison.study_id == study_id)
        ).one()
    return int(row[0]), int(row[1] or 0), int(row[2])


@st.cache_data(max_entries=16, show_spinner=False)
def study_votes(study_id: int, fingerprint: tuple[int, int, int]) -> pd.DataFrame:
    """The study's live votes as the interchange frame (fingerprint: the cache key only)."""
    with transaction(readonly=True) as s:
        return live_votes_frame(s, study_id)


@st.cache_data(max_entries=16, show_spinner="Fitting the Bradley-Terry leaderboard")
def leaderboard(study_id: int, fingerprint: tuple[int, int, int]) -> pd.DataFrame:
    """Bradley-Terry scores with prompt-bootstrap intervals (seed 0, reproducible)."""
    votes = study_votes(study_id, fingerprint)
    return bootstrap_leaderboard(votes, rounds=LEADERBOARD_ROUNDS, seed=0).table
