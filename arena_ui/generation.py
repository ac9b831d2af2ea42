"""Pre-generation as a background process, watched from the studies page.

`start(study)` launches `python -m evaluation generate --study NAME` detached from the app
(its own session, so it outlives a page rerun or an app restart), logging to a file in the data
dir. Progress and per-image errors are read from the GenerationJob rows, so they are right after
a restart too; rerunning `start` resumes where a killed run stopped.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select, union

from arena_ui.resources import transaction
from db.engine import data_dir
from db.models import (
    Checkpoint,
    Comparison,
    GenerationJob,
    Image,
    ImagePair,
    Prompt,
    Study,
    Variant,
)

LOGS_DIR = "logs"  # under the data dir
LOCK_FILE = "generation.lock"  # evaluation.pregenerate's one-worker lock (SQLite)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class JobCounts:
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.done + self.failed


def log_path(study_id: int) -> Path:
    return data_dir() / LOGS_DIR / f"generate-study-{study_id}.log"


def start(study_id: int, study_name: str, retry_failed: bool = False) -> Path:
    """Launch a detached generation worker for the study; returns its log file."""
    log = log_path(study_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "evaluation", "generate", "--study", study_name]
    if retry_failed:
        command.append("--retry-failed")
    with open(log, "a") as handle:
        handle.write(f"\n=== {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: {' '.join(command)}\n")
        handle.flush()
        subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the app, nor by a page rerun
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return log


def worker_running() -> bool:
    """Whether a generation worker holds the data dir's lock (SQLite deployments)."""
    path = data_dir() / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _study_images(study_id: int):
    """Ids of the images the study's pairs need (shared images included)."""
    pairs = (
        select(ImagePair.image_a_id, ImagePair.image_b_id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id)
    )
    return union(
        select(pairs.subquery().c.image_a_id), select(pairs.subquery().c.image_b_id)
    ).subquery()


def job_counts(study_id: int) -> JobCounts:
    """The study's images by job status; images rendered without a job count as done."""
    images = _study_images(study_id)
    with transaction(readonly=True) as s:
        rows = s.execute(
            select(
                func.coalesce(GenerationJob.status, "pending"),
                Image.path.is_not(None),
                func.count(),
            )
            .select_from(Image)
            .join(images, Image.id == images.c[0])
            .outerjoin(GenerationJob, GenerationJob.image_id == Image.id)
            .group_by(GenerationJob.status, Image.path.is_not(None))
        ).all()
    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for status, rendered, n in rows:
        counts["done" if rendered else status] += n
    return JobCounts(**counts)


def failed_images(study_id: int) -> pd.DataFrame:
    """Images still missing whose job hit an error (failed, or pending a retry), with the error."""
    images = _study_images(study_id)
    with transaction(readonly=True) as s:
        rows = s.execute(
            select(
                GenerationJob.image_id,
                func.coalesce(Variant.name, "reference").label("variant"),
                Checkpoint.label.label("checkpoint"),
                Prompt.text.label("prompt"),
                Image.seed,
                GenerationJob.status,
                GenerationJob.attempts,
                GenerationJob.last_error,
            )
            .join(Image, GenerationJob.image_id == Image.id)
            .join(Prompt, Image.prompt_id == Prompt.id)
            .outerjoin(Checkpoint, Image.checkpoint_id == Checkpoint.id)
            .outerjoin(Variant, Checkpoint.variant_id == Variant.id)
            .join(images, Image.id == images.c[0])
            .where(GenerationJob.last_error.is_not(None), Image.path.is_(None))
            .order_by(GenerationJob.id)
        ).all()
    return pd.DataFrame(
        rows,
        columns=[
            "image_id",
            "variant",
            "checkpoint",
            "prompt",
            "seed",
            "status",
            "attempts",
            "last_error",
        ],
    )


def log_tail(study_id: int, lines: int = 20) -> str:
    path = log_path(study_id)
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def set_results_visible(study_id: int, visible: bool) -> None:
    with transaction() as s:
        s.get(Study, study_id).results_visible_to_voters = visible
