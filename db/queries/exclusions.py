"""Annotator exclusions: an admin leaves an annotator's votes out of a study's tallies.

Recorded, never deleted, and reversible: `restore` stamps `restored_at`, and the annotator's
votes count again. `live_votes_frame` leaves excluded annotators out unless asked; the
scheduler and the results page read `excluded_annotator_ids`.

with session_factory(engine).begin() as s:
    exclude(s, study_id, annotator_id, by_id=admin_id, reason="clicked left on everything")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.errors import InvalidValueError, NotFoundError
from db.models import Annotator, AnnotatorExclusion, Comparison, ImagePair, Study, Vote, utcnow


@dataclass(frozen=True)
class Exclusion:
    """One exclusion as the results page and the exports show it."""

    annotator_id: int
    annotator: str
    excluded_by: str | None  # the admin's name; None when the account is gone or unknown
    reason: str
    excluded_at: datetime
    restored_at: datetime | None  # None while the exclusion is live


def _live(s: Session, study_id: int, annotator_id: int) -> AnnotatorExclusion | None:
    return s.scalar(
        select(AnnotatorExclusion).where(
            AnnotatorExclusion.study_id == study_id,
            AnnotatorExclusion.annotator_id == annotator_id,
            AnnotatorExclusion.restored_at.is_(None),
        )
    )


def exclude(
    s: Session, study_id: int, annotator_id: int, by_id: int | None, reason: str = ""
) -> AnnotatorExclusion:
    """Leave the annotator's votes out of the study's tallies (flushed, not committed).

    NotFoundError for an unknown study or annotator; InvalidValueError when the annotator is
    already excluded from the study (restore first).
    """
    if s.get(Study, study_id) is None:
        raise NotFoundError(f"study id {study_id!r} does not exist; pick a study from the list")
    annotator = s.get(Annotator, annotator_id)
    if annotator is None:
        raise NotFoundError(f"annotator id {annotator_id!r} does not exist")
    if _live(s, study_id, annotator_id) is not None:
        raise InvalidValueError(
            f"annotator {annotator.name!r} is already excluded from study id {study_id}; "
            "restore them first to record a new exclusion"
        )
    row = AnnotatorExclusion(
        study_id=study_id,
        annotator_id=annotator_id,
        excluded_by_id=by_id,
        reason=reason.strip(),
        excluded_at=utcnow(),
    )
    s.add(row)
    s.flush()
    return row


def restore(s: Session, study_id: int, annotator_id: int) -> AnnotatorExclusion:
    """Count the annotator's votes again; the exclusion stays on record with `restored_at`.

    NotFoundError when the annotator is not excluded from the study.
    """
    row = _live(s, study_id, annotator_id)
    if row is None:
        raise NotFoundError(
            f"annotator id {annotator_id!r} is not excluded from study id {study_id}; "
            "nothing to restore"
        )
    row.restored_at = utcnow()
    s.flush()
    return row


def excluded_annotator_ids(s: Session, study_id: int) -> set[int]:
    """Ids of the annotators whose votes the study's tallies leave out now."""
    return set(
        s.scalars(
            select(AnnotatorExclusion.annotator_id).where(
                AnnotatorExclusion.study_id == study_id,
                AnnotatorExclusion.restored_at.is_(None),
            )
        )
    )


def exclusion_history(s: Session, study_id: int, live_only: bool = False) -> list[Exclusion]:
    """The study's exclusions, oldest first (restored ones too unless `live_only`)."""
    admin = aliased(Annotator)
    query = (
        select(AnnotatorExclusion, Annotator.name, admin.name)
        .join(Annotator, AnnotatorExclusion.annotator_id == Annotator.id)
        .outerjoin(admin, AnnotatorExclusion.excluded_by_id == admin.id)
        .where(AnnotatorExclusion.study_id == study_id)
        .order_by(AnnotatorExclusion.excluded_at, AnnotatorExclusion.id)
    )
    if live_only:
        query = query.where(AnnotatorExclusion.restored_at.is_(None))
    return [
        Exclusion(
            annotator_id=row.annotator_id,
            annotator=name,
            excluded_by=by,
            reason=row.reason,
            excluded_at=row.excluded_at,
            restored_at=row.restored_at,
        )
        for row, name, by in s.execute(query)
    ]


def live_exclusions(s: Session, study_id: int) -> list[Exclusion]:
    """The exclusions in force now, oldest first."""
    return exclusion_history(s, study_id, live_only=True)


def study_annotators(s: Session, study_id: int) -> list[tuple[int, str]]:
    """(id, name) of every annotator with a live vote in the study, by name."""
    return [
        (annotator_id, name)
        for annotator_id, name in s.execute(
            select(Annotator.id, Annotator.name)
            .where(
                Annotator.id.in_(
                    select(Vote.annotator_id)
                    .join(ImagePair, Vote.pair_id == ImagePair.id)
                    .join(Comparison, ImagePair.comparison_id == Comparison.id)
                    .where(Comparison.study_id == study_id, Vote.superseded_at.is_(None))
                )
            )
            .order_by(Annotator.name)
        )
    ]
