"""Bradley-Terry leaderboard: known strengths recovered, intervals over whole prompts, seeded."""

import choix
import numpy as np
import pandas as pd
import pytest

from evaluation.ranking import aggregate_pairs, bootstrap_leaderboard, fit_bradley_terry

TRUE_STRENGTH = {"alpha": 1.0, "beta": 0.5, "gamma": 0.0, "delta": -0.5, "epsilon": -1.0}


def synthetic_votes(strength, n_prompts=30, votes_per_pair=40, seed=0, tie_rate=0.0):
    """Every pair of variants on every prompt, outcomes drawn from the Bradley-Terry model."""
    rng = np.random.default_rng(seed)
    names = list(strength)
    rows = []
    for p in range(n_prompts):
        for i, va in enumerate(names):
            for vb in names[i + 1 :]:
                p_a = 1 / (1 + np.exp(strength[vb] - strength[va]))
                for k in range(votes_per_pair):
                    left = va if k % 2 == 0 else vb
                    if rng.random() < tie_rate:
                        choice = "tie"
                    else:
                        winner = va if rng.random() < p_a else vb
                        choice = "left" if winner == left else "right"
                    rows.append(
                        {
                            "study": "s",
                            "group": "g",
                            "comparison": f"{va} vs {vb}",
                            "variant_a": va,
                            "variant_b": vb,
                            "a_setting": va,
                            "b_setting": vb,
                            "prompt": f"prompt {p}",
                            "prompt_kind": "single",
                            "checkpoint": "epoch-8",
                            "seed": k,
                            "annotator": "ann",
                            "left_variant": left,
                            "choice": choice,
                            "shown_at": "",
                            "voted_at": "",
                        }
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def known_votes():
    return synthetic_votes(TRUE_STRENGTH)


def test_known_order_is_recovered_and_intervals_cover_the_truth(known_votes):
    """Votes drawn from known strengths: the order comes back, each 95 % interval covers truth."""
    board = bootstrap_leaderboard(known_votes, rounds=200, seed=7)
    table = board.table.set_index("variant")
    assert list(board.table["variant"]) == list(TRUE_STRENGTH)
    assert list(board.table["rank"]) == [1, 2, 3, 4, 5]
    truth = pd.Series(TRUE_STRENGTH)  # already mean 0
    assert ((table["low"] <= truth) & (truth <= table["high"])).all()
    assert (table["high"] - table["low"] < 0.5).all()
    assert table["log_strength"].sum() == pytest.approx(0.0, abs=1e-9)
    assert table["elo"].to_numpy() == pytest.approx(
        1000 + 400 / np.log(10) * table["log_strength"].to_numpy()
    )


def test_fit_agrees_with_choix(known_votes):
    """Our Newton fit and choix's maximum likelihood give the same strengths."""
    pairs = aggregate_pairs(known_votes)
    wins = pairs.wins.sum(axis=0)
    ours = fit_bradley_terry(wins, prior=1e-6)
    data = [
        (i, j)
        for i in range(len(pairs.variants))
        for j in range(len(pairs.variants))
        for _ in range(int(wins[i, j]))
    ]
    theirs = choix.ilsr_pairwise(len(pairs.variants), data, alpha=1e-6)
    assert ours == pytest.approx(theirs - theirs.mean(), abs=1e-4)


def test_ties_count_half_a_win_each_way():
    """A beats B 3 times, B beats A once, 2 ties: 4 vs 2 effective wins, gap log 2."""
    outcomes = ["a", "a", "a", "b", "tie", "tie"]
    votes = pd.DataFrame(
        [
            {
                "study": "s",
                "group": "g",
                "comparison": "A vs B",
                "variant_a": "A",
                "variant_b": "B",
                "a_setting": "1",
                "b_setting": "2",
                "prompt": "p",
                "prompt_kind": "single",
                "checkpoint": "c",
                "seed": i,
                "annotator": "ann",
                "left_variant": "A",
                "choice": {"a": "left", "b": "right", "tie": "tie"}[o],
                "shown_at": "",
                "voted_at": "",
            }
            for i, o in enumerate(outcomes)
        ]
    )
    pairs = aggregate_pairs(votes)
    assert pairs.variants == ["A", "B"]
    assert pairs.wins[0].tolist() == [[0.0, 4.0], [2.0, 0.0]]
    score = fit_bradley_terry(pairs.wins.sum(axis=0), prior=1e-9)
    assert score[0] - score[1] == pytest.approx(np.log(2), abs=1e-6)
    table = bootstrap_leaderboard(votes, rounds=5).table.set_index("variant")
    assert table.loc["A", ["votes", "wins", "ties"]].tolist() == [6, 3, 2]


def test_bootstrap_resamples_whole_prompts():
    """A wins every vote on one prompt, B on the other: intervals are wide, not vote-level tight."""
    on_p0 = synthetic_votes({"A": 5.0, "B": -5.0}, n_prompts=1, votes_per_pair=200, seed=1)
    on_p1 = synthetic_votes({"A": -5.0, "B": 5.0}, n_prompts=1, votes_per_pair=200, seed=2)
    on_p1["prompt"] = "prompt 1"
    board = bootstrap_leaderboard(pd.concat([on_p0, on_p1], ignore_index=True), rounds=200, seed=0)
    table = board.table.set_index("variant")
    assert abs(table.loc["A", "log_strength"]) < 0.2  # pooled, they are even
    assert (table["high"] - table["low"] > 4).all()  # a prompt drawn twice decides it


def test_bootstrap_is_reproducible_from_its_seed(known_votes):
    """The seed is returned; the same seed gives the same intervals, another seed other ones."""
    first = bootstrap_leaderboard(known_votes, rounds=50, seed=3)
    again = bootstrap_leaderboard(known_votes, rounds=50, seed=first.seed)
    other = bootstrap_leaderboard(known_votes, rounds=50, seed=4)
    assert (first.seed, first.rounds, first.resample_unit) == (3, 50, "prompt")
    pd.testing.assert_frame_equal(first.table, again.table)
    assert not np.allclose(first.table["low"], other.table["low"])


def test_unbeaten_variant_and_disconnected_graph_stay_finite():
    """A variant that never lost, or a pair never compared with the rest, still gets a score."""
    wins = np.array(
        [
            [0.0, 5.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 2.0],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )
    score = fit_bradley_terry(wins)
    assert np.isfinite(score).all()
    assert score[0] > score[1] and score[2] > score[3]


def test_no_votes_give_an_empty_leaderboard(known_votes):
    """A study without votes yet gets an empty table, not an error."""
    board = bootstrap_leaderboard(known_votes.iloc[:0], rounds=10, seed=1)
    assert board.table.empty and board.seed == 1
