"""Annotators (admin): create voters (and admins), show each new personal link once, revoke."""

import streamlit as st

from arena_ui import accounts
from arena_ui.identity import require_admin
from arena_ui.resources import login_link
from db.errors import DbError

user = require_admin()
st.title("Annotators")
if new := st.session_state.pop("annotators_new_link", None):
    st.success(
        f"Personal link for **{new[0]}**, shown only now (only a hash is kept). Send it privately:"
    )
    st.code(new[1], language=None)

st.dataframe(accounts.annotator_rows(), hide_index=True, key="annotators_table")

st.header("New annotator")
with st.form("new_annotator", clear_on_submit=True):
    name = st.text_input("Name", key="new_annotator_name")
    role = st.radio("Role", ["voter", "admin"], horizontal=True, key="new_annotator_role")
    if st.form_submit_button("Create and show the link"):
        try:
            annotator_name, token = accounts.create(name, role)
        except DbError as error:
            st.error(str(error))
            st.stop()
        st.session_state["annotators_new_link"] = (annotator_name, login_link(token))
        st.rerun()

st.header("Revoke or restore access")
others = [row for row in accounts.annotator_rows() if row["id"] != user.id]
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
    accounts.set_disabled(target, True)
    st.rerun()
if restore_col.button("Restore", key="restore_button"):
    accounts.set_disabled(target, False)
    st.rerun()
if link_col.button("New link (the old one stops working)", key="rotate_button"):
    annotator_name, token = accounts.new_link(target)
    st.session_state["annotators_new_link"] = (annotator_name, login_link(token))
    st.rerun()
