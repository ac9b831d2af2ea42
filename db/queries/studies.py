"""Studies and their image pairs: getters that raise NotFoundError with the fix."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFoundError
from db.models import Annotator, Comparison, ImagePair, Study


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
