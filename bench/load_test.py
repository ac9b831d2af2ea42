"""Load test: concurrent voters through the functions the vote page calls, then a full audit.

    .venv/bin/python bench/load_test.py                                  # SQLite, 20 x 200
    .venv/bin/python bench/load_test.py --voters 8 --votes 30            # a quick run
    .venv/bin/python bench/load_test.py --postgres "$TEST_DATABASE_URL"  # also PostgreSQL

Each voter is a thread with its own Session per transaction, as the app runs it: one read-only
(DEFERRED on SQLite) transaction for `evaluation.scheduling.next_pair`, one for
`db.queries.record_vote`; now and then two
clicks on the same pair racing from two threads (exactly one must raise DuplicateVoteError) and an undo (`undo_last_vote`, then the
pair comes back). Every voter remembers what it believes it cast. Afterwards the database must
hold exactly those live votes (none lost, none duplicated, same side and choice), every call must
have left one row, `PRAGMA integrity_check` must say ok on SQLite, and the tally of
`live_votes_frame` must equal the tally of the believed votes. `--postgres` takes a server URL
and runs in a throwaway database it creates and drops (tests/db/start_postgres.sh starts one).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.engine import make_engine, normalize_url, session_factory, upgrade  # noqa: E402
from db.errors import DuplicateVoteError  # noqa: E402
from db.models import CHOICES, Annotator, Vote  # noqa: E402
from db.queries import (  # noqa: E402
    VOTE_COLUMNS,
    live_votes_frame,
    record_vote,
    study_pairs,
    undo_last_vote,  # noqa: E402
)
from db.synthetic import create_synthetic_study, create_voters  # noqa: E402
from evaluation.scheduling import next_pair  # noqa: E402
from evaluation.tally import tally_votes  # noqa: E402

N_COMPARISONS = 3
LABELS = ("epoch-8", "epoch-10")
SEEDS = (0, 1)


@dataclass(frozen=True)
class LoadConfig:
    url: str  # an empty database (SQLite file or PostgreSQL database)
    voters: int = 20
    votes_per_voter: int = 200  # successful record_vote calls per voter (undone ones included)
    undo_rate: float = 0.05  # chance of an undo after a vote
    double_click_rate: float = 0.05  # chance of two record_vote calls racing on one pair
    seed: int = 0
    pool_size: int | None = None  # connections kept per engine; None: make_engine's default


@dataclass
class LoadReport:
    backend: str
    voters: int
    votes_recorded: int  # successful record_vote calls
    undos: int
    second_clicks_rejected: int
    seconds: float
    votes_per_s: float
    vote_p50_ms: float  # next_pair + record_vote, each its own transaction
    vote_p95_ms: float
    next_pair_p50_ms: float
    record_p50_ms: float
    errors: list[str] = field(default_factory=list)  # unexpected exceptions and wrong answers
    # the audit
    believed_live: int = 0
    db_live: int = 0
    db_rows: int = 0  # every vote row, superseded ones included
    db_superseded: int = 0
    lost: int = 0  # believed but not live in the database
    unexpected: int = 0  # live in the database, not believed
    mismatched: int = 0  # same (annotator, pair), different side/choice/left image
    duplicated_live: int = 0  # (annotator, pair) with more than one live vote
    integrity: str = "n/a"  # PRAGMA integrity_check on SQLite
    tally_equal: bool = False

    def problems(self) -> list[str]:
        """Everything that breaks a guarantee; empty when the run was sound."""
        found = [f"error: {e}" for e in self.errors[:10]]
        if self.errors[10:]:
            found.append(f"... and {len(self.errors) - 10} more errors")
        checks = {
            "lost votes": self.lost,
            "unexpected live votes": self.unexpected,
            "mismatched votes": self.mismatched,
            "duplicated live votes": self.duplicated_live,
        }
        found += [f"{n} {what}" for what, n in checks.items() if n]
        if self.db_rows != self.votes_recorded:
            found.append(f"{self.db_rows} vote rows for {self.votes_recorded} recorded votes")
        if self.db_superseded != self.undos:
            found.append(f"{self.db_superseded} superseded rows for {self.undos} undos")
        if self.integrity not in ("ok", "n/a"):
            found.append(f"PRAGMA integrity_check: {self.integrity}")
        if not self.tally_equal:
            found.append("tally of the database differs from the tally of the believed votes")
        return found


@dataclass
class _Voter:
    annotator_id: int
    name: str
    believed: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # pair -> cast
    cast_times: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # pairs with a live vote, in voting order
    recorded: int = 0
    undos: int = 0
    rejected: int = 0
    vote_s: list[float] = field(default_factory=list)
    next_s: list[float] = field(default_factory=list)
    record_s: list[float] = field(default_factory=list)


def _pair_metadata(s, study_id: int) -> dict[int, dict]:
    """pair id -> the interchange columns fixed by the pair (read once, before voting)."""
    meta = {}
    for pair in study_pairs(s, study_id, include_qc=False):
        c = pair.comparison
        meta[pair.id] = {
            "study": c.study.name,
            "group": c.group,
            "comparison": c.name,
            "variant_a": c.variant_a.name,
            "variant_b": c.variant_b.name,
            "a_setting": c.a_setting,
            "b_setting": c.b_setting,
            "prompt": pair.prompt.text,
            "prompt_kind": pair.prompt.kind,
            "checkpoint": pair.checkpoint_label,
            "seed": pair.seed,
        }
    return meta


def _two_clicks(sessions, pair, annotator_id: int, choices, shown_at) -> tuple[str | None, int]:
    """record_vote for the same pair from two threads at once; returns (the choice that was
    recorded, how many clicks were rejected with DuplicateVoteError). Other errors propagate."""
    barrier = threading.Barrier(2)
    recorded, rejected, failures = [], [], []

    def click(choice: str) -> None:
        barrier.wait()
        try:
            with sessions.begin() as s:
                record_vote(s, pair.pair_id, annotator_id, pair.left_side, choice, shown_at)
            recorded.append(choice)
        except DuplicateVoteError:
            rejected.append(choice)
        except Exception as error:  # noqa: BLE001 - re-raised in the voter's thread
            failures.append(error)

    threads = [threading.Thread(target=click, args=(c,)) for c in choices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return (recorded[0] if recorded else None), len(rejected)


def _vote_loop(
    sessions, readers, voter: _Voter, study_id: int, cfg: LoadConfig, errors, barrier
) -> None:
    rng = random.Random(f"{cfg.seed}:{voter.annotator_id}")
    barrier.wait()
    while voter.recorded < cfg.votes_per_voter:
        try:
            t0 = time.perf_counter()
            with readers.begin() as s:  # as arena_ui.ballot: transaction(readonly=True)
                pair = next_pair(s, voter.annotator_id, study_id)
            t1 = time.perf_counter()
            if pair is None:
                errors.append(f"{voter.name}: next_pair returned None after {voter.recorded}")
                return
            shown_at = datetime.now(UTC)
            choice = rng.choice(CHOICES)
            racing = rng.random() < cfg.double_click_rate
            if racing:  # two clicks at once (two tabs, or a rerun): exactly one may count
                choice, rejected = _two_clicks(
                    sessions, pair, voter.annotator_id, (choice, "tie"), shown_at
                )
                voter.rejected += rejected
                if rejected != 1:
                    errors.append(f"{voter.name}: {2 - rejected} clicks on {pair.pair_id} counted")
            else:
                with sessions.begin() as s:
                    record_vote(
                        s, pair.pair_id, voter.annotator_id, pair.left_side, choice, shown_at
                    )
            t2 = time.perf_counter()
            voter.next_s.append(t1 - t0)
            voter.record_s.append(t2 - t1)
            voter.vote_s.append(t2 - t0)
            voter.recorded += 1
            voter.believed[pair.pair_id] = (pair.left_side, choice, pair.left_image_id)
            voter.cast_times[pair.pair_id] = (shown_at, datetime.now(UTC))
            voter.order.append(pair.pair_id)

            if rng.random() < cfg.undo_rate:
                with sessions.begin() as s:
                    undone = undo_last_vote(s, voter.annotator_id, study_id)
                    undone_pair = None if undone is None else undone.pair_id
                expected = voter.order.pop()
                del voter.believed[expected]
                voter.undos += 1
                if undone_pair != expected:
                    errors.append(f"{voter.name}: undo took pair {undone_pair}, not {expected}")
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            errors.append(f"{voter.name}: {type(error).__name__}: {error}")


def _believed_frame(voters: list[_Voter], meta: dict[int, dict]) -> pd.DataFrame:
    rows = []
    for voter in voters:
        for pair_id, (side, choice, _) in voter.believed.items():
            row = dict(meta[pair_id])
            row["annotator"] = voter.name
            row["left_variant"] = row["variant_a"] if side == "a" else row["variant_b"]
            row["choice"] = choice
            row["shown_at"], row["voted_at"] = voter.cast_times[pair_id]
            rows.append(row)
    return pd.DataFrame(rows, columns=list(VOTE_COLUMNS))


def canonical_tally(votes: pd.DataFrame) -> dict:
    """The tally's JSON with groups and sets in name order (the tally lists them in order of
    first appearance, which differs between the database's vote order and the voters')."""
    groups = []
    for group in tally_votes(votes).to_dict()["groups"]:
        group = dict(group, sets=sorted(group["sets"], key=lambda s: s["comparison"]))
        groups.append(group)
    return {"groups": sorted(groups, key=lambda g: g["group"])}


def _percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_load(cfg: LoadConfig) -> LoadReport:
    """Set up a synthetic study in the (empty) database at `cfg.url`, vote, audit."""
    # 1. Schema, a study with more regular pairs than any voter casts, and the voters
    options = {} if cfg.pool_size is None else {"pool_size": cfg.pool_size, "max_overflow": 0}
    engine = make_engine(cfg.url, **options)
    upgrade(engine)
    sessions = session_factory(engine)
    readers = session_factory(engine, readonly=True)
    per_prompt = N_COMPARISONS * len(LABELS) * len(SEEDS)
    n_prompts = cfg.votes_per_voter // per_prompt + 2
    with sessions.begin() as s:
        study = create_synthetic_study(
            s, "load", n_comparisons=N_COMPARISONS, n_prompts=n_prompts, seeds=SEEDS, labels=LABELS
        )
        study_id = study.id
        accounts = create_voters(s, cfg.voters, prefix="load-voter")
        names = dict(s.execute(select(Annotator.id, Annotator.name)).all())
        meta = _pair_metadata(s, study_id)
    voters = [_Voter(annotator_id=aid, name=names[aid]) for aid, _ in accounts]

    # 2. All voters at once
    errors: list[str] = []
    barrier = threading.Barrier(cfg.voters + 1)
    threads = [
        threading.Thread(
            target=_vote_loop, args=(sessions, readers, v, study_id, cfg, errors, barrier)
        )
        for v in voters
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start

    recorded = sum(v.recorded for v in voters)
    report = LoadReport(
        backend=engine.dialect.name,
        voters=cfg.voters,
        votes_recorded=recorded,
        undos=sum(v.undos for v in voters),
        second_clicks_rejected=sum(v.rejected for v in voters),
        seconds=round(seconds, 3),
        votes_per_s=round(recorded / seconds, 1),
        vote_p50_ms=round(_percentile_ms([t for v in voters for t in v.vote_s], 0.50), 1),
        vote_p95_ms=round(_percentile_ms([t for v in voters for t in v.vote_s], 0.95), 1),
        next_pair_p50_ms=round(_percentile_ms([t for v in voters for t in v.next_s], 0.50), 1),
        record_p50_ms=round(_percentile_ms([t for v in voters for t in v.record_s], 0.50), 1),
        errors=errors,
    )

    # 3. Audit: the database against what every voter believes it cast
    believed = {
        (v.annotator_id, pair_id): cast for v in voters for pair_id, cast in v.believed.items()
    }
    with sessions.begin() as s:
        live = {
            (a, p): (side, choice, left)
            for a, p, side, choice, left in s.execute(
                select(
                    Vote.annotator_id, Vote.pair_id, Vote.left_side, Vote.choice, Vote.left_image_id
                ).where(Vote.superseded_at.is_(None))
            )
        }
        report.duplicated_live = len(
            s.execute(
                select(Vote.annotator_id, Vote.pair_id)
                .where(Vote.superseded_at.is_(None))
                .group_by(Vote.annotator_id, Vote.pair_id)
                .having(func.count(Vote.id) > 1)
            ).all()
        )
        report.db_rows = s.scalar(select(func.count(Vote.id)))
        report.db_superseded = s.scalar(
            select(func.count(Vote.id)).where(Vote.superseded_at.is_not(None))
        )
        if engine.dialect.name == "sqlite":
            report.integrity = ", ".join(
                r[0] for r in s.connection().exec_driver_sql("PRAGMA integrity_check")
            )
        stored = live_votes_frame(s, study_id)
    report.believed_live = len(believed)
    report.db_live = len(live)
    report.lost = len(believed.keys() - live.keys())
    report.unexpected = len(live.keys() - believed.keys())
    report.mismatched = sum(live[k] != believed[k] for k in believed.keys() & live.keys())
    expected = _believed_frame(voters, meta)
    report.tally_equal = canonical_tally(stored) == canonical_tally(expected)
    engine.dispose()
    return report


def postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """(URL of a new empty database on `server_url`, a function that drops it)."""
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"arena_load_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = normalize_url(server_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return url, drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voters", type=int, default=20)
    parser.add_argument("--votes", type=int, default=200, help="votes per voter")
    parser.add_argument("--undo-rate", type=float, default=0.05)
    parser.add_argument("--double-click-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-size", type=int, default=None, help="default: make_engine's")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL, also run there")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args(argv)

    def config(url: str) -> LoadConfig:
        return LoadConfig(
            url=url,
            voters=args.voters,
            votes_per_voter=args.votes,
            undo_rate=args.undo_rate,
            double_click_rate=args.double_click_rate,
            seed=args.seed,
            pool_size=args.pool_size,
        )

    reports = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            reports.append(run_load(config(f"sqlite:///{Path(tmp) / 'arena.sqlite3'}")))
    if args.postgres:
        url, drop = postgres_database(args.postgres)
        try:
            reports.append(run_load(config(url)))
        finally:
            drop()
    failed = False
    for report in reports:
        summary = {k: v for k, v in asdict(report).items() if k != "errors"}
        summary["errors"] = len(report.errors)
        print(json.dumps(summary, indent=1))
        problems = report.problems()
        for problem in problems:
            print(f"  PROBLEM ({report.backend}): {problem}")
        failed |= bool(problems)
        print(
            f"{report.backend}: {report.voters} voters x {args.votes} votes: "
            f"{report.votes_per_s} votes/s, next_pair+record p50 {report.vote_p50_ms} ms, "
            f"p95 {report.vote_p95_ms} ms, {len(report.errors)} errors, "
            f"{'SOUND' if not problems else 'BROKEN'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
