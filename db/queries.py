"""Query functions: a `Session` first, never commit (the caller owns the transaction).

with session_factory(engine).begin() as s:
    record_vote(s, pair_id, annotator_id, left_side="a", choice="left", shown_at=t0)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from db.errors import AccessDeniedError, DuplicateVoteError, InvalidValueError, NotFoundError
from db.models import (
    CHOICES,
    SIDES,
    Annotator,
    Comparison,
    ImagePair,
    Prompt,
    Study,
    Variant,
    Vote,
    utcnow,
)

if TYPE_CHECKING:
    import pandas as pd

# The vote interchange format (DESIGN.md), in this column order.
VOTE_COLUMNS = (
    "study",
    "group",
    "comparison",
    "variant_a",
    "variant_b",
    "a_setting",
    "b_setting",
    "prompt",
    "prompt_kind",
    "checkpoint",
    "seed",
    "annotator",
    "left_variant",
    "choice",
    "shown_at",
    "voted_at",
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


# -- getters ------------------------------------------------------------------------------------


def get_study(s: Session, study_id: int) -> Study:
    study = s.get(Study, study_id)
    if study is None:
        raise NotFoundError(f"study id {study_id!r} does not exist; pick a study from the list")
    return study


def study_by_name(s: Session, name: str) -> Study:
    study = s.scalar(select(Study).where(Study.name == name))
    if study is None:
        known = s.scalars(select(Study.name).order_by(Study.name)).all()
        raise NotFoundError(f"no study named {name!r}; existing studies: {list(known)}")
    return study


def list_studies(s: Session) -> list[Study]:
    return list(s.scalars(select(Study).order_by(Study.created_at, Study.id)))


def get_annotator(s: Session, annotator_id: int) -> Annotator:
    annotator = s.get(Annotator, annotator_id)
    if annotator is None:
        raise NotFoundError(f"annotator id {annotator_id!r} does not exist")
    return annotator


def get_pair(s: Session, pair_id: int, study_id: int | None = None) -> ImagePair:
    """The pair `pair_id`; NotFoundError if it does not exist or belongs to another study."""
    pair = s.get(ImagePair, pair_id)
    if pair is None or (study_id is not None and pair.comparison.study_id != study_id):
        where = "" if study_id is None else f" in study id {study_id}"
        raise NotFoundError(f"image pair id {pair_id!r} does not exist{where}")
    return pair


def study_pairs(s: Session, study_id: int, include_qc: bool = True) -> list[ImagePair]:
    """Every image pair of a study, ordered by id (quality-control items optional)."""
    query = (
        select(ImagePair)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id)
        .order_by(ImagePair.id)
    )
    if not include_qc:
        query = query.where(ImagePair.qc_kind.is_(None))
    return list(s.scalars(query))


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
    select(ImagePair.image_a_id, ImagePair.image_b_id, Comparison.study_id)
    .join(Comparison, ImagePair.comparison_id == Comparison.id)
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
) -> Vote:
    """Record one judgement and return it (flushed, so it has an id).

    `left_side` is the pair's side ("a" or "b") that was displayed on the left; `choice` is
    "left", "right" or "tie". The database's one-live-vote index is the authority on
    duplicates: a second live vote raises DuplicateVoteError and leaves the session usable.
    """
    # 1. Check the arguments
    if choice not in CHOICES:
        raise InvalidValueError(f"choice={choice!r}: expected one of {list(CHOICES)}")
    if left_side not in SIDES:
        raise InvalidValueError(f"left_side={left_side!r}: expected 'a' or 'b'")
    pair = s.execute(_PAIR_SIDES, {"pair_id": pair_id}).one_or_none()
    if pair is None or (study_id is not None and pair.study_id != study_id):
        where = "" if study_id is None else f" in study id {study_id}"
        raise NotFoundError(f"image pair id {pair_id!r} does not exist{where}")
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


def live_votes_frame(
    s: Session, study_id: int | None = None, include_qc: bool = False
) -> pd.DataFrame:
    """Every live vote as the vote interchange frame (DESIGN.md), ordered by vote id.

    Quality-control items are left out unless `include_qc`, which adds a `qc_kind` column
    (extra columns are ignored by the tally). Times are UTC.
    """
    import pandas as pd  # here, so pages that only vote do not pay for importing pandas

    variant_a, variant_b = aliased(Variant), aliased(Variant)
    query = (
        select(
            Study.name.label("study"),
            Comparison.group.label("group"),
            Comparison.name.label("comparison"),
            variant_a.name.label("variant_a"),
            variant_b.name.label("variant_b"),
            Comparison.a_setting,
            Comparison.b_setting,
            Prompt.text.label("prompt"),
            Prompt.kind.label("prompt_kind"),
            ImagePair.checkpoint_label.label("checkpoint"),
            ImagePair.seed,
            Annotator.name.label("annotator"),
            Vote.left_side,
            Vote.choice,
            Vote.shown_at,
            Vote.voted_at,
            ImagePair.qc_kind,
        )
        .select_from(Vote)
        .join(ImagePair, Vote.pair_id == ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .join(Study, Comparison.study_id == Study.id)
        .join(variant_a, Comparison.variant_a_id == variant_a.id)
        .join(variant_b, Comparison.variant_b_id == variant_b.id)
        .join(Prompt, ImagePair.prompt_id == Prompt.id)
        .join(Annotator, Vote.annotator_id == Annotator.id)
        .where(Vote.superseded_at.is_(None))
        .order_by(Vote.id)
    )
    if study_id is not None:
        query = query.where(Comparison.study_id == study_id)
    if not include_qc:
        query = query.where(ImagePair.qc_kind.is_(None))
    rows = s.execute(query).mappings().all()

    frame = pd.DataFrame(
        [dict(row) for row in rows],
        columns=[*VOTE_COLUMNS[:12], "left_side", "choice", "shown_at", "voted_at", "qc_kind"],
    )
    frame.insert(
        frame.columns.get_loc("left_side"),
        "left_variant",
        frame["variant_a"].where(frame["left_side"] == "a", frame["variant_b"]),
    )
    frame["seed"] = frame["seed"].astype("int64")
    for column in ("shown_at", "voted_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    columns = [*VOTE_COLUMNS, "qc_kind"] if include_qc else list(VOTE_COLUMNS)
    return frame[columns]
