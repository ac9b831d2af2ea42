"""Tally and statistics benchmark on 1,000,000 synthetic votes (issue 3, point 11).

    .venv/bin/python bench/tally_bench.py                 # the full 1M-vote run
    .venv/bin/python bench/tally_bench.py --votes 100000  # a quick one

7 variants (the article's 2x2x2 design with one corner missing), 9 comparisons, 6 prompts,
2 checkpoints, 20 annotators, as many seeds as 1M votes take (every annotator judges every item
once). Prints wall times (best of --repeat) and the peak memory of the statistics run, measured
with tracemalloc (Python and numpy allocations; pandas/pyarrow buffers allocated outside Python's
allocator are not all seen, so the ru_maxrss growth is printed too).
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation import ranking, stats, tally  # noqa: E402

HYPERPARAMETERS = {"embed_dim": ("2D", "D"), "vicinity": ("2", "1"), "mlp_dim": ("2D", "D")}
PROMPTS = (
    ("cat maid", "single"),
    ("1girl red hair blue eye black skirt", "single"),
    ("1boy 1girl in class room", "single"),
    ("cat, maid", "composed"),
    ("1girl, red hair, blue eye, black skirt", "composed"),
    ("1boy, 1girl, in class room", "composed"),
)
CHECKPOINTS = ("epoch-8", "epoch-10")
KINDS = ("single", "composed")


def article_design() -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str]]]:
    """Seven variants (corner (D, 1, D) left out) and the 9 one-difference comparisons."""
    names = list(HYPERPARAMETERS)
    variants = {}
    for corner in itertools.product(*HYPERPARAMETERS.values()):
        if corner == ("D", "1", "D"):
            continue
        variants[f"v{len(variants) + 1}"] = dict(zip(names, corner, strict=True))
    comparisons = []
    for (va, ha), (vb, hb) in itertools.combinations(variants.items(), 2):
        diff = [k for k in names if ha[k] != hb[k]]
        if len(diff) == 1:
            comparisons.append((diff[0], va, vb))
    return variants, comparisons


def synthetic_votes(
    n_votes: int = 1_000_000, n_annotators: int = 20, seed: int = 0
) -> pd.DataFrame:
    """A vote interchange frame from a known Bradley-Terry model (v1 strongest), 15 % ties."""
    rng = np.random.default_rng(seed)
    variants, comparisons = article_design()
    strength = {v: 1.0 - 0.25 * i for i, v in enumerate(variants)}  # log-strengths
    per_seed = len(comparisons) * len(PROMPTS) * len(CHECKPOINTS) * n_annotators
    n_seeds = -(-n_votes // per_seed)
    # Full grid comparison x prompt x checkpoint x seed x annotator, cut to n_votes.
    shape = (len(comparisons), len(PROMPTS), len(CHECKPOINTS), n_seeds, n_annotators)
    idx = np.indices(shape).reshape(len(shape), -1)[:, :n_votes]
    comp, prompt, ckpt, seed_i, ann = idx
    diff = np.array([strength[va] - strength[vb] for _, va, vb in comparisons])[comp]
    tie = rng.random(n_votes) < 0.15
    a_won = ~tie & (rng.random(n_votes) < 1 / (1 + np.exp(-diff)))
    left_is_a = rng.random(n_votes) < 0.5
    shown = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(n_votes), unit="s")

    # Text columns as categoricals built from codes, as a Parquet export or a database query
    # with few distinct values delivers them (prepare_votes accepts plain strings too; timed below).
    def cat(codes, categories):
        return pd.Categorical.from_codes(codes, categories=list(categories))

    names = list(variants)
    var_a = np.array([names.index(va) for _, va, _ in comparisons])[comp]
    var_b = np.array([names.index(vb) for _, _, vb in comparisons])[comp]
    values = sorted({v for h in variants.values() for v in h.values()})
    a_setting = np.array([values.index(variants[va][g]) for g, va, _ in comparisons])[comp]
    b_setting = np.array([values.index(variants[vb][g]) for g, _, vb in comparisons])[comp]
    groups = list(HYPERPARAMETERS)
    return pd.DataFrame(
        {
            "study": cat(np.zeros(n_votes, dtype=np.int8), ["bench"]),
            "group": cat(np.array([groups.index(g) for g, _, _ in comparisons])[comp], groups),
            "comparison": cat(comp, [f"{va} vs {vb}" for _, va, vb in comparisons]),
            "variant_a": cat(var_a, names),
            "variant_b": cat(var_b, names),
            "a_setting": cat(a_setting, values),
            "b_setting": cat(b_setting, values),
            "prompt": cat(prompt, [p for p, _ in PROMPTS]),
            "prompt_kind": cat(np.array([KINDS.index(k) for _, k in PROMPTS])[prompt], KINDS),
            "checkpoint": cat(ckpt, CHECKPOINTS),
            "seed": seed_i,
            "annotator": cat(ann, [f"annotator-{i:02d}" for i in range(n_annotators)]),
            "left_variant": cat(np.where(left_is_a, var_a, var_b), names),
            "choice": cat(np.where(tie, 2, np.where(a_won == left_is_a, 0, 1)), tally.CHOICES),
            "shown_at": shown,
            "voted_at": shown + pd.Timedelta(seconds=3),
        }
    )


def best_of(repeat: int, fn):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def time_string_input(raw: pd.DataFrame) -> float:
    """prepare_votes on plain string columns (as read from CSV), which it turns into categoricals."""
    as_strings = raw.astype({c: "str" for c in raw.columns if raw[c].dtype == "category"})
    t0 = time.perf_counter()
    tally.prepare_votes(as_strings)
    return time.perf_counter() - t0


def all_statistics(prepared: pd.DataFrame, rounds: int, seed: int) -> dict:
    """The article's tally and everything of issue 3 point 8 around it."""
    t = tally.tally_votes(prepared)
    return {
        "tally": t,
        "win_shares": stats.group_win_shares(t),
        "by_prompt_kind": stats.breakdown(prepared, "prompt_kind"),
        "by_checkpoint": stats.breakdown(prepared, "checkpoint"),
        "position_bias": stats.position_bias(prepared),
        "agreement": stats.annotator_agreement(prepared),
        "leaderboard": ranking.bootstrap_leaderboard(prepared, rounds=rounds, seed=seed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    raw = synthetic_votes(args.votes, seed=args.seed)
    print(f"synthetic votes: {len(raw):,} rows in {time.perf_counter() - t0:.2f} s")
    # 1. Peak memory of one full run (prepare + tally + statistics), first, so that nothing
    #    measured later (the string-input copy) has raised ru_maxrss already.
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    p = tally.prepare_votes(raw)
    tally.tally_votes(p)
    all_statistics(p, args.rounds, args.seed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # 2. Times, best of --repeat.
    t_prep_str = time_string_input(raw)
    t_prep_cat, prepared = best_of(args.repeat, lambda: tally.prepare_votes(raw))
    t_tally, result = best_of(args.repeat, lambda: tally.tally_votes(prepared))
    t_majority, _ = best_of(args.repeat, lambda: tally.tally_votes(prepared, mode="majority"))
    t_per_ann, _ = best_of(args.repeat, lambda: tally.tally_by_annotator(prepared))
    t_stats, out = best_of(args.repeat, lambda: all_statistics(prepared, args.rounds, args.seed))
    t_boot, _ = best_of(
        args.repeat,
        lambda: ranking.bootstrap_leaderboard(prepared, rounds=args.rounds, seed=args.seed),
    )
    t_all, _ = best_of(
        args.repeat, lambda: all_statistics(tally.prepare_votes(raw), args.rounds, args.seed)
    )

    print(f"prepare_votes (categorical input): {t_prep_cat:.3f} s")
    print(f"prepare_votes (string input):      {t_prep_str:.3f} s")
    print(f"article tally (votes mode):        {t_tally:.3f} s   target < 0.5 s")
    print(f"article tally (majority mode):     {t_majority:.3f} s")
    print(f"per-annotator tallies:             {t_per_ann:.3f} s")
    print(f"bootstrap leaderboard ({args.rounds} rounds): {t_boot:.3f} s")
    print(f"tally + all statistics of point 8: {t_stats:.3f} s")
    print(f"prepare + tally + all statistics:  {t_all:.3f} s   target < 2 s")
    print(f"peak traced memory (tracemalloc):  {peak / 2**20:.0f} MiB   target < 1 GB")
    print(f"ru_maxrss growth during that run:  {(rss1 - rss0) / 1024:.0f} MiB")
    print(
        f"process ru_maxrss after that run:  {rss1 / 1024:.0f} MiB (includes the synthetic votes)"
    )
    print()
    print(out["leaderboard"].table.to_string(index=False))
    print(result.to_frame()[["group", "comparison", "x_wins", "y_wins", "ties", "winner"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
