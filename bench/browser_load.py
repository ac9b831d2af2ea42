"""Real browser sessions voting at once on one app server: nothing lost or doubled.

    .venv/bin/python bench/browser_load.py                 # 4 tabs x 8 keyboard votes
    .venv/bin/python bench/browser_load.py --voters 4 --votes 20

Each voter is a Chromium tab with its own personal link, voting by keyboard as fast as the page
allows (next key only once the next pair's images are loaded). Afterwards each annotator's live
votes, in order, must be exactly the choices its keys made, one live vote per pair, and
integrity_check ok. Prints the time taken and the problems found; exit 1 when there is one.
(Was a test; its waits for a busy 2-core machine made it fail now and then under load, and the
same guarantee is tested without a browser by tests/reliability/test_load.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from sqlalchemy import func, select  # noqa: E402

from db.engine import make_engine, session_factory  # noqa: E402
from db.models import Annotator, Vote  # noqa: E402
from tests.app.tiny_study import build_tiny_study  # noqa: E402
from tests.e2e.server import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGES_READY_JS,
    free_port,
    start_app,
    stop_app,
    wait_healthy,
)

KEYS = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowDown": "tie"}
SRCS_JS = "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')].map(i => i.src)"
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


async def _vote(browser, url: str, seed: int, votes: int) -> list[str]:
    """Vote `votes` times by keyboard; returns the choices the keys meant, in order."""
    rng = random.Random(seed)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(IMAGES_READY_JS, arg=[2, []], timeout=60_000, polling=10)
    cast = []
    for _ in range(votes):
        await page.wait_for_function(IDLE_JS, polling=10, timeout=30_000)
        shown = await page.evaluate(SRCS_JS)
        key = rng.choice(list(KEYS))
        await page.keyboard.press(key)
        cast.append(KEYS[key])
        await page.wait_for_function(IMAGES_READY_JS, arg=[2, shown], polling=10, timeout=30_000)
    await context.close()
    return cast


async def _vote_together(base: str, tokens: list[str], votes: int) -> list[list[str]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(
                *(_vote(browser, f"{base}/vote?token={t}", k, votes) for k, t in enumerate(tokens))
            )
        finally:
            await browser.close()


def run(tmp_path: Path, voters: int, votes: int) -> list[str]:
    """Serve a tiny study, vote from `voters` tabs at once, audit; returns the problems."""
    n_prompts = max(3, -(-votes // 4))  # 2 comparisons x 2 labels per prompt
    tiny = build_tiny_study(
        tmp_path,
        n_comparisons=2,
        n_prompts=n_prompts,
        labels=("epoch-8", "epoch-10"),
        voters=voters,
    )
    tokens = [tiny.voter_token, *tiny.extra_voter_tokens][:voters]
    port = free_port()
    process = start_app(tmp_path, port)
    try:
        wait_healthy(port, process)
        began = time.perf_counter()
        believed = asyncio.run(_vote_together(f"http://127.0.0.1:{port}", tokens, votes))
        seconds = time.perf_counter() - began
    finally:
        stop_app(process)

    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    with session_factory(engine).begin() as s:
        stored = {}
        for name, choice in s.execute(
            select(Annotator.name, Vote.choice)
            .join(Annotator, Vote.annotator_id == Annotator.id)
            .where(Vote.superseded_at.is_(None))
            .order_by(Vote.voted_at, Vote.id)
        ):
            stored.setdefault(name, []).append(choice)
        doubled = s.execute(
            select(Vote.annotator_id, Vote.pair_id)
            .where(Vote.superseded_at.is_(None))
            .group_by(Vote.annotator_id, Vote.pair_id)
            .having(func.count(Vote.id) > 1)
        ).all()
    engine.dispose()
    connection = sqlite3.connect(tmp_path / "arena.sqlite3")
    integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    connection.close()

    print(f"{voters} tabs x {votes} keyboard votes in {seconds:.1f} s")
    problems = []
    if sorted(stored.values()) != sorted(believed):
        problems.append("the live votes differ from the keys pressed")
    if len(stored) != voters or any(len(c) != votes for c in stored.values()):
        problems.append(f"live votes per voter: {[len(c) for c in stored.values()]}")
    if doubled:
        problems.append(f"{len(doubled)} (annotator, pair) with more than one live vote")
    if integrity != "ok":
        problems.append(f"PRAGMA integrity_check: {integrity}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voters", type=int, default=4, help="browser tabs (at most 4)")
    parser.add_argument("--votes", type=int, default=8, help="keyboard votes per tab")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        problems = run(Path(tmp), min(args.voters, 4), args.votes)
    print("problems: " + ("; ".join(problems) if problems else "none"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
