"""Queries for the study report (evaluation.report): images by cell, exclusions, allocation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.models import (
    Comparison,
    Image,
    ImagePair,
    Prompt,
    Variant,
    Vote,
)


@dataclass(frozen=True)
class StudyImage:
    """One image a study's regular pairs show: which variant made it, for which cell."""

    variant: str
    checkpoint_label: str
    prompt: str
    prompt_kind: str
    seed: int
    path: str | None  # relative to the data dir; None while not rendered


def study_images(s: Session, study_id: int) -> list[StudyImage]:
    """Every (variant, label, prompt, seed) image of the study's regular pairs, once each."""
    found: dict[tuple, StudyImage] = {}
    for side in ("a", "b"):
        variant, image = aliased(Variant), aliased(Image)
        variant_col = Comparison.variant_a_id if side == "a" else Comparison.variant_b_id
        image_col = ImagePair.image_a_id if side == "a" else ImagePair.image_b_id
        rows = s.execute(
            select(
                variant.name,
                ImagePair.checkpoint_label,
                Prompt.text,
                Prompt.kind,
                ImagePair.seed,
                image.path,
            )
            .select_from(ImagePair)
            .join(Comparison, ImagePair.comparison_id == Comparison.id)
            .join(variant, variant_col == variant.id)
            .join(image, image_col == image.id)
            .join(Prompt, ImagePair.prompt_id == Prompt.id)
            .where(Comparison.study_id == study_id, ImagePair.qc_kind.is_(None))
        )
        for name, label, text, kind, seed, path in rows:
            found.setdefault(
                (name, label, text, seed), StudyImage(name, label, text, kind, seed, path)
            )
    return list(found.values())


def allocation_rule_counts(s: Session, study_id: int) -> dict[str, int]:
    """Live votes of the study per allocation rule that served them ("unrecorded" for NULL)."""
    rows = s.scalars(
        select(Vote.allocation_rule)
        .join(ImagePair, Vote.pair_id == ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id, Vote.superseded_at.is_(None))
    )
    return dict(Counter(rule or "unrecorded" for rule in rows))
