"""The results page's exclusion controls (admins): leave an annotator's votes out of the
study's tallies with a recorded reason, and restore them. Streamlit glue over
`db.queries.exclusions`."""

from __future__ import annotations

import streamlit as st

from arena_ui.resources import transaction
from db.errors import DbError
from db.queries import Exclusion, exclude, restore, study_annotators


def exclusion_controls(study_id: int, admin_id: int, live_excluded: list[Exclusion]) -> None:
    """The form to exclude an annotator, and a Restore button per live exclusion."""
    st.subheader("Exclusions")
    st.caption(
        "An excluded annotator's votes are left out of every tally, chart and download of this "
        "study; the exclusion is recorded and can be undone."
    )
    with transaction(readonly=True) as s:
        annotators = dict(study_annotators(s, study_id))
    excluded_ids = {e.annotator_id for e in live_excluded}
    candidates = [a for a in annotators if a not in excluded_ids]
    with st.form("results_exclude_form", clear_on_submit=True, border=False):
        col_who, col_why = st.columns([1, 2])
        who = col_who.selectbox(
            "Annotator",
            candidates,
            format_func=annotators.get,
            key="results_exclude_who",
            index=None,
            placeholder="choose an annotator",
        )
        why = col_why.text_input("Reason (recorded)", key="results_exclude_reason")
        if st.form_submit_button("Exclude from the tallies"):
            if who is None:
                st.error("Choose the annotator to exclude first.")
            else:
                try:
                    with transaction() as s:
                        exclude(s, study_id, who, by_id=admin_id, reason=why)
                except DbError as error:
                    st.error(str(error))
                else:
                    st.rerun()
    for e in live_excluded:
        col_text, col_button = st.columns([3, 1])
        col_text.markdown(
            f"**{e.annotator}** excluded by {e.excluded_by or 'an admin'} on "
            f"{e.excluded_at:%Y-%m-%d %H:%M} UTC" + (f": {e.reason}" if e.reason else "")
        )
        if col_button.button("Restore", key=f"results_restore_{e.annotator_id}"):
            try:
                with transaction() as s:
                    restore(s, study_id, e.annotator_id)
            except DbError as error:
                st.error(str(error))
            else:
                st.rerun()
