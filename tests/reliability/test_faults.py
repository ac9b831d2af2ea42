"""Crashes: a generation worker or a voting process killed with SIGKILL at random moments.

Whatever the moment, the next run must finish the work with the data sound: every image present
once, named and checked by its sha256, no row without its file and no file without its row;
every vote either fully recorded or absent.
"""

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import make_engine, session_factory, upgrade
from db.models import ImagePair, Vote
from db.synthetic import create_synthetic_study, create_voters
from tests.reliability import workers
from tests.reliability.tiny_arena import audit_images, build_tiny_arena

REPO = Path(__file__).resolve().parents[2]


def _database_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


_ENGINES: dict[str, object] = {}  # PostgreSQL URL -> engine, for polling


def _done_jobs(url: str) -> int:
    """Jobs marked done, read without taking any lock the worker needs."""
    query = "SELECT count(*) FROM generation_jobs WHERE status = 'done'"
    if not url.startswith("sqlite"):
        engine = _ENGINES.setdefault(url, make_engine(url))
        with engine.connect() as connection:
            return connection.exec_driver_sql(query).scalar()
    connection = sqlite3.connect(f"file:{_database_file(url)}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(query).fetchone()[0]
    finally:
        connection.close()


def _integrity(url: str) -> str:
    connection = sqlite3.connect(_database_file(url))
    try:
        return ", ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


@pytest.fixture(scope="module")
def forkserver():
    """A multiprocessing context whose children fork from a process that imported torch and
    diffusers once (and ran no torch op, so forking is safe)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(workers.PRELOAD)
    return context


# (kill point, images of the run finished before it): every point of an image's way, at the
# first image of a run and later ones; each run dies there, with images still to render
GENERATION_KILLS = [
    ("loaded", 0),
    ("rendered", 0),
    ("temp-written", 0),
    ("file-written", 0),
    ("recorded", 0),
    ("rendered", 2),
    ("temp-written", 1),
    ("file-written", 3),
    ("recorded", 2),
    ("loaded", 0),
]


def _killed_run(forkserver, args, kill_at: str, after: int) -> None:
    """One worker run that must die by SIGKILL at its kill point."""
    worker = forkserver.Process(target=workers.generate, args=(*args, kill_at, after))
    worker.start()
    worker.join(timeout=120)
    if worker.is_alive():
        worker.kill()
        worker.join()
    assert worker.exitcode == -signal.SIGKILL, f"{kill_at} after {after}: exit {worker.exitcode}"


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang guard only: 11 runs load the pipeline on a busy machine
def test_generation_killed_ten_times_finishes_with_every_image_once(
    tmp_path, tiny_clip_dir, tiny_sd_dir, forkserver
):
    """Pre-generation SIGKILLed at each step of an image's way (loaded, rendered, temp file
    written, file in place, row recorded), 10 times, then run to the end: each image exactly
    once, a valid PNG whose sha256 matches its row, no orphan file or dangling row."""
    arena = build_tiny_arena(tmp_path / "data", tiny_clip_dir, tiny_sd_dir, seeds=(0, 1, 2, 3, 4))
    args = (arena.url, arena.study, str(arena.data_dir))
    finished_in_kills = sum(after + (point == "recorded") for point, after in GENERATION_KILLS)
    assert finished_in_kills < arena.images  # every kill lands with work left
    for kill_at, after in GENERATION_KILLS:
        _killed_run(forkserver, args, kill_at, after)
        assert audit_images(arena, complete=False) == []  # no row ever points at a bad file
    assert 0 < _done_jobs(arena.url) < arena.images

    worker = forkserver.Process(target=workers.generate, args=args)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert audit_images(arena) == []


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_generation_killed_on_postgresql_finishes_after_restart(
    tmp_path, tiny_clip_dir, tiny_sd_dir, forkserver, postgres_url
):
    """On PostgreSQL, a worker SIGKILLed 3 times in the middle of an image: the restarted run
    finishes every image (the dead worker's claims do not wait for the stale timeout)."""
    arena = build_tiny_arena(
        tmp_path / "data", tiny_clip_dir, tiny_sd_dir, seeds=(0, 1, 2), url=postgres_url
    )
    args = (arena.url, arena.study, str(arena.data_dir))
    for kill_at, after in (("rendered", 1), ("file-written", 0), ("temp-written", 1)):
        _killed_run(forkserver, args, kill_at, after)
        assert audit_images(arena, complete=False) == []

    worker = forkserver.Process(target=workers.generate, args=args)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert audit_images(arena) == []


def _start_voter(url: str, study_id: int, annotator_id: int, seed: int, *kill) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.reliability.workers", "vote", url]
    command += [str(study_id), str(annotator_id), str(seed), *map(str, kill)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)


def _reported(output: str):
    """From a voter's output: {vote id: (pair, side, choice)} it saw committed, the vote ids it
    saw undone, and what it was doing when it died: a (pair, side, choice) vote, "undo" or None."""
    committed, undone, begun = {}, set(), None
    for word, *rest in (line.split() for line in output.splitlines()):
        if word == "begin":
            begun = (int(rest[0]), rest[1], rest[2])
        elif word == "commit":
            committed[int(rest[1])] = begun
            begun = None
        elif word == "undo-begin":
            begun = "undo"
        elif word == "undo-commit":
            undone.add(int(rest[1]))
            begun = None
    return committed, undone, begun


@pytest.mark.parametrize(
    "kill_at, after",
    [
        # make test-fast keeps one kill inside a vote's transaction and one inside an undo's
        pytest.param("vote-flushed", 3, marks=pytest.mark.slow),
        ("vote-committed", 3),
        ("undo-flushed", 1),
        pytest.param("undo-committed", 1, marks=pytest.mark.slow),
    ],
)
def test_voting_process_killed_leaves_each_vote_whole_or_absent(tmp_path, kill_at, after):
    """A process voting (and undoing) SIGKILLed inside a vote's or an undo's transaction, or
    right after its commit: every vote it reported is there as cast; the one in flight is whole
    if its transaction committed and absent if not, and so is the undo; one live vote per pair;
    integrity_check ok; voting then resumes to the end."""
    url = f"sqlite:///{tmp_path / 'arena.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study_id = create_synthetic_study(s, "kill", n_comparisons=2, n_prompts=10).id
        ((annotator_id, _),) = create_voters(s, 1)

    voter = _start_voter(url, study_id, annotator_id, 7, kill_at, after)
    output, _ = voter.communicate(timeout=120)
    assert voter.returncode == -signal.SIGKILL, output
    committed, undone, in_flight = _reported(output)
    assert (in_flight == "undo") == kill_at.startswith("undo")
    flight_committed = kill_at.endswith("committed")

    assert _integrity(url) == "ok"
    with session_factory(engine).begin() as s:
        rows = {v.id: v for v in s.scalars(select(Vote))}
        pairs = {p.id: p for p in s.scalars(select(ImagePair))}
    for vote in rows.values():  # each row whole: its left image is its pair's side
        pair = pairs[vote.pair_id]
        side_image = pair.image_a_id if vote.left_side == "a" else pair.image_b_id
        assert (vote.annotator_id, vote.left_image_id) == (annotator_id, side_image)
        assert vote.shown_at is not None and vote.voted_at is not None
    for vote_id, cast in committed.items():
        assert (rows[vote_id].pair_id, rows[vote_id].left_side, rows[vote_id].choice) == cast
    extra = [(v.pair_id, v.left_side, v.choice) for i, v in rows.items() if i not in committed]
    if in_flight == "undo":
        assert extra == []
        last = max(committed)  # the undo takes back the last vote
        superseded = {i for i, v in rows.items() if v.superseded_at is not None}
        assert superseded == undone | ({last} if flight_committed else set())
    else:
        assert extra == ([in_flight] if flight_committed else [])
    live = [v.pair_id for v in rows.values() if v.superseded_at is None]
    assert len(live) == len(set(live))

    # voting resumes where it stopped
    voter = _start_voter(url, study_id, annotator_id, 99)
    output, _ = voter.communicate(timeout=120)
    assert voter.returncode == 0 and output.splitlines()[-1] == "finished"
    with session_factory(engine).begin() as s:
        live = s.scalars(select(Vote.pair_id).where(Vote.superseded_at.is_(None))).all()
        assert sorted(live) == sorted(set(live)) == sorted(pairs)
    engine.dispose()
