"""The generation job queue: one job per image to render, claimed by workers, and the one-worker
lock of a SQLite data directory.

Workers: any number on PostgreSQL (`FOR UPDATE SKIP LOCKED`), one at a time on SQLite (a lock
file in the data directory, `worker_running(data_dir)` tells whether one holds it). Functions
that take a Session never commit; the caller owns the transaction.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from db.errors import NotFoundError
from db.models import IMPORTED, GenerationJob, Image, Study
from db.queries.generation import study_image_ids  # the one "images a study needs" query
from db.queries.studies import study_by_name

LOCK_FILE = "generation.lock"  # SQLite: held (flock) by the one running worker
STALE_AFTER = timedelta(hours=1)  # PostgreSQL: a 'running' claim older than this is reclaimed
# (one claim is one batch; a batch of real SD images on a slow CPU can take many minutes)
LIVE_STATUSES = ("draft", "generating", "open")  # the worker leaves closed/archived studies be
OPEN_JOBS = ("pending", "running", "failed")  # a study is complete when none of these is left


class GenerationError(RuntimeError):
    """Pre-generation cannot start: a checkpoint or the SD folder does not load, no such study."""


class WorkerBusyError(GenerationError):
    """Another generation worker holds the SQLite lock."""


class DataDirUnwritableError(GenerationError):
    """The data directory cannot be written (full disk, read-only, no permission)."""


def unwritable(data_dir: Path, error: OSError, rendered: int) -> DataDirUnwritableError:
    """The error for an OSError while writing under the data directory, with the fix."""
    return DataDirUnwritableError(
        f"cannot write under the data directory {data_dir} ({error.filename}: "
        f"{error.strerror}); generation stopped after {rendered} new image(s) and kept no "
        "half-written file. Free space on that disk or make it writable, then run generation "
        "again."
    )


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# -- the one-worker lock (SQLite) ---------------------------------------------------------------


@contextmanager
def worker_lock(data_dir: Path) -> Iterator[None]:
    """Hold the one-worker lock of a SQLite data directory, or raise WorkerBusyError."""
    path = data_dir / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as error:  # read-only or full data directory
        raise unwritable(data_dir, error, rendered=0) from error
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise WorkerBusyError(
                f"another generation worker ({holder}) holds {path}; on SQLite only one worker "
                "runs at a time: wait for it to finish, or stop it and run this again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock; a killed worker's lock is released by the kernel


def worker_running(data_dir: Path) -> bool:
    """Whether a generation worker holds the lock of this (SQLite) data directory."""
    path = Path(data_dir) / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


# -- queries ------------------------------------------------------------------------------------


def find_study(session: Session, name: str) -> Study:
    """The study called `name`, or GenerationError listing the existing ones."""
    try:
        return study_by_name(session, name)
    except NotFoundError as error:
        raise GenerationError(f"--study {name!r}: {error}") from error


def count_images(session: Session, study_id: int) -> int:
    """Distinct images of the study."""
    return session.scalar(select(func.count()).select_from(study_image_ids(study_id).subquery()))


def count_jobs(session: Session, study_id: int, *statuses: str) -> int:
    """Jobs of the study's images in any of `statuses`."""
    return session.scalar(
        select(func.count(GenerationJob.id)).where(
            GenerationJob.image_id.in_(study_image_ids(study_id)),
            GenerationJob.status.in_(statuses),
        )
    )


def requeue_missing_files(session: Session, study_id: int, data_dir: Path) -> int:
    """Images whose row has a path but whose file is gone go back to the queue (imported images
    never: they cannot be rendered); returns how many."""
    requeued = 0
    images = session.scalars(
        select(Image).where(
            Image.id.in_(study_image_ids(study_id)),
            Image.path.is_not(None),
            Image.settings_hash != IMPORTED,  # an imported file cannot be rendered again
        )
    )
    for image in images:
        if not (data_dir / image.path).is_file():
            image.path, image.sha256 = None, None
            job = session.scalar(select(GenerationJob).where(GenerationJob.image_id == image.id))
            if job is None:
                session.add(GenerationJob(study_id=study_id, image_id=image.id))
            else:
                job.status, job.attempts, job.last_error = "pending", 0, None
            requeued += 1
    return requeued


def _dead_local_workers(session: Session) -> list[str]:
    """Default worker ids ("<this host>:<pid>") holding 'running' jobs whose process is gone."""
    host = socket.gethostname()
    holders = session.scalars(
        select(GenerationJob.claimed_by)
        .where(GenerationJob.status == "running", GenerationJob.claimed_by.like(f"{host}:%"))
        .distinct()
    )
    dead = []
    for holder in holders:
        pid = holder.removeprefix(f"{host}:")
        if pid.isdigit() and int(pid) != os.getpid() and not process_exists(int(pid)):
            dead.append(holder)
    return dead


