"""The article's tally written plainly, row by row: the oracle the fast `evaluation.tally` is
tested against. Slow (a Python loop per vote); not for use on real data.

The rule: per table (a hyperparameter, or one pair of its values when it takes more than two),
each set (comparison) is won by the side with more winning votes; the table is won by the side
with more sets won, and when those are level by more points (winning votes over all its sets).
Ties (TIE_CHOICES) count for nobody.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from evaluation.tally import TIE_CHOICES


def _winner(x: int, y: int) -> str:
    return "x" if x > y else "y" if y > x else "draw"


def _side(row: dict) -> str:
    """Which side of the comparison this vote chose: 'a', 'b' or 'tie'."""
    if row["choice"] in TIE_CHOICES:
        return "tie"
    left_is_a = row["left_variant"] == row["variant_a"]
    return "a" if (row["choice"] == "left") == left_is_a else "b"


def _majority(rows: list[dict]) -> list[dict]:
    """One row per item (comparison, prompt, checkpoint, seed) carrying its plurality side; a
    tied plurality is a tie."""
    items: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(str(row[c]) for c in ("comparison", "prompt", "checkpoint", "seed"))
        items.setdefault(key, []).append(row)
    decided = []
    for votes in items.values():
        counts = Counter(_side(v) for v in votes).most_common()
        top = [side for side, n in counts if n == counts[0][1]]
        decided.append({**votes[0], "side": top[0] if len(top) == 1 else "tie"})
    return decided


def reference_tally(votes: pd.DataFrame, mode: str = "votes") -> dict:
    """The tally of a raw vote frame as the JSON object of `Tally.to_dict()`."""
    rows = votes.to_dict("records")
    rows = _majority(rows) if mode == "majority" else [{**r, "side": _side(r)} for r in rows]
    # tables: groups in order of first appearance, a group's pairs of values likewise; x is the
    # a_setting of the first row of the pair
    tables: dict[str, dict[frozenset, dict]] = {}
    for row in rows:
        a, b = str(row["a_setting"]), str(row["b_setting"])
        table = tables.setdefault(str(row["group"]), {}).setdefault(
            frozenset((a, b)), {"x": a, "y": b, "sets": {}}
        )
        swapped = a != table["x"]
        x_variant, y_variant = (
            (row["variant_b"], row["variant_a"])
            if swapped
            else (
                row["variant_a"],
                row["variant_b"],
            )
        )
        tally = table["sets"].setdefault(
            str(row["comparison"]),
            {"x_variant": str(x_variant), "y_variant": str(y_variant), "x": 0, "y": 0, "tie": 0},
        )
        x_side, y_side = ("b", "a") if swapped else ("a", "b")
        tally[{x_side: "x", y_side: "y", "tie": "tie"}[row["side"]]] += 1

    groups = []
    for group, pairs in tables.items():
        for table in pairs.values():
            sets = [
                {
                    "comparison": comparison,
                    "x_variant": s["x_variant"],
                    "y_variant": s["y_variant"],
                    "x_wins": s["x"],
                    "y_wins": s["y"],
                    "ties": s["tie"],
                    "winner": _winner(s["x"], s["y"]),
                }
                for comparison, s in table["sets"].items()
            ]
            x_sets = sum(s["winner"] == "x" for s in sets)
            y_sets = sum(s["winner"] == "y" for s in sets)
            x_points = sum(s["x_wins"] for s in sets)
            y_points = sum(s["y_wins"] for s in sets)
            if x_sets != y_sets:
                winner, decided_by = _winner(x_sets, y_sets), "sets"
            elif x_points != y_points:
                winner, decided_by = _winner(x_points, y_points), "points"
            else:
                winner, decided_by = "draw", "draw"
            name = group if len(pairs) == 1 else f"{group}: {table['x']} vs {table['y']}"
            groups.append(
                {
                    "group": name,
                    "x": table["x"],
                    "y": table["y"],
                    "sets": sets,
                    "x_sets": x_sets,
                    "y_sets": y_sets,
                    "x_points": x_points,
                    "y_points": y_points,
                    "winner": winner,
                    "decided_by": decided_by,
                }
            )
    return {"groups": groups}
