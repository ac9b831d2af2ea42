"""The decision board (evaluation.decisions): e-values, statuses, votes still needed, stability,
fragility, as docs/decision-rules.md fixes them."""

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.decisions import (
    COMPARISON_COLUMNS,
    DecisionSettings,
    comparison_status,
    decide,
    e_value,
    fragility,
    votes_needed,
)


def votes_frame(rows):
    """An interchange frame from (group, comparison, a, b, a_setting, b_setting, prompt, choice)
    rows; A is always shown on the left, so 'left' is a vote for variant_a."""
    records = []
    for i, (group, comparison, a, b, a_set, b_set, prompt, choice) in enumerate(rows):
        records.append(
            {
                "study": "s",
                "group": group,
                "comparison": comparison,
                "variant_a": a,
                "variant_b": b,
                "a_setting": a_set,
                "b_setting": b_set,
                "prompt": prompt,
                "prompt_kind": "single",
                "checkpoint": "epoch-8",
                "seed": i,
                "annotator": "ann",
                "left_variant": a,
                "choice": choice,
                "shown_at": None,
                "voted_at": None,
            }
        )
    return pd.DataFrame(records)


def comparison_votes(x_wins, y_wins, ties=0, group="g", comparison="v1 vs v2", prompts=("p",)):
    """Rows of one comparison v1 (setting 'a') vs v2 (setting 'b'), prompts used in turn."""
    choices = ["left"] * x_wins + ["right"] * y_wins + ["tie"] * ties
    a, b = comparison.split(" vs ")
    return [
        (group, comparison, a, b, "a", "b", prompts[i % len(prompts)], c)
        for i, c in enumerate(choices)
    ]


# --- e-values and statuses -------------------------------------------------------------------


def test_e_value_is_the_closed_form():
    """E(n, k) = 2^n / ((n + 1) C(n, k)): hand-worked values, and symmetric in the sides."""
    assert e_value(20, 17) == pytest.approx(2**20 / (21 * math.comb(20, 17)))
    assert e_value(20, 17) == pytest.approx(43.80016708)
    assert e_value(0, 0) == pytest.approx(1.0)
    assert e_value(10, 5) == pytest.approx(2**10 / (11 * 252))
    assert e_value(30, 6) == pytest.approx(e_value(30, 24))


@pytest.mark.parametrize(
    ("x", "y", "status"),
    [
        (17, 3, "decided"),
        (16, 4, "open"),
        (24, 6, "decided"),
        (23, 7, "open"),
        (30, 10, "decided"),
        (42, 18, "decided"),
        (41, 19, "open"),
        (66, 34, "decided"),
        (65, 35, "open"),
        (3, 17, "decided"),  # the y side may lead
    ],
)
def test_decided_exactly_at_the_documented_thresholds(x, y, status):
    """At alpha 0.05 a comparison is decided at 17/20, 24/30, 30/40, 42/60, 66/100, not one less."""
    assert comparison_status(x, y, 0)[0] == status


def test_alpha_moves_the_threshold():
    """A looser alpha (0.1: threshold 10) decides 16 of 20; a stricter one (0.01) not 17 of 20."""
    assert comparison_status(16, 4, 0, DecisionSettings(alpha=0.1))[0] == "decided"
    assert comparison_status(17, 3, 0, DecisionSettings(alpha=0.01))[0] == "open"


@pytest.mark.parametrize(
    ("x", "y", "delta", "status"),
    [
        (80, 80, 0.1, "equivalent"),  # 99 % Wilson [0.4002, 0.5998] inside [0.4, 0.6]
        (79, 79, 0.1, "open"),  # just outside
        (90, 90, 0.05, "open"),  # a tighter margin needs more votes
        (5, 4, 0.45, "open"),  # under 10 decisive votes never equivalent
        (5, 5, 0.35, "equivalent"),  # [0.184, 0.816] inside [0.15, 0.85] with 10 votes
    ],
)
def test_equivalent_when_the_99_percent_interval_sits_inside_the_margin(x, y, delta, status):
    """Equivalent needs n >= 10 and the 99 % Wilson interval inside 0.5 +/- delta."""
    assert comparison_status(x, y, 0, DecisionSettings(delta=delta))[0] == status


