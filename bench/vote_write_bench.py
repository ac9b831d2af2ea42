"""Votes per second recorded through `db.queries.record_vote` (the function the vote page
calls), one transaction per vote, with 1 and 8 concurrent writer threads (own Session each).

    .venv/bin/python bench/vote_write_bench.py                      # SQLite file in a temp dir
    .venv/bin/python bench/vote_write_bench.py --votes-per-writer 200 --writers 1 8
    .venv/bin/python bench/vote_write_bench.py --url "$TEST_DATABASE_URL"   # an EMPTY PostgreSQL DB

Target (issue 3, point 12): >= 500 votes/s with 8 writers on SQLite, zero errors.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.engine import make_engine, session_factory, upgrade  # noqa: E402
from db.models import Vote  # noqa: E402
from db.queries import record_vote, study_pairs  # noqa: E402
from db.synthetic import create_synthetic_study, create_voters  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    url: str | None = None  # None: a fresh SQLite file in a temp dir
    writers: tuple[int, ...] = (1, 8)
    votes_per_writer: int = 500  # each writer votes as its own annotator on distinct pairs


def run_round(sessions, study_id: int, writers: int, votes: int, prefix: str) -> dict:
    """`writers` threads, each recording `votes` votes as its own annotator; returns figures."""
    with sessions.begin() as s:
        voters = [vid for vid, _ in create_voters(s, writers, prefix=prefix)]
        pair_ids = [p.id for p in study_pairs(s, study_id)][:votes]
    assert len(pair_ids) == votes, "the synthetic study has too few pairs"
    latencies: list[list[float]] = [[] for _ in range(writers)]
    errors: list[str] = []
    barrier = threading.Barrier(writers + 1)

    def writer(k: int) -> None:
        barrier.wait()
        for n, pair_id in enumerate(pair_ids):
            t0 = time.perf_counter()
            try:
                with sessions.begin() as s:
                    record_vote(s, pair_id, voters[k], "ab"[n % 2], "left", datetime.now(UTC))
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(repr(error))
            latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start

    with sessions() as s:
        stored = s.scalar(
            select(func.count(Vote.id)).where(
                Vote.annotator_id.in_(voters), Vote.superseded_at.is_(None)
            )
        )
    flat = sorted(x for per in latencies for x in per)
    return {
        "writers": writers,
        "votes": writers * votes,
        "stored": stored,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "seconds": elapsed,
        "votes_per_s": writers * votes / elapsed,
        "p50_ms": 1000 * statistics.median(flat),
        "p99_ms": 1000 * flat[int(0.99 * (len(flat) - 1))],
    }


def bench(cfg: BenchConfig) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        url = cfg.url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        engine = make_engine(url, pool_size=max(cfg.writers) + 2)
        upgrade(engine)
        sessions = session_factory(engine)
        # pairs = comparisons x 2 labels x prompts x 2 seeds; enough for every writer's votes
        n_prompts = max(1, -(-cfg.votes_per_writer // (5 * 2 * 2)))
        with sessions.begin() as s:
            study = create_synthetic_study(s, "bench", 5, n_prompts, seeds=(0, 1))
            study_id = study.id
        results = [
            run_round(sessions, study_id, n, cfg.votes_per_writer, prefix=f"w{n}")
            for n in cfg.writers
        ]
        engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="database URL (default: temp SQLite file)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--votes-per-writer", type=int, default=500)
    args = parser.parse_args()
    cfg = BenchConfig(args.url, tuple(args.writers), args.votes_per_writer)
    for r in bench(cfg):
        print(
            f"{r['writers']} writer(s): {r['votes']} votes in {r['seconds']:.2f} s = "
            f"{r['votes_per_s']:.0f} votes/s; stored {r['stored']}, errors {r['errors']} "
            f"{r['first_error']}; latency p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
