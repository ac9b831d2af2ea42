"""The background generation worker of a study, as the Studies page runs it (no torch here).

`start_worker` launches `python -m evaluation generate --study=NAME` detached from the app (its
own session: it outlives a page rerun or an app restart), logging to
`<data dir>/logs/generate-study-<id>.log` and recording its pid beside it (`.pid`).
`worker_pid` says whether that process still runs; `stop_worker` sends it SIGTERM, on which the
runner gives its claimed images back and leaves the study a draft. Rerunning `start_worker`
resumes where a stopped or killed run left off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

LOGS_DIR = "logs"  # under the data dir
PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXEC_WAIT_S = 5.0  # at most this long for a just-launched process to finish exec (see below)
PF_KTHREAD = 0x00200000  # /proc/<pid>/stat flags bit of a kernel thread (linux/sched.h)


def log_path(data_dir: Path, study_id: int) -> Path:
    return data_dir / LOGS_DIR / f"generate-study-{study_id}.log"


def pid_path(data_dir: Path, study_id: int) -> Path:
    return data_dir / LOGS_DIR / f"generate-study-{study_id}.pid"


def generate_command(study_name: str, retry_failed: bool = False) -> list[str]:
    """The worker's argv. `--study=NAME` (one argument) so no name is read as an option."""
    command = [sys.executable, "-m", "evaluation", "generate", f"--study={study_name}"]
    return command + (["--retry-failed"] if retry_failed else [])


def start_worker(
    data_dir: Path, study_id: int, study_name: str, retry_failed: bool = False
) -> Path:
    """Launch a detached generation worker for the study; returns its log file. While the
    study's worker still runs (a double click) no second one is started."""
    log = log_path(data_dir, study_id)
    if worker_pid(data_dir, study_id) is not None:
        return log
    log.parent.mkdir(parents=True, exist_ok=True)
    command = generate_command(study_name, retry_failed)
    with open(log, "a") as handle:
        handle.write(f"\n=== {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the app, nor by a page rerun
            env={**os.environ, "PYTHONUNBUFFERED": "1", "ARENA_DATA_DIR": str(data_dir)},
        )
    # reap it when it exits, so a finished or killed worker never lingers as a zombie that
    # still looks alive to `worker_pid`
    threading.Thread(target=process.wait, daemon=True).start()
    temp = pid_path(data_dir, study_id).with_suffix(".pid.tmp")
    temp.write_text(f"{process.pid}\n")
    os.replace(temp, pid_path(data_dir, study_id))
    return log


def is_generate_worker(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) `evaluation generate` process; where /proc is
    missing, whether the pid exists at all."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True
    deadline = time.monotonic() + EXEC_WAIT_S
    while True:
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # exited meanwhile
            return False
        state, flags = stat[0], int(stat[6])
        if state in ("Z", "X") or flags & PF_KTHREAD:  # a kernel thread: its cmdline is empty
            return False
        # Popen returns while the child is still inside execve: for a moment its cmdline reads
        # empty. A worker launched a moment ago must count as running (a double click), so
        # wait for exec to finish rather than take the empty cmdline for another program.
        if cmdline or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    argv = cmdline.split(b"\0")
    return b"evaluation" in argv and b"generate" in argv


def worker_pid(data_dir: Path, study_id: int) -> int | None:
    """The pid of the study's worker started by `start_worker` while it runs, else None."""
    try:
        pid = int(pid_path(data_dir, study_id).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_generate_worker(pid) else None


def stop_worker(data_dir: Path, study_id: int) -> bool:
    """Ask the study's worker to stop (SIGTERM: it gives back its claimed images and leaves the
    study a draft); False when none was running."""
    pid = worker_pid(data_dir, study_id)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return True


def log_tail(data_dir: Path, study_id: int, lines: int = 20) -> str:
    path = log_path(data_dir, study_id)
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def is_stalled(study_status: str, images_to_render: int, worker_running: bool) -> bool:
    """A study left 'generating' with images still to render and no worker alive: its worker
    died (killed, machine restarted) before it could say so. Restarting it resumes the run."""
    return study_status == "generating" and images_to_render > 0 and not worker_running


def seconds_left(images_to_render: int, seconds_per_image: float | None) -> float | None:
    """Estimated seconds until the images are rendered, at the measured rate (None: no rate
    measured yet)."""
    if seconds_per_image is None:
        return None
    return images_to_render * seconds_per_image