def reclaim_stale(session: Session, study_id: int, exclusive: bool) -> int:
    """'running' jobs of dead workers go back to 'pending': all of them when `exclusive`
    (SQLite, lock held); else those claimed more than STALE_AFTER ago, or by a worker of this
    host whose process no longer exists (a killed run restarted on the same machine)."""
    condition = [
        GenerationJob.status == "running",
        GenerationJob.image_id.in_(study_image_ids(study_id)),
    ]
    if not exclusive:
        condition.append(
            or_(
                GenerationJob.claimed_at < datetime.now(UTC) - STALE_AFTER,
                GenerationJob.claimed_by.in_(_dead_local_workers(session)),
            )
        )
    result = session.execute(
        update(GenerationJob)
        .where(*condition)
        .values(status="pending", claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def reset_failed(session: Session, study_id: int) -> None:
    """The study's failed jobs get a fresh set of attempts."""
    session.execute(
        update(GenerationJob)
        .where(
            GenerationJob.status == "failed",
            GenerationJob.image_id.in_(study_image_ids(study_id)),
        )
        .values(status="pending", attempts=0)
        .execution_options(synchronize_session=False)
    )


def claim_jobs(session: Session, study_id: int, worker_id: str, limit: int) -> list[int]:
    """Mark up to `limit` pending jobs of the study as ours; returns their ids.

    A claim holds one checkpoint's images only (the first pending checkpoint's), so each batch
    is one full pipeline call: the generator pads every call to `batch_size` images.
    """
    pending = (
        select(GenerationJob)
        .join(Image, GenerationJob.image_id == Image.id)
        .where(
            GenerationJob.status == "pending",
            GenerationJob.image_id.in_(study_image_ids(study_id)),
        )
    )
    postgres = session.get_bind().dialect.name == "postgresql"
    first = pending.with_only_columns(Image.checkpoint_id).order_by(
        Image.checkpoint_id, GenerationJob.id
    )
    if postgres:  # skip jobs other workers are claiming right now, or we might find none
        first = first.with_for_update(skip_locked=True, of=GenerationJob)
    first = session.execute(first.limit(1)).first()
    if first is None:
        return []
    checkpoint_id = first[0]
    query = (
        pending.where(
            Image.checkpoint_id.is_(None)
            if checkpoint_id is None
            else Image.checkpoint_id == checkpoint_id
        )
        .order_by(Image.seed, Image.prompt_id, GenerationJob.id)
        .limit(limit)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True, of=GenerationJob)
    jobs = list(session.scalars(query))
    now = datetime.now(UTC)
    for job in jobs:
        job.status, job.claimed_by, job.claimed_at = "running", worker_id, now
    return [job.id for job in jobs]


def record_failure(session: Session, job_id: int, error: Exception, max_attempts: int) -> bool:
    """Count a failed attempt on the job; it goes back to 'pending' until `max_attempts`, then
    'failed'. Returns whether it is now 'failed'."""
    job = session.get(GenerationJob, job_id)
    job.attempts += 1
    job.last_error = f"{type(error).__name__}: {error}"[:2000]
    job.status = "failed" if job.attempts >= max_attempts else "pending"
    job.claimed_by, job.claimed_at = None, None
    return job.status == "failed"


def release_claims(session: Session, study_id: int, worker_id: str) -> None:
    """This worker's 'running' jobs go back to 'pending' (attempts unchanged: no image was at
    fault), and the study back to 'draft'."""
    session.execute(
        update(GenerationJob)
        .where(GenerationJob.status == "running", GenerationJob.claimed_by == worker_id)
        .values(status="pending", claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    if (study := session.get(Study, study_id)).status in LIVE_STATUSES:
        study.status = "draft"


def settle_study_status(session: Session, study_id: int) -> int:
    """Set the study's status from its jobs ('open' when every image exists, 'generating' while
    other workers hold claims, else 'draft'); returns the jobs still open."""
    remaining = count_jobs(session, study_id, *OPEN_JOBS)
    running = count_jobs(session, study_id, "running")  # other workers still at it
    study = session.get(Study, study_id)
    if study.status in LIVE_STATUSES:  # an admin's close or archive stands
        study.status = "open" if remaining == 0 else "generating" if running else "draft"
    return remaining
