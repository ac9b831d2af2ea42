"""Start `streamlit run app.py` on a free loopback port for browser tests and benchmarks, and a
Chromium launched the way this machine needs (Debian's binary, headless, no sandbox)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(
    data_dir: Path,
    port: int,
    log: Path | None = None,
    *,
    script: Path = ROOT / "app.py",
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Launch `script` (the app) on 127.0.0.1:`port` with its data in `data_dir` (not waiting
    for it); `env` adds variables to the environment."""
    env = {**os.environ, "ARENA_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **(env or {})}
    env.pop("DATABASE_URL", None)
    out = open(log or data_dir / "streamlit.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until GET /_stcore/health answers 'ok'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode} before serving")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit on port {port} not healthy after {timeout} s")


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# In the page: true once the vote page shows n images, other than `previous` (a list of URLs),
# every one fully loaded.
IMAGES_READY_JS = """([n, previous]) => {
  const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  const srcs = imgs.map(i => i.src);
  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0)
    && JSON.stringify(srcs) !== JSON.stringify(previous);
}"""

# In the page: true once no script run is in progress (a vote's rerun has finished, so the
# buttons on screen belong to the pair on screen).
APP_IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.getAttribute('data-test-script-state') === 'notRunning';
}"""
