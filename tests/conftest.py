"""Shared fixtures. Everything runs offline: no weights are downloaded.

Under `make test` (ARENA_TEST_STRICT=1) the run stops before any test when a selected test needs
PostgreSQL (TEST_DATABASE_URL) or Chromium and it is missing; a plain `pytest` skips those tests
with a reason instead.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test-fast` runs one pytest-xdist worker per core: torch's own thread pool in each
    # (set when torch is imported, hence here) would oversubscribe the cores and spin
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")  # the browser tests' executable (tests/e2e/server.py)
E2E_DIR = Path(__file__).parent / "e2e"


def pytest_itemcollected(item):
    """Every test under tests/e2e drives Chromium: marked e2e even where its module forgot, so
    `-m "not e2e"` (make test-fast) leaves it out."""
    if item.path.is_relative_to(E2E_DIR) and not item.get_closest_marker("e2e"):
        item.add_marker(pytest.mark.e2e)


def pytest_collection_modifyitems(config, items):
    """Missing system parts: stop the whole run under `make test`, skip with a reason otherwise."""
    needs_browser = [item for item in items if item.get_closest_marker("e2e")]
    needs_postgres = [item for item in items if item.get_closest_marker("postgres")]
    missing = []
    if needs_browser and not CHROMIUM.exists():
        missing.append(f"Chromium at {CHROMIUM} for {len(needs_browser)} browser test(s)")
    if needs_postgres and not os.environ.get("TEST_DATABASE_URL"):
        missing.append(f"TEST_DATABASE_URL for {len(needs_postgres)} PostgreSQL test(s)")
    if missing and os.environ.get("ARENA_TEST_STRICT") == "1":
        pytest.exit(
            f"make test runs every test, but it lacks {' and '.join(missing)}: run `make test` "
            "itself (it installs the system packages and starts PostgreSQL), or `make test-fast` "
            "for the tests that need neither",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    if needs_browser and not CHROMIUM.exists():
        skip = pytest.mark.skip(
            reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does)"
        )
        for item in needs_browser:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny CLIP folder (`tokenizer/`, `text_encoder/` with projection), built once per session."""
    from deprojector.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), hidden_size=32, seed=0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory, tiny_clip_dir):
    """A tiny StableDiffusionPipeline folder sharing the tiny CLIP's text tower, built once."""
    from deprojector.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), tiny_clip_dir, seed=0)
