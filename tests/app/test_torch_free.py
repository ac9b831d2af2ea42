"""The vote and results pages never import torch, diffusers or transformers (DESIGN.md)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path[:0] = [{root!r}, {app_tests!r}]
    os.environ["ARENA_DATA_DIR"] = {data_dir!r}
    from streamlit.testing.v1 import AppTest
    from tiny_study import build_tiny_study

    tiny = build_tiny_study(Path({data_dir!r}), results_visible=True)
    for page in ("vote.py", "results.py"):
        at = AppTest.from_file(str(Path({root!r}) / "pages" / page), default_timeout=60)
        at.query_params["token"] = tiny.voter_token
        at.run()
        assert not at.exception, (page, at.exception)
        if page == "vote.py":
            at.button(key="vote_left").click().run()  # the callback path too
    heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
    print("HEAVY=" + ",".join(heavy))
    """
)


@pytest.mark.slow  # make test-fast leaves it out
def test_vote_and_results_pages_run_without_importing_torch(tmp_path):
    """Running both pages (and a vote) in a fresh process leaves torch & co. unimported."""
    script = SCRIPT.format(
        root=str(ROOT), app_tests=str(ROOT / "tests" / "app"), data_dir=str(tmp_path)
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY=\n" in done.stdout, done.stdout
