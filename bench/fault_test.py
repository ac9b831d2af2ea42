"""What a SIGKILL costs pre-generation: restart time, work lost, and whether the data stay sound.

    .venv/bin/python bench/fault_test.py                  # 10 kills, 30 tiny images
    .venv/bin/python bench/fault_test.py --kills 20 --seeds 8

Builds the tiny CLIP / SD models and a study (tests/reliability/tiny_arena.py), times one
uninterrupted run on a copy, then runs the worker in children forked from a forkserver that
imported torch once (as tests/reliability/test_faults.py does) and SIGKILLs each at a seeded
random moment: during start-up or at a random point of an image. Prints per-kill figures, the
total, and the audit of images against rows after the final run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.reliability import workers  # noqa: E402
from tests.reliability.tiny_arena import audit_images, build_tiny_arena  # noqa: E402


def done_jobs(url: str) -> int:
    path = url.removeprefix("sqlite:///")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(
            "SELECT count(*) FROM generation_jobs WHERE status = 'done'"
        ).fetchone()[0]
    finally:
        connection.close()


def wait_for(worker, url: str, target: int) -> float:
    while worker.is_alive() and done_jobs(url) < target:
        time.sleep(0.005)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per prompt (6 images each)")
    parser.add_argument("--seed", type=int, default=20261126, help="seed of the kill moments")
    args = parser.parse_args(argv)

    from deprojector.tiny import build_tiny_clip, build_tiny_sd

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(workers.PRELOAD)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = build_tiny_clip(tmp / "clip")
        sd = build_tiny_sd(tmp / "sd", clip)
        arena = build_tiny_arena(tmp / "data", clip, sd, seeds=tuple(range(args.seeds)))

        # 1. Baseline: one uninterrupted run on a copy of the data dir (forkserver warmed up)
        warm = context.Process(target=time.sleep, args=(0,))
        warm.start()
        warm.join()
        shutil.copytree(tmp / "data", tmp / "baseline")
        baseline = f"sqlite:///{tmp / 'baseline' / 'arena.sqlite3'}"
        worker = context.Process(
            target=workers.generate, args=(baseline, arena.study, str(tmp / "baseline"))
        )
        t0 = time.monotonic()
        worker.start()
        first = wait_for(worker, baseline, 1)
        worker.join()
        uninterrupted_s, startup_s = time.monotonic() - t0, first - t0

        # 2. Killed runs
        run_args = (arena.url, arena.study, str(arena.data_dir))
        rows, child_s = [], 0.0
        for k in range(args.kills):
            before = done_jobs(arena.url)
            worker = context.Process(target=workers.generate, args=run_args)
            t0 = time.monotonic()
            worker.start()
            first_image = None
            if rng.random() < 0.3:
                phase = "start-up"
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                phase = "mid-image"
                finished = wait_for(worker, arena.url, before + 1)
                first_image = round(finished - t0, 2)
                image_s = wait_for(worker, arena.url, before + 2) - finished
                time.sleep(rng.uniform(0.0, image_s))
            alive = worker.is_alive()
            worker.kill()
            worker.join()
            child_s += time.monotonic() - t0
            after = done_jobs(arena.url)
            problems = audit_images(arena, complete=False)
            elapsed = round(time.monotonic() - t0, 2)
            rows.append((k + 1, phase, alive, before, after, first_image, elapsed))
            if problems:
                print(f"kill {k + 1}: {problems}")

        # 3. The final run
        worker = context.Process(target=workers.generate, args=run_args)
        t0 = time.monotonic()
        worker.start()
        worker.join()
        final_s = time.monotonic() - t0
        problems = audit_images(arena)

    print("kill  phase      killed-alive  done-before  done-after  first-image-s  child-s")
    for row in rows:
        print("{:>4}  {:<9}  {!s:<12}  {:>11}  {:>10}  {!s:>13}  {:>7}".format(*row))
    progress = [row[4] - row[3] for row in rows]
    restart = [row[5] for row in rows if row[5] is not None]
    print(
        f"\nimages: {arena.images}; uninterrupted run {uninterrupted_s:.1f} s "
        f"(start-up to first image {startup_s:.1f} s)\n"
        f"{args.kills} kills: {child_s:.1f} s in killed children, final run {final_s:.1f} s, "
        f"total {child_s + final_s:.1f} s; images finished per killed run: mean "
        f"{statistics.fmean(progress):.1f}; restart to first new image: median "
        f"{statistics.median(restart):.2f} s\n"
        f"audit after the final run: {'SOUND' if not problems else problems}"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
