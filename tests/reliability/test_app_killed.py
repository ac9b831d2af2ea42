"""The app server killed with SIGKILL while a vote is being recorded.

A real `streamlit run app.py` and a Chromium tab voting by keyboard; at seeded random moments
right after a key press the server process is SIGKILLed, then started again. Each vote must be
either fully recorded or absent: the live votes are a prefix of the keys pressed that is at
least as long as the votes the page confirmed, and SQLite's integrity_check says ok.
"""

import asyncio
import random
import sqlite3

import pytest

from tests.app.tiny_study import build_tiny_study
from tests.e2e.server import (
    APP_IDLE_JS,
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


def _live_choices(database) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return [
            row[0]
            for row in connection.execute(
                "SELECT choice FROM votes WHERE superseded_at IS NULL ORDER BY voted_at, id"
            )
        ]
    finally:
        connection.close()


def _integrity(database) -> str:
    connection = sqlite3.connect(database)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


async def _vote_until_killed(url: str, process, rng: random.Random, pressed: list[str]) -> int:
    """Vote a few times, then press once more and SIGKILL the server a moment later.
    Returns how many votes the page confirmed (next pair shown) before the kill."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_function(IMAGES_READY_JS, arg=[2, []], timeout=60_000, polling=10)
        confirmed = 0
        for _ in range(rng.randint(1, 3)):
            await page.wait_for_function(APP_IDLE_JS, polling=10, timeout=30_000)
            shown = await page.evaluate(SRCS_JS)
            key = rng.choice(list(KEYS))
            await page.keyboard.press(key)
            pressed.append(KEYS[key])
            await page.wait_for_function(IMAGES_READY_JS, arg=[2, shown], polling=10)
            confirmed += 1
        await page.wait_for_function(APP_IDLE_JS, polling=10, timeout=30_000)
        key = rng.choice(list(KEYS))
        await page.keyboard.press(key)
        pressed.append(KEYS[key])
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        process.kill()
        process.wait()
        await browser.close()
        return confirmed


@pytest.mark.timeout(300)
def test_app_killed_during_a_vote_keeps_each_vote_whole_or_absent(tmp_path):
    """3 SIGKILLs of the server right after a key press: after each, the live votes are the
    pressed choices up to the last confirmed one, plus at most the one in flight; voting then
    resumes on a restarted server; integrity_check ok."""
    tiny = build_tiny_study(tmp_path, n_comparisons=2, n_prompts=3, labels=("epoch-8", "epoch-10"))
    database = tmp_path / "arena.sqlite3"
    rng = random.Random(11)
    pressed: list[str] = []  # the choice of every key press that may have counted
    for _ in range(3):
        port = free_port()
        process = start_app(tmp_path, port)
        try:
            wait_healthy(port, process)
            url = f"http://127.0.0.1:{port}/vote?token={tiny.voter_token}"
            before = len(pressed)
            confirmed = asyncio.run(_vote_until_killed(url, process, rng, pressed))
        finally:
            if process.poll() is None:
                stop_app(process)
        live = _live_choices(database)
        # every confirmed vote is there; the one in flight is whole or absent
        assert live == pressed[: len(live)]
        assert before + confirmed <= len(live) <= len(pressed) == before + confirmed + 1
        if len(live) < len(pressed):
            pressed.pop()  # that vote never happened; the pair comes back
        assert _integrity(database) == "ok"
    assert len(pressed) >= 3
