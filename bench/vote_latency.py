"""Vote latency in a real browser: keypress -> both next images fully rendered; and cold start.

    .venv/bin/python bench/vote_latency.py                    # 100 votes, 1 and 4 voters
    .venv/bin/python bench/vote_latency.py --votes 20          # a quick run
    .venv/bin/python bench/vote_latency.py --append bench/RESULTS.md
    .venv/bin/python bench/vote_latency.py --think-ms 1000     # voters pause ~1 s per judgement

By default voters press the next key as soon as the previous pair is shown (a stress test: all
four tabs and the server compete for the 2 cores without pause); `--think-ms` adds a pause drawn
uniformly from 0.5x..1.5x that value after each vote, as people looking at images take.

Serves `streamlit run app.py` on a free loopback port from a temp data dir holding a study of
512x512 PNGs, drives Debian's Chromium (Playwright, async, one tab per voter, each its own
session) and times each vote from the key press until the two images of the next pair are
loaded (`complete`, non-zero size, different URLs). Cold start: from launching `streamlit run`
to the vote page's two images visible. Targets (2-core machine): p95 < 300 ms with 4 voters;
cold start < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e"), str(ROOT / "tests" / "app")]

from server import (  # noqa: E402
    APP_IDLE_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGES_READY_JS,
    free_port,
    start_app,
    stop_app,
    wait_healthy,
)
from tiny_study import build_tiny_study  # noqa: E402

# Keep every tab's timers running at full speed: they are all "foreground" voters.
BENCH_ARGS = [
    *CHROMIUM_ARGS,
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
KEYS = ("ArrowLeft", "ArrowRight", "ArrowDown")
SRCS_JS = "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')].map(i => i.src)"


async def open_vote_page(browser, url: str, timeout_ms: float = 60_000):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function(IMAGES_READY_JS, arg=[2, []], timeout=timeout_ms, polling=5)
    return page


async def voter(browser, url: str, votes: int, seed: int, think_s: float = 0.0) -> list[float]:
    """Vote `votes` times by keyboard; the latency of each vote in seconds."""
    rng = random.Random(seed)
    page = await open_vote_page(browser, url)
    latencies = []
    for _ in range(votes):
        await page.wait_for_function(APP_IDLE_JS, polling=5)  # the previous rerun has finished
        shown = await page.evaluate(SRCS_JS)
        start = time.perf_counter()
        await page.keyboard.press(rng.choice(KEYS))
        try:
            await page.wait_for_function(IMAGES_READY_JS, arg=[2, shown], polling=5, timeout=30_000)
        except Exception:
            shot = Path(tempfile.gettempdir()) / f"vote_latency_stuck_{seed}.png"
            await page.screenshot(path=str(shot), full_page=True)
            text = await page.inner_text("body")
            raise RuntimeError(
                f"voter {seed}: no new pair 30 s after vote {len(latencies) + 1}; "
                f"screenshot {shot}; page text: {text[:600]!r}"
            ) from None
        latencies.append(time.perf_counter() - start)
        if think_s:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)
    await page.context.close()
    return latencies


async def measure_votes(
    base: str, tokens: list[str], votes: int, think_s: float = 0.0
) -> list[float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BENCH_ARGS)
        runs = await asyncio.gather(
            *(
                voter(browser, f"{base}/vote?token={t}", votes, k, think_s)
                for k, t in enumerate(tokens)
            )
        )
        await browser.close()
    return [x for run in runs for x in run]


async def measure_cold_start(data_dir: Path, token: str) -> float:
    """Seconds from launching `streamlit run` to the vote page's images visible."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BENCH_ARGS)
        port = free_port()
        start = time.perf_counter()
        process = start_app(data_dir, port, log=data_dir / "cold.log")
        try:
            while True:  # the browser retries until the server answers, as a user would
                try:
                    await open_vote_page(browser, f"http://127.0.0.1:{port}/vote?token={token}")
                    break
                except Exception:  # noqa: BLE001 - connection refused while starting
                    if time.perf_counter() - start > 120:
                        raise
                    await asyncio.sleep(0.05)
            return time.perf_counter() - start
        finally:
            stop_app(process)
            await browser.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)]
    return statistics.median(ordered) * 1000, p95 * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=100, help="votes per voter")
    parser.add_argument("--append", type=Path, help="append a markdown section to this file")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="mean pause after each vote (default 0)"
    )
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        # 5 comparisons x 6 prompts x 2 checkpoints x 2 seeds = 120 pairs per voter
        tiny = build_tiny_study(
            data_dir,
            n_comparisons=5,
            n_prompts=6,
            labels=("epoch-8", "epoch-10"),
            seeds=(0, 1),
            image_size=512,
            voters=8,
        )
        tokens = [tiny.voter_token, *tiny.extra_voter_tokens]
        assert tiny.n_pairs >= args.votes, f"study has {tiny.n_pairs} pairs < --votes"

        cold = asyncio.run(measure_cold_start(data_dir, tokens[-1]))
        print(f"cold start: {cold:.2f} s", flush=True)

        port = free_port()
        process = start_app(data_dir, port)
        try:
            wait_healthy(port, process)
            base = f"http://127.0.0.1:{port}"
            for n, group in ((1, tokens[:1]), (4, tokens[1:5])):
                cpu_before, wall_before = cpu_seconds(process.pid), time.perf_counter()
                latencies = asyncio.run(
                    measure_votes(base, group, args.votes, args.think_ms / 1000)
                )
                server_cpu = (cpu_seconds(process.pid) - cpu_before) / len(latencies) * 1000
                rate = len(latencies) / (time.perf_counter() - wall_before)
                median, p95 = summary(latencies)
                rows.append((n, len(latencies), median, p95, server_cpu, rate))
                print(
                    f"{n} voter(s): {len(latencies)} votes, median {median:.0f} ms, "
                    f"p95 {p95:.0f} ms, server CPU {server_cpu:.0f} ms/vote, {rate:.1f} votes/s",
                    flush=True,
                )
        finally:
            stop_app(process)

    if args.append:
        with open(args.append, "a") as out:
            out.write(
                f"\n## vote_latency\n\n`.venv/bin/python bench/vote_latency.py --votes {args.votes}"
                f" --think-ms {args.think_ms:g}`"
                f" on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, Python "
                f"{platform.python_version()}; the app server, Chromium (one tab per voter) and "
                "the benchmark share the machine's 2 cores. Latency: keypress until both images "
                "of the next pair are loaded; 512x512 PNGs.\n\n"
                "| measure | votes | median | p95 | server CPU per vote | votes/s | target |\n"
                "|---|---|---|---|---|---|---|\n"
            )
            for n, count, median, p95, cpu, rate in rows:
                target = "p95 < 300 ms" if n == 4 else ""
                out.write(
                    f"| {n} voter(s) | {count} | {median:.0f} ms | **{p95:.0f} ms** | "
                    f"{cpu:.0f} ms | {rate:.1f} | {target} |\n"
                )
            out.write(f"| cold start (launch to images) | | **{cold:.2f} s** | | | | < 5 s |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
