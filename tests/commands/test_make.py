"""The two commands: `make test` checks the system first and runs every test or none, and
`make run` prints the login link with the port the server listens on."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check-system.sh"
ALL_PACKAGES = "chromium fonts-noto-cjk postgresql"


def _fake_bin(folder: Path, uid: int, apt_log: Path | None = None) -> Path:
    """A folder for the front of PATH with an `id` that reports `uid` and, when `apt_log` is
    given, an `apt-get` that records its arguments and creates what the packages would."""
    folder.mkdir()
    (folder / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (folder / "id").chmod(0o755)
    if apt_log is not None:
        (folder / "apt-get").write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {apt_log}\n'
            'case "$*" in *install*)\n'
            '  touch "$CHROMIUM_BIN" && chmod +x "$CHROMIUM_BIN"\n'
            '  mkdir -p "$CJK_FONT_DIR"\n'
            '  mkdir -p "$PG_ROOT/15/bin" && touch "$PG_ROOT/15/bin/initdb" '
            '&& chmod +x "$PG_ROOT/15/bin/initdb";;\n'
            "esac\n"
        )
        (folder / "apt-get").chmod(0o755)
    return folder


def _missing_system(tmp_path: Path, fake_bin: Path) -> dict[str, str]:
    """Environment in which Chromium, the CJK fonts and PostgreSQL are all absent."""
    return {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "CHROMIUM_BIN": str(tmp_path / "chromium"),
        "CJK_FONT_DIR": str(tmp_path / "fonts"),
        "PG_ROOT": str(tmp_path / "postgresql"),
        "PG_BIN_GLOB": str(tmp_path / "postgresql" / "*" / "bin"),
    }


def test_check_system_names_the_exact_apt_command_when_not_root(tmp_path):
    """Not root and packages missing: one line naming the exact apt-get command, exit 1."""
    env = _missing_system(tmp_path, _fake_bin(tmp_path / "bin", uid=1000))
    result = subprocess.run(["bash", CHECK], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"sudo apt-get install -y {ALL_PACKAGES}" in result.stderr


def test_check_system_installs_missing_packages_as_root(tmp_path):
    """As root the missing packages are installed with apt-get, and the check then passes."""
    log = tmp_path / "apt.log"
    env = _missing_system(tmp_path, _fake_bin(tmp_path / "bin", uid=0, apt_log=log))
    result = subprocess.run(["bash", CHECK], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"install -y -qq {ALL_PACKAGES}" in log.read_text()


def test_check_system_does_nothing_when_everything_is_there(tmp_path):
    """Nothing missing: no output, no apt-get call."""
    log = tmp_path / "apt.log"
    env = _missing_system(tmp_path, _fake_bin(tmp_path / "bin", uid=0, apt_log=log))
    subprocess.run(["bash", CHECK], env=env, check=True, capture_output=True)
    log.unlink()
    result = subprocess.run(["bash", CHECK], env=env, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not log.exists()


def test_make_test_stops_before_any_test_when_packages_are_missing(tmp_path):
    """`make test` without the system packages (not root) prints the apt-get line and runs no
    install, no ruff and no pytest."""
    env = _missing_system(tmp_path, _fake_bin(tmp_path / "bin", uid=1000))
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", ROOT, "test"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"sudo apt-get install -y {ALL_PACKAGES}" in result.stderr
    assert "pytest" not in result.stdout + result.stderr
    assert "ruff" not in result.stdout + result.stderr


def test_strict_run_without_postgres_stops_before_any_test():
    """Under `make test` (ARENA_TEST_STRICT=1) a missing TEST_DATABASE_URL stops the run with one
    message instead of silently skipping the PostgreSQL tests."""
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    env["ARENA_TEST_STRICT"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/db/test_auth.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "TEST_DATABASE_URL for" in result.stdout + result.stderr
    assert "passed" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_make_run_link_carries_the_port_the_server_listens_on(tmp_path):
    """With 8501 taken, `make run` serves on another port and its login link names that port."""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("", 8501))
        blocker.listen()
    except OSError:
        pass  # already taken by someone else: just as good
    env = {**os.environ, "ARENA_DATA_DIR": str(tmp_path / "data"), "PY": sys.executable}
    env.pop("PORT", None)
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        ["bash", ROOT / "scripts" / "run.sh"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        link = None
        for line in process.stdout:
            match = re.search(r"http://localhost:(\d+)/\?token=\S+", line)
            if match:
                link = match
                break
        assert link is not None, "no login link printed"
        port = int(link.group(1))
        assert port != 8501
        deadline = time.monotonic() + 120  # a readiness wait, not a speed assertion
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health") as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, f"nothing answers on port {port}"
                time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        blocker.close()
