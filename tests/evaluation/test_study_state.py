"""The vote page's study state: the decision board's per-comparison rules on live counts."""

from evaluation.decisions import DecisionSettings, comparison_status, votes_needed
from evaluation.study_state import study_state


def test_comparisons_without_votes_are_open_with_no_estimate_yet():
    """A fresh study: every comparison open, the votes still needed not estimated."""
    state = study_state([(1, 0, 0, 0), (2, 0, 0, 0)])
    assert (state.settled, state.open, state.votes_needed) == (0, 2, None)


def test_decided_comparisons_count_as_settled_and_the_rest_add_their_estimates():
    """8 wins to 0 is decided at alpha 0.05; the open ones' estimates are summed, as the board's
    votes_needed gives them; ties (both bad included) count for nobody."""
    open_counts = [(2, 5, 2, 3), (3, 4, 3, 0)]
    state = study_state([(1, 8, 0, 1), *open_counts])
    needed = votes_needed([5, 4], [2, 3], [3, 0], DecisionSettings())
    assert list(comparison_status([5, 4], [2, 3], [3, 0])) == ["open", "open"]
    assert (state.settled, state.open) == (1, 2)
    assert state.votes_needed == int(needed.sum()) and state.votes_needed > 0


def test_the_study_settings_change_what_is_settled():
    """A vote cap settles a comparison that the e-value has not decided."""
    counts = [(1, 3, 3, 0)]
    assert study_state(counts).open == 1
    assert study_state(counts, vote_cap=6).settled == 1
