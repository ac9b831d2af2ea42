"""A process killed in the middle of voting leaves every vote either fully recorded or absent."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from db.engine import make_engine, session_factory, upgrade
from db.models import ImagePair, Vote
from db.queries import study_pairs
from db.synthetic import create_synthetic_study, create_voters

REPO = Path(__file__).resolve().parents[2]

VOTER = """
import sys
from datetime import UTC, datetime
from db.engine import make_engine, session_factory
from db.queries import record_vote
sessions = session_factory(make_engine(sys.argv[1]))
voter = int(sys.argv[2])
for pair_id in map(int, sys.argv[3].split(",")):
    with sessions.begin() as s:
        vote = record_vote(s, pair_id, voter, "b", "right", datetime.now(UTC))
        vote_id = vote.id
    print(vote_id, flush=True)  # printed only after the commit returned
"""


def test_sigkill_during_voting_loses_no_committed_vote_and_leaves_no_partial_one(tmp_path):
    """SIGKILL at a random moment while a process records votes: the database passes
    integrity_check, every vote the process saw committed is there, and every stored vote is
    complete and consistent with its pair."""
    url = f"sqlite:///{tmp_path / 'arena.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        study = create_synthetic_study(s, "crash", n_comparisons=3, n_prompts=40, seeds=(0, 1))
        [(voter, _)] = create_voters(s, 1)
        pair_ids = ",".join(str(p.id) for p in study_pairs(s, study.id))  # 480 pairs

    child = subprocess.Popen(
        [sys.executable, "-c", VOTER, url, str(voter), pair_ids],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    acknowledged = [int(child.stdout.readline())]  # wait until it is voting
    time.sleep(0.05 + (os.getpid() % 7) / 50)  # some moment during the run
    child.send_signal(signal.SIGKILL)
    child.wait()
    acknowledged += [int(line) for line in child.stdout.read().split()]

    with sessions() as s:
        conn = s.connection()
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        stored = s.scalars(select(Vote).order_by(Vote.id)).all()
        assert set(acknowledged) <= {v.id for v in stored}
        assert len(stored) < 480, "the child finished before it was killed; kill it sooner"
        for vote in stored:
            pair = s.get(ImagePair, vote.pair_id)
            assert (vote.left_side, vote.choice, vote.left_image_id) == (
                "b",
                "right",
                pair.image_b_id,
            )
        assert s.scalar(select(func.count(Vote.id)).where(Vote.superseded_at.is_not(None))) == 0
    engine.dispose()
