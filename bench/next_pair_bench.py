"""Latency of `evaluation.scheduling.next_pair` (the vote page calls it after every vote).

    .venv/bin/python bench/next_pair_bench.py                       # a big study, 1 and 4 voters
    .venv/bin/python bench/next_pair_bench.py --prompts 12 --seeds 2 --calls 50
    .venv/bin/python bench/next_pair_bench.py --stop-when-settled   # the adaptive allocation

Builds a SQLite study with 9 comparisons x 2 checkpoints x PROMPTS x SEEDS pairs (db.synthetic),
pre-fills VOTES_PER_VOTER live votes for 20 voters, then times next_pair (read transaction) +
record_vote (write transaction), as the vote page does, from 1 and from 4 concurrent threads.
Prints median and p95 in ms. The bulk-filled votes are ties, so that with --stop-when-settled
every comparison stays open (the scheduler then also counts every comparison's outcomes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.engine import make_engine, session_factory, upgrade  # noqa: E402
from db.queries import record_vote  # noqa: E402
from db.synthetic import create_synthetic_study, create_voters  # noqa: E402
from evaluation.scheduling import next_pair  # noqa: E402


def vote_once(factories, voter: int, study_id: int) -> float:
    """One vote as the vote page does it: next_pair in a read (DEFERRED) transaction, then
    record_vote in its own write transaction."""
    reads, writes = factories
    start = time.perf_counter()
    with reads.begin() as s:
        item = next_pair(s, voter, study_id)
    if item is not None:
        with writes.begin() as s:
            record_vote(s, item.pair_id, voter, item.left_side, "left", datetime.now(UTC))
    return time.perf_counter() - start


def run(factories, voters: list[int], study_id: int, calls: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()

    def worker(voter: int) -> None:
        mine = [vote_once(factories, voter, study_id) for _ in range(calls)]
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker, args=(v,)) for v in voters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--votes-per-voter", type=int, default=500)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--stop-when-settled", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.sqlite3")
        upgrade(engine)
        factory = session_factory(engine)
        factories = (session_factory(engine.execution_options(sqlite_begin="DEFERRED")), factory)
        with factory.begin() as s:
            study = create_synthetic_study(
                s,
                "bench",
                n_comparisons=9,
                n_prompts=args.prompts,
                seeds=range(args.seeds),
                stop_when_settled=args.stop_when_settled,
            )
            voters = [annotator_id for annotator_id, _ in create_voters(s, 20)]
            study_id = study.id
        pairs = 9 * 2 * args.prompts * args.seeds
        for voter in voters:  # earlier votes, so the queries see a realistic vote table
            run(factories, [voter], study_id, args.votes_per_voter // 50)
        with engine.begin() as connection:  # bulk-fill the rest quickly, as sqlite rows
            connection.exec_driver_sql(
                "INSERT INTO votes (pair_id, annotator_id, left_image_id, left_side, choice, tags, "
                "shown_at, voted_at) SELECT p.id, a.id, p.image_a_id, 'a', 'tie', '[]', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM image_pairs p, annotators a "
                f"WHERE p.id % {max(pairs // args.votes_per_voter, 1)} = 0 AND NOT EXISTS "
                "(SELECT 1 FROM votes v WHERE v.pair_id = p.id AND v.annotator_id = a.id)"
            )
            votes = connection.exec_driver_sql("SELECT count(*) FROM votes").scalar()
        mode = "stop when settled" if args.stop_when_settled else "full grid"
        print(f"study ({mode}): {pairs} pairs, 20 voters, {votes} live votes already")
        alone = []
        for voter in voters[:4] * 25:  # the scheduler by itself: read transaction, no vote
            start = time.perf_counter()
            with factories[0].begin() as s:
                next_pair(s, voter, study_id)
            alone.append((time.perf_counter() - start) * 1000)
        alone.sort()
        print(
            f"next_pair alone: median {statistics.median(alone):.1f} ms, "
            f"p95 {alone[int(0.95 * (len(alone) - 1))]:.1f} ms over {len(alone)} calls"
        )
        for concurrent in (1, 4):
            times = run(factories, voters[:concurrent], study_id, args.calls)
            times_ms = sorted(t * 1000 for t in times)
            p95 = times_ms[int(0.95 * (len(times_ms) - 1))]
            print(
                f"{concurrent} voter(s): next_pair + record_vote median "
                f"{statistics.median(times_ms):.1f} ms, p95 {p95:.1f} ms over {len(times)} calls"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
