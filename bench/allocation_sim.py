"""Simulated studies through the real scheduler and decision code: uniform vs stop-when-settled
(issue 8, point 5).

    .venv/bin/python bench/allocation_sim.py                      # 200 repetitions, 2 processes
    .venv/bin/python bench/allocation_sim.py --reps 10 --processes 1   # a quick one
    .venv/bin/python bench/allocation_sim.py --seeds 4 --annotators 4  # 96 votes per comparison
    .venv/bin/python bench/allocation_sim.py --cap 48          # the study's vote cap, both policies

Each repetition builds (copies) a SQLite study of 9 comparisons x 6 prompts x --seeds seeds
(default 10: 60 pairs per comparison) with --annotators annotators (default 4), so a comparison
can take at most 240 votes and the budget is all 2160 by default. The study must give the
effects room to be decided: at 96 votes per comparison (--seeds 4) a share of 0.6 is beyond any
rule's reach, both policies spend every vote on it, and the comparison measures little
(bench/RESULTS.md has the saving by study size). True preferences: 2 comparisons
have a leader share of exactly 0.5 (null effects), 7 draw theirs uniformly from 0.5-0.85; each
(comparison, prompt) adds a N(0, 0.3) offset on the logit scale, centred over the comparison's
prompts (prompt-to-prompt variation); 15 % of votes are ties; the true leader is side A or B
at random. Votes are cast through `evaluation.scheduling.next_pair` and `db.queries.record_vote`
(annotators take turns), statuses come from `evaluation.scheduling.comparison_statuses`
(= `evaluation.decisions`, the board's code). Both policies run on the same truth and the same
seeded vote stream:
- uniform: the full grid (stop-when-settled off), checked after every round of 9 votes, until
  every comparison is settled or the budget is spent;
- settled: stop-when-settled on, until next_pair has nothing for any annotator or the budget is
  spent.
Both runs record a trajectory: at 0 votes, after every round of 9 votes (CHECK_EVERY) and at
the end, the comparisons decided for the true leader ("correct decisions") and the comparisons
settled, read with `comparison_statuses` + `comparison_outcomes` (read-only: the vote stream is
unchanged). Reported, with the running summary every 10 repetitions being the same report:
- the table: votes used, true (non-null) effects decided for the right side, wrong-side
  decisions, false decisions on the null comparisons, runs where everything settled;
- (A) votes saved over whole runs (the two policies then make different decisions);
- (B1) same decisions: per repetition, uniform's correct decisions at the end of its run are the
  target; uniform's votes = its first check reaching the target, stop-when-settled's = its first
  check reaching it, or all its votes when it never does (counted and printed); saving = 1 -
  sum(stop-when-settled votes) / sum(uniform votes), also the per-repetition median and the
  saving against uniform's whole budget; (B2) the same for comparisons settled;
- (C) equal votes: correct decisions of uniform after as many votes as stop-when-settled used in
  that repetition (rounded up to uniform's next check) vs stop-when-settled's;
- (D) correct decisions of both after 1/4, 1/2, 3/4 and all of the budget.
Targets: >= 30 % fewer votes for the same decisions (B1); false decisions <= 5 % per null
comparison.

With --cap, the study's per-comparison vote cap is set under both policies: stop-when-settled
stops serving a comparison at the cap; uniform serves the full grid (the option off ignores the
cap) and its run ends when every comparison is decided, equivalent or capped, i.e. a fixed design
of `cap` votes per comparison. The budget is then cap x 9.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from db.engine import make_engine, session_factory, upgrade  # noqa: E402
from db.models import ImagePair, Study  # noqa: E402
from db.queries import record_vote  # noqa: E402
from db.queries.scheduling import comparison_outcomes  # noqa: E402
from db.synthetic import create_synthetic_study, create_voters  # noqa: E402
from evaluation.scheduling import comparison_statuses, next_pair  # noqa: E402

N_COMPARISONS = 9
N_NULL = 2
N_PROMPTS = 6
TIE_RATE = 0.15
PROMPT_SD = 0.3  # logit-scale spread of a comparison's preference across prompts
SHARES = (0.5, 0.85)
CHECK_EVERY = N_COMPARISONS  # statuses are read every round of 9 votes, under both policies


@dataclass(frozen=True)
class Template:
    path: str
    study_id: int
    voters: tuple[int, ...]
    pair_cell: dict  # pair id -> (comparison id, prompt id)
    comparisons: tuple[int, ...]
    prompts: tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    votes: int
    detected: int  # non-null comparisons decided for the true leader
    wrong_side: int  # non-null comparisons decided for the other side
    false_null: int  # null comparisons decided
    settled: bool  # every comparison settled before the budget ran out
    # (votes, correct decisions, comparisons settled) at 0 votes, after every CHECK_EVERY votes
    # and at the end of the run; correct = non-null comparisons decided for the true leader
    trajectory: tuple[tuple[int, int, int], ...]


def build_template(folder: Path, seeds: int, annotators: int) -> Template:
    path = folder / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study = create_synthetic_study(
            s,
            "sim",
            n_comparisons=N_COMPARISONS,
            n_prompts=N_PROMPTS,
            seeds=range(seeds),
            labels=("e",),
        )
        voters = tuple(a for a, _ in create_voters(s, annotators))
        study_id = study.id
    with session_factory(engine)() as s:
        rows = s.execute(select(ImagePair.id, ImagePair.comparison_id, ImagePair.prompt_id)).all()
    engine.dispose()
    return Template(
        path=str(path),
        study_id=study_id,
        voters=voters,
        pair_cell={pid: (cid, prompt) for pid, cid, prompt in rows},
        comparisons=tuple(sorted({cid for _, cid, _ in rows})),
        prompts=tuple(sorted({prompt for _, _, prompt in rows})),
    )


def draw_truth(template: Template, rng: np.random.Generator) -> tuple[dict, dict]:
    """(share per comparison: P(true leader wins a decisive vote), P(A wins) per cell)."""
    shares = np.concatenate([np.full(N_NULL, 0.5), rng.uniform(*SHARES, N_COMPARISONS - N_NULL)])
    a_leads = rng.random(N_COMPARISONS) < 0.5
    share_of = {}
    p_a = {}
    for k, cid in enumerate(template.comparisons):
        share_of[cid] = (shares[k], bool(a_leads[k]))
        logit = math.log(shares[k] / (1 - shares[k])) * (1 if a_leads[k] else -1)
        offsets = rng.normal(0, PROMPT_SD, len(template.prompts))
        offsets -= offsets.mean()  # centred: the comparison's share stays the drawn one
        for prompt, offset in zip(template.prompts, offsets, strict=True):
            p_a[(cid, prompt)] = 1 / (1 + math.exp(-(logit + offset)))
    return share_of, p_a


def run_policy(
    template: Template, folder: Path, rep: int, adaptive: bool, truth, cap: int | None = None
) -> Outcome:
    """One simulated study under one policy; the vote stream is seeded by rep. With `cap`,
    the study's per-comparison vote cap is set under both policies: stop-when-settled serves a
    comparison no more once it has `cap` votes; uniform serves the full grid regardless (as the
    study option off does) and stops when every comparison is decided, equivalent or capped."""
    share_of, p_a = truth
    path = folder / f"rep-{rep}-{'settled' if adaptive else 'uniform'}.sqlite3"
    shutil.copyfile(template.path, path)
    engine = make_engine(f"sqlite:///{path}")
    rng = np.random.default_rng([rep, 1])  # the same votes for both policies, draw by draw
    budget = len(template.pair_cell) * len(template.voters)
    votes, idle, turn = 0, 0, 0

    def point(votes: int, statuses: dict, outcomes: dict) -> tuple[int, int, int]:
        correct = settled = 0
        for cid, (status, _, _) in statuses.items():
            settled += status != "open"
            share, a_leads = share_of[cid]
            if status == "decided" and share != 0.5:
                a_wins, b_wins, _ = outcomes[cid]
                correct += (a_wins > b_wins) == a_leads
        return (votes, correct, settled)

    trajectory = [(0, 0, 0)]
    with session_factory(engine).begin() as s:
        study = s.get(Study, template.study_id)
        study.stop_when_settled = adaptive
        study.vote_cap = cap
        s.flush()
        while votes < budget:
            voter = template.voters[turn % len(template.voters)]
            turn += 1
            item = next_pair(s, voter, template.study_id, seed=rep)
            if item is None:
                idle += 1
                if idle >= len(template.voters):
                    break  # nothing left that the scheduler would serve to anyone
                continue
            idle = 0
            tie, draw = rng.random() < TIE_RATE, rng.random()
            a_won = draw < p_a[template.pair_cell[item.pair_id]]
            if tie:
                choice = "tie"
            else:
                choice = "left" if a_won == (item.left_side == "a") else "right"
            record_vote(
                s,
                item.pair_id,
                voter,
                item.left_side,
                choice,
                datetime.now(UTC),
                allocation_rule=item.rule,
                comparison_status=item.status,
            )
            votes += 1
            if votes % CHECK_EVERY == 0:
                statuses = comparison_statuses(s, template.study_id)
                outcomes = comparison_outcomes(s, template.study_id)
                trajectory.append(point(votes, statuses, outcomes))
                if not adaptive and all(st != "open" for st, _, _ in statuses.values()):
                    break
        statuses = comparison_statuses(s, template.study_id)
        outcomes = comparison_outcomes(s, template.study_id)
        settled = all(st != "open" for st, _, _ in statuses.values())
        if trajectory[-1][0] != votes:
            trajectory.append(point(votes, statuses, outcomes))
    engine.dispose()
    path.unlink()
    detected = wrong = false_null = 0
    for cid, (status, _, _) in statuses.items():
        if status != "decided":
            continue
        share, a_leads = share_of[cid]
        a_wins, b_wins, _ = outcomes[cid]
        if share == 0.5:
            false_null += 1
        elif (a_wins > b_wins) == a_leads:
            detected += 1
        else:
            wrong += 1
    return Outcome(votes, detected, wrong, false_null, settled, tuple(trajectory))


def one_rep(args) -> tuple[Outcome, Outcome]:
    template, folder, rep, cap = args
    truth = draw_truth(template, np.random.default_rng([rep, 0]))
    return (
        run_policy(template, Path(folder), rep, False, truth, cap),
        run_policy(template, Path(folder), rep, True, truth, cap),
    )


def summarise(name: str, outcomes: list[Outcome]) -> dict:
    reps = len(outcomes)
    return {
        "policy": name,
        "votes_mean": statistics.mean(o.votes for o in outcomes),
        "votes_median": statistics.median(o.votes for o in outcomes),
        "detected": sum(o.detected for o in outcomes) / (reps * (N_COMPARISONS - N_NULL)),
        "wrong_side": sum(o.wrong_side for o in outcomes) / (reps * (N_COMPARISONS - N_NULL)),
        "false_null": sum(o.false_null for o in outcomes) / (reps * N_NULL),
        "false_null_count": sum(o.false_null for o in outcomes),
        "settled_runs": sum(o.settled for o in outcomes) / reps,
    }


def first_reaching(trajectory, target: int, column: int) -> int | None:
    """Votes at the first check where column (1: correct decisions, 2: settled) >= target."""
    return next((p[0] for p in trajectory if p[column] >= target), None)


def state_at(trajectory, votes: int, column: int, after: bool = False) -> int:
    """The column at the last check at or before `votes` (after=True: the first check at or
    after it; a run that stopped earlier is in its final state)."""
    if after:
        return next((p[column] for p in trajectory if p[0] >= votes), trajectory[-1][column])
    return [p[column] for p in trajectory if p[0] <= votes][-1]


def same_decisions(results: list[tuple[Outcome, Outcome]], column: int) -> dict:
    """Votes each policy needs to reach uniform's final count (column 1: correct decisions,
    2: comparisons settled), per repetition: uniform at its first check reaching it,
    stop-when-settled at its first check reaching it, or all its votes when it never does."""
    u_votes, s_votes, ratios, never, zero = [], [], [], 0, 0
    for u, a in results:
        target = u.trajectory[-1][column]
        zero += target == 0
        uv = first_reaching(u.trajectory, target, column)
        sv = first_reaching(a.trajectory, target, column)
        if sv is None:
            never += 1
            sv = a.votes
        u_votes.append(uv)
        s_votes.append(sv)
        if uv > 0:
            ratios.append(1 - sv / uv)
    return {
        "uniform_votes": sum(u_votes) / len(results),
        "settled_votes": sum(s_votes) / len(results),
        "saving": 1 - sum(s_votes) / sum(u_votes) if sum(u_votes) else float("nan"),
        "saving_vs_full": 1 - sum(s_votes) / sum(u.votes for u, _ in results),
        "median_saving": statistics.median(ratios) if ratios else float("nan"),
        "never": never,
        "zero_target": zero,
    }


def report(results: list[tuple[Outcome, Outcome]], budget: int) -> None:
    """Print every measure (the running summaries and the final one are this same report)."""
    reps = len(results)
    true_effects = reps * (N_COMPARISONS - N_NULL)
    uniform = summarise("uniform (full grid)", [u for u, _ in results])
    settled = summarise("stop when settled", [a for _, a in results])
    print(
        "| policy | votes used (mean / median) | true effects detected | wrong side "
        "| false decisions per null comparison | runs settled before the budget |"
    )
    print("|---|---|---|---|---|---|")
    for row in (uniform, settled):
        print(
            f"| {row['policy']} | {row['votes_mean']:.0f} / {row['votes_median']:.0f} "
            f"| {row['detected']:.1%} | {row['wrong_side']:.1%} "
            f"| {row['false_null']:.1%} ({row['false_null_count']} of {reps * N_NULL}) "
            f"| {row['settled_runs']:.0%} |"
        )
    saved = 1 - settled["votes_mean"] / uniform["votes_mean"]
    print(f"(A) votes saved, whole runs (different decisions): {saved:.1%}")
    for column, what in ((1, "correct decisions"), (2, "comparisons settled")):
        m = same_decisions(results, column)
        print(
            f"(B{column}) same {what} as uniform's whole run: uniform first reaches it after "
            f"{m['uniform_votes']:.1f} votes (mean), stop-when-settled after "
            f"{m['settled_votes']:.1f} (never in {m['never']} of {reps} runs: all its votes "
            f"counted; target 0 in {m['zero_target']}): saving {m['saving']:.1%} "
            f"(median per run {m['median_saving']:.1%}; vs uniform's whole {budget} votes "
            f"{m['saving_vs_full']:.1%})"
        )
    # equal budgets: uniform's correct decisions after as many votes as stop-when-settled used
    # (rounded up to uniform's next check, which favours uniform by at most 8 votes)
    u_eq = sum(state_at(u.trajectory, a.votes, 1, after=True) for u, a in results)
    a_eq = sum(a.trajectory[-1][1] for _, a in results)
    print(
        f"(C) equal votes (each run's stop-when-settled total): correct decisions uniform "
        f"{u_eq / true_effects:.1%} vs stop-when-settled {a_eq / true_effects:.1%} of true effects"
    )
    cells = []
    for votes in range(budget // 4, budget + 1, budget // 4):
        u_share = sum(state_at(o.trajectory, votes, 1) for o, _ in results) / true_effects
        a_share = sum(state_at(o.trajectory, votes, 1) for _, o in results) / true_effects
        cells.append(f"{votes}: {u_share:.1%} vs {a_share:.1%}")

    print(f"(D) correct decisions after N votes, uniform vs stop-when-settled: {'; '.join(cells)}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument(
        "--first", type=int, default=0, help="first repetition (split a run over several jobs)"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--seeds", type=int, default=10, help="image seeds: pairs = 6 prompts x this"
    )
    parser.add_argument("--annotators", type=int, default=4)
    parser.add_argument(
        "--cap", type=int, help="the study's per-comparison vote cap (default: none)"
    )
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        template = build_template(Path(tmp), args.seeds, args.annotators)
        jobs = [(template, tmp, rep, args.cap) for rep in range(args.first, args.first + args.reps)]
        results = []
        budget = len(template.pair_cell) * len(template.voters)
        if args.cap is not None:
            budget = min(budget, args.cap * N_COMPARISONS)
        with Pool(args.processes) as pool:
            for result in pool.imap(one_rep, jobs):
                results.append(result)
                if len(results) % 10 == 0 and len(results) < args.reps:
                    # a running summary, in case the run is cut short
                    print(f"## after {len(results)} repetitions, {time.perf_counter() - t0:.0f} s")
                    report(results, budget)
    print(
        f"{args.reps} repetitions (from {args.first}), {N_COMPARISONS} comparisons ({N_NULL} null), "
        f"{len(template.pair_cell) // N_COMPARISONS} pairs per comparison x {args.annotators} "
        f"annotators, vote cap {args.cap}: budget {budget} votes, statuses read every "
        f"{CHECK_EVERY} votes, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    report(results, budget)
    print(
        "targets: >= 30 % fewer votes for the same decisions (B1); false decisions <= 5 % per "
        "null comparison"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
