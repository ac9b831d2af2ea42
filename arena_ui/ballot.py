"""The vote page's state: the pair on screen, when it was shown, and the vote/undo callbacks.

The pair on screen is held in session state until the annotator votes or undoes, so that a
rerun (a toggle, another voter's vote changing the left/right balance) never swaps it. Votes are
recorded in `on_click` callbacks whose arguments name the pair: a second click or a repeated
key press on the same pair hits the database's one-live-vote index and is ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from arena_ui.identity import current_user
from arena_ui.resources import transaction
from db.errors import DuplicateVoteError, StudyClosedError
from db.queries import get_pair, record_vote, undo_last_vote
from evaluation.scheduling import ScheduledPair, next_pair

BALLOT_KEY = "arena_ballot"  # the ScheduledPair on screen
SHOWN_KEY = "arena_shown_at"  # pair id -> when it was first displayed (UTC)
NOTICE_KEY = "arena_vote_notice"
FLIP_SIDE_KEY = "vote_flip_side"  # which image the flip view shows: "Left" or "Right"


def now() -> datetime:
    return datetime.now(UTC)


def scheduled(pair_id: int, left_side: str, study_id: int) -> ScheduledPair:
    """A pair shown again (after undo) with the side it had on the left before."""
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


def cast_vote(study_id: int, pair_id: int, left_side: str, choice: str) -> None:
    """`on_click` callback: record one vote on `pair_id` for the signed-in annotator."""
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
            )
    except DuplicateVoteError:
        pass  # a double click or a repeated key: the first one counted
    except StudyClosedError as error:  # closed by an admin while this page was open
        st.session_state[NOTICE_KEY] = f"Your vote was not recorded: {error}."
    ballot = st.session_state.get(BALLOT_KEY)
    if ballot is not None and ballot[1] is not None and ballot[1].pair_id == pair_id:
        del st.session_state[BALLOT_KEY]
        st.session_state[FLIP_SIDE_KEY] = "Left"  # each new pair starts on its left image


def undo(study_id: int) -> None:
    """`on_click` callback: supersede the annotator's last vote and show that pair again."""
    user = current_user()
    if user is None:
        return
    with transaction() as s:
        vote = undo_last_vote(s, user.id, study_id)
        undone = None if vote is None else (vote.pair_id, vote.left_side)
    if undone is None:
        st.session_state[NOTICE_KEY] = "Nothing to undo."
        return
    pair = scheduled(undone[0], undone[1], study_id)
    st.session_state[BALLOT_KEY] = ((user.id, study_id), pair)
    st.session_state.setdefault(SHOWN_KEY, {})[pair.pair_id] = now()


def flip() -> None:
    """`on_click` callback of the flip view: show the other image in the same place."""
    side = st.session_state.get(FLIP_SIDE_KEY, "Left")
    st.session_state[FLIP_SIDE_KEY] = "Right" if side == "Left" else "Left"
