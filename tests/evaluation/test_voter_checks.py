"""Checks on annotators and tie rates (evaluation.voter_checks)."""

import numpy as np
import pandas as pd
import pytest

from evaluation.voter_checks import VOTER_CHECK_COLUMNS, tie_rates, voter_checks

T0 = pd.Timestamp("2026-12-01 10:00", tz="UTC")


def vote(annotator, prompt, winner, left="v1", qc=None, seconds=3.0, seed=0):
    """One vote on 'v1 vs v2': winner 'v1', 'v2', 'tie' or 'both_bad'; `left` is shown left."""
    if winner in ("tie", "both_bad"):
        choice = winner
    else:
        choice = "left" if winner == left else "right"
    return {
        "study": "s",
        "group": "g",
        "comparison": "v1 vs v2",
        "variant_a": "v1",
        "variant_b": "v2",
        "a_setting": "a",
        "b_setting": "b",
        "prompt": prompt,
        "prompt_kind": "single",
        "checkpoint": "e8",
        "seed": seed,
        "annotator": annotator,
        "left_variant": left,
        "choice": choice,
        "shown_at": T0,
        "voted_at": T0 + pd.Timedelta(seconds=seconds),
        "qc_kind": qc,
    }


def checks_by_annotator(rows):
    return voter_checks(pd.DataFrame(rows)).set_index("annotator")


def test_agreement_with_the_leave_one_out_plurality():
    """Three annotators who agree score 1; the one who always differs scores 0."""
    prompts = ["p1", "p2", "p3", "p4"]
    rows = [vote(a, p, "v1") for a in ("a1", "a2", "a3") for p in prompts]
    rows += [vote("a4", p, "v2") for p in prompts]
    table = checks_by_annotator(rows)
    assert list(table.reset_index().columns) == list(VOTER_CHECK_COLUMNS)
    assert table.loc[["a1", "a2", "a3"], "agreement_loo"].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["a4", "agreement_loo"] == 0.0
    assert table.loc["a4", "shared_items"] == 4


def test_items_without_a_clear_plurality_are_not_shared():
    """With one other voter who disagrees, or others split 1:1, the item does not count."""
    rows = [vote("a1", "p1", "v1"), vote("a2", "p1", "v2"), vote("a3", "p1", "tie")]
    table = checks_by_annotator(rows)
    assert table["shared_items"].tolist() == [0, 0, 0]
    assert table["agreement_loo"].isna().all()


def test_qc_consistency_compares_the_repeat_with_the_original_vote():
    """A repeat shown with sides swapped is consistent when the same variant (or a tie) wins."""
    rows = [vote(a, p, "v1", left="v1") for a in ("steady", "fickle") for p in ("p1", "p2")]
    rows += [
        vote("steady", "p1", "v1", left="v2", qc="swapped_repeat"),
        vote("steady", "p2", "v1", left="v2", qc="swapped_repeat"),
        vote("fickle", "p1", "v2", left="v2", qc="swapped_repeat"),  # clicked left again
        vote("fickle", "p2", "v1", left="v2", qc="swapped_repeat"),
    ]
    table = checks_by_annotator(rows)
    assert table.loc["steady", "qc_consistency"] == 1.0
    assert table.loc["fickle", "qc_consistency"] == 0.5
    assert table.loc["fickle", "qc_votes"] == 2
    assert table.loc["fickle", "votes"] == 2  # repeats are not regular votes


def test_position_bias_and_median_time():
    """An annotator who always clicks left has left_share 1; ties do not count; median time."""
    rows = [
        vote("lefty", "p1", "v1", left="v1", seconds=2),
        vote("lefty", "p2", "v2", left="v2", seconds=4),
        vote("lefty", "p3", "tie", seconds=30),
        vote("fair", "p1", "v1", left="v1", seconds=1),
        vote("fair", "p2", "v1", left="v2", seconds=1),
    ]
    table = checks_by_annotator(rows)
    assert table.loc["lefty", "left_share"] == 1.0
    assert table.loc["fair", "left_share"] == 0.5
    assert table.loc["lefty", "median_seconds"] == 4.0


def test_outlier_test_flags_an_annotator_against_a_consensus():
    """Four annotators agree on six items of a comparison; a fifth always disagrees: against
    the others' 24 votes each of theirs has p = 1/25 (factor 12.5), so the score is 12.5^6 > 20
    and they are flagged; the others' votes have p = 1 (factor 0.5) and are not."""
    prompts = [f"p{k}" for k in range(6)]
    rows = [vote(a, p, "v1") for a in ("a1", "a2", "a3", "a4") for p in prompts]
    rows += [vote("odd", p, "v2") for p in prompts]
    table = checks_by_annotator(rows)
    assert table.loc["odd", "outlier_score"] == pytest.approx(12.5**6)
    assert table.loc["odd", "flagged"]
    assert table.loc["a1", "outlier_score"] == pytest.approx(0.5**6)
    assert not table.loc[["a1", "a2", "a3", "a4"], "flagged"].any()


def test_no_outlier_score_under_five_votes():
    """An annotator with four contrary votes gets no score and is not flagged."""
    prompts = [f"p{k}" for k in range(4)]
    rows = [vote(a, p, "v1") for a in ("a1", "a2", "a3", "a4") for p in prompts]
    rows += [vote("odd", p, "v2") for p in prompts]
    table = checks_by_annotator(rows)
    assert np.isnan(table.loc["odd", "outlier_score"])
    assert not table.loc["odd", "flagged"]


def test_tie_rates_by_kind_and_prompt():
    """Ties and both-bad are counted apart; a prompt where most votes are ties is flagged."""
    rows = [
        vote("a1", "cat", "tie"),
        vote("a2", "cat", "both_bad"),
        vote("a3", "cat", "v1"),
        vote("a1", "dog", "v1"),
        vote("a2", "dog", "v2"),
        vote("a3", "dog", "tie"),
        vote("a3", "dog", "tie", qc="swapped_repeat"),  # repeats are left out
    ]
    by_kind, by_prompt = tie_rates(pd.DataFrame(rows))
    assert by_kind.set_index("kind")["votes"].to_dict() == {"tie": 2, "both_bad": 1}
    assert by_kind["share"].tolist() == pytest.approx([2 / 6, 1 / 6])
    table = by_prompt.set_index("prompt")
    assert table.loc["cat", ["votes", "tie", "both_bad"]].tolist() == [3, 1, 1]
    assert table.loc["cat", "mostly_ties"] and not table.loc["dog", "mostly_ties"]
    assert table.loc["dog", "tie_share"] == pytest.approx(1 / 3)
