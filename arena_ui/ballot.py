"""The vote page's state: the pair on screen, when it was shown, and the vote/undo callbacks.

The pair on screen is held in session state until the annotator votes or undoes, so that a
rerun (a toggle, another voter's vote changing the left/right balance) never swaps it. Votes are
recorded in `on_click` callbacks whose arguments name the pair: a second click or a repeated
key press on the same pair hits the database's one-live-vote index and is ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import streamlit as st

from arena_ui.identity import current_user
from arena_ui.resources import transaction
from db.errors import DbError, DuplicateVoteError
from db.queries import get_pair, record_vote, undo_last_vote
from db.queries import scheduling as q
from evaluation.scheduling import ScheduledPair, next_pair, study_is_settled
from evaluation.study_state import study_state as compute_state

if TYPE_CHECKING:
    from arena_ui.selection import StudyChoice
    from evaluation.decisions import StudyState

BALLOT_KEY = "arena_ballot"  # the ScheduledPair on screen
SHOWN_KEY = "arena_shown_at"  # pair id -> when it was first displayed (UTC)
NOTICE_KEY = "arena_vote_notice"
FLIP_SIDE_KEY = "vote_flip_side"  # which image the flip view shows: "Left" or "Right"
STATE_TTL_S = 5  # the vote page's state line may lag the votes by this many seconds
TAGS_KEY = "vote_tags"  # (pair id, the reason tags toggled on for it)


def tags_on(pair_id: int) -> frozenset[str]:
    """The reason tags toggled on for `pair_id` (none for a pair not yet touched: tags start
    empty for every new pair)."""
    held = st.session_state.get(TAGS_KEY)
    return held[1] if held is not None and held[0] == pair_id else frozenset()


def toggle_tag(pair_id: int, tag: str) -> None:
    """`on_click` callback of a reason-tag button (keys 1..6): switch `tag` for this pair."""
    st.session_state[TAGS_KEY] = (pair_id, tags_on(pair_id) ^ {tag})


def now() -> datetime:
    return datetime.now(UTC)


def scheduled(
    pair_id: int, left_side: str, study_id: int, rule: str | None, status: str | None
) -> ScheduledPair:
    """A pair shown again (after undo) with the side it had on the left before, and why it was
    served then (the undone vote's rule and comparison status; "grid" for older votes)."""
    with transaction(readonly=True) as s:
        pair = get_pair(s, pair_id, study_id)
        a, b = pair.image_a, pair.image_b
        left, right = (a, b) if left_side == "a" else (b, a)
        return ScheduledPair(
            pair_id=pair.id,
            left_side=left_side,
            left_image_id=left.id,
            right_image_id=right.id,
            left_image=left.path,
            right_image=right.path,
            prompt=pair.prompt.text,
            qc=pair.qc_kind is not None,
            rule=rule or "grid",
            status=status,
        )


def current_ballot(annotator_id: int, study_id: int) -> ScheduledPair | None:
    """The pair to show now (kept across reruns), or None when everything is judged."""
    ballot = st.session_state.get(BALLOT_KEY)
    if ballot is None or ballot[0] != (annotator_id, study_id) or ballot[1] is None:
        with transaction(readonly=True) as s:
            pair = next_pair(s, annotator_id, study_id)
        ballot = ((annotator_id, study_id), pair)
        st.session_state[BALLOT_KEY] = ballot
    pair = ballot[1]
    if pair is not None:
        st.session_state.setdefault(SHOWN_KEY, {}).setdefault(pair.pair_id, now())
    return pair


def cast_vote(
    study_id: int,
    pair_id: int,
    left_side: str,
    choice: str,
    allocation_rule: str | None = None,
    comparison_status: str | None = None,
) -> None:
    """`on_click` callback: record one vote on `pair_id` for the signed-in annotator, with the
    reason tags toggled for it and why the scheduler served it (rule, comparison status)."""
    user = current_user()  # checked again here: a revoked token cannot vote
    if user is None:
        st.session_state[NOTICE_KEY] = "Your link is no longer valid; the vote was not recorded."
        return
    voted_at = now()
    shown_at = st.session_state.get(SHOWN_KEY, {}).pop(pair_id, voted_at)
    try:
        with transaction() as s:
            record_vote(
                s,
                pair_id,
                user.id,
                left_side,
                choice,
                shown_at,
                study_id=study_id,
                voted_at=voted_at,
                tags=sorted(tags_on(pair_id)),
                allocation_rule=allocation_rule,
                comparison_status=comparison_status,
            )
    except DuplicateVoteError:
        pass  # a double click or a repeated key: the first one counted
    except DbError as error:  # the study closed meanwhile, the pair was removed, ...
        st.session_state[NOTICE_KEY] = f"The vote was not recorded: {error}"
    ballot = st.session_state.get(BALLOT_KEY)
    if ballot is not None and ballot[1] is not None and ballot[1].pair_id == pair_id:
        del st.session_state[BALLOT_KEY]
        st.session_state[FLIP_SIDE_KEY] = "Left"  # each new pair starts on its left image
        st.session_state.pop(TAGS_KEY, None)  # and with no reason tag


def undo(study_id: int) -> None:
    """`on_click` callback: supersede the annotator's last vote and show that pair again."""
    user = current_user()
    if user is None:
        return
    with transaction() as s:
        vote = undo_last_vote(s, user.id, study_id)
        undone = (
            None
            if vote is None
            else (vote.pair_id, vote.left_side, vote.allocation_rule, vote.comparison_status)
        )
    if undone is None:
        st.session_state[NOTICE_KEY] = "Nothing to undo."
        return
    pair_id, left_side, rule, status = undone
    pair = scheduled(pair_id, left_side, study_id, rule, status)
    st.session_state[BALLOT_KEY] = ((user.id, study_id), pair)
    st.session_state.setdefault(SHOWN_KEY, {})[pair.pair_id] = now()


@st.cache_data(ttl=STATE_TTL_S, max_entries=64, show_spinner=False)
def _state(study_id: int, alpha: float, delta: float, vote_cap: int | None) -> StudyState:
    with transaction(readonly=True) as s:
        outcomes = q.comparison_outcomes(s, study_id)
        counts = [(cid, *outcomes.get(cid, (0, 0, 0))) for cid in q.study_comparisons(s, study_id)]
    return compute_state(counts, alpha=alpha, delta=delta, vote_cap=vote_cap)


def study_state(study: StudyChoice) -> StudyState:
    """The study's settled / open comparisons and votes still needed, from the scheduler's
    per-comparison counts (excluded annotators left out). Shared by every session and at most
    STATE_TTL_S old: counting a large study's outcomes costs ~20 ms, too much for every vote of
    every voter (the scheduler already pays it once per vote under stop-when-settled)."""
    return _state(study.id, study.alpha, study.delta, study.vote_cap)


def settled(study_id: int) -> bool:
    """The study stops when settled and no comparison is open any more (the scheduler's rule)."""
    with transaction(readonly=True) as s:
        return study_is_settled(s, study_id)


def switch_view(key: str) -> None:
    """`on_click` callback of a view option button (flip view, actual size): on <-> off."""
    st.session_state[key] = not st.session_state.get(key, False)


def flip() -> None:
    """`on_click` callback of the flip view: show the other image in the same place."""
    side = st.session_state.get(FLIP_SIDE_KEY, "Left")
    st.session_state[FLIP_SIDE_KEY] = "Right" if side == "Left" else "Left"
