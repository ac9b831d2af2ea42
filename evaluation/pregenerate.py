"""Pre-generation: render every missing image of a study once, safely across crashes.

    python -m evaluation generate --study demo [--worker-id gpu0] [--max-attempts 3] [--batch-size 8]

Each image is written to a temporary file in its final directory, fsynced and renamed to its
content-addressed name `images/<sha[:2]>/<sha256>.png`; then one transaction stores the path and
hash on the image row and marks the job done. A `kill -9` at any point loses at most the images
in flight; the next run removes leftover temporary and orphan files and re-claims stale jobs.
Workers: any number on PostgreSQL (`FOR UPDATE SKIP LOCKED`), one at a time on SQLite (a lock
file in the data directory).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, or_, select, union, update
from sqlalchemy.orm import Session

from db.models import Checkpoint, Comparison, GenerationJob, Image, ImagePair, Prompt, Study
from evaluation.imports import IMPORTED

IMAGES_DIR = "images"  # under the data directory
TEMP_PREFIX = ".tmp-"  # temporary image files start with this
LOCK_FILE = "generation.lock"  # SQLite: held (flock) by the one running worker
STALE_AFTER = timedelta(hours=1)  # PostgreSQL: a 'running' claim older than this is reclaimed
# (one claim is one batch; a batch of real SD images on a slow CPU can take many minutes)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], message)


class GenerationError(RuntimeError):
    """Pre-generation cannot start: a checkpoint or the SD folder does not load, no such study."""


class WorkerBusyError(GenerationError):
    """Another generation worker holds the SQLite lock."""


class DataDirUnwritableError(GenerationError):
    """The data directory cannot be written (full disk, read-only, no permission)."""


def _unwritable(data_dir: Path, error: OSError, rendered: int) -> DataDirUnwritableError:
    return DataDirUnwritableError(
        f"cannot write under the data directory {data_dir} ({error.filename}: "
        f"{error.strerror}); generation stopped after {rendered} new image(s) and kept no "
        "half-written file. Free space on that disk or make it writable, then run generation "
        "again."
    )


@dataclass(frozen=True)
class GenerationReport:
    """What one run did."""

    rendered: int  # images written by this run
    failed: int  # jobs that reached the attempt limit during this run
    remaining: int  # jobs of the study still pending, running or failed
    total: int  # distinct images of the study


# -- files ---------------------------------------------------------------------------------------


def write_image(data_dir: Path, png: bytes) -> tuple[str, str]:
    """Write PNG bytes atomically to their content-addressed name; returns (relative path, sha256).

    temp file in the final directory -> fsync -> os.replace -> fsync the directory, so a reader
    (or a crash) sees either no file or the whole file, never half of it.
    """
    sha = hashlib.sha256(png).hexdigest()
    folder = data_dir / IMAGES_DIR / sha[:2]
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{sha}.png"
    # the writer's host and pid in the name let a restart on this host remove it at once
    owner = f"{socket.gethostname()}-{os.getpid()}"
    temp = folder / f"{TEMP_PREFIX}{sha[:16]}-{owner}-{secrets.token_hex(4)}.png"
    try:
        with open(temp, "wb") as handle:
            handle.write(png)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except OSError as error:
        # a full disk fails mid-write: never leave the partial temp file behind
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if error.filename is None:
            error.filename = str(temp)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return final.relative_to(data_dir).as_posix(), sha


def png_bytes(image) -> bytes:
    """PIL image -> PNG bytes (no timestamps: the same pixels give the same bytes and name)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _dead_temp(name: str) -> bool:
    """True for a temporary file written by a process of this host that no longer exists."""
    if not name.startswith(TEMP_PREFIX):
        return False
    parts = name.removeprefix(TEMP_PREFIX).removesuffix(".png").split("-")
    if len(parts) < 4:
        return False
    host, pid = "-".join(parts[1:-2]), parts[-2]
    return host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid))


