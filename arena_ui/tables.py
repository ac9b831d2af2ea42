"""The article's tables as display frames: English labels with the article's terms alongside.

Turns `evaluation.tally` results into what the results page (and the vote page's summary) shows;
no statistics are computed here.
"""

from __future__ import annotations

import pandas as pd

from arena_ui.resources import transaction
from db.queries import live_votes_frame
from evaluation.tally import GroupTally, tally_votes

SETS_WON = "Sets won (組数)"
POINTS = "Points (点数)"
DECIDED_BY = {
    "sets": "sets won (組数)",
    "points": "points (点数), sets being level",
    "draw": "nothing: sets and points are both level",
}


def side_label(group: GroupTally, side: str) -> str:
    """'embed_dim = 2D' for side 'x' of the embed_dim table."""
    setting = group.x if side == "x" else group.y
    name = group.hyperparameter or group.group.split(":")[0]
    return f"{name} = {setting}"


def set_table(group: GroupTally) -> pd.DataFrame:
    """One row per set (組): who held each setting, wins on each side, ties, the set's winner.

    Columns are named by the setting alone ("2D side", "2D wins"); the table's heading names
    the hyperparameter.
    """
    x, y = group.x, group.y
    winner = {"x": side_label(group, "x"), "y": side_label(group, "y"), "draw": "draw"}
    return pd.DataFrame(
        [
            {
                "Set (組)": s.comparison,
                f"{x} side": s.x_variant,
                f"{y} side": s.y_variant,
                f"{x} wins": s.x_wins,
                f"{y} wins": s.y_wins,
                "Same (ties)": s.ties,
                "Set winner": winner[s.winner],
            }
            for s in group.sets
        ]
    )


def group_summary(group: GroupTally) -> pd.DataFrame:
    """Two rows (x, y): sets won and points, the article's two totals."""
    return pd.DataFrame(
        [
            {"Setting": side_label(group, "x"), SETS_WON: group.x_sets, POINTS: group.x_points},
            {"Setting": side_label(group, "y"), SETS_WON: group.y_sets, POINTS: group.y_points},
        ]
    )


def verdict(group: GroupTally) -> str:
    """One sentence: which setting won the group, and what decided it."""
    if group.winner == "draw":
        return (
            f"Draw: sets and points are both level ({group.x_sets}-{group.y_sets} sets, "
            f"{group.x_points}-{group.y_points} points)."
        )
    won = side_label(group, group.winner)
    return (
        f"**{won}** wins, decided by {DECIDED_BY[group.decided_by]}: "
        f"sets {group.x_sets}-{group.y_sets}, points {group.x_points}-{group.y_points}."
    )


def own_results(study_id: int, annotator: str) -> pd.DataFrame:
    """The annotator's own tally for the study: one row per set with its table's verdict."""
    with transaction(readonly=True) as s:
        votes = live_votes_frame(s, study_id)
    votes = votes[votes["annotator"] == annotator]
    rows = []
    for group in tally_votes(votes).groups if len(votes) else []:
        for row in set_table(group).to_dict("records"):
            values = list(row.values())
            rows.append(
                {
                    "Group": group.group,
                    "Set (組)": values[0],
                    "Wins (x side)": values[3],
                    "Wins (y side)": values[4],
                    "Same": values[5],
                    "Set winner": values[6],
                    "Group verdict": verdict(group).replace("**", ""),
                }
            )
    return pd.DataFrame(rows)
