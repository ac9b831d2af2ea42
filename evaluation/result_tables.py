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


def wrap_label(name: str, width: int = 22) -> str:
    """A long variant name broken after '-', '_' or ' ' into lines of about `width` characters
    (never cut: two names never wrap to the same text)."""
    lines, line = [], ""
    for piece in (
        name.replace("-", "-\x00").replace("_", "_\x00").replace(" ", " \x00").split("\x00")
    ):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return "\n".join([*lines, line])


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
    """One row per hyperparameter: the winning setting ("embed_dim = 2D", or "embed_dim: draw"),
    what decided it, and the winner's share of the decisive votes with its 95% interval
    (`shares`: `stats.group_win_shares(tally)`). Four narrow columns, to read on a phone."""
    by_group = shares.set_index("group")
    rows = []
    for g in tally.groups:
        row = by_group.loc[g.group]
        side = "y" if g.winner == "y" else "x"
        rows.append(
            {
                "Winner": f"{g.group}: draw" if g.winner == "draw" else side_label(g, g.winner),
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


# -- decision board, voter checks, tie rates (frames of evaluation.decisions / voter_checks) --

STATUS_LABEL = {
    "decided": "● decided",
    "equivalent": "● equivalent",
    "capped": "● capped",
    "open": "○ open",
    "settled": "● settled",
}
STATUS_COLOUR = {  # background, text: green = done, blue = no difference, amber = capped
    "● decided": ("#d3f2dc", "#14532d"),
    "● equivalent": ("#dbeafe", "#1e3a8a"),
    "● capped": ("#fde9c8", "#7c4a03"),
    "○ open": ("#f1f1f1", "#444444"),
    "● settled": ("#d3f2dc", "#14532d"),
}
VOTES_NEEDED_CAVEAT = (
    "Votes needed: how many more votes until the comparison is decided or equivalent, if the "
    "leader's current share continues (– when there are fewer than 6 decisive votes). Caveat: "
    "votes on the same prompt are not independent; the e-value treats them as exchangeable. "
    "The group's stability, which resamples whole prompts, is the check on that."
)


def e_value_text(e: float) -> str:
    """Two significant figures; very large values as a power of ten."""
    if not math.isfinite(e) or e >= 1e6:
        return f"> 10^{int(math.log10(e))}" if math.isfinite(e) else "> 10^300"
    return f"{e:.2g}" if e < 100 else f"{e:.0f}"


def _group_name(group: str) -> str:
    return group.split(":")[0]


def board_comparisons_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """`DecisionBoard.comparisons` for reading: status first, the leading variant by name, the
    leader's wins against the other side's and the ties ("6–2, 4"), the e-value and the votes
    still needed."""
    rows = []
    for r in comparisons.itertuples(index=False):
        leader = r.leader if isinstance(r.leader, str) else None
        lead, trail = (r.y_wins, r.x_wins) if leader == "y" else (r.x_wins, r.y_wins)
        rows.append(
            {
                "Status": STATUS_LABEL.get(str(r.status), str(r.status)),
                "Hyperparameter": _group_name(str(r.group)),
                "Comparison": f"{r.x_variant} vs {r.y_variant}",
                "Leader": {"x": r.x_variant, "y": r.y_variant}.get(leader, "level"),
                "Wins, ties": f"{lead}–{trail}, {int(r.ties)}",
                "e-value": e_value_text(float(r.e_value)),
                "Votes needed": "–" if pd.isna(r.votes_needed) else str(int(r.votes_needed)),
            }
        )
    columns = ["Status", "Hyperparameter", "Comparison", "Leader", "Wins, ties", "e-value"]
    return pd.DataFrame(rows, columns=[*columns, "Votes needed"])


def board_groups_table(groups: pd.DataFrame) -> pd.DataFrame:
    """`DecisionBoard.groups` for reading: the verdict by setting, what decided it, stability as
    a percentage, fragility as a sentence, and settled / open."""
    rows = []
    for r in groups.itertuples(index=False):
        name = _group_name(str(r.group))
        winner = {"x": f"{name} = {r.x}", "y": f"{name} = {r.y}"}.get(str(r.winner), "draw")
        n = int(r.fragility)
        rows.append(
            {
                "Status": STATUS_LABEL.get(str(r.status), str(r.status)),
                "Hyperparameter": str(r.group),
                "Verdict": winner,
                "Decided by": {"sets": "sets won", "points": "points"}.get(str(r.decided_by), "–"),
                "Stability": percent(float(r.stability)),
                "Robustness": (
                    "no decisive vote yet"
                    if n == 0
                    else f"changes if {n} vote{' is' if n == 1 else 's are'} removed"
                ),
            }
        )
    columns = ["Status", "Hyperparameter", "Verdict", "Decided by", "Stability", "Robustness"]
    return pd.DataFrame(rows, columns=columns)


def study_state_sentence(settled: int, open_: int, votes_needed: int | None) -> str:
    """'5 of 6 comparisons settled, 1 open: about 14 more votes needed.'"""
    total = settled + open_
    if open_ == 0:
        return f"All {total} comparisons are settled: further votes change nothing."
    needed = (
        f"about {votes_needed} more votes needed"
        if votes_needed is not None
        else "too few votes yet to estimate how many more are needed"
    )
    return f"{settled} of {total} comparisons settled, {open_} open: {needed}."


def voter_checks_table(checks: pd.DataFrame, excluded: set[str]) -> pd.DataFrame:
    """`voter_checks.voter_checks` for reading, with whether each annotator is excluded."""

    def share(value: float, n: int | None = None) -> str:
        text = percent(value)
        return text if n is None or text == "–" else f"{text} of {n}"

    return pd.DataFrame(
        {
            "Annotator": checks["annotator"],
            "Votes": checks["votes"],
            "Agrees with the others": [
                share(v, n)
                for v, n in zip(checks["agreement_loo"], checks["shared_items"], strict=True)
            ],
            "Consistent on repeats": [
                share(v, n)
                for v, n in zip(checks["qc_consistency"], checks["qc_votes"], strict=True)
            ],
            "Left image chosen": [percent(v) for v in checks["left_share"]],
            "Median seconds": [
                "–" if not math.isfinite(v) else f"{v:.1f}" for v in checks["median_seconds"]
            ],
            "Outlier score": [
                "–" if not math.isfinite(v) else f"{v:.3g}" for v in checks["outlier_score"]
            ],
            "Flag": ["outlier (> 20)" if f else "" for f in checks["flagged"]],
            "Excluded": ["yes" if a in excluded else "" for a in checks["annotator"]],
        }
    )


def tie_kind_table(by_kind: pd.DataFrame) -> pd.DataFrame:
    """`voter_checks.tie_rates` by kind for reading."""
    return pd.DataFrame(
        {
            "Tie kind": by_kind["kind"].map({"tie": "same", "both_bad": "both bad"}),
            "Votes": by_kind["votes"],
            "Share of all votes": [percent(v) for v in by_kind["share"]],
        }
    )


def tie_prompt_table(by_prompt: pd.DataFrame) -> pd.DataFrame:
    """`voter_checks.tie_rates` per prompt for reading; prompts that do not discriminate first."""
    frame = pd.DataFrame(
        {
            "Prompt": by_prompt["prompt"],
            "Votes": by_prompt["votes"],
            "Same": by_prompt["tie"],
            "Both bad": by_prompt["both_bad"],
            "Tie share": [percent(v) for v in by_prompt["tie_share"]],
            "Mostly ties": ["yes" if f else "" for f in by_prompt["mostly_ties"]],
            "_order": -by_prompt["tie_share"].astype(float),
        }
    )
    return frame.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
