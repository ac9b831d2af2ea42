"""Welcome: what the arena is, how to sign in, and one-click demo studies for admins (tiny models,
or real photographs through image pipelines)."""

import streamlit as st

from arena_ui.demo import build_demo_with_progress, build_photo_demo_with_progress
from arena_ui.identity import current_user
from arena_ui.resources import BOOTSTRAP_NOTICE
from arena_ui.selection import visible_studies

st.title("Deprojector Arena")
st.markdown(
    """
A **CLIP Text Deprojector** turns a CLIP sentence embedding back into the 77-token sequence that
Stable Diffusion is conditioned on. Which variant of it makes better pictures is a question for
people, not a loss curve. Here you **vote blind between two images** made from the same prompt
and seed by two variants that differ in exactly one hyperparameter, and the arena tallies the
votes the way the original articles did (sets won 組数, then points 点数), plus the statistics a
careful reader asks for: win shares with intervals, position bias, annotator agreement and a
Bradley-Terry leaderboard.
"""
)

user = current_user()
if user is None:
    st.subheader("Sign in")
    st.markdown(
        "Annotators open the **personal link** their admin gave them (it ends in `?token=...`)."
    )
    st.info(
        "Setting up a fresh install? The server printed a one-time **admin login link** on its "
        f"console, in the terminal where `streamlit run app.py` runs (look for "
        f"`{BOOTSTRAP_NOTICE}`). Lost it? `python -m db create-admin NAME` prints a new one. "
        "Where the operator set an `ARENA_ADMIN_TOKEN` secret, open `/?token=<that secret>`."
    )
    st.stop()

st.success(f"Signed in as **{user.name}** ({user.role}).")
studies = visible_studies(user)
if studies:
    st.page_link(
        "pages/vote.py",
        label=f"Start voting ({len(studies)} open {'study' if len(studies) == 1 else 'studies'})",
        icon=":material/how_to_vote:",
    )
else:
    st.info("No study is open for voting yet. An admin creates one, or builds the demo below.")

if not user.is_admin:
    st.stop()

st.subheader("Demo study")
st.markdown(
    """
One click builds a complete small study on this machine's CPU in about two minutes: seven tiny VT
variants in the article's 2x2x2-minus-one design plus the reference, briefly trained on a tiny
CLIP, rendered with a tiny Stable Diffusion pipeline for the article's six prompts at two
checkpoints.

**The demo models are random and tiny**: their images are coloured noise, useful only to try the
voting and the tallies. For real images, point a study at a local Stable Diffusion 1.x folder in
diffusers layout (Studies page, *SD model folder*), and add real deprojector checkpoints on the
Variants page (upload a safetensors file with its JSON config, register a folder on the server, or
import a published legacy folder). Train your own with `python -m deprojector.train`.
"""
)
if st.button("Build the demo study", type="primary", key="build_demo"):
    build_demo_with_progress()

st.subheader("Photo demo")
st.markdown(
    """
Real pictures in seconds, no model needed: photographs that ship with scikit-image, passed through
four image pipelines one setting apart (JPEG quality, blur, colour saturation) and imported as
image variants into the study **photo-demo**. Votes here measure whether people see those
differences: a quick way to try the arena with images worth judging.
"""
)
if st.button("Build the photo demo", key="build_photo_demo"):
    build_photo_demo_with_progress()
