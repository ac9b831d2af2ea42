"""Annotators (admin): create voters (and admins), show each new personal link once, revoke."""

import streamlit as st

from arena_ui.identity import require_admin
from arena_ui.resources import login_link, transaction
from db import auth
from db.errors import DbError
from db.queries import annotator_rows

user = require_admin()
st.title("Annotators")
if new := st.session_state.pop("annotators_new_link", None):
    st.success(
        f"Personal link for **{new[0]}**, shown only now (only a hash is kept). Send it privately:"
    )
    st.code(new[1], language=None)

with transaction(readonly=True) as s:
    rows = annotator_rows(s)
st.dataframe(rows, hide_index=True, key="annotators_table")

st.header("New annotator")
with st.form("new_annotator", clear_on_submit=True):
    name = st.text_input("Name", key="new_annotator_name")
    role = st.radio("Role", ["voter", "admin"], horizontal=True, key="new_annotator_role")
    if st.form_submit_button("Create and show the link"):
        try:
            with transaction() as s:
                annotator, token = auth.create_annotator(s, name, role)
                annotator_name = annotator.name
        except DbError as error:
            st.error(str(error))
            st.stop()
        st.session_state["annotators_new_link"] = (annotator_name, login_link(token))
        st.rerun()

st.header("Revoke or restore access")
others = [row for row in rows if row["id"] != user.id]
if not others:
    st.info("No other annotators yet: create one above to manage access.")
    st.stop()
labels = {
    row["id"]: f"{row['name']} ({row['role']}, {'revoked' if row['disabled'] else 'active'})"
    for row in others
}
target = st.selectbox("Annotator", list(labels), format_func=labels.get, key="revoke_target")
revoke_col, restore_col, link_col = st.columns(3)
if revoke_col.button("Revoke (their link stops working)", key="revoke_button"):
    with transaction() as s:
        auth.revoke(s, target)
    st.rerun()
if restore_col.button("Restore", key="restore_button"):
    with transaction() as s:
        auth.enable(s, target)
    st.rerun()
if link_col.button("New link (the old one stops working)", key="rotate_button"):
    with transaction() as s:
        token = auth.rotate_token(s, target)
    annotator_name = next(row["name"] for row in others if row["id"] == target)
    st.session_state["annotators_new_link"] = (annotator_name, login_link(token))
    st.rerun()
