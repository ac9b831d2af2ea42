"""Refresh the README's pictures (docs/screenshots/) from the photo demo in a real Chromium.

    .venv/bin/python scripts/screenshots.py          # or: make screenshots

Builds the photo demo in a temporary data directory, records 60 votes of two simulated
voters who prefer the less degraded photo 80 % of the time (through `record_vote`, as the vote
page does), starts the app on a free loopback port and takes the vote page (a new voter's first
pair), the top of the results page and the leaderboard at 1440x900. Nothing else is written.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from server import (  # noqa: E402
    APP_IDLE_JS,
    free_port,
    launch_chromium,
    start_app,
    stop_app,
    wait_healthy,
)

from db.auth import create_annotator  # noqa: E402
from db.engine import make_engine, session_factory  # noqa: E402
from db.queries import record_vote, study_by_name, study_pairs  # noqa: E402
from evaluation.photo_demo import build_photo_demo  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
BASE_PREFERENCE = 0.8  # how often a simulated voter picks the base (least degraded) photo


def seed_votes(data_dir: Path) -> tuple[str, str]:
    """Two voters judge every pair once; returns (admin token, a fresh voter's token)."""
    rng = np.random.default_rng(0)
    engine = make_engine(f"sqlite:///{data_dir / 'arena.sqlite3'}")
    now = datetime.now(UTC)
    with session_factory(engine).begin() as s:
        _, admin = create_annotator(s, "admin-demo", "admin")
        _, fresh = create_annotator(s, "new-voter", "voter")
        study = study_by_name(s, "photo-demo")
        voters = [create_annotator(s, f"voter-{k}", "voter")[0].id for k in range(2)]
        for voter in voters:
            for pair in study_pairs(s, study.id, include_qc=False):
                left_side = "a" if rng.random() < 0.5 else "b"
                roll = rng.random()
                if roll < 0.1:
                    choice = "tie"
                else:  # side a holds the base variant (the least degraded photo)
                    winner = "a" if roll < 0.1 + 0.9 * BASE_PREFERENCE else "b"
                    choice = "left" if winner == left_side else "right"
                record_vote(s, pair.id, voter, left_side, choice, now)
    engine.dispose()
    return admin, fresh


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        build_photo_demo(data_dir)
        admin, fresh = seed_votes(data_dir)
        port = free_port()
        process = start_app(data_dir, port)
        try:
            wait_healthy(port, process)
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/vote?token={fresh}")
                page.locator('[data-testid="stImage"] img').nth(1).wait_for()
                page.wait_for_function(APP_IDLE_JS)
                page.wait_for_timeout(1000)
                page.screenshot(path=str(OUT / "vote.png"))
                page.goto(f"http://127.0.0.1:{port}/results?token={admin}")
                page.get_by_text("Decision board").first.wait_for()
                page.wait_for_function(APP_IDLE_JS)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT / "results.png"))
                page.get_by_text("Bradley-Terry leaderboard").first.scroll_into_view_if_needed()
                page.wait_for_timeout(800)
                page.screenshot(path=str(OUT / "results-leaderboard.png"))
                browser.close()
        finally:
            stop_app(process)
    print(f"wrote vote.png, results.png, results-leaderboard.png to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
