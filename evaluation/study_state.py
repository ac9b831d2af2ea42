"""The study's state while voting: comparisons settled / open and the votes still needed.

The same per-comparison rules as the decision board (`evaluation.decisions.comparison_status`
and `votes_needed`), applied to live counts rather than the whole vote frame, so the vote page
can show it after every vote without loading every vote. Unlike the board, comparisons without
a vote yet count as open.

    study_state([(comparison_id, a_wins, b_wins, ties), ...], alpha=0.05, delta=0.1, vote_cap=None)
"""

from __future__ import annotations

from collections.abc import Sequence

from evaluation.decisions import DecisionSettings, StudyState, comparison_status, votes_needed


def study_state(
    counts: Sequence[tuple[int, int, int, int]],
    alpha: float = 0.05,
    delta: float = 0.1,
    vote_cap: int | None = None,
) -> StudyState:
    """StudyState of a study from (comparison id, A wins, B wins, ties) per comparison; the
    votes still needed are None while some open comparison has no estimate yet."""
    if not counts:
        return StudyState(settled=0, open=0, votes_needed=None)
    _, a_wins, b_wins, ties = zip(*counts, strict=True)
    settings = DecisionSettings(alpha=alpha, delta=delta, vote_cap=vote_cap)
    status = comparison_status(a_wins, b_wins, ties, settings)
    needed = votes_needed(a_wins, b_wins, ties, settings)
    is_open = status == "open"
    open_needed = needed[is_open]  # Int64, <NA> where no estimate yet
    return StudyState(
        settled=int((~is_open).sum()),
        open=int(is_open.sum()),
        votes_needed=None if open_needed.isna().any() else int(open_needed.sum()),
    )
