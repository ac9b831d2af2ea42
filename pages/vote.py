"""Vote: two images of the same prompt and seed, makers hidden. Keys: Left, Right, Down (same),
Up (both bad), 1-6 (reason tags), Backspace (undo), F (flip in the single-image view)."""

import streamlit as st

from arena_ui import ballot
from arena_ui.identity import require_user
from arena_ui.inspector import inspect_pair
from arena_ui.resources import image_file, transaction
from arena_ui.results_data import own_results
from arena_ui.selection import plain, selected_study, waiting_studies
from db.models import VOTABLE_STATUSES
from db.queries import progress

user = require_user()
study = selected_study(user)
if study is None:
    if waiting := waiting_studies():
        st.info(
            f"No pairs ready yet: the images of **{plain(waiting[0])}** are still being "
            "generated. Check back in a few minutes."
        )
    else:
        st.info(
            "No study is open for voting yet: an admin starts one on the Studies page to continue."
        )
    st.stop()
if not study.votable:
    if study.status in VOTABLE_STATUSES:
        st.info(f"No pairs ready yet in **{plain(study.name)}**: its images are being generated.")
    else:
        st.info(
            f"**{plain(study.name)}** is {study.status}, not open for voting: pick an open study "
            "in the sidebar to continue."
        )
    st.stop()

# Keep both images and the buttons on one screen (a laptop's or a phone's); "actual size" lifts
# the cap. Images have no fullscreen button: the arrow keys would vote on a pair half hidden.
CAP_CSS = "<style>[data-testid='stImage'] img {max-height: 46vh; object-fit: contain;}</style>"
NO_FULLSCREEN_CSS = (
    "<style>[data-testid='stImage'] ~ [data-testid='stElementToolbar'],"
    " [data-testid='stElementToolbar']:has(~ [data-testid='stImage']) {display: none;}</style>"
)
# session-state keys of the view options
FLIP, ACTUAL_SIZE, INSPECT = "vote_flip", "vote_actual_size", "vote_inspect"
CHOICES = (  # label, key, choice, button type
    ("Left better", "Left", "left", "primary"),
    ("Same", "Down", "tie", "secondary"),
    ("Both bad", "Up", "both_bad", "secondary"),
    ("Right better", "Right", "right", "primary"),
)


def state_line() -> None:
    """Comparisons settled / open and the votes the study still needs, in one caption."""
    state = ballot.study_state(study)
    needed = (
        "votes still needed: not estimated yet"
        if state.votes_needed is None
        else f"about {state.votes_needed} more votes needed"
    )
    st.caption(f"Study: {state.settled} comparisons settled · {state.open} open · {needed}")