def test_equivalence_uses_the_wilson_interval_of_stats():
    """The equivalence check agrees with evaluation.stats.wilson_interval at 99 % on a grid."""
    from evaluation.decisions import _inside_margin
    from evaluation.stats import wilson_interval

    n = np.repeat(np.arange(10, 400, 7), 5)
    k = (n * np.tile([0.4, 0.45, 0.5, 0.55, 0.6], len(n) // 5)).round()
    low, high = wilson_interval(k, n, 0.99)
    expected = (low >= 0.4) & (high <= 0.6)
    assert expected.any() and not expected.all()
    assert (_inside_margin(k, n, 0.1) == expected).all()


def test_ties_do_not_count_towards_decisions():
    """A comparison with 17 wins, 3 losses and 30 ties is decided as with none."""
    assert comparison_status(17, 3, 30)[0] == "decided"
    assert comparison_status(16, 4, 30)[0] == "open"


def test_capped_after_decided_and_equivalent():
    """The cap counts every live vote (ties too) and applies only to otherwise open comparisons."""
    cap = DecisionSettings(vote_cap=20)
    assert list(comparison_status([8, 17, 8], [8, 3, 7], [4, 0, 4], cap)) == [
        "capped",
        "decided",
        "open",
    ]


# --- votes still needed ----------------------------------------------------------------------


def brute_force_needed(x, y, t, alpha=0.05, delta=0.1):
    """decision-rules.md's rule written out with math.lgamma, one m at a time."""
    n, k = x + y, max(x, y)
    q = k / n
    paths = []
    if q != 0.5:
        m = 0
        while True:
            total = n + m
            log_e = (
                total * math.log(2)
                + math.lgamma(q * total + 1)
                + math.lgamma(total - q * total + 1)
                - math.lgamma(total + 2)
            )
            if log_e >= math.log(1 / alpha):
                paths.append(m)
                break
            m += 1
    if abs(q - 0.5) < delta:
        z = 2.5758293035489004
        m = max(0, 10 - n)
        while True:
            total = n + m
            centre = (q + z * z / (2 * total)) / (1 + z * z / total)
            half = z / (1 + z * z / total) * math.sqrt(q * (1 - q) / total + z * z / (4 * total**2))
            if centre - half >= 0.5 - delta and centre + half <= 0.5 + delta:
                paths.append(m)
                break
            m += 1
    return math.ceil(min(paths) * (n + t) / n)


@pytest.mark.parametrize(
    ("x", "y", "t"), [(4, 2, 0), (8, 2, 0), (8, 2, 5), (12, 10, 3), (30, 30, 0), (7, 5, 1)]
)
def test_votes_needed_follows_the_rule(x, y, t):
    """The estimate is the rule's: the nearer of the paths to decided and to equivalent at the
    current share, scaled up for ties."""
    assert votes_needed(x, y, t)[0] == brute_force_needed(x, y, t)


def test_votes_needed_hand_worked():
    """8 of 10 for the leader: decided at 24 decisive votes (19.2 for the leader), so 14 more;
    with 5 ties among 15 votes that is ceil(14 * 15 / 10) = 21 votes."""
    assert votes_needed(8, 2, 0)[0] == 14
    assert votes_needed(8, 2, 5)[0] == 21


def test_votes_needed_none_when_unknown_or_settled():
    """None under 6 decisive votes, for settled comparisons, when no path applies (share 1/2 with
    a zero margin) and when the estimate exceeds 10,000."""
    result = votes_needed([3, 17, 40, 51], [2, 3, 40, 49], [0, 0, 0, 0], DecisionSettings(delta=0))
    assert result.isna().all()


# --- fragility -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([5], [0], 5),  # one set: remove all five x wins to reach a draw
        ([5], [2], 3),  # 5:2 -> 2:2 is a draw
        # sets x, x, y (2:1): making set 2 (3:1) a y-win costs 3; levelling it costs 2 but the
        # points (8:3) then still go to x unless 5 x votes go in all.
        ([5, 3, 0], [0, 1, 2], 3),
        # sets level 1:1, points 10:4 decide for x: levelling the points (6 x votes) is cheaper
        # than turning the 10:1 set (9 or 10).
        ([10, 0], [1, 3], 6),
        # sets level 2:2, points 32:12 decide for x: levelling the 2:1 set (one vote) gives y
        # the sets, far cheaper than the 20 that level the points.
        ([30, 2, 0, 0], [1, 1, 5, 5], 1),
        # points decide: sets 1:1, points 12:11. One x vote fewer in the big x set levels
        # the points (a draw).
        ([12, 0], [1, 10], 1),
        ([1, 1], [1, 1], 1),  # a draw changes with one vote
        ([0], [0], 0),  # no decisive vote: nothing to remove
        ([0, 4], [6, 0], 2),  # sets level, y on points 4:6: two y votes fewer level them
    ],
)
def test_fragility_is_the_fewest_removals_that_change_the_verdict(x, y, expected):
    """Exact fewest votes to remove, whether the change comes from the sets or from the points."""
    assert fragility(x, y) == expected


def test_fragility_matches_exhaustive_search():
    """On small random groups, the programme agrees with trying every removal."""
    rng = np.random.default_rng(0)

    def verdict(x, y):
        d = np.asarray(x) - np.asarray(y)
        sets = np.sign(d).sum()
        return np.sign(sets) if sets else np.sign(d.sum())

    for _ in range(60):
        sets = int(rng.integers(1, 4))
        x = rng.integers(0, 4, sets)
        y = rng.integers(0, 4, sets)
        base = verdict(x, y)
        best = None
        ranges = [range(v + 1) for v in (*x, *y)]
        for removal in np.array(np.meshgrid(*ranges)).reshape(2 * sets, -1).T:
            if verdict(x - removal[:sets], y - removal[sets:]) != base:
                cost = int(removal.sum())
                best = cost if best is None else min(best, cost)
        assert fragility(x, y) == (best or 0), (x, y)


