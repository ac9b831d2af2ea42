"""Queries for planning a study (evaluation.plan): variants, checkpoints, prompts, images, pairs."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    Checkpoint,
    Comparison,
    GenerationJob,
    Image,
    ImagePair,
    Prompt,
    Variant,
)
from db.queries.studies import study_named  # noqa: F401 (planning's lookup)


def variants_by_name(s: Session, names: Collection[str]) -> dict[str, Variant]:
    return {v.name: v for v in s.scalars(select(Variant).where(Variant.name.in_(list(names))))}


def variant_names(s: Session) -> list[str]:
    return list(s.scalars(select(Variant.name).order_by(Variant.name)))


def checkpoints_by_label(
    s: Session, variants: Collection[str]
) -> dict[tuple[str, str], Checkpoint]:
    """(variant name, checkpoint label) -> Checkpoint for the named variants."""
    rows = s.execute(
        select(Checkpoint, Variant.name)
        .join(Variant, Checkpoint.variant_id == Variant.id)
        .where(Variant.name.in_(list(variants)))
    )
    return {(name, checkpoint.label): checkpoint for checkpoint, name in rows}


def prompts_by_text(s: Session, texts: Collection[str]) -> dict[str, Prompt]:
    return {p.text: p for p in s.scalars(select(Prompt).where(Prompt.text.in_(list(texts))))}


def rendered_images(
    s: Session, prompts: Collection[str], settings_hash: str
) -> dict[tuple[int | None, str, int], Image]:
    """(checkpoint id or None, prompt text, seed) -> Image with these settings."""
    rows = s.execute(
        select(Image, Prompt.text)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .where(Prompt.text.in_(list(prompts)), Image.settings_hash == settings_hash)
    )
    return {(image.checkpoint_id, text, image.seed): image for image, text in rows}


def imported_images(
    s: Session, prompts: Collection[str], variants: Collection[str], settings_hash: str
) -> dict[tuple[str, str, str, int], Image]:
    """(variant, checkpoint label, prompt text, seed) -> Image of the named (imported) variants
    with `settings_hash` (db.models.IMPORTED)."""
    rows = s.execute(
        select(Image, Prompt.text, Checkpoint.label, Variant.name)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .join(Checkpoint, Image.checkpoint_id == Checkpoint.id)
        .join(Variant, Checkpoint.variant_id == Variant.id)
        .where(
            Prompt.text.in_(list(prompts)),
            Image.settings_hash == settings_hash,
            Variant.name.in_(list(variants)),
        )
    )
    return {(name, label, text, image.seed): image for image, text, label, name in rows}


def study_pair_keys(s: Session, study_id: int) -> set[tuple[int, int, int, str, str | None]]:
    """(comparison id, prompt id, seed, checkpoint label, qc kind) of every pair of the study."""
    rows = s.execute(
        select(
            ImagePair.comparison_id,
            ImagePair.prompt_id,
            ImagePair.seed,
            ImagePair.checkpoint_label,
            ImagePair.qc_kind,
        )
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id)
    )
    return {tuple(row) for row in rows}


def regular_pair_count(s: Session, study_id: int) -> int:
    return s.scalar(
        select(func.count())
        .select_from(ImagePair)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id, ImagePair.qc_kind.is_(None))
    )


def queued_image_ids(s: Session, image_ids: Collection[int]) -> set[int]:
    """The ids among `image_ids` that already have a generation job."""
    return set(
        s.scalars(select(GenerationJob.image_id).where(GenerationJob.image_id.in_(list(image_ids))))
    )


def variant_images(s: Session, variant_id: int) -> dict[tuple[str, int, str], Image]:
    """(prompt text, seed, checkpoint label) -> Image of every checkpoint of the variant."""
    rows = s.execute(
        select(Image, Prompt.text, Checkpoint.label)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .join(Checkpoint, Image.checkpoint_id == Checkpoint.id)
        .where(Checkpoint.variant_id == variant_id)
    )
    return {(text, image.seed, label): image for image, text, label in rows}
