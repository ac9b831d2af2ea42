"""The decision board of a vote file: which comparisons are settled, how many votes the open ones
still need, and how firm each group's verdict is (docs/decision-rules.md).

    python -m evaluation decide --votes votes.csv --format json
    python -m evaluation decide --votes votes.csv --format table --alpha 0.05 --delta 0.1

Reads the vote interchange CSV (or .parquet) as `tally` does; a malformed file exits with status 1
and a message naming the line and column, bad arguments with status 2. There is no vote cap here,
so no comparison is ever `capped`.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from evaluation.decisions import DecisionBoard, DecisionSettings, decide
from evaluation.export import read_votes
from evaluation.tally import VoteDataError

FORMATS = ("json", "table")


def render_table(board: DecisionBoard) -> str:
    """The board as two plain-text tables: comparisons, then groups."""
    if board.comparisons.empty:
        return "no votes"
    comparisons = board.comparisons.assign(
        leader=board.comparisons["leader"].fillna("-"),
        e_value=board.comparisons["e_value"].map(lambda v: f"{v:.3g}"),
        votes_needed=board.comparisons["votes_needed"]
        .astype(object)
        .where(board.comparisons["votes_needed"].notna(), "-"),
    )
    groups = board.groups.assign(stability=board.groups["stability"].map(lambda v: f"{v:.3f}"))
    s = board.settings
    return "\n".join(
        [
            f"comparisons (alpha {s.alpha:g}: decided at e-value >= {1 / s.alpha:g}; "
            f"equivalent within 0.5 +/- {s.delta:g})",
            comparisons.to_string(index=False),
            "",
            f"groups (stability: {board.rounds} prompt resamples, seed {board.seed}; fragility: "
            "the verdict changes if that many votes are removed)",
            groups.to_string(index=False),
            "",
            "Votes on the same prompt are not independent; the e-value treats them as "
            "exchangeable. Stability resamples whole prompts.",
        ]
    )


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation decide", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--votes", required=True, help="vote interchange file (.csv or .parquet)")
    parser.add_argument("--format", choices=FORMATS, default="json")
    parser.add_argument(
        "--alpha",
        type=_fraction,
        default=DecisionSettings.alpha,
        help="decided when the e-value reaches 1/alpha (default 0.05)",
    )
    parser.add_argument(
        "--delta",
        type=_fraction,
        default=DecisionSettings.delta,
        help="equivalence margin around a win share of 1/2 (default 0.1)",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the problem
        return int(exc.code or 0)
    try:
        settings = DecisionSettings(alpha=args.alpha, delta=args.delta)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        board = decide(read_votes(args.votes), settings)
    except VoteDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(board.to_json(), indent=2, ensure_ascii=False))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(render_table(board))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