def clean_files(session: Session, data_dir: Path, older_than: timedelta | None = None) -> int:
    """Remove leftover temporary files and image files no row points at; returns how many.

    `older_than` spares files younger than that (other live workers may be writing them),
    except temporary files of dead processes of this host; None removes all (safe only while
    holding the SQLite worker lock).
    """
    root = data_dir / IMAGES_DIR
    if not root.is_dir():
        return 0
    known = set(session.scalars(select(Image.path).where(Image.path.is_not(None))))
    cutoff = None if older_than is None else time.time() - older_than.total_seconds()
    removed = 0
    for path in root.glob("*/*"):
        relative = path.relative_to(data_dir).as_posix()
        if not path.is_file() or relative in known:
            continue
        if not path.name.startswith(TEMP_PREFIX) and path.suffix != ".png":
            continue  # not ours
        if cutoff is not None and path.stat().st_mtime > cutoff and not _dead_temp(path.name):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


@contextmanager
def worker_lock(data_dir: Path) -> Iterator[None]:
    """Hold the one-worker lock of a SQLite data directory, or raise WorkerBusyError."""
    path = data_dir / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as error:  # read-only or full data directory
        raise _unwritable(data_dir, error, rendered=0) from error
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


# -- jobs ---------------------------------------------------------------------------------------


def _study(session: Session, name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == name))
    if study is None:
        known = session.scalars(select(Study.name).order_by(Study.name)).all()
        raise GenerationError(f"--study {name!r}: no such study; existing studies: {known}")
    return study


def _study_image_ids(study_id: int):
    """Select of the ids of every image a study's pairs need."""
    pairs = (
        select(ImagePair.image_a_id.label("image_id"), ImagePair.image_b_id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id)
        .subquery()
    )
    return union(select(pairs.c.image_id), select(pairs.c.image_b_id))


