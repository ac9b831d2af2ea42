"""Studies and their image pairs: getters that raise NotFoundError with the fix, the study life
cycle (draft -> generating -> open -> closed -> archived) and the study's editable settings."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db.errors import NotFoundError, StudyStatusError
from db.models import (
    REFERENCE_VARIANT,
    Annotator,
    Checkpoint,
    Comparison,
    Image,
    ImagePair,
    Study,
    Variant,
    Vote,
)

# Moves an admin may make from each status (the generation worker moves draft <-> generating
# -> open itself). Voting is allowed while open or generating (db.models.VOTABLE_STATUSES).
STUDY_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("closed", "archived"),  # a draft that will not be finished
    "generating": ("closed",),  # voting stops; stop its worker separately
    "open": ("closed",),
    "closed": ("open", "archived"),  # reopen, or put away
    "archived": ("closed",),  # take out of the archive (closed; reopen from there)
}


def get_study(s: Session, study_id: int) -> Study:
    study = s.get(Study, study_id)
    if study is None:
        raise NotFoundError(f"study id {study_id!r} does not exist; pick a study from the list")
    return study


def study_named(s: Session, name: str) -> Study | None:
    """The study called `name`, or None."""
    return s.scalar(select(Study).where(Study.name == name))


def study_by_name(s: Session, name: str) -> Study:
    """The study called `name`; NotFoundError listing the existing ones otherwise."""
    study = study_named(s, name)
    if study is None:
        known = s.scalars(select(Study.name).order_by(Study.name)).all()
        raise NotFoundError(f"no study named {name!r}; existing studies: {list(known)}")
    return study


def list_studies(
    s: Session, statuses: tuple[str, ...] | None = None, newest_first: bool = False
) -> list[Study]:
    """Studies in creation order (or newest first), optionally only those in `statuses`."""
    order = (
        (Study.created_at.desc(), Study.id.desc()) if newest_first else (Study.created_at, Study.id)
    )
    query = select(Study).order_by(*order)
    if statuses is not None:
        query = query.where(Study.status.in_(statuses))
    return list(s.scalars(query))


def rendered_pairs(s: Session, annotator_id: int) -> dict[int, tuple[int, int]]:
    """study id -> (regular pairs with both images rendered, those of them the annotator has
    no live vote on); studies without a rendered pair are absent."""
    image_a, image_b = aliased(Image), aliased(Image)
    rows = s.execute(
        select(Comparison.study_id, func.count(ImagePair.id), func.count(Vote.id))
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .join(image_a, ImagePair.image_a_id == image_a.id)
        .join(image_b, ImagePair.image_b_id == image_b.id)
        .outerjoin(
            Vote,
            (Vote.pair_id == ImagePair.id)
            & (Vote.annotator_id == annotator_id)
            & Vote.superseded_at.is_(None),
        )
        .where(ImagePair.qc_kind.is_(None), image_a.path.is_not(None), image_b.path.is_not(None))
        .group_by(Comparison.study_id)
    ).all()
    return {study_id: (total, total - judged) for study_id, total, judged in rows}


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


def change_study_status(s: Session, study_id: int, status: str) -> Study:
    """Move the study to `status` (close, reopen, archive, unarchive); StudyStatusError names
    the moves allowed from where it is. Reopening a study whose images are not all rendered
    yet makes it a draft again (start its generation to open it)."""
    study = get_study(s, study_id)
    allowed = STUDY_TRANSITIONS.get(study.status, ())
    if status not in allowed:
        moves = ", ".join(allowed) or "none"
        raise StudyStatusError(
            f"study {study.name!r} is {study.status}; it cannot become {status!r} (allowed from "
            f"{study.status}: {moves})"
        )
    if status == "open":
        from db.queries.generation import job_counts  # noqa: PLC0415 - avoids an import cycle

        if job_counts(s, study_id).open_jobs:
            status = "draft"
    study.status = status
    s.flush()
    return study


def update_study_settings(
    s: Session,
    study_id: int,
    *,
    stop_when_settled: bool,
    vote_cap: int | None,
    alpha: float,
    delta: float,
    reason_tags: list[str] | tuple[str, ...],
) -> Study:
    """Store the study's allocation options and reason tags (already checked by the caller,
    e.g. `evaluation.plan`'s StudySpec rules; the database's CHECKs are the last guard)."""
    study = get_study(s, study_id)
    study.stop_when_settled = bool(stop_when_settled)
    study.vote_cap = vote_cap
    study.alpha, study.delta = float(alpha), float(delta)
    study.reason_tags = list(reason_tags)
    s.flush()
    return study


def planning_choices(s: Session) -> tuple[list[str], list[str]]:
    """(registered variant names except the reference, every checkpoint label in use): what a
    new study can be planned from."""
    names = s.scalars(
        select(Variant.name).where(Variant.name != REFERENCE_VARIANT).order_by(Variant.name)
    ).all()
    labels = s.scalars(select(Checkpoint.label).distinct()).all()
    return list(names), list(labels)
