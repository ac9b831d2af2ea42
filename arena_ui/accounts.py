"""Annotator accounts for the admin page: list, create, revoke/restore, new link.

Thin wrappers over `db.auth` that own their transaction; tokens are shown once and only their
hashes are stored.
"""

from __future__ import annotations

from sqlalchemy import func, select

from arena_ui.resources import transaction
from db import auth
from db.models import Annotator, Vote


def annotator_rows() -> list[dict]:
    with transaction(readonly=True) as s:
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


def create(name: str, role: str) -> tuple[str, str]:
    """(name, token) of a new annotator."""
    with transaction() as s:
        annotator, token = auth.create_annotator(s, name, role)
        return annotator.name, token


def set_disabled(annotator_id: int, disabled: bool) -> None:
    with transaction() as s:
        (auth.revoke if disabled else auth.enable)(s, annotator_id)


def new_link(annotator_id: int) -> tuple[str, str]:
    """(name, token): a fresh token; the old one stops working."""
    with transaction() as s:
        token = auth.rotate_token(s, annotator_id)
        return s.get(Annotator, annotator_id).name, token
