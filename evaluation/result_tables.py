"""The results as people read them: display frames with human column names, the setting named
wherever a side is meant, percentages and sensible rounding, and one-sentence summaries.

Turns `evaluation.tally`, `evaluation.stats` and `evaluation.ranking` results into what the
results page (and the vote page's own summary, and reports) shows; no statistics are computed
here, no Streamlit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from evaluation.tally import GroupTally, Tally, tally_by_annotator

DECIDED_BY = {
    "sets": "sets won (組数)",
    "points": "points (点数), sets being level",
    "draw": "nothing: sets and points are both level",
}


def percent(share: float) -> str:
    """0.6667 -> '67%'; NaN (no decisive votes) -> '–'."""
    return "–" if share is None or not math.isfinite(share) else f"{share:.0%}"


def interval(low: float, high: float) -> str:
    """A share interval as '48–82%'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"{low * 100:.0f}–{high * 100:.0f}%"


def p_value(p: float) -> str:
    """Two significant figures, '< 0.001' below that."""
    if not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def side_label(group: GroupTally, side: str) -> str:
    """'embed_dim = 2D' for side 'x' of the embed_dim table."""
    setting = group.x if side == "x" else group.y
    name = group.hyperparameter or group.group.split(":")[0]
    return f"{name} = {setting}"


