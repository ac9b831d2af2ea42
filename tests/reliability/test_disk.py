"""A full disk or an unwritable data directory during pre-generation.

The run must stop with a message that names the data directory, the OS error and the fix, keep
every image it finished, leave no half-written file and no job stuck as running, and finish
once space is freed. Disks are real tmpfs mounts (needs root; skipped otherwise); the SQLite
database lives outside them so the failure is the image files'.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import make_engine, session_factory
from db.models import GenerationJob, Image
from evaluation.pregenerate import GenerationError, GenerationOptions, run_generation
from tests.reliability.tiny_arena import audit_images, build_tiny_arena

pytestmark = pytest.mark.root


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} ({result.stderr.strip()}); needs root")


@pytest.fixture
def disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards."""
    path = tmp_path / "disk"
    _mount_tmpfs(path, "4m")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk, then give back `leave` bytes; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def _make_readonly(path: Path) -> None:
    """Remount the tmpfs at `path` read-only (nothing on it may be open for writing)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def _bind_readonly(path: Path) -> None:
    """Lay a read-only view of the folder `path` over itself (the disk's umount drops it)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


def _message(data_dir: Path, strerror: str) -> re.Pattern:
    """The one message of a run that cannot write its files (the count is checked apart)."""
    return re.compile(
        re.escape(f"cannot write under the data directory {data_dir} (")
        + r"\S+"
        + re.escape(f": {strerror}); generation stopped after ")
        + r"(\d+)"
        + re.escape(
            " new image(s) and kept no half-written file. Free space on that disk or make it "
            "writable, then run generation again."
        )
    )


def _jobs(url: str) -> dict[int, tuple]:
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        jobs = {
            job.image_id: (job.status, job.attempts) for job in s.scalars(select(GenerationJob))
        }
        images = {image.id: (image.path, image.sha256) for image in s.scalars(select(Image))}
    engine.dispose()
    return {image_id: (*jobs[image_id], *images[image_id]) for image_id in jobs}


def test_full_disk_stops_generation_cleanly_and_a_rerun_finishes(
    disk, tmp_path, tiny_clip_dir, tiny_sd_dir
):
    """Disk full after a few images: GenerationError naming the data dir, ENOSPC and the fix;
    finished images kept, no temp file, no job running or failed; after freeing space a
    rerun renders the rest."""
    arena = build_tiny_arena(
        disk / "data", tiny_clip_dir, tiny_sd_dir, database=tmp_path / "arena.sqlite3"
    )
    filler = _fill(disk, leave=40_000)  # room for a few 64x64 PNGs, not for 12
    engine = make_engine(arena.url)

    with pytest.raises(GenerationError) as info:
        run_generation(
            engine,
            arena.study,
            GenerationOptions(data_dir=arena.data_dir, batch_size=1, device="cpu"),
        )

    match = _message(arena.data_dir, os.strerror(28)).fullmatch(str(info.value))
    assert match, str(info.value)
    jobs = _jobs(arena.url)
    done = sum(status == "done" for status, *_ in jobs.values())
    assert int(match.group(1)) == done and 0 < done < arena.images
    assert {status for status, *_ in jobs.values()} == {"done", "pending"}
    assert all(attempts == 0 for status, attempts, *_ in jobs.values() if status == "pending")
    assert audit_images(arena, complete=False) == []
    assert not [p for p in (arena.data_dir / "images").rglob(".tmp-*")]

    filler.unlink()
    run_generation(
        engine, arena.study, GenerationOptions(data_dir=arena.data_dir, batch_size=1, device="cpu")
    )
    engine.dispose()
    assert audit_images(arena) == []


def test_readonly_data_dir_refuses_to_start_and_changes_nothing(
    disk, tmp_path, tiny_clip_dir, tiny_sd_dir
):
    """A read-only data directory: GenerationError naming it, the OS error and the fix before
    anything is rendered; every job and image row unchanged."""
    arena = build_tiny_arena(
        disk / "data", tiny_clip_dir, tiny_sd_dir, database=tmp_path / "arena.sqlite3"
    )
    before = _jobs(arena.url)
    _make_readonly(disk)
    engine = make_engine(arena.url)

    with pytest.raises(GenerationError) as info:
        run_generation(
            engine,
            arena.study,
            GenerationOptions(data_dir=arena.data_dir, batch_size=1, device="cpu"),
        )
    engine.dispose()

    match = _message(arena.data_dir, os.strerror(30)).fullmatch(str(info.value))
    assert match and match.group(1) == "0", str(info.value)
    assert _jobs(arena.url) == before


def test_data_dir_turning_readonly_mid_run_stops_cleanly(
    disk, tmp_path, tiny_clip_dir, tiny_sd_dir
):
    """The images folder becomes read-only after the first image: the run stops with the
    message, the first image is kept and sound, nothing else is marked done."""
    arena = build_tiny_arena(
        disk / "data", tiny_clip_dir, tiny_sd_dir, database=tmp_path / "arena.sqlite3"
    )
    engine = make_engine(arena.url)

    def readonly_after_first_image(fraction: float, message: str) -> None:
        if "rendered 1 of" in message:
            _bind_readonly(arena.data_dir / "images")

    with pytest.raises(GenerationError) as info:
        run_generation(
            engine,
            arena.study,
            GenerationOptions(data_dir=arena.data_dir, batch_size=1, device="cpu"),
            progress=readonly_after_first_image,
        )
    engine.dispose()

    match = _message(arena.data_dir, os.strerror(30)).fullmatch(str(info.value))
    assert match and match.group(1) == "1", str(info.value)
    jobs = _jobs(arena.url)
    assert sorted(status for status, *_ in jobs.values()).count("done") == 1
    assert {status for status, *_ in jobs.values()} == {"done", "pending"}
    assert audit_images(arena, complete=False) == []


def test_full_disk_while_voting_gives_a_clear_error_and_keeps_the_votes(disk):
    """The database's disk fills up: a vote raises DatabaseUnavailableError naming the file,
    the cause and the fix; earlier votes are intact and, once space is freed, voting goes on."""
    from datetime import UTC, datetime

    from db.engine import upgrade
    from db.errors import DatabaseUnavailableError
    from db.models import Vote
    from db.queries import record_vote, study_pairs
    from db.synthetic import create_synthetic_study, create_voters

    path = disk / "arena.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    with sessions.begin() as s:
        study = create_synthetic_study(s, "full", n_comparisons=3, n_prompts=30).id
        ((voter, _),) = create_voters(s, 1)
        first, second, *_ = [p.id for p in study_pairs(s, study)]
        record_vote(s, first, voter, "a", "left", now)
    filler = _fill(disk, leave=0)

    with pytest.raises(DatabaseUnavailableError) as info:
        with sessions.begin() as s:
            record_vote(s, second, voter, "a", "right", now)

    assert str(info.value) == (
        f"cannot write the SQLite database {path}: database or disk is full. Free space on "
        "that disk and retry; the votes recorded so far are kept"
    )
    filler.unlink()
    with sessions.begin() as s:
        record_vote(s, second, voter, "a", "right", now)
        votes = s.execute(select(Vote.pair_id, Vote.choice).order_by(Vote.id)).all()
    engine.dispose()
    assert votes == [(first, "left"), (second, "right")]