def _requeue_missing_files(session: Session, study_id: int, data_dir: Path) -> int:
    """Images whose row has a path but whose file is gone go back to the queue."""
    requeued = 0
    images = session.scalars(
        select(Image).where(
            Image.id.in_(_study_image_ids(study_id)),
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


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
        if pid.isdigit() and int(pid) != os.getpid() and not _process_exists(int(pid)):
            dead.append(holder)
    return dead


def _reclaim_stale(session: Session, study_id: int, exclusive: bool) -> int:
    """'running' jobs of dead workers go back to 'pending': all of them when `exclusive`
    (SQLite, lock held); else those claimed more than STALE_AFTER ago, or by a worker of this
    host whose process no longer exists (a killed run restarted on the same machine)."""
    condition = [
        GenerationJob.status == "running",
        GenerationJob.image_id.in_(_study_image_ids(study_id)),
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


def _count(session: Session, study_id: int, *statuses: str) -> int:
    return session.scalar(
        select(func.count(GenerationJob.id)).where(
            GenerationJob.image_id.in_(_study_image_ids(study_id)),
            GenerationJob.status.in_(statuses),
        )
    )


def _claim(session: Session, study_id: int, worker_id: str, limit: int) -> list[int]:
    """Mark up to `limit` pending jobs of the study as ours; returns their ids.

    A claim holds one checkpoint's images only (the first pending checkpoint's), so each batch
    is one full pipeline call: the generator pads every call to `batch_size` images.
    """
    pending = (
        select(GenerationJob)
        .join(Image, GenerationJob.image_id == Image.id)
        .where(
            GenerationJob.status == "pending",
            GenerationJob.image_id.in_(_study_image_ids(study_id)),
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


def _checkpoint_folders(session: Session, study_id: int, data_dir: Path) -> dict[int, Path]:
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.path)
        .join(Image, Image.checkpoint_id == Checkpoint.id)
        .where(Image.id.in_(_study_image_ids(study_id)), Image.settings_hash != IMPORTED)
        .distinct()
    )
    return {checkpoint_id: data_dir / path for checkpoint_id, path in rows}


def _preflight(generator_factory, settings, folders: dict[int, Path]):
    """Load the SD folder and inspect every checkpoint; one error listing every problem."""
    from deprojector.checkpoint import inspect_checkpoint
    from deprojector.errors import DeprojectorError

    problems = []
    try:
        generator = generator_factory(settings)
    except (DeprojectorError, OSError, ValueError) as error:
        raise GenerationError(
            f"Stable Diffusion folder {settings.model_path!s} does not load: {error}; fix the "
            "study's model_path (a local diffusers folder)"
        ) from error
    for folder in sorted(set(folders.values())):
        if not folder.exists():
            problems.append(f"checkpoint folder {folder} does not exist")
            continue
        try:
            inspect_checkpoint(folder)
            generator.check_checkpoint(folder)
        except (DeprojectorError, OSError, ValueError) as error:
            problems.append(f"checkpoint folder {folder}: {error}")
    if problems:
        raise GenerationError(
            "cannot pre-generate; nothing was rendered:\n  - "
            + "\n  - ".join(problems)
            + "\nRe-register or restore these checkpoints, then run again."
        )
    return generator


def _render_jobs(session: Session, job_ids: list[int], data_dir: Path):
    """(job, image, RenderRequest) for the claimed jobs."""
    from deprojector.generate import RenderRequest

    rows = session.execute(
        select(GenerationJob, Image, Prompt.text, Checkpoint.path, Checkpoint.member)
        .join(Image, GenerationJob.image_id == Image.id)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .outerjoin(Checkpoint, Image.checkpoint_id == Checkpoint.id)
        .where(GenerationJob.id.in_(job_ids))
        .order_by(GenerationJob.id)
    )
    return [
        (
            job,
            image,
            RenderRequest(
                prompt=text,
                seed=image.seed,
                checkpoint=None if path is None else str(data_dir / path),
                member=member,
            ),
        )
        for job, image, text, path, member in rows
    ]


def _render(generator, requests, batch_size: int) -> list:
    """Render the batch; when it fails, render one by one so only the bad ones fail.

    Returns one RenderedImage or Exception per request.
    """
    try:
        return list(generator.render(requests, batch_size=batch_size))
    except Exception:  # noqa: BLE001 - isolate the failing request below
        results = []
        for request in requests:
            try:
                # same batch_size: the generator pads, so the pixels match a batched render
                results.append(generator.render([request], batch_size=batch_size)[0])
            except Exception as error:  # noqa: BLE001 - recorded on the job, retried
                results.append(error)
        return results


def run_generation(
    engine: Engine,
    study_name: str,
    *,
    data_dir: str | Path | None = None,
    worker_id: str | None = None,
    max_attempts: int = 3,
    batch_size: int = 8,
    retry_failed: bool = False,
    device: str | None = None,
    progress: Progress | None = None,
    show_progress_bar: bool = False,
    generator=None,
) -> GenerationReport:
    """Render every missing image of the study `study_name`; safe to stop and rerun at any time.

    `progress(fraction, message)` is called after each image. `generator` (an ImageGenerator with
    the study's settings) may be passed to reuse a loaded pipeline.
    """
    from db.engine import data_dir as default_data_dir
    from db.engine import session_factory

    if max_attempts < 1 or batch_size < 1:
        raise ValueError(
            f"max_attempts={max_attempts}, batch_size={batch_size}: both must be at least 1"
        )
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    factory = session_factory(engine)
    exclusive = engine.dialect.name != "postgresql"
    lock = worker_lock(data_dir) if exclusive else _no_lock()
    with lock:
        # 1. Tidy up after crashed runs: temp/orphan files, lost files, stale claims
        with factory.begin() as s:
            study = _study(s, study_name)
            study_id = study.id
            clean_files(s, data_dir, older_than=None if exclusive else STALE_AFTER)
            _requeue_missing_files(s, study_id, data_dir)
            _reclaim_stale(s, study_id, exclusive)
            if retry_failed:
                s.execute(
                    update(GenerationJob)
                    .where(
                        GenerationJob.status == "failed",
                        GenerationJob.image_id.in_(_study_image_ids(study_id)),
                    )
                    .values(status="pending", attempts=0)
                    .execution_options(synchronize_session=False)
                )
            total = s.scalar(
                select(func.count()).select_from(_study_image_ids(study_id).subquery())
            )
            pending = _count(s, study_id, "pending")
            settings_dict = dict(study.settings)
            folders = _checkpoint_folders(s, study_id, data_dir)
        if pending == 0:
            return _finish(factory, study_id, rendered=0, failed=0, total=total)

        # 2. Check every checkpoint and the SD folder before rendering anything
        from deprojector.generate import ImageGenerator, SDSettings

        settings = SDSettings(**settings_dict)
        model_path = Path(settings.model_path)
        if not model_path.is_absolute():
            settings = SDSettings(**{**settings_dict, "model_path": str(data_dir / model_path)})
        if generator is None:
            generator = _preflight(lambda st: ImageGenerator(st, device=device), settings, folders)
        else:
            _preflight(lambda st: generator, settings, folders)
        with factory.begin() as s:
            s.get(Study, study_id).status = "generating"

        # 3. Claim, render, write, record; until no pending job is left
        rendered = failed = 0
        bar = _progress_bar(pending, show_progress_bar)
        while True:
            with factory.begin() as s:
                job_ids = _claim(s, study_id, worker_id, batch_size)
            if not job_ids:
                break
            with factory() as s:
                work = _render_jobs(s, job_ids, data_dir)
            results = _render(generator, [request for _, _, request in work], batch_size)
            for (job, image, _), result in zip(work, results, strict=True):
                if isinstance(result, Exception):
                    with factory.begin() as s:
                        row = s.get(GenerationJob, job.id)
                        row.attempts += 1
                        row.last_error = f"{type(result).__name__}: {result}"[:2000]
                        row.status = "failed" if row.attempts >= max_attempts else "pending"
                        row.claimed_by, row.claimed_at = None, None
                        failed += row.status == "failed"
                    continue
                # the file first (outside the transaction: no write lock held during fsync)
                try:
                    path, sha = write_image(data_dir, png_bytes(result.image))
                except OSError as error:
                    # full disk or read-only: stop; give this batch's claims back untouched
                    bar.close()
                    _release_claims(factory, study_id, worker_id)
                    raise _unwritable(data_dir, error, rendered) from error
                with factory.begin() as s:
                    row = s.get(GenerationJob, job.id)
                    target = s.get(Image, image.id)
                    target.path, target.sha256 = path, sha
                    target.width, target.height = result.image.size
                    # what shaped the pixels (seed, dtype, device, batch size); paths stay as
                    # stored (relative to the data dir), the checkpoint is the row's
                    shaped = {k: v for k, v in result.settings.items() if k != "checkpoint"}
                    target.settings = {**shaped, "model_path": settings_dict["model_path"]}
                    row.status, row.last_error = "done", None
                rendered += 1
                bar.update(1)
                if progress is not None:
                    with factory() as s:
                        done = total - _count(s, study_id, "pending", "running", "failed")
                    progress(done / max(total, 1), f"rendered {done} of {total} images")
        bar.close()
        return _finish(factory, study_id, rendered=rendered, failed=failed, total=total)


def _release_claims(factory, study_id: int, worker_id: str) -> None:
    """This worker's 'running' jobs go back to 'pending' (attempts unchanged: no image was at
    fault), and the study back to 'draft'."""
    with factory.begin() as s:
        s.execute(
            update(GenerationJob)
            .where(GenerationJob.status == "running", GenerationJob.claimed_by == worker_id)
            .values(status="pending", claimed_by=None, claimed_at=None)
            .execution_options(synchronize_session=False)
        )
        s.get(Study, study_id).status = "draft"


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="image", desc="rendering", disable=not enabled)


def _finish(factory, study_id: int, rendered: int, failed: int, total: int) -> GenerationReport:
    with factory.begin() as s:
        remaining = _count(s, study_id, "pending", "running", "failed")
        running = _count(s, study_id, "running")  # other workers still at it
        study = s.get(Study, study_id)
        study.status = "open" if remaining == 0 else "generating" if running else "draft"
    return GenerationReport(rendered=rendered, failed=failed, remaining=remaining, total=total)


# -- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m evaluation generate`: exit 0 when every image exists, 1 when jobs failed,
    2 when generation could not start (message on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--worker-id", default=None, help="default: host:pid")
    parser.add_argument("--max-attempts", type=int, default=3, help="tries per image")
    parser.add_argument("--batch-size", type=int, default=8, help="images per pipeline call")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best)")
    parser.add_argument("--retry-failed", action="store_true", help="retry jobs that failed")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    args = parser.parse_args(argv)

    from db.engine import make_engine
    from deprojector.errors import DeprojectorError

    engine = make_engine(args.database_url)
    try:
        report = run_generation(
            engine,
            args.study,
            worker_id=args.worker_id,
            max_attempts=args.max_attempts,
            batch_size=args.batch_size,
            retry_failed=args.retry_failed,
            device=args.device,
            show_progress_bar=True,
        )
    except (GenerationError, DeprojectorError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(
        f"study {args.study!r}: rendered {report.rendered} images this run; "
        f"{report.total - report.remaining} of {report.total} done; {report.remaining} left"
        + (f" ({report.failed} failed: see generation_jobs.last_error)" if report.failed else "")
    )
    return 0 if report.remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