def set_table(group: GroupTally) -> pd.DataFrame:
    """One row per set (組): who held each setting, wins on each side, ties, the set's winner.

    Columns are named by the setting alone ("2D side", "2D wins"); the table's heading names
    the hyperparameter. The set is named by its two sides (no third column repeating them).
    """
    x, y = group.x, group.y
    winner = {"x": side_label(group, "x"), "y": side_label(group, "y"), "draw": "draw"}
    return pd.DataFrame(
        [
            {
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
    """One row: each setting's sets won (組数) and points (点数), named by the setting."""
    x, y = group.x, group.y
    return pd.DataFrame(
        [
            {
                f"{x} sets won (組数)": group.x_sets,
                f"{y} sets won (組数)": group.y_sets,
                f"{x} points (点数)": group.x_points,
                f"{y} points (点数)": group.y_points,
            }
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


def summary_card(tally: Tally, shares: pd.DataFrame) -> pd.DataFrame:
    """One row per hyperparameter: the winning setting, what decided it, and the winner's share
    of the decisive votes with its 95% interval (`shares`: `stats.group_win_shares(tally)`)."""
    by_group = shares.set_index("group")
    rows = []
    for g in tally.groups:
        row = by_group.loc[g.group]
        side = "y" if g.winner == "y" else "x"
        rows.append(
            {
                "Hyperparameter": g.group,
                "Winner": "draw" if g.winner == "draw" else side_label(g, g.winner),
                "Decided by": {"sets": "sets won", "points": "points", "draw": "–"}[g.decided_by],
                "Sets": f"{g.x_sets}–{g.y_sets}" if side == "x" else f"{g.y_sets}–{g.x_sets}",
                "Win share (95% interval)": (
                    f"{percent(row[f'{side}_share'])} "
                    f"({interval(row[f'{side}_low'], row[f'{side}_high'])})"
                ),
            }
        )
    return pd.DataFrame(rows)


def win_share_table(shares: pd.DataFrame) -> pd.DataFrame:
    """`stats.group_win_shares` for reading: each row names its setting and the one it beat."""
    return pd.DataFrame(
        {
            "Hyperparameter": shares["group"],
            "Setting": shares["x"],
            "Against": shares["y"],
            "Pairs won": shares["x_points"],
            "Pairs lost": shares["y_points"],
            "Ties": shares["ties"],
            "Win share": [percent(v) for v in shares["x_share"]],
            "95% interval": [
                interval(lo, hi) for lo, hi in zip(shares["x_low"], shares["x_high"], strict=True)
            ],
            "p (sign test)": [p_value(p) for p in shares["p_value"]],
        }
    )


def breakdown_table(frame: pd.DataFrame, by: str, title: str) -> pd.DataFrame:
    """`stats.breakdown(votes, by)` for reading; `title` names the `by` column."""
    return pd.DataFrame(
        {
            "Hyperparameter": frame["group"],
            title: frame[by],
            "Setting": frame["x"],
            "Against": frame["y"],
            "Won": frame["x_wins"],
            "Lost": frame["y_wins"],
            "Ties": frame["ties"],
            "Win share": [percent(v) for v in frame["x_share"]],
            "95% interval": [
                interval(lo, hi) for lo, hi in zip(frame["x_low"], frame["x_high"], strict=True)
            ],
        }
    )


def position_bias_table(frame: pd.DataFrame, title: str) -> pd.DataFrame:
    """`stats.position_bias` for reading: how often the image on the left won."""
    scope = frame.columns[0]
    return pd.DataFrame(
        {
            title: frame[scope],
            "Left image won": frame["left_wins"],
            "Right image won": frame["right_wins"],
            "Ties": frame["ties"],
            "Left share": [percent(v) for v in frame["left_share"]],
            "95% interval": [
                interval(lo, hi)
                for lo, hi in zip(frame["left_low"], frame["left_high"], strict=True)
            ],
            "p (sign test)": [p_value(p) for p in frame["p_value"]],
        }
    )


def agreement_sentence(agreement: pd.DataFrame, annotators: int) -> str | None:
    """A sentence when agreement cannot be measured (one annotator, or no item judged twice);
    None when `stats.annotator_agreement` has something to show."""
    if annotators < 2:
        return (
            "One annotator has voted so far, so agreement between annotators cannot be "
            "measured yet: it needs image pairs judged by at least two people."
        )
    if agreement.empty or int(agreement["items"].iloc[0]) == 0:
        return (
            f"{annotators} annotators have voted, but no image pair has been judged by two of "
            "them yet, so agreement cannot be measured."
        )
    return None


def agreement_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """`stats.annotator_agreement` for reading (alpha to two decimals)."""
    return pd.DataFrame(
        {
            "Scope": agreement["scope"],
            "Pairs judged twice or more": agreement["items"],
            "Votes on them": agreement["votes"],
            "Krippendorff's alpha": [
                "–" if not math.isfinite(a) else f"{a:.2f}" for a in agreement["alpha"]
            ],
        }
    )


def leaderboard_table(board: pd.DataFrame) -> pd.DataFrame:
    """The Bradley-Terry leaderboard for reading: Elo and its interval in whole numbers."""
    return pd.DataFrame(
        {
            "Rank": board["rank"],
            "Variant": board["variant"],
            "Elo": np.round(board["elo"].astype(float)).astype("int64"),
            "95% interval": [
                f"{lo:.0f}–{hi:.0f}"
                for lo, hi in zip(board["elo_low"], board["elo_high"], strict=True)
            ],
            "Votes": board["votes"],
            "Wins": board["wins"],
            "Ties": board["ties"],
        }
    )


def own_results(votes: pd.DataFrame, annotator: str) -> pd.DataFrame:
    """The annotator's own tally (oriented as the pooled one): one row per set, each setting
    named beside its wins, with the set's winner and the table's verdict."""
    columns = [
        "Hyperparameter",
        "Set (組)",
        "Setting 1",
        "Setting 1 wins",
        "Setting 2",
        "Setting 2 wins",
        "Same",
        "Set winner",
        "Verdict",
    ]
    own = tally_by_annotator(votes).get(annotator) if len(votes) else None
    if own is None:
        return pd.DataFrame(columns=columns)
    rows = [
        {
            "Hyperparameter": group.group,
            "Set (組)": s.comparison,
            "Setting 1": side_label(group, "x"),
            "Setting 1 wins": s.x_wins,
            "Setting 2": side_label(group, "y"),
            "Setting 2 wins": s.y_wins,
            "Same": s.ties,
            "Set winner": "draw" if s.winner == "draw" else side_label(group, s.winner),
            "Verdict": verdict(group).replace("**", ""),
        }
        for group in own.groups
        for s in group.sets
    ]
    return pd.DataFrame(rows, columns=columns)


def reason_tag_table(votes: pd.DataFrame) -> pd.DataFrame:
    """Reason tags broken down per hyperparameter: how many votes carry each tag, their share of
    the group's votes, and how those votes went (a win, same, both bad). `votes` needs a `tags`
    column (`live_votes_frame(..., with_tags=True)`); empty when no vote has a tag."""
    columns = ["Hyperparameter", "Reason", "Votes", "Share of votes", "Wins", "Same", "Both bad"]
    if "tags" not in votes.columns or votes.empty:
        return pd.DataFrame(columns=columns)
    per_group = votes.groupby("group", observed=True).size()
    tagged = votes[["group", "choice", "tags"]].explode("tags").dropna(subset=["tags"])
    if tagged.empty:
        return pd.DataFrame(columns=columns)
    kind = tagged["choice"].astype(str).map({"tie": "Same", "both_bad": "Both bad"}).fillna("Wins")
    counts = (
        pd.crosstab([tagged["group"].astype(str), tagged["tags"]], kind)
        .reindex(columns=["Wins", "Same", "Both bad"], fill_value=0)
        .reset_index()
        .rename_axis(columns=None)
    )
    counts["Votes"] = counts[["Wins", "Same", "Both bad"]].sum(axis=1)
    counts["Share of votes"] = [
        percent(n / per_group[g]) for g, n in zip(counts["group"], counts["Votes"], strict=True)
    ]
    counts = counts.rename(columns={"group": "Hyperparameter", "tags": "Reason"})
    counts = counts.sort_values(["Hyperparameter", "Votes"], ascending=[True, False], kind="stable")
    return counts[columns].reset_index(drop=True)
