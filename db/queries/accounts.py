"""Annotator accounts as the Annotators page lists them (tokens live in `db.auth`)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Annotator, Vote


def annotator_rows(s: Session) -> list[dict]:
    """One display row per annotator, oldest first, with their live vote count."""
    votes = dict(
        s.execute(
            select(Vote.annotator_id, func.count(Vote.id))
            .where(Vote.superseded_at.is_(None))
            .group_by(Vote.annotator_id)
        ).all()
    )
    return [
        {
            "id": a.id,
            "name": a.name,
            "role": a.role,
            "disabled": a.disabled,
            "live votes": votes.get(a.id, 0),
            "created": a.created_at,
        }
        for a in s.scalars(select(Annotator).order_by(Annotator.id))
    ]
