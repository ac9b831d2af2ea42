"""Processes the fault tests kill with SIGKILL: a generation worker and a voting loop.

    python -m tests.reliability.workers vote URL STUDY_ID ANNOTATOR_ID SEED [KILL_AT AFTER]

Each takes an optional kill point: the process SIGKILLs itself the moment it reaches that point
for the (AFTER + 1)-th time, so a test kills it at the same step of its work on every run,
whatever the machine's load (bench/fault_test.py kills at random moments instead).

`generate` runs in a child forked from a forkserver that imported torch and diffusers once (a
fresh interpreter would spend most of the test importing them). `vote` prints one line per step,
flushed, so the parent knows what the process believed was committed when it died:
`begin PAIR SIDE CHOICE`, `commit PAIR VOTE_ID`, `undo-begin`, `undo-commit PAIR VOTE_ID`.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import sys
from datetime import UTC, datetime

# imported by the forkserver before it forks any child (see test_faults.py)
PRELOAD = ["torch", "diffusers", "transformers", "deprojector.generate", "deprojector.checkpoint"]

# where a generation worker can be killed, in the order an image passes them
GENERATION_KILL_POINTS = (
    "loaded",  # pipeline and checkpoints loaded, nothing rendered yet
    "rendered",  # a batch rendered in memory, nothing written
    "temp-written",  # the image's temporary file written and fsynced, not yet renamed
    "file-written",  # the image file in place, its row not yet updated (an orphan file)
    "recorded",  # the image's row and job committed
)
# where a voting process can be killed
VOTE_KILL_POINTS = (
    "vote-flushed",  # the vote row inserted inside its transaction, not committed
    "vote-committed",  # committed, not yet reported
    "undo-flushed",  # the undo written inside its transaction, not committed
    "undo-committed",  # the undo committed, not yet reported
)


class _KillSwitch:
    """SIGKILL this process at the (after + 1)-th arrival at `point` (None: never)."""

    def __init__(self, point: str | None, after: int):
        self.point, self.left = point, after

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        if self.left == 0:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.left -= 1

    def after_call(self, point: str, function):
        """`function`, reaching `point` each time it has returned."""

        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            self.reached(point)
            return result

        return wrapped


def generate(url: str, study: str, data_dir: str, kill_at: str | None = None, after: int = 0):
    """Render the study's missing images, one per pipeline call; with `kill_at` (one of
    GENERATION_KILL_POINTS) die there at image `after` + 1 of this run."""
    import torch

    from db.engine import make_engine
    from evaluation import pregenerate
    from evaluation.image_store import TEMP_PREFIX

    if kill_at is not None:
        assert kill_at in GENERATION_KILL_POINTS, kill_at
        switch = _KillSwitch(kill_at, after)
        # fault injection into our own runner: each step reports reaching its point
        pregenerate._load_generator = switch.after_call("loaded", pregenerate._load_generator)
        pregenerate._render = switch.after_call("rendered", pregenerate._render)
        pregenerate.write_image = switch.after_call("file-written", pregenerate.write_image)
        pregenerate._store = switch.after_call("recorded", pregenerate._store)
        replace = os.replace

        def replace_temp(source, target, *args, **kwargs):
            if os.path.basename(source).startswith(TEMP_PREFIX):
                switch.reached("temp-written")
            return replace(source, target, *args, **kwargs)

        os.replace = replace_temp

    torch.set_num_threads(1)
    engine = make_engine(url)
    options = pregenerate.GenerationOptions(data_dir=data_dir, batch_size=1, device="cpu")
    pregenerate.run_generation(engine, study, options)
    engine.dispose()


def vote(
    url: str, study_id: int, annotator_id: int, seed: int, kill_at: str | None = None, after=0
):
    """Vote (and now and then undo) until the study runs out of pairs, as the vote page does;
    with `kill_at` (one of VOTE_KILL_POINTS) die there the (after + 1)-th time."""
    from db.engine import make_engine, session_factory
    from db.queries.votes import record_vote, undo_last_vote
    from evaluation.scheduling import next_pair

    assert kill_at is None or kill_at in VOTE_KILL_POINTS, kill_at
    switch = _KillSwitch(kill_at, after)
    rng = random.Random(seed)
    sessions = session_factory(make_engine(url))
    while True:
        with sessions.begin() as s:
            pair = next_pair(s, annotator_id, study_id)
        if pair is None:
            print("finished", flush=True)
            return
        choice = rng.choice(("left", "right", "tie", "both_bad"))
        print(f"begin {pair.pair_id} {pair.left_side} {choice}", flush=True)
        with sessions.begin() as s:
            row = record_vote(
                s, pair.pair_id, annotator_id, pair.left_side, choice, datetime.now(UTC)
            )
            s.flush()
            switch.reached("vote-flushed")
            vote_id = row.id
        switch.reached("vote-committed")
        print(f"commit {pair.pair_id} {vote_id}", flush=True)
        if rng.random() < 0.3:
            print("undo-begin", flush=True)
            with sessions.begin() as s:
                undone = undo_last_vote(s, annotator_id, study_id)
                s.flush()
                switch.reached("undo-flushed")
                undone_pair, undone_id = undone.pair_id, undone.id
            switch.reached("undo-committed")
            print(f"undo-commit {undone_pair} {undone_id}", flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "vote":
        kill = (args[4], int(args[5])) if len(args) > 4 else (None, 0)
        vote(args[0], int(args[1]), int(args[2]), int(args[3]), *kill)
    else:
        sys.exit(f"unknown command {command!r}; expected 'vote'")
