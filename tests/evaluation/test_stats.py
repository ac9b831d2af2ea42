"""Win shares, Wilson intervals, sign tests, breakdowns, position bias and Krippendorff's alpha."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from evaluation.stats import (
    annotator_agreement,
    breakdown,
    group_win_shares,
    krippendorff_alpha,
    position_bias,
    sign_test,
    wilson_interval,
)
from evaluation.tally import tally_votes


def set_votes(group, va, vb, sa, sb, outcomes, annotator="ann-1", lefts=None):
    """Votes on one comparison; vote i is item i; `lefts` says which side ('a'/'b') was left."""
    rows = []
    for i, outcome in enumerate(outcomes):
        left = va if (lefts[i] if lefts else "ab"[i % 2]) == "a" else vb
        winner = {"a": va, "b": vb, "tie": None}[outcome]
        rows.append(
            {
                "study": "s",
                "group": group,
                "comparison": f"{va} vs {vb}",
                "variant_a": va,
                "variant_b": vb,
                "a_setting": sa,
                "b_setting": sb,
                "prompt": f"prompt {i % 6}",
                "prompt_kind": "single" if i % 6 < 3 else "composed",
                "checkpoint": "epoch-8" if i < 6 else "epoch-10",
                "seed": i,
                "annotator": annotator,
                "left_variant": left,
                "choice": "tie" if winner is None else "left" if winner == left else "right",
                "shown_at": "2026-11-01T10:00:00Z",
                "voted_at": "2026-11-01T10:00:05Z",
            }
        )
    return rows


def frame(*row_lists):
    return pd.DataFrame([r for rows in row_lists for r in rows])


def test_wilson_interval_matches_hand_computed_values():
    """7 of 10: Wilson 95 % is [0.3968, 0.8922] (textbook value), as scipy's binomtest gives."""
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.39677, abs=1e-5)
    assert high == pytest.approx(0.89221, abs=1e-5)
    ci = sps.binomtest(7, 10).proportion_ci(method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    low0, high0 = wilson_interval(0, 0)
    assert np.isnan(low0) and np.isnan(high0)


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(9, 10, 2 * 11 / 1024), (5, 10, 1.0), (0, 6, 2 / 64), (12, 12, 2 / 4096)],
)
def test_sign_test_matches_hand_computed_p_values(k, n, p):
    """Two-sided exact binomial p-values: e.g. 9 of 10 gives 2 * (10 + 1) / 2^10."""
    assert sign_test(k, n)[0] == pytest.approx(p, rel=1e-9)


def test_group_win_shares_pool_points_and_flag_disagreement():
    """x wins sets 2:1 but y wins points 5:2: the shares say y, and `disagree` is set."""
    votes = frame(
        set_votes("vicinity", "v1", "v3", "2", "1", ["a", "tie"]),
        set_votes("vicinity", "v2", "v4", "2", "1", ["a"]),
        set_votes("vicinity", "v5", "v7", "2", "1", ["b"] * 5),
    )
    (row,) = group_win_shares(tally_votes(votes)).to_dict("records")
    assert (row["x_points"], row["y_points"], row["ties"]) == (2, 5, 1)
    assert (row["sets_winner"], row["points_winner"], row["winner"]) == ("x", "y", "x")
    assert row["disagree"]
    assert row["x_share"] == pytest.approx(2 / 7)
    assert row["y_share"] == pytest.approx(5 / 7)
    low, high = wilson_interval(2, 7)
    assert (row["x_low"], row["x_high"]) == pytest.approx((low, high))
    assert (row["y_low"], row["y_high"]) == pytest.approx((1 - high, 1 - low))
    assert row["p_value"] == pytest.approx(sps.binomtest(2, 7).pvalue)


def test_agreeing_winners_are_not_flagged():
    """A group won on sets and on points by the same side is not flagged."""
    votes = frame(set_votes("embed_dim", "v1", "v5", "2D", "D", ["a", "a", "b"]))
    (row,) = group_win_shares(tally_votes(votes)).to_dict("records")
    assert not row["disagree"]


