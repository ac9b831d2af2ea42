"""Decision board benchmark on 1,000,000 synthetic votes (issue 8, point 10).

    .venv/bin/python bench/decision_bench.py                  # 1M votes, stability B = 1000
    .venv/bin/python bench/decision_bench.py --votes 100000   # a quick one

Same synthetic frame as bench/tally_bench.py (7 variants, 9 comparisons in 3 groups, 6 prompts,
2 checkpoints, 20 annotators, 15 % ties). Times `evaluation.decisions.decide` on the prepared
frame (as the results page passes it) and on the raw categorical frame; best of --repeat.
Target: the board on 1M votes < 1 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tally_bench import best_of, synthetic_votes  # noqa: E402
from evaluation import decisions, tally  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    raw = synthetic_votes(args.votes, seed=args.seed)
    prepared = tally.prepare_votes(raw)
    t_board, board = best_of(
        args.repeat, lambda: decisions.decide(prepared, seed=args.seed, rounds=args.rounds)
    )
    t_raw, _ = best_of(
        args.repeat, lambda: decisions.decide(raw, seed=args.seed, rounds=args.rounds)
    )
    t_tally, _ = best_of(args.repeat, lambda: tally.tally_votes(prepared))
    print(f"votes: {len(raw):,}; stability rounds: {args.rounds}")
    print(f"decision board (prepared frame):     {t_board:.3f} s   target < 1 s")
    print(f"decision board (raw, prepare incl.): {t_raw:.3f} s")
    print(f"article tally alone (for scale):     {t_tally:.3f} s")
    print()
    print(board.comparisons.to_string(index=False))
    print(board.groups.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
