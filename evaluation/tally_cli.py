"""The article's tally of a vote file, as JSON (for other tools) or readable tables.

    python -m evaluation tally --votes votes.csv --format json
    python -m evaluation tally --votes votes.csv --format table --mode majority

Reads the vote interchange CSV (or .parquet); extra columns are ignored. A malformed file exits
with status 1 and a message naming the line and column.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from evaluation.export import read_votes
from evaluation.tally import TALLY_MODES, Tally, VoteDataError, tally_votes

FORMATS = ("json", "table")


def render_table(tally: Tally) -> str:
    """The tally as plain-text tables, one per group."""
    if not tally.groups:
        return "no votes"
    blocks = []
    for g in tally.groups:
        side = {"x": f"x ({g.x})", "y": f"y ({g.y})", "draw": "draw"}
        verdict = f"winner: {side[g.winner]}" + (
            f", decided by {g.decided_by}" if g.winner != "draw" else ""
        )
        sets = pd.DataFrame([s.to_dict() for s in g.sets])
        blocks.append(
            "\n".join(
                [
                    f"{g.group}: x = {g.x}, y = {g.y}",
                    sets.to_string(index=False),
                    f"sets won   x {g.x_sets} : y {g.y_sets}",
                    f"points     x {g.x_points} : y {g.y_points}",
                    verdict,
                ]
            )
        )
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation tally", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--votes", required=True, help="vote interchange file (.csv or .parquet)")
    parser.add_argument("--format", choices=FORMATS, default="json")
    parser.add_argument(
        "--mode",
        choices=TALLY_MODES,
        default="votes",
        help="votes: every live vote is a point; majority: one point per item",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the problem
        return int(exc.code or 0)

    try:
        result = tally_votes(read_votes(args.votes), mode=args.mode)
    except VoteDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
