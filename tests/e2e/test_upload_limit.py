"""Streamlit's upload endpoint on a real server: it takes files from any open session, signed
in or not, so its own limit must be the arena's cap (set at start by `python -m arena_ui.serve`,
what `make run` runs)."""

import os
import subprocess
import sys

import pytest
from server import ROOT, free_port, stop_app, wait_healthy
from tiny_study import build_tiny_study

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    """The app started like `make run` with ARENA_MAX_UPLOAD_MB=1; yields its base URL."""
    data_dir = tmp_path_factory.mktemp("arena")
    build_tiny_study(data_dir, n_comparisons=1, n_prompts=1)
    port = free_port()
    env = {**os.environ, "ARENA_DATA_DIR": str(data_dir), "ARENA_MAX_UPLOAD_MB": "1"}
    env.pop("DATABASE_URL", None)
    log = open(data_dir / "streamlit.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "arena_ui.serve", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_app(process)
        log.close()


def anonymous_upload(page, base_url: str, size: int) -> int:
    """Open the app without a token, then PUT a `size`-byte file to Streamlit's upload endpoint
    for that session, as any visitor's browser can; returns the HTTP status."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    session = {}

    def on_frame(payload):
        if isinstance(payload, bytes) and "id" not in session:
            msg = ForwardMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "new_session":
                session["id"] = msg.new_session.initialize.session_id

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    page.goto(base_url)
    page.get_by_text("Deprojector Arena").first.wait_for()
    assert session.get("id"), "no session id seen on the websocket"
    return page.evaluate(
        """async ([sessionId, size]) => {
            const xsrf = (document.cookie.match(/_streamlit_xsrf=([^;]+)/) || [])[1] || "";
            const form = new FormData();
            form.append("file", new Blob([new Uint8Array(size)]), "big.safetensors");
            const r = await fetch(`/_stcore/upload_file/${sessionId}/probe-${size}`,
                {method: "PUT", body: form, headers: {"X-Xsrftoken": xsrf},
                 credentials: "same-origin"});
            return r.status;
        }""",
        [session["id"], size],
    )


def test_upload_endpoint_refuses_a_file_above_the_arena_cap(capped_server, page):
    """Without a token, a 2 MiB file is refused by the server itself (413) when the arena's cap
    is 1 MiB; a file under the cap goes through, so the refusal is the limit's."""
    assert anonymous_upload(page, capped_server, 2 * 2**20) == 413
    assert anonymous_upload(page, capped_server, 2**19) == 204
