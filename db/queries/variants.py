"""Variants and their checkpoints: lookups and the catalogue the Variants page lists."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Variant


def variant_by_name(s: Session, name: str) -> Variant | None:
    return s.scalar(select(Variant).where(Variant.name == name))


def variant_catalogue(s: Session) -> tuple[list[dict], list[dict]]:
    """(variants, checkpoints) as display rows, variants by name."""
    variants = s.scalars(select(Variant).order_by(Variant.name)).all()
    variant_rows = [
        {
            "variant": v.name,
            "kind": v.kind,
            "hyperparameters": json.dumps(v.hyperparameters, sort_keys=True),
            "checkpoints": ", ".join(c.label for c in v.checkpoints),
            "notes": v.notes,
        }
        for v in variants
    ]
    checkpoint_rows = [
        {
            "variant": v.name,
            "label": c.label,
            "params_total": c.params_total,
            "params_trainable": c.params_trainable,
            "hidden_size": c.hidden_size,
            "path": c.path,
            "sha256": c.sha256[:16],
        }
        for v in variants
        for c in v.checkpoints
    ]
    return variant_rows, checkpoint_rows
