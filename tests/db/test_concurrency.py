"""Many writers at once: no lock errors, no duplicate live votes."""

import threading
from datetime import UTC, datetime

from sqlalchemy import func, select

from db.errors import DuplicateVoteError
from db.models import Vote
from db.queries import record_vote, study_pairs
from db.synthetic import create_synthetic_study, create_voters

THREADS = 8


def test_eight_threads_voting_at_once_lose_nothing_and_duplicate_nothing(sessions):
    """8 threads (two per annotator, racing on the same pairs) record every vote exactly once:
    no 'database is locked', one live vote per (annotator, pair)."""
    with sessions.begin() as s:
        study = create_synthetic_study(s, "race", n_comparisons=3, n_prompts=5, seeds=(0, 1))
        voters = [vid for vid, _ in create_voters(s, THREADS // 2)]
        pair_ids = [p.id for p in study_pairs(s, study.id)]  # 60 pairs
    recorded, duplicates, errors = [], [], []
    barrier = threading.Barrier(THREADS)

    def worker(k: int) -> None:
        voter = voters[k % len(voters)]
        barrier.wait()
        for pair_id in pair_ids:
            try:
                with sessions.begin() as s:
                    vote = record_vote(s, pair_id, voter, "a", "left", datetime.now(UTC))
                    vote_id = vote.id
                recorded.append((voter, pair_id, vote_id))
            except DuplicateVoteError:
                duplicates.append((voter, pair_id))
            except Exception as error:  # noqa: BLE001 - any other error fails the test
                errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(recorded) == len(voters) * len(pair_ids)
    assert len(recorded) + len(duplicates) == THREADS * len(pair_ids)
    with sessions() as s:
        rows = s.execute(
            select(Vote.annotator_id, Vote.pair_id, func.count())
            .where(Vote.superseded_at.is_(None))
            .group_by(Vote.annotator_id, Vote.pair_id)
        ).all()
    assert len(rows) == len(voters) * len(pair_ids) and {n for *_, n in rows} == {1}
    assert {(a, p) for a, p, _ in rows} == {(a, p) for a, p, _ in recorded}
    if sessions.kw["bind"].dialect.name == "sqlite":
        with sessions() as s:
            assert s.connection().exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
