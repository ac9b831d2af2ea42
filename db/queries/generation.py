"""Pre-generation as the Studies page sees it: a study's images by job status, the images whose
job hit an error, and the measured seconds per image (for the time left)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Select, func, select, union
from sqlalchemy.orm import Session

from db.models import (
    REFERENCE_VARIANT,
    Checkpoint,
    Comparison,
    GenerationJob,
    Image,
    ImagePair,
    Prompt,
    Variant,
)

FAILED_IMAGE_COLUMNS = [
    "image_id",
    "variant",
    "checkpoint",
    "prompt",
    "seed",
    "status",
    "attempts",
    "last_error",
]


@dataclass(frozen=True)
class JobCounts:
    """A study's distinct images by job status; images rendered without a job count as done."""

    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.done + self.failed

    @property
    def to_render(self) -> int:
        """Images a worker would still render (failed ones only after a retry)."""
        return self.pending + self.running

    @property
    def open_jobs(self) -> int:
        """Images not rendered yet: the study is complete when this is 0."""
        return self.pending + self.running + self.failed


def study_image_ids(study_id: int) -> Select:
    """Select of the ids of every image the study's pairs need (images shared with other
    studies included), one row each: the one definition of "a study's images"."""
    pairs = (
        select(ImagePair.image_a_id.label("image_id"), ImagePair.image_b_id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id)
        .subquery()
    )
    return union(select(pairs.c.image_id), select(pairs.c.image_b_id))


def job_counts(s: Session, study_id: int) -> JobCounts:
    """The study's images by job status (a rendered image counts as done whatever its job)."""
    rows = s.execute(
        select(
            func.coalesce(GenerationJob.status, "pending"),
            Image.path.is_not(None),
            func.count(),
        )
        .select_from(Image)
        .outerjoin(GenerationJob, GenerationJob.image_id == Image.id)
        .where(Image.id.in_(study_image_ids(study_id)))
        .group_by(GenerationJob.status, Image.path.is_not(None))
    ).all()
    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for status, rendered, n in rows:
        counts["done" if rendered else status] += n
    return JobCounts(**counts)


def failed_images(s: Session, study_id: int) -> pd.DataFrame:
    """Images still missing whose job hit an error (failed, or pending a retry), with the error;
    columns FAILED_IMAGE_COLUMNS."""
    rows = s.execute(
        select(
            GenerationJob.image_id,
            func.coalesce(Variant.name, REFERENCE_VARIANT),
            Checkpoint.label,
            Prompt.text,
            Image.seed,
            GenerationJob.status,
            GenerationJob.attempts,
            GenerationJob.last_error,
        )
        .join(Image, GenerationJob.image_id == Image.id)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .outerjoin(Checkpoint, Image.checkpoint_id == Checkpoint.id)
        .outerjoin(Variant, Checkpoint.variant_id == Variant.id)
        .where(
            Image.id.in_(study_image_ids(study_id)),
            GenerationJob.last_error.is_not(None),
            Image.path.is_(None),
        )
        .order_by(GenerationJob.id)
    ).all()
    return pd.DataFrame(rows, columns=FAILED_IMAGE_COLUMNS)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def seconds_per_image(s: Session, study_id: int) -> tuple[float, int] | None:
    """(measured seconds per image, images measured) from the study's rendered jobs, or None
    before the first one.

    A worker claims a batch at one `claimed_at` and marks each image done (`updated_at`) once
    written, so a batch took max(updated_at) - claimed_at for its images; the rate is the sum of
    those durations over the images they rendered (model loading before the first claim is not
    counted).
    """
    rows = s.execute(
        select(GenerationJob.claimed_by, GenerationJob.claimed_at, GenerationJob.updated_at)
        .join(Image, GenerationJob.image_id == Image.id)
        .where(
            Image.id.in_(study_image_ids(study_id)),
            GenerationJob.status == "done",
            GenerationJob.claimed_at.is_not(None),
        )
    ).all()
    batches: dict[tuple, list[datetime]] = {}
    for claimed_by, claimed_at, updated_at in rows:
        batches.setdefault((claimed_by, _utc(claimed_at)), []).append(_utc(updated_at))
    if not batches:
        return None
    seconds = sum((max(done) - claimed).total_seconds() for (_, claimed), done in batches.items())
    images = sum(len(done) for done in batches.values())
    return max(seconds, 0.0) / images, images
