"""Vote: two images of the same prompt and seed, makers hidden. Keys: Left, Down (same), Right,
Backspace (undo), F (flip in the single-image view)."""

import streamlit as st

from arena_ui import ballot
from arena_ui.identity import require_user
from arena_ui.resources import image_file, transaction
from arena_ui.selection import selected_study
from arena_ui.tables import own_results
from db.queries import progress

user = require_user()
study = selected_study(user)
if study is None:
    st.info("No study is open for voting yet: an admin starts one on the Studies page to continue.")
    st.stop()

# Keep both images and the buttons on one screen; "actual size" lifts the cap.
CAP_CSS = "<style>[data-testid='stImage'] img {max-height: 64vh; object-fit: contain;}</style>"


@st.fragment
def ballot_view() -> None:
    if message := st.session_state.pop(ballot.NOTICE_KEY, None):
        st.toast(message)
    pair = ballot.current_ballot(user.id, study.id)
    with transaction(readonly=True) as s:
        done = progress(s, user.id, study.id)

    if pair is None and done.remaining > 0:
        st.info(
            f"You have judged every pair rendered so far; {done.remaining} more are still being "
            "generated. Check back later."
        )
        return
    if pair is None:
        st.success(
            f"All done: you have judged all {done.total} pairs of **{study.name}**. Thank you!"
        )
        st.button("Undo my last vote", key="undo_done", on_click=ballot.undo, args=(study.id,))
        if user.is_admin or study.results_visible_to_voters:
            st.subheader("Your own votes")
            st.dataframe(own_results(study.id, user.name), hide_index=True)
        return

    st.progress(done.done / max(done.total, 1), text=f"{done.done} judged · {done.remaining} left")
    st.markdown(f"#### Prompt: “{pair.prompt}”")
    flip = st.session_state.get("vote_flip", False)  # view toggles, drawn below the fragment
    width = "content" if st.session_state.get("vote_actual_size", False) else "stretch"

    left, right = image_file(pair.left_image), image_file(pair.right_image)
    if flip:
        showing = st.session_state.setdefault(ballot.FLIP_SIDE_KEY, "Left")
        st.button(
            f"Flip (F): showing the {showing.lower()} image",
            key="vote_flip_button",
            shortcut="F",
            on_click=ballot.flip,
        )
        st.image(
            str(left if showing == "Left" else right),
            caption=f"{showing} image",
            width=width,
            output_format="PNG",
        )
    else:
        col_l, col_r = st.columns(2)
        col_l.image(str(left), caption="Left", width=width, output_format="PNG")
        col_r.image(str(right), caption="Right", width=width, output_format="PNG")

    args = (study.id, pair.pair_id, pair.left_side)
    b1, b2, b3, b4 = st.columns(4)
    b1.button(
        "⬅ Left better",
        key="vote_left",
        shortcut="Left",
        width="stretch",
        on_click=ballot.cast_vote,
        args=(*args, "left"),
        type="primary",
    )
    b2.button(
        "Same ⬇",
        key="vote_tie",
        shortcut="Down",
        width="stretch",
        on_click=ballot.cast_vote,
        args=(*args, "tie"),
    )
    b3.button(
        "Right better ➡",
        key="vote_right",
        shortcut="Right",
        width="stretch",
        on_click=ballot.cast_vote,
        args=(*args, "right"),
        type="primary",
    )
    b4.button(
        "↶ Undo",
        key="vote_undo",
        shortcut="Backspace",
        width="stretch",
        on_click=ballot.undo,
        args=(study.id,),
    )


st.caption(
    f"Study **{study.name}** · voting as **{user.name}** · which model made which image is hidden"
)
ballot_view()

# View options live outside the fragment: a vote reruns only the pair above.
flip_col, size_col = st.columns(2)
flip_col.toggle("Flip view: one image at a time, same place", key="vote_flip")
if not size_col.toggle("Actual size (full resolution)", key="vote_actual_size"):
    st.markdown(CAP_CSS, unsafe_allow_html=True)
