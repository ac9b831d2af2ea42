"""Deprojector Arena: blind pairwise voting on images made by CLIP Text Deprojector variants.

    streamlit run app.py            # data in ./data, or ARENA_DATA_DIR; DATABASE_URL for PostgreSQL

The entry file runs on every rerun: it opens the database (migrating it and announcing a
bootstrap admin on a fresh install), works out who is signed in from their personal link, draws
the shared sidebar and hands over to the page. Every page checks the role again itself.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import streamlit as st  # noqa: E402

from arena_ui.identity import TOKEN_KEY, current_user  # noqa: E402
from arena_ui.resources import engine  # noqa: E402
from arena_ui.selection import study_picker  # noqa: E402
from arena_ui.uploads import require_upload_limit  # noqa: E402

# A local favicon: a Material icon would be fetched from Google's font server by the browser
FAVICON = str(Path(__file__).resolve().parent / "arena_ui" / "favicon.png")
st.set_page_config(page_title="Deprojector Arena", page_icon=FAVICON, layout="wide")
engine()
require_upload_limit()  # a bad ARENA_MAX_UPLOAD_MB, or a larger server ceiling, stops every page
user = current_user()

# Every page is registered (so a typed URL reaches the page's own role check and its refusal);
# only the ones this user may open are listed in the menu.
voter_visible = "visible" if user is not None else "hidden"
admin_visible = "visible" if user is not None and user.is_admin else "hidden"
pages = {
    "Arena": [
        st.Page("pages/welcome.py", title="Welcome", icon=":material/home:", default=True),
        st.Page(
            "pages/vote.py", title="Vote", icon=":material/how_to_vote:", visibility=voter_visible
        ),
        st.Page(
            "pages/results.py",
            title="Results",
            icon=":material/leaderboard:",
            visibility=voter_visible,
        ),
    ],
    "Admin": [
        st.Page(
            "pages/variants.py",
            title="Variants",
            icon=":material/model_training:",
            visibility=admin_visible,
        ),
        st.Page(
            "pages/studies.py", title="Studies", icon=":material/science:", visibility=admin_visible
        ),
        st.Page(
            "pages/annotators.py",
            title="Annotators",
            icon=":material/group:",
            visibility=admin_visible,
        ),
    ],
}
# The menu is drawn here rather than by st.navigation: its links carry the personal token, so a
# page opened in a new tab (a fresh session) is signed in too.
page = st.navigation(pages, position="hidden")
token = {"token": st.session_state[TOKEN_KEY]} if user is not None else None

with st.sidebar:
    for section, entries in pages.items():
        shown = [p for p in entries if p.visibility == "visible"]
        if shown:
            st.caption(section)
            for entry in shown:
                st.page_link(entry, query_params=token)
    st.divider()
    if user is None:
        st.caption("Not signed in: open your personal link.")
    else:
        st.markdown(f"Signed in as **{user.name}** ({user.role})")
        study = study_picker(user)
        if study is None:
            st.caption("No study yet.")

page.run()
