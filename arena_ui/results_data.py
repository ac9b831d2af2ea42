"""The results page's data, cached per study until its votes or exclusions change.

A cheap fingerprint of the study (`db.queries.votes_fingerprint`: votes, newest id, undone
votes, exclusion events) keys the caches, so widget clicks on the results page (drill-down,
grid, count mode) do not reload every vote or refit the bootstrap leaderboard, while a new
vote, an undo, an exclusion or a restore shows up at once.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from arena_ui.resources import transaction
from db.engine import data_dir
from db.queries import live_votes_frame, votes_fingerprint
from evaluation.ranking import bootstrap_leaderboard
from evaluation.result_tables import own_results as own_results_table

LEADERBOARD_ROUNDS = 200
BOARD_ROUNDS = 1000  # prompt-bootstrap rounds of each group's stability (decision-rules.md)
Fingerprint = tuple[int, int, int, int]


def fingerprint(study_id: int) -> Fingerprint:
    with transaction(readonly=True) as s:
        return votes_fingerprint(s, study_id)


@st.cache_data(max_entries=16, show_spinner=False)
def all_votes(study_id: int, fingerprint: Fingerprint) -> pd.DataFrame:
    """Every live vote of the study, quality-control repeats and excluded annotators included
    (`qc_kind`, `excluded` and `tags` columns); the fingerprint is the cache key only."""
    with transaction(readonly=True) as s:
        return live_votes_frame(s, study_id, include_qc=True, include_excluded=True, with_tags=True)


def counted_votes(study_id: int, fingerprint: Fingerprint) -> pd.DataFrame:
    """The votes every tally counts: regular pairs, excluded annotators left out (with `tags`)."""
    votes = all_votes(study_id, fingerprint)
    counted = votes[votes["qc_kind"].isna() & ~votes["excluded"]]
    return counted.drop(columns=["qc_kind", "excluded"]).reset_index(drop=True)


@st.cache_data(max_entries=16, show_spinner="Fitting the Bradley-Terry leaderboard")
def leaderboard(study_id: int, fingerprint: Fingerprint) -> pd.DataFrame:
    """Bradley-Terry scores with prompt-bootstrap intervals (seed 0, reproducible)."""
    votes = counted_votes(study_id, fingerprint)
    return bootstrap_leaderboard(votes, rounds=LEADERBOARD_ROUNDS, seed=0).table


@st.cache_data(max_entries=16, show_spinner="Computing the decision board")
def decision_board(
    study_id: int, fingerprint: Fingerprint, alpha: float, delta: float, vote_cap: int | None
):
    """`evaluation.decisions.decide` over the counted votes with the study's own settings
    (seed 0, reproducible)."""
    from evaluation.decisions import DecisionSettings, decide

    settings = DecisionSettings(alpha=alpha, delta=delta, vote_cap=vote_cap)
    return decide(counted_votes(study_id, fingerprint), settings, seed=0, rounds=BOARD_ROUNDS)


@st.cache_data(max_entries=16, show_spinner=False)
def voter_checks(study_id: int, fingerprint: Fingerprint) -> pd.DataFrame:
    """Per-annotator checks over every live vote (QC repeats and excluded annotators too, so
    that an admin can judge whom to exclude or restore)."""
    from evaluation.voter_checks import voter_checks as checks

    votes = all_votes(study_id, fingerprint)
    return checks(votes.drop(columns=["excluded", "tags"]))


def report_bytes(study_name: str) -> bytes:
    """The study's report (report.html, tables.md, grids/, votes.csv) as a zip, written when
    the download button is clicked."""
    from evaluation.report import report_zip

    with transaction(readonly=True) as s:
        return report_zip(s, data_dir(), study_name)


def own_results(study_id: int, annotator: str) -> pd.DataFrame:
    """The annotator's own tally of the study (their votes count here even when excluded)."""
    votes = all_votes(study_id, fingerprint(study_id))
    regular = votes[votes["qc_kind"].isna()].drop(columns=["qc_kind", "excluded", "tags"])
    return own_results_table(regular.reset_index(drop=True), annotator)
