"""Processes the fault tests kill with SIGKILL: a generation worker and a voting loop.

    python -m tests.reliability.workers vote URL STUDY_ID ANNOTATOR_ID SEED

`generate` runs in a child forked from a forkserver that imported torch and diffusers once (a
fresh interpreter would spend most of the test importing them). `vote` prints one line per step,
flushed, so the parent knows what the process believed was committed when it died:
`begin PAIR SIDE CHOICE`, `commit PAIR VOTE_ID`, `undo-begin`, `undo-commit PAIR VOTE_ID`.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime

# imported by the forkserver before it forks any child (see test_faults.py)
PRELOAD = ["torch", "diffusers", "transformers", "deprojector.generate", "deprojector.checkpoint"]


def generate(url: str, study: str, data_dir: str) -> None:
    """Render the study's missing images, one per pipeline call (finer kill points)."""
    import torch

    from db.engine import make_engine
    from evaluation.pregenerate import GenerationOptions, run_generation

    torch.set_num_threads(1)
    engine = make_engine(url)
    run_generation(engine, study, GenerationOptions(data_dir=data_dir, batch_size=1, device="cpu"))
    engine.dispose()


def vote(url: str, study_id: int, annotator_id: int, seed: int) -> None:
    """Vote (and now and then undo) until the study runs out of pairs, as the vote page does."""
    from db.engine import make_engine, session_factory
    from db.queries import record_vote, undo_last_vote
    from evaluation.scheduling import next_pair

    rng = random.Random(seed)
    sessions = session_factory(make_engine(url))
    while True:
        with sessions.begin() as s:
            pair = next_pair(s, annotator_id, study_id)
        if pair is None:
            print("finished", flush=True)
            return
        choice = rng.choice(("left", "right", "tie"))
        print(f"begin {pair.pair_id} {pair.left_side} {choice}", flush=True)
        with sessions.begin() as s:
            row = record_vote(
                s, pair.pair_id, annotator_id, pair.left_side, choice, datetime.now(UTC)
            )
            vote_id = row.id
        print(f"commit {pair.pair_id} {vote_id}", flush=True)
        if rng.random() < 0.2:
            print("undo-begin", flush=True)
            with sessions.begin() as s:
                undone = undo_last_vote(s, annotator_id, study_id)
                undone_pair, undone_id = undone.pair_id, undone.id
            print(f"undo-commit {undone_pair} {undone_id}", flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "vote":
        vote(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown command {command!r}; expected 'vote'")
