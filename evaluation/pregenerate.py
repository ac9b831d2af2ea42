"""Pre-generation: render every missing image of a study once, safely across crashes.

    python -m evaluation generate --study demo [--worker-id gpu0] [--max-attempts 3] [--batch-size 8]

Each image is written atomically to the image store (evaluation.image_store); then one
transaction stores the path and hash on the image row and marks its job done (evaluation.jobs).
A `kill -9` at any point loses at most the images in flight; the next run removes leftover
temporary and orphan files and re-claims stale jobs.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import IMPORTED, Checkpoint, GenerationJob, Image, Prompt, Study
from evaluation.image_store import IMAGES_DIR, TEMP_PREFIX, clean_files, png_bytes, write_image
from evaluation.jobs import (
    LIVE_STATUSES,
    LOCK_FILE,
    OPEN_JOBS,
    STALE_AFTER,
    DataDirUnwritableError,
    GenerationError,
    WorkerBusyError,
    claim_jobs,
    count_images,
    count_jobs,
    find_study,
    reclaim_stale,
    record_failure,
    release_claims,
    requeue_missing_files,
    reset_failed,
    settle_study_status,
    study_image_ids,
    unwritable,
    worker_lock,
)

__all__ = [  # the names callers import from here (the store and the queue have their modules)
    "IMAGES_DIR",
    "LOCK_FILE",
    "STALE_AFTER",
    "TEMP_PREFIX",
    "DataDirUnwritableError",
    "GenerationError",
    "GenerationOptions",
    "GenerationReport",
    "Progress",
    "WorkerBusyError",
    "main",
    "run_generation",
    "worker_lock",
]

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], message)


@dataclass(frozen=True)
class GenerationOptions:
    """How one worker runs (the `python -m evaluation generate` flags)."""

    data_dir: Path | None = None  # None: ARENA_DATA_DIR (db.engine.data_dir())
    worker_id: str | None = None  # None: "<host>:<pid>" (lets a restart here reclaim at once)
    max_attempts: int = 3  # tries per image before its job is 'failed'
    batch_size: int = 8  # images per pipeline call
    retry_failed: bool = False  # give failed jobs a fresh set of attempts
    device: str | None = None  # "cpu", "cuda", "mps"; None: the best available
    progress_log: bool = False  # progress on stderr: a bar on a terminal, plain lines otherwise

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.batch_size < 1:
            raise ValueError(
                f"max_attempts={self.max_attempts}, batch_size={self.batch_size}: both must be "
                "at least 1"
            )


@dataclass(frozen=True)
class GenerationReport:
    """What one run did."""

    rendered: int  # images written by this run
    failed: int  # jobs that reached the attempt limit during this run
    remaining: int  # jobs of the study still pending, running or failed
    total: int  # distinct images of the study


@dataclass(frozen=True)
class _Work:
    """What step 1 found: the study and what its rendering needs."""

    study_id: int
    total: int  # distinct images
    pending: int  # jobs to render now
    settings: dict  # the study's SD settings as stored (model_path as entered)
    folders: dict[int, Path]  # checkpoint id -> folder
    recorded: dict[
        int, tuple[str, str]
    ]  # checkpoint id -> (path as stored, sha256 at registration)


def run_generation(
    engine: Engine,
    study_name: str,
    options: GenerationOptions = GenerationOptions(),  # noqa: B008 - frozen, never mutated
    *,
    progress: Progress | None = None,
    generator=None,
) -> GenerationReport:
    """Render every missing image of the study `study_name`; safe to stop and rerun at any time.

    `progress(fraction, message)` is called after each image. `generator` (an ImageGenerator with
    the study's settings) may be passed to reuse a loaded pipeline.
    """
    from db.engine import data_dir as default_data_dir
    from db.engine import session_factory

    data_dir = Path(options.data_dir) if options.data_dir is not None else default_data_dir()
    worker_id = options.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    factory = session_factory(engine)
    exclusive = engine.dialect.name != "postgresql"  # SQLite: one worker, under the lock
    with worker_lock(data_dir) if exclusive else nullcontext():
        # 1. Tidy up after crashed runs: temp/orphan files, lost files, stale claims
        with factory.begin() as s:
            work = _tidy_up(s, study_name, data_dir, exclusive, options.retry_failed)
        if work.pending == 0:
            return _finish(factory, work, rendered=0, failed=0)

        # 2. Check every checkpoint and the SD folder before rendering anything
        generator = _load_generator(work, data_dir, options.device, generator)
        with factory.begin() as s:
            if (study := s.get(Study, work.study_id)).status in LIVE_STATUSES:
                study.status = "generating"

        # 3. Claim, render, write, record; until no pending job is left
        rendered = failed = 0
        with _progress_log(work.pending, options.progress_log) as advance:
            while job_ids := _claim(factory, work.study_id, worker_id, options.batch_size):
                with factory() as s:
                    batch = _render_jobs(s, job_ids, data_dir)
                results = _render(generator, [request for _, _, request in batch], options)
                for (job_id, image_id, _), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        with factory.begin() as s:
                            failed += record_failure(s, job_id, result, options.max_attempts)
                        continue
                    try:
                        _store(factory, data_dir, job_id, image_id, result, work.settings)
                    except OSError as error:
                        # full disk or read-only: stop; give this batch's claims back untouched
                        with factory.begin() as s:
                            release_claims(s, work.study_id, worker_id)
                        raise unwritable(data_dir, error, rendered) from error
                    rendered += 1
                    advance()
                    if progress is not None:
                        _report(factory, work, progress)
        return _finish(factory, work, rendered=rendered, failed=failed)


def _tidy_up(
    s: Session, study_name: str, data_dir: Path, exclusive: bool, retry_failed: bool
) -> _Work:
    """Step 1: clean the store and the queue after crashed runs; what is left to render."""
    study = find_study(s, study_name)
    clean_files(s, data_dir, older_than=None if exclusive else STALE_AFTER)
    requeue_missing_files(s, study.id, data_dir)
    reclaim_stale(s, study.id, exclusive)
    if retry_failed:
        reset_failed(s, study.id)
    recorded = _study_checkpoints(s, study.id)
    return _Work(
        study_id=study.id,
        total=count_images(s, study.id),
        pending=count_jobs(s, study.id, "pending"),
        settings=dict(study.settings),
        folders={c: data_dir / path for c, (path, _) in recorded.items()},
        recorded=recorded,
    )


def _study_checkpoints(session: Session, study_id: int) -> dict[int, tuple[str, str]]:
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.path, Checkpoint.sha256)
        .join(Image, Image.checkpoint_id == Checkpoint.id)
        .where(Image.id.in_(study_image_ids(study_id)), Image.settings_hash != IMPORTED)
        .distinct()
    )
    return {checkpoint_id: (path, sha256) for checkpoint_id, path, sha256 in rows}


def _load_generator(work: _Work, data_dir: Path, device: str | None, generator):
    """Step 2: the study's SD settings (model_path relative to the data dir resolved), the
    generator, and every checkpoint inspected; one GenerationError listing every problem."""
    from deprojector.checkpoint import inspect_checkpoint
    from deprojector.errors import DeprojectorError
    from deprojector.generate import ImageGenerator, SDSettings

    settings = SDSettings(**work.settings)
    if not Path(settings.model_path).is_absolute():
        settings = SDSettings(
            **{**work.settings, "model_path": str(data_dir / settings.model_path)}
        )
    if generator is None:
        try:
            generator = ImageGenerator(settings, device=device)
        except (DeprojectorError, OSError, ValueError) as error:
            raise GenerationError(
                f"Stable Diffusion folder {settings.model_path!s} does not load: {error}; fix "
                "the study's model_path (a local diffusers folder)"
            ) from error
    from evaluation.checkpoints import CheckpointRejected, verify_checkpoint

    problems = []
    for folder in sorted(set(work.folders.values())):
        if not folder.exists():
            problems.append(f"checkpoint folder {folder} does not exist")
            continue
        try:
            # still inside the allowed roots, and the weights whose sha256 was recorded
            for path, sha256 in {work.recorded[c] for c, f in work.folders.items() if f == folder}:
                verify_checkpoint(path, sha256, data_dir)
        except CheckpointRejected as error:
            problems.append(str(error))
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


def _claim(factory: sessionmaker, study_id: int, worker_id: str, limit: int) -> list[int]:
    with factory.begin() as s:
        return claim_jobs(s, study_id, worker_id, limit)


def _render_jobs(session: Session, job_ids: list[int], data_dir: Path):
    """(job id, image id, RenderRequest) for the claimed jobs."""
    from deprojector.generate import RenderRequest

    rows = session.execute(
        select(GenerationJob.id, Image.id, Image.seed, Prompt.text, Checkpoint.path)
        .add_columns(Checkpoint.member)
        .join(Image, GenerationJob.image_id == Image.id)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .outerjoin(Checkpoint, Image.checkpoint_id == Checkpoint.id)
        .where(GenerationJob.id.in_(job_ids))
        .order_by(GenerationJob.id)
    )
    return [
        (
            job_id,
            image_id,
            RenderRequest(
                prompt=text,
                seed=seed,
                checkpoint=None if path is None else str(data_dir / path),
                member=member,
            ),
        )
        for job_id, image_id, seed, text, path, member in rows
    ]


def _render(generator, requests, options: GenerationOptions) -> list:
    """Render the batch; when it fails, render one by one so only the bad ones fail.

    Returns one RenderedImage or Exception per request.
    """
    try:
        return list(generator.render(requests, batch_size=options.batch_size))
    except Exception:  # noqa: BLE001 - isolate the failing request below
        results = []
        for request in requests:
            try:
                # same batch_size: the generator pads, so the pixels match a batched render
                results.append(generator.render([request], batch_size=options.batch_size)[0])
            except Exception as error:  # noqa: BLE001 - recorded on the job, retried
                results.append(error)
        return results


def _store(factory, data_dir: Path, job_id: int, image_id: int, result, settings: dict) -> None:
    """The file first (outside the transaction: no write lock held during fsync), then its row
    and job in one transaction. OSError when the data directory cannot be written."""
    path, sha = write_image(data_dir, png_bytes(result.image))
    with factory.begin() as s:
        image = s.get(Image, image_id)
        image.path, image.sha256 = path, sha
        image.width, image.height = result.image.size
        # what shaped the pixels (seed, dtype, device, batch size); paths stay as stored
        # (relative to the data dir), the checkpoint is the row's
        shaped = {k: v for k, v in result.settings.items() if k != "checkpoint"}
        image.settings = {**shaped, "model_path": settings["model_path"]}
        job = s.get(GenerationJob, job_id)
        job.status, job.last_error = "done", None


def _report(factory, work: _Work, progress: Progress) -> None:
    with factory() as s:
        done = work.total - count_jobs(s, work.study_id, *OPEN_JOBS)
    progress(done / max(work.total, 1), f"rendered {done} of {work.total} images")


@contextmanager
def _progress_log(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yields `advance()`, called once per image. On a terminal a tqdm bar; in a log file (a
    background worker's) plain lines without carriage returns or escape codes, about 100 at most."""
    if not enabled:
        yield lambda: None
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, unit="image", desc="rendering") as bar:
            yield lambda: bar.update(1)
        return
    done = 0
    step = max(1, total // 100)

    def advance() -> None:
        nonlocal done
        done += 1
        if done % step == 0 or done == total:
            print(f"rendering: {done}/{total} images", file=sys.stderr, flush=True)

    yield advance


def _finish(factory, work: _Work, rendered: int, failed: int) -> GenerationReport:
    with factory.begin() as s:
        remaining = settle_study_status(s, work.study_id)
    return GenerationReport(rendered=rendered, failed=failed, remaining=remaining, total=work.total)


# -- command line ---------------------------------------------------------------------------------


def _no_library_progress_bars() -> None:
    """Turn off the tqdm bars diffusers and transformers draw while loading a pipeline."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


class WorkerStopped(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """The worker got SIGTERM (the Studies page's "Stop worker"); `main` gives its claims back.
    A BaseException, like KeyboardInterrupt, so the render loop's `except Exception` (a failed
    image) cannot take it for a bad image and carry on."""


def _stop(signum: int, _frame) -> None:
    raise WorkerStopped(f"stopped by signal {signum}")


def _give_back(engine: Engine, study_name: str, worker_id: str) -> None:
    """After a stop: the worker's claimed jobs go back to pending, the study to draft."""
    from db.engine import session_factory

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop must not cut this short
    with session_factory(engine).begin() as s:
        release_claims(s, find_study(s, study_name).id, worker_id)


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

    from db.engine import make_engine, require_current_schema
    from db.errors import SchemaOutdatedError
    from deprojector.errors import DeprojectorError

    try:  # before anything: an unmigrated data dir must not get an empty database
        require_current_schema(args.database_url)
    except SchemaOutdatedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not sys.stderr.isatty():  # a log file: no library progress bars (\r, escape codes) either
        _no_library_progress_bars()
    worker_id = args.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    previous = signal.signal(signal.SIGTERM, _stop)  # "Stop worker": give the claims back
    engine = make_engine(args.database_url)
    try:
        options = GenerationOptions(
            worker_id=worker_id,
            max_attempts=args.max_attempts,
            batch_size=args.batch_size,
            retry_failed=args.retry_failed,
            device=args.device,
            progress_log=True,
        )
        report = run_generation(engine, args.study, options)
    except WorkerStopped:
        _give_back(engine, args.study, worker_id)
        print(f"stopped: claimed images of {args.study!r} given back", file=sys.stderr)
        return 1
    except (GenerationError, DeprojectorError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
        signal.signal(signal.SIGTERM, previous)
    print(
        f"study {args.study!r}: rendered {report.rendered} images this run; "
        f"{report.total - report.remaining} of {report.total} done; {report.remaining} left"
        + (f" ({report.failed} failed: see generation_jobs.last_error)" if report.failed else "")
    )
    return 0 if report.remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
