"""What the results page shows beside the numbers: every pair of a comparison with its votes
(the drill-down), and the article's grid (rows = variants, reference first; columns = prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    REFERENCE_VARIANT,
    Checkpoint,
    Comparison,
    Image,
    ImagePair,
    Variant,
    Vote,
    winning_side,
)
from db.queries.exclusions import excluded_annotator_ids
from db.queries.studies import get_study


@dataclass(frozen=True)
class PairVotes:
    pair_id: int
    prompt: str
    checkpoint: str
    seed: int
    image_a: str | None  # path relative to the data dir; None until rendered
    image_b: str | None
    a_wins: int
    b_wins: int
    ties: int  # "same" and "both bad"


def comparison_pairs(s: Session, study_id: int, comparison: str) -> list[PairVotes]:
    """Every regular pair of one comparison (by name) with the live votes the tallies count
    (excluded annotators left out) per side."""
    pairs = s.scalars(
        select(ImagePair)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(
            Comparison.study_id == study_id,
            Comparison.name == comparison,
            ImagePair.qc_kind.is_(None),
        )
        .order_by(ImagePair.checkpoint_label, ImagePair.prompt_id, ImagePair.seed)
    ).all()
    votes = s.execute(
        select(Vote.pair_id, Vote.left_side, Vote.choice).where(
            Vote.pair_id.in_([p.id for p in pairs]),
            Vote.superseded_at.is_(None),
            Vote.annotator_id.not_in(excluded_annotator_ids(s, study_id)),
        )
    ).all()
    counts = {p.id: {"a": 0, "b": 0, "tie": 0} for p in pairs}
    for pair_id, left_side, choice in votes:
        counts[pair_id][winning_side(left_side, choice) or "tie"] += 1
    return [
        PairVotes(
            pair_id=p.id,
            prompt=p.prompt.text,
            checkpoint=p.checkpoint_label,
            seed=p.seed,
            image_a=p.image_a.path,
            image_b=p.image_b.path,
            a_wins=counts[p.id]["a"],
            b_wins=counts[p.id]["b"],
            ties=counts[p.id]["tie"],
        )
        for p in pairs
    ]


@dataclass(frozen=True)
class Grid:
    variants: list[str]  # rows, the reference first
    prompts: list[str]  # columns, in the study's order
    images: dict[tuple[str, str], str]  # (variant, prompt) -> path; missing = not rendered


def study_grid(s: Session, study_id: int, checkpoint_label: str, seed: int) -> Grid:
    """The images of every variant of the study for one checkpoint label and seed."""
    study = get_study(s, study_id)
    prompts = [sp.prompt for sp in study.study_prompts]
    variant_ids = {c.variant_a_id for c in study.comparisons} | {
        c.variant_b_id for c in study.comparisons
    }
    variants = s.scalars(select(Variant).where(Variant.id.in_(variant_ids))).all()
    variants = sorted(variants, key=lambda v: (v.name != REFERENCE_VARIANT, v.name))
    images: dict[tuple[str, str], str] = {}
    rows = s.execute(
        select(Image.path, Image.prompt_id, Variant.name)
        .outerjoin(Checkpoint, Image.checkpoint_id == Checkpoint.id)
        .outerjoin(Variant, Checkpoint.variant_id == Variant.id)
        .where(
            Image.seed == seed,
            Image.settings_hash == study.settings_hash,
            Image.prompt_id.in_([p.id for p in prompts]),
            Image.path.is_not(None),
            (Checkpoint.label == checkpoint_label) | Image.checkpoint_id.is_(None),
        )
    ).all()
    text_of = {p.id: p.text for p in prompts}
    for path, prompt_id, variant in rows:
        images[(variant or REFERENCE_VARIANT, text_of[prompt_id])] = path
    names = [v.name for v in variants]
    if any(key[0] == REFERENCE_VARIANT for key in images) and REFERENCE_VARIANT not in names:
        names.insert(0, REFERENCE_VARIANT)
    return Grid(variants=names, prompts=[p.text for p in prompts], images=images)


def grid_choices(s: Session, study_id: int) -> tuple[list[str], list[int]]:
    """The study's checkpoint labels and seeds, for the grid's pickers."""
    study = get_study(s, study_id)
    return list(study.checkpoint_labels), [int(seed) for seed in study.seeds]
