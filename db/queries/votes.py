"""Votes: record, undo, the annotator's live vote and progress (the vote page's hot path).

with session_factory(engine).begin() as s:
    record_vote(s, pair_id, annotator_id, left_side="a", choice="left", shown_at=t0)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import (
    AccessDeniedError,
    DuplicateVoteError,
    InvalidValueError,
    NotFoundError,
    StudyClosedError,
)
from db.models import (
    ALLOCATION_RULES,
    CHOICES,
    COMPARISON_STATUSES,
    SIDES,
    VOTABLE_STATUSES,
    Annotator,
    Comparison,
    ImagePair,
    Study,
    Vote,
    utcnow,
)


@dataclass(frozen=True)
class Progress:
    done: int  # regular pairs of the study with a live vote by the annotator
    total: int  # regular (non quality-control) pairs of the study

    @property
    def remaining(self) -> int:
        return self.total - self.done


def _as_utc(moment: datetime) -> datetime:
    # naive datetimes are taken as UTC (SQLite hands stored values back naive)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def live_vote(s: Session, annotator_id: int, pair_id: int) -> Vote | None:
    return s.scalar(
        select(Vote).where(
            Vote.annotator_id == annotator_id,
            Vote.pair_id == pair_id,
            Vote.superseded_at.is_(None),
        )
    )


def progress(s: Session, annotator_id: int, study_id: int) -> Progress:
    """How many of the study's regular pairs the annotator has a live vote on."""
    regular = (
        select(ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id, ImagePair.qc_kind.is_(None))
    )
    total = s.scalar(select(func.count()).select_from(regular.subquery()))
    done = s.scalar(
        select(func.count(Vote.id)).where(
            Vote.annotator_id == annotator_id,
            Vote.superseded_at.is_(None),
            Vote.pair_id.in_(regular),
        )
    )
    return Progress(done=done or 0, total=total or 0)


# -- votes --------------------------------------------------------------------------------------


# Statements of the vote page's hot path, built once (building them costs more than running them)
_PAIR_SIDES = (
    select(
        ImagePair.image_a_id,
        ImagePair.image_b_id,
        Comparison.study_id,
        Study.name.label("study_name"),
        Study.status.label("study_status"),
    )
    .join(Comparison, ImagePair.comparison_id == Comparison.id)
    .join(Study, Comparison.study_id == Study.id)
    .where(ImagePair.id == bindparam("pair_id"))
)
_ANNOTATOR_STATE = select(Annotator.name, Annotator.disabled).where(
    Annotator.id == bindparam("annotator_id")
)
_LINK_UNDONE = (
    update(Vote)
    .where(
        Vote.annotator_id == bindparam("b_annotator_id"),
        Vote.pair_id == bindparam("b_pair_id"),
        Vote.superseded_at.is_not(None),
        Vote.superseded_by_id.is_(None),
    )
    .values(superseded_by_id=bindparam("b_vote_id"))
)


def record_vote(
    s: Session,
    pair_id: int,
    annotator_id: int,
    left_side: str,
    choice: str,
    shown_at: datetime,
    *,
    study_id: int | None = None,
    voted_at: datetime | None = None,
    tags: list[str] | tuple[str, ...] = (),
    allocation_rule: str | None = None,
    comparison_status: str | None = None,
) -> Vote:
    """Record one judgement and return it (flushed, so it has an id).

    `left_side` is the pair's side ("a" or "b") that was displayed on the left; `choice` is
    "left", "right", "tie" or "both_bad". `tags` are reason tags the annotator toggled;
    `allocation_rule` / `comparison_status` record why the scheduler served the pair. A study that is not open (or
    generating) refuses the vote with StudyClosedError. The database's one-live-vote index is the authority on
    duplicates: a second live vote raises DuplicateVoteError and leaves the session usable.
    """
    # 1. Check the arguments
    if choice not in CHOICES:
        raise InvalidValueError(f"choice={choice!r}: expected one of {list(CHOICES)}")
    if left_side not in SIDES:
        raise InvalidValueError(f"left_side={left_side!r}: expected 'a' or 'b'")
    if allocation_rule is not None and allocation_rule not in ALLOCATION_RULES:
        raise InvalidValueError(
            f"allocation_rule={allocation_rule!r}: expected one of {list(ALLOCATION_RULES)}"
        )
    if comparison_status is not None and comparison_status not in COMPARISON_STATUSES:
        raise InvalidValueError(
            f"comparison_status={comparison_status!r}: expected one of {list(COMPARISON_STATUSES)}"
        )
    pair = s.execute(_PAIR_SIDES, {"pair_id": pair_id}).one_or_none()
    if pair is None or (study_id is not None and pair.study_id != study_id):
        where = "" if study_id is None else f" in study id {study_id}"
        raise NotFoundError(f"image pair id {pair_id!r} does not exist{where}")
    if pair.study_status not in VOTABLE_STATUSES:
        raise StudyClosedError(
            f"study {pair.study_name!r} is {pair.study_status}: it takes votes only while "
            f"{' or '.join(VOTABLE_STATUSES)}; an admin can reopen it on the Studies page"
        )
    annotator = s.execute(_ANNOTATOR_STATE, {"annotator_id": annotator_id}).one_or_none()
    if annotator is None:
        raise NotFoundError(f"annotator id {annotator_id!r} does not exist")
    if annotator.disabled:
        raise AccessDeniedError(f"annotator {annotator.name!r} is disabled and cannot vote")

    # 2. Insert inside a SAVEPOINT so a duplicate rolls back only this insert
    vote = Vote(
        pair_id=pair_id,
        annotator_id=annotator_id,
        left_image_id=pair.image_a_id if left_side == "a" else pair.image_b_id,
        left_side=left_side,
        choice=choice,
        tags=sorted(set(tags)),
        allocation_rule=allocation_rule,
        comparison_status=comparison_status,
        shown_at=_as_utc(shown_at),
        voted_at=_as_utc(voted_at) if voted_at is not None else utcnow(),
    )
    try:
        with s.begin_nested():
            s.add(vote)
    except IntegrityError as error:
        raise DuplicateVoteError(
            f"annotator {annotator.name!r} already has a live vote on pair {pair_id}; "
            "undo it before voting again"
        ) from error

    # 3. Link undone votes on this pair to their replacement
    s.execute(
        _LINK_UNDONE,
        {"b_annotator_id": annotator_id, "b_pair_id": pair_id, "b_vote_id": vote.id},
        execution_options={"synchronize_session": False},
    )
    return vote


def undo_last_vote(s: Session, annotator_id: int, study_id: int) -> Vote | None:
    """Mark the annotator's latest live vote in the study superseded (it is kept) and return
    it; None when there is nothing to undo."""
    vote = s.scalar(
        select(Vote)
        .join(ImagePair, Vote.pair_id == ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(
            Vote.annotator_id == annotator_id,
            Vote.superseded_at.is_(None),
            Comparison.study_id == study_id,
        )
        .order_by(Vote.voted_at.desc(), Vote.id.desc())
        .limit(1)
    )
    if vote is not None:
        vote.superseded_at = utcnow()
        s.flush()
    return vote
