"""Crashes: a generation worker or a voting process killed with SIGKILL at random moments.

Whatever the moment, the next run must finish the work with the data sound: every image present
once, named and checked by its sha256, no row without its file and no file without its row;
every vote either fully recorded or absent.
"""

import multiprocessing
import random
import sqlite3
import subprocess
import sys
import time
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


def _wait_for_images(worker, url: str, target: int) -> float:
    """Wait until `target` jobs are done (or the worker ended); returns the time then."""
    deadline = time.monotonic() + 60
    while worker.is_alive() and _done_jobs(url) < target:
        assert time.monotonic() < deadline, "the worker made no progress for 60 s"
        time.sleep(0.01)
    return time.monotonic()


@pytest.fixture(scope="module")
def forkserver():
    """A multiprocessing context whose children fork from a process that imported torch and
    diffusers once (and ran no torch op, so forking is safe)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(workers.PRELOAD)
    return context


@pytest.mark.timeout(240)
def test_generation_killed_ten_times_finishes_with_every_image_once(
    tmp_path, tiny_clip_dir, tiny_sd_dir, forkserver
):
    """Pre-generation SIGKILLed at 10 seeded random moments, then run to the end: each image
    exactly once, a valid PNG whose sha256 matches its row, no orphan file or dangling row."""
    arena = build_tiny_arena(tmp_path / "data", tiny_clip_dir, tiny_sd_dir, seeds=(0, 1, 2, 3, 4))
    rng = random.Random(20261126)
    args = (arena.url, arena.study, str(arena.data_dir))
    killed_with_work_left, after_kills = 0, []
    for _ in range(10):
        worker = forkserver.Process(target=workers.generate, args=args)
        worker.start()
        if rng.random() < 0.3:
            # while starting up: cleaning, re-queueing, loading the pipeline and checkpoints
            time.sleep(rng.uniform(0.0, 1.0))
        else:
            # while rendering, writing or recording an image: time two finished images, then
            # kill at a random point of the third
            done = _done_jobs(arena.url)
            finished = _wait_for_images(worker, arena.url, done + 1)
            image_s = _wait_for_images(worker, arena.url, done + 2) - finished
            time.sleep(rng.uniform(0.0, image_s))
        if worker.is_alive():
            worker.kill()
            killed_with_work_left += _done_jobs(arena.url) < arena.images
        worker.join()
        after_kills += audit_images(arena, complete=False)  # no row ever points at a bad file

    assert after_kills == []
    assert killed_with_work_left >= 8, "most kills must land while images are still missing"
    worker = forkserver.Process(target=workers.generate, args=args)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert audit_images(arena) == []


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_generation_killed_on_postgresql_finishes_after_restart(
    tmp_path, tiny_clip_dir, tiny_sd_dir, forkserver, postgres_url
):
    """On PostgreSQL, a worker SIGKILLed 3 times in the middle of an image: the restarted run
    finishes every image (the dead worker's claims do not wait 15 minutes)."""
    arena = build_tiny_arena(
        tmp_path / "data", tiny_clip_dir, tiny_sd_dir, seeds=(0, 1, 2), url=postgres_url
    )
    rng = random.Random(5)
    args = (arena.url, arena.study, str(arena.data_dir))
    for _ in range(3):
        worker = forkserver.Process(target=workers.generate, args=args)
        worker.start()
        done = _done_jobs(arena.url)
        finished = _wait_for_images(worker, arena.url, done + 1)
        image_s = _wait_for_images(worker, arena.url, done + 2) - finished
        time.sleep(rng.uniform(0.0, image_s))
        worker.kill()
        worker.join()
        assert audit_images(arena, complete=False) == []

    worker = forkserver.Process(target=workers.generate, args=args)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert audit_images(arena) == []


def _start_voter(url: str, study_id: int, annotator_id: int, seed: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.reliability.workers", "vote", url]
    command += [str(study_id), str(annotator_id), str(seed)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)


def test_voting_process_killed_leaves_each_vote_whole_or_absent(tmp_path):
    """A process voting (and undoing) in a loop, SIGKILLed 5 times at random moments: every vote
    it reported committed is in the database as cast, the one in flight is whole or absent, no
    other row exists, one live vote per pair, integrity_check ok, and voting resumes."""
    url = f"sqlite:///{tmp_path / 'arena.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study_id = create_synthetic_study(s, "kill", n_comparisons=2, n_prompts=10).id
        ((annotator_id, _),) = create_voters(s, 1)
    rng = random.Random(7)

    committed: dict[int, tuple[int, str, str]] = {}  # vote id -> (pair, side, choice)
    undone: set[int] = set()
    in_flight: list[tuple[int, str, str]] = []  # a vote begun but not reported committed
    undo_in_flight = 0
    for round_ in range(5):
        voter = _start_voter(url, study_id, annotator_id, round_)
        lines, commits, wanted = [], 0, rng.randint(1, 6)
        while commits < wanted:
            line = voter.stdout.readline()
            assert line, f"the voter stopped early: {lines}"
            lines.append(line.split())
            commits += lines[-1][0] == "commit"
        time.sleep(rng.uniform(0.0, 0.05))
        voter.kill()
        lines += [line.split() for line in voter.communicate()[0].splitlines()]
        begun = None
        for word, *rest in lines:
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
        if begun == "undo":
            undo_in_flight += 1
        elif begun is not None:
            in_flight.append(begun)

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
            vote = rows[vote_id]
            assert (vote.pair_id, vote.left_side, vote.choice) == cast
            if vote_id in undone:
                assert vote.superseded_at is not None
        extra = [(v.pair_id, v.left_side, v.choice) for i, v in rows.items() if i not in committed]
        assert all(cast in in_flight for cast in extra)
        live = [v.pair_id for v in rows.values() if v.superseded_at is None]
        assert len(live) == len(set(live))
        superseded = {i for i, v in rows.items() if v.superseded_at is not None}
        assert undone <= superseded and len(superseded - undone) <= undo_in_flight
    engine.dispose()

    # voting resumes where it stopped
    voter = _start_voter(url, study_id, annotator_id, 99)
    output, _ = voter.communicate(timeout=120)
    assert voter.returncode == 0 and output.splitlines()[-1] == "finished"
