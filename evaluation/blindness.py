"""Blind means blind: when a voter may see a study's results (tables, drill-down, leaderboard).

A voter sees them only when the study allows voters to see results at all and their own queue
is done: a live vote on every regular pair and no quality-control repeat still due (or the study
is closed or archived, so nothing can be judged any more). Before that the results would tell
them which model made an image they may still judge. Admins always may. A voter who stopped
because the study is settled still has pairs that an exclusion or a new setting can reopen, so
their results stay closed until they judged every pair or the study is closed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.queries import get_study, progress
from evaluation.scheduling import next_pair, study_is_settled

FINISHED_STATUSES = ("closed", "archived")  # no pair of such a study is served any more


@dataclass(frozen=True)
class ResultsAccess:
    allowed: bool
    reason: str  # "admin", "queue_done", "closed_to_voters", "queue_left" or "settled"
    pairs_left: int = 0  # regular pairs the voter has not judged yet ("queue_left", "settled")


def queue_done(s: Session, annotator_id: int, study_id: int) -> bool:
    """True when the annotator has nothing left to judge in the study: every regular pair
    (rendered or not) has their live vote and the scheduler has no repeat left for them."""
    if progress(s, annotator_id, study_id).remaining > 0:
        return False
    return next_pair(s, annotator_id, study_id) is None


def results_access(s: Session, annotator_id: int, is_admin: bool, study_id: int) -> ResultsAccess:
    """Whether the annotator may see the study's results now, and why (for the page's message)."""
    if is_admin:
        return ResultsAccess(True, "admin")
    study = get_study(s, study_id)
    if not study.results_visible_to_voters:
        return ResultsAccess(False, "closed_to_voters")
    if study.status in FINISHED_STATUSES:
        return ResultsAccess(True, "queue_done")
    left = progress(s, annotator_id, study_id).remaining
    if left > 0 and study_is_settled(s, study_id):
        return ResultsAccess(False, "settled", pairs_left=left)
    if left > 0 or not queue_done(s, annotator_id, study_id):
        return ResultsAccess(False, "queue_left", pairs_left=left)
    return ResultsAccess(True, "queue_done")
