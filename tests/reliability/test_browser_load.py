"""Four real browser sessions voting at once on one app server: nothing lost or doubled.

Each voter is a Chromium tab with its own personal link, voting by keyboard as fast as the page
allows (next key only once the next pair's images are loaded). Afterwards each annotator's live
votes, in order, must be exactly the choices its keys made.
"""

import asyncio
import random
import sqlite3

import pytest
from sqlalchemy import func, select

from db.engine import make_engine, session_factory
from db.models import Annotator, Vote
from tests.app.tiny_study import build_tiny_study
from tests.e2e.server import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGES_READY_JS,
    free_port,
    start_app,
    stop_app,
    wait_healthy,
)

pytestmark = pytest.mark.e2e

KEYS = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowDown": "tie"}
SRCS_JS = "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')].map(i => i.src)"
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
VOTES = 8


async def _vote(browser, url: str, seed: int) -> list[str]:
    """Vote VOTES times by keyboard; returns the choices the keys meant, in order."""
    rng = random.Random(seed)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(IMAGES_READY_JS, arg=[2, []], timeout=60_000, polling=10)
    cast = []
    for _ in range(VOTES):
        await page.wait_for_function(IDLE_JS, polling=10, timeout=30_000)
        shown = await page.evaluate(SRCS_JS)
        key = rng.choice(list(KEYS))
        await page.keyboard.press(key)
        cast.append(KEYS[key])
        await page.wait_for_function(IMAGES_READY_JS, arg=[2, shown], polling=10, timeout=30_000)
    await context.close()
    return cast


async def _vote_together(base: str, tokens: list[str]) -> list[list[str]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(
                *(_vote(browser, f"{base}/vote?token={t}", k) for k, t in enumerate(tokens))
            )
        finally:
            await browser.close()


@pytest.mark.timeout(300)
def test_four_browser_voters_at_once_lose_and_duplicate_nothing(tmp_path):
    """4 tabs x 8 keyboard votes at the same time: each annotator's live votes are exactly its
    keys' choices in order, one live vote per pair, integrity_check ok."""
    tiny = build_tiny_study(
        tmp_path, n_comparisons=2, n_prompts=3, labels=("epoch-8", "epoch-10"), voters=4
    )
    tokens = [tiny.voter_token, *tiny.extra_voter_tokens][:4]
    port = free_port()
    process = start_app(tmp_path, port)
    try:
        wait_healthy(port, process)
        believed = asyncio.run(_vote_together(f"http://127.0.0.1:{port}", tokens))
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

    assert sorted(stored.values()) == sorted(believed)
    assert all(len(choices) == VOTES for choices in stored.values()) and len(stored) == 4
    assert doubled == []
    assert integrity == "ok"