# --- the board -------------------------------------------------------------------------------


def test_board_sides_and_names_follow_the_tally():
    """x is the group's first a_setting; a reversed comparison is read swapped; three values of
    a hyperparameter give '<group>: <x> vs <y>' entries."""
    rows = [
        ("h", "v1 vs v2", "v1", "v2", "2D", "D", "p", "left"),
        ("h", "v3 vs v4", "v3", "v4", "D", "2D", "p", "left"),  # D's variant wins: y
        ("k", "v1 vs v5", "v1", "v5", "1", "2", "p", "right"),
        ("k", "v5 vs v6", "v5", "v6", "2", "3", "p", "left"),
    ]
    board = decide(votes_frame(rows), rounds=50)
    c = board.comparisons
    assert list(c.columns) == list(COMPARISON_COLUMNS)
    assert list(c["group"]) == ["h", "h", "k: 1 vs 2", "k: 2 vs 3"]
    assert list(c["x_variant"]) == ["v1", "v4", "v1", "v5"]
    assert list(c["x_wins"]) == [1, 0, 0, 1]
    assert list(c["y_wins"]) == [0, 1, 1, 0]
    assert list(c["leader"]) == ["x", "y", "y", "x"]
    g = board.groups
    assert list(g["group"]) == ["h", "k: 1 vs 2", "k: 2 vs 3"]
    assert list(zip(g["x"], g["y"], strict=True)) == [("2D", "D"), ("1", "2"), ("2", "3")]
    assert list(g["winner"]) == ["draw", "y", "x"]


def test_leader_is_none_when_level():
    """A level comparison has no leader and an e-value below 1."""
    board = decide(votes_frame(comparison_votes(3, 3, ties=2)), rounds=20)
    row = board.comparisons.iloc[0]
    assert row["leader"] is None
    assert row["e_value"] == pytest.approx(e_value(6, 3))
    assert board.to_json()["comparisons"][0]["leader"] is None


def test_group_settled_when_sets_settled_and_verdict_stable():
    """Every set decided and the verdict holding in every prompt resample: settled; one open
    set: open."""
    prompts = ("p1", "p2", "p3", "p4")
    decided = comparison_votes(20, 0, prompts=prompts)
    board = decide(votes_frame(decided), rounds=200)
    assert board.groups.iloc[0]["stability"] == 1.0
    assert board.groups.iloc[0]["status"] == "settled"
    more = decided + comparison_votes(3, 2, comparison="v3 vs v4", prompts=prompts)
    assert decide(votes_frame(more), rounds=200).groups.iloc[0]["status"] == "open"


def test_stability_resamples_whole_prompts_and_is_seeded():
    """A verdict carried by one prompt of three is unstable; the same seed gives the same share."""
    rows = comparison_votes(9, 0, prompts=("p1",)) + comparison_votes(0, 4, prompts=("p2", "p3"))
    frame = votes_frame(rows)
    first = decide(frame, seed=3, rounds=500).groups.iloc[0]["stability"]
    assert decide(frame, seed=3, rounds=500).groups.iloc[0]["stability"] == first
    assert 0.3 < first < 0.95  # x wins only in resamples holding p1 often enough


def test_summary_counts_settled_open_and_votes_needed():
    """Settled = no longer served; the study's votes needed is the sum over open comparisons,
    None when one of them has no estimate yet."""
    rows = comparison_votes(17, 3) + comparison_votes(8, 2, comparison="v3 vs v4")
    state = decide(votes_frame(rows), rounds=20).summary()
    assert (state.settled, state.open, state.votes_needed) == (1, 1, 14)
    rows += comparison_votes(1, 1, comparison="v5 vs v6")
    assert decide(votes_frame(rows), rounds=20).summary().votes_needed is None


def test_cli_settings_reject_bad_values():
    """alpha outside (0, 1) and delta outside [0, 0.5) are refused, naming the field."""
    with pytest.raises(ValueError, match="alpha"):
        DecisionSettings(alpha=1.5)
    with pytest.raises(ValueError, match="delta"):
        DecisionSettings(delta=0.7)


def test_huge_e_values_stay_finite_json():
    """Thousands of one-sided votes give an e-value beyond float range: reported as ~1e300,
    so the JSON stays valid (no Infinity)."""
    import json

    board = decide(votes_frame(comparison_votes(3000, 0)), rounds=10)
    value = board.to_json()["comparisons"][0]["e_value"]
    assert 1e299 < value < float("inf")
    json.dumps(board.to_json(), allow_nan=False)
