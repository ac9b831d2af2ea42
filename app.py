"""Deprojector Arena: blind pairwise voting on images made by CLIP Text Deprojector variants.

    streamlit run app.py            # data in ./data, or ARENA_DATA_DIR; DATABASE_URL for PostgreSQL

The entry file runs on every rerun: it opens the database (migrating it and announcing a
bootstrap admin on a fresh install), works out who is signed in from their personal link, draws
the shared sidebar and hands over to the page. Every page checks the role again itself.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import streamlit as st  # noqa: E402

from arena_ui.identity import current_user  # noqa: E402
from arena_ui.resources import engine  # noqa: E402
from arena_ui.selection import study_picker  # noqa: E402
from arena_ui.uploads import require_upload_limit  # noqa: E402

st.set_page_config(page_title="Deprojector Arena", page_icon=":material/balance:", layout="wide")
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
page = st.navigation(pages)

with st.sidebar:
    if user is None:
        st.caption("Not signed in: open your personal link.")
    else:
        st.markdown(f"Signed in as **{user.name}** ({user.role})")
        study = study_picker(user)
        if study is None:
            st.caption("No study yet.")

page.run()