@st.fragment
def ballot_view() -> None:
    if message := st.session_state.pop(ballot.NOTICE_KEY, None):
        st.toast(message)
    pair = ballot.current_ballot(user.id, study.id)
    with transaction(readonly=True) as s:
        done = progress(s, user.id, study.id)

    if pair is None:
        if ballot.settled(study.id):
            st.success(
                f"**{plain(study.name)}** is settled: every comparison is decided, so no more "
                "votes are needed. Thank you!"
            )
            if user.is_admin or study.results_visible_to_voters:
                st.page_link(
                    "pages/results.py", label="See the results", icon=":material/leaderboard:"
                )
        elif done.remaining > 0:
            st.info(
                f"You have judged every pair rendered so far; {done.remaining} more are still "
                "being generated. Check back later."
            )
        else:
            st.success(
                f"All done: you have judged all {done.total} pairs of **{plain(study.name)}**. "
                "Thank you!"
            )
            if user.is_admin or study.results_visible_to_voters:
                st.subheader("Your own votes")
                st.dataframe(own_results(study.id, user.name), hide_index=True)
        st.button(
            "Undo my last vote",
            key="undo_done",
            shortcut="Backspace",
            on_click=ballot.undo,
            args=(study.id,),
        )
        return

    st.progress(done.done / max(done.total, 1), text=f"{done.done} judged · {done.remaining} left")
    state_line()
    st.markdown(f"#### Prompt: “{plain(pair.prompt)}”")
    inspect = st.session_state.get(INSPECT, False)  # view options, drawn below the buttons
    flip = st.session_state.get(FLIP, False) and not inspect
    width = "content" if st.session_state.get(ACTUAL_SIZE, False) else "stretch"

    left, right = image_file(pair.left_image), image_file(pair.right_image)
    if inspect:
        # Zoom/pan both, hold X to flicker, swipe; labelled Left/Right only, so still blind.
        inspect_pair(left, right, labels=("Left", "Right"), key="vote_inspector")
    elif flip:
        showing = st.session_state.setdefault(ballot.FLIP_SIDE_KEY, "Left")
        st.image(
            str(left if showing == "Left" else right),
            caption=f"{showing} image",
            width=width,
            output_format="PNG",
        )
    else:
        col_l, col_r = st.columns(2, wrap=False)  # side by side on a phone too
        col_l.image(str(left), caption="Left", width=width, output_format="PNG")
        col_r.image(str(right), caption="Right", width=width, output_format="PNG")

    args = (study.id, pair.pair_id, pair.left_side)
    served = (pair.rule, pair.status)  # why the scheduler served this pair: kept with the vote
    # Left/right under their images; Same, Both bad and Undo below (the same on a phone)
    below_left, below_right = st.columns(2, wrap=False)
    choice_button(below_left, CHOICES[0], args, served)
    choice_button(below_right, CHOICES[3], args, served)
    with st.container(horizontal=True, key="vote_more"):
        for choice in CHOICES[1:3]:
            choice_button(st, choice, args, served)
        st.button(
            "Undo",
            key="vote_undo",
            shortcut="Backspace",
            width="stretch",
            on_click=ballot.undo,
            args=(study.id,),
        )
        if flip:
            st.button(
                f"Flip: showing the {showing.lower()} image",
                key="vote_flip_button",
                shortcut="F",
                width="stretch",
                on_click=ballot.flip,
            )
    if study.reason_tags:
        on = ballot.tags_on(pair.pair_id)
        with st.container(horizontal=True, key="vote_tags", vertical_alignment="center"):
            st.caption("Why? (optional)", width="content")
            for number, tag in enumerate(study.reason_tags[:6], start=1):
                st.button(
                    f"✓ {tag}" if tag in on else tag,
                    key=f"vote_tag_{number}",
                    shortcut=str(number),
                    on_click=ballot.toggle_tag,
                    args=(pair.pair_id, tag),
                    type="primary" if tag in on else "secondary",
                )
    view_options()


def view_options() -> None:
    """Flip view and actual size. Buttons, not toggles or pills: a clicked toggle keeps the
    keyboard focus in its checkbox, where Streamlit ignores every shortcut, and pills take the
    arrow keys to move between their options."""
    with st.container(horizontal=True, key="vote_views"):
        for view, label in (
            (FLIP, "Flip view: one image at a time, same place"),
            (ACTUAL_SIZE, "Actual size"),
            (INSPECT, "Inspect: zoom, flicker (hold X), swipe"),
        ):
            on = st.session_state.get(view, False)
            st.button(
                f"✓ {label}" if on else label,
                key=f"{view}_option",
                on_click=ballot.switch_view,
                args=(view,),
                type="primary" if on else "secondary",
            )
    st.markdown(NO_FULLSCREEN_CSS, unsafe_allow_html=True)
    if not st.session_state.get(ACTUAL_SIZE, False):
        st.markdown(CAP_CSS, unsafe_allow_html=True)


def choice_button(where, choice: tuple[str, str, str, str], args: tuple, served: tuple) -> None:
    label, key, value, kind = choice
    where.button(
        label,
        key=f"vote_{value}",
        shortcut=key,
        width="stretch",
        on_click=ballot.cast_vote,
        args=(*args, value, *served),
        type=kind,
    )


ballot_view()
st.caption(
    f"Study **{plain(study.name)}** · voting as **{plain(user.name)}** · which model made which "
    "image is hidden"
)