def test_breakdown_by_prompt_kind_counts_from_the_x_side():
    """Items 0-2 are single, 3-5 composed; the swapped comparison's A wins count for y."""
    votes = frame(
        set_votes("mlp_dim", "v1", "v2", "2D", "D", ["a", "a", "tie", "b", "b", "a"]),
        set_votes("mlp_dim", "v4", "v3", "D", "2D", ["a", "b", "b", "a"]),
    )
    table = breakdown(votes, "prompt_kind").set_index("prompt_kind")
    # single: v1-v2 items 0-2 give x 2, tie 1; v4-v3 items 0-2 give y 1, x 2.
    assert table.loc["single", ["x_wins", "y_wins", "ties"]].tolist() == [4, 1, 1]
    # composed: v1-v2 items 3-5 give y 2, x 1; v4-v3 item 3 (A = y side) gives y 1.
    assert table.loc["composed", ["x_wins", "y_wins", "ties"]].tolist() == [1, 3, 0]
    assert table.loc["single", "x_share"] == pytest.approx(0.8)
    by_checkpoint = breakdown(votes, "checkpoint")
    assert by_checkpoint["x_wins"].sum() + by_checkpoint["y_wins"].sum() == 9


def test_position_bias_counts_left_wins_over_decisive_votes():
    """3 left wins, 1 right win, 2 ties: left share 0.75 of 4 decisive votes."""
    votes = frame(
        set_votes(
            "embed_dim",
            "v1",
            "v5",
            "2D",
            "D",
            ["a", "b", "a", "a", "tie", "tie"],
            lefts=["a", "b", "a", "b", "a", "b"],
        )
    )
    (row,) = position_bias(votes).to_dict("records")
    assert (row["left_wins"], row["right_wins"], row["ties"]) == (3, 1, 2)
    assert row["left_share"] == pytest.approx(0.75)
    assert (row["left_low"], row["left_high"]) == pytest.approx(wilson_interval(3, 4))
    assert row["p_value"] == pytest.approx(0.625)
    per_annotator = position_bias(votes, by="annotator")
    assert per_annotator["annotator"].tolist() == ["ann-1"]


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 observers x 12 units
# example with missing values (None). Published: nominal 0.743, ordinal 0.815, interval 0.849.
RELIABILITY_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def textbook_counts():
    counts = np.zeros((12, 5))
    for observer in RELIABILITY_DATA:
        for unit, value in enumerate(observer):
            if value is not None:
                counts[unit, value - 1] += 1
    return counts


@pytest.mark.parametrize(
    ("metric", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_alpha_matches_the_textbook_example(metric, published):
    """Krippendorff's own worked example gives his published alphas to 3 decimals."""
    assert krippendorff_alpha(textbook_counts(), metric) == pytest.approx(published, abs=5e-4)


def test_agreement_is_about_the_images_not_the_screen_side():
    """Two annotators who prefer the same image shown on opposite sides agree perfectly."""
    outcomes = ["a", "b", "tie", "a", "b", "a"]
    votes = frame(
        set_votes("embed_dim", "v1", "v5", "2D", "D", outcomes, "ann-1", lefts=list("aaaaaa")),
        set_votes("embed_dim", "v1", "v5", "2D", "D", outcomes, "ann-2", lefts=list("bbbbbb")),
    )
    screen = votes["choice"].to_numpy()
    assert (screen[:6] != screen[6:]).sum() == 5  # every decisive item clicked on opposite sides
    table = annotator_agreement(votes).set_index("scope")
    assert table.loc["all", "items"] == 6 and table.loc["all", "votes"] == 12
    assert table.loc["all", "alpha"] == pytest.approx(1.0)
    assert table.loc["embed_dim", "alpha"] == pytest.approx(1.0)


def test_disagreeing_annotators_get_alpha_below_zero():
    """Opposite preferences on every item give a negative alpha; singly judged items are ignored."""
    votes = frame(
        set_votes("embed_dim", "v1", "v5", "2D", "D", ["a", "b", "a", "b"], "ann-1"),
        set_votes("embed_dim", "v1", "v5", "2D", "D", ["b", "a", "b", "a", "a"], "ann-2"),
    )
    (row,) = annotator_agreement(votes, metric="nominal").query("scope == 'all'").to_dict("records")
    assert row["items"] == 4
    assert row["alpha"] < 0
