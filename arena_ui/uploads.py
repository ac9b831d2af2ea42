"""The upload limit as this server enforces it: `ARENA_MAX_UPLOAD_MB` checked against Streamlit's
own ceiling (`server.maxUploadSize`, which `make run` / `python -m arena_ui.serve` derive from it).

Streamlit's upload endpoint takes files from any open session, signed in or not, up to its
ceiling; the arena's cap means something only when the ceiling is no larger. So a bad cap, or a
server started with a larger ceiling, stops every page with the fix instead of serving.
"""

from __future__ import annotations

import sys

import streamlit as st

from evaluation.checkpoints import UPLOAD_CAP_ENV, UploadCapError, upload_cap_mb

_printed: set[str] = set()  # start-up errors already printed on the server console


def server_ceiling_mb() -> int:
    """Streamlit's `server.maxUploadSize` (MB) for this server."""
    return int(st.get_option("server.maxUploadSize"))


def require_upload_limit() -> int:
    """The upload limit in MiB; stops the page with a clear error when `ARENA_MAX_UPLOAD_MB` is
    bad or the server accepts larger uploads than it."""
    try:
        cap = upload_cap_mb()
    except UploadCapError as error:
        message = f"Start-up error: {error}, then restart the server."
    else:
        ceiling = server_ceiling_mb()
        if ceiling <= cap:  # a lower ceiling is the limit in force
            return ceiling
        message = (
            f"Start-up error: the server accepts uploads up to {ceiling} MB "
            f"(server.maxUploadSize) but {UPLOAD_CAP_ENV} is {cap}; start it with `make run` "
            f"or `python -m arena_ui.serve`, which set the server's limit from {UPLOAD_CAP_ENV}, "
            f"or pass --server.maxUploadSize {cap}."
        )
    if message not in _printed:
        _printed.add(message)
        print(message, file=sys.stderr, flush=True)
    st.error(message)
    st.stop()
    raise AssertionError("st.stop() returned")  # pragma: no cover
