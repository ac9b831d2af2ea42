"""Start the arena with Streamlit's upload ceiling set from ARENA_MAX_UPLOAD_MB (what `make run`
does); other arguments go to `streamlit run`.

    python -m arena_ui.serve --server.headless true
    ARENA_MAX_UPLOAD_MB=64 python -m arena_ui.serve --server.port 8502

A bad ARENA_MAX_UPLOAD_MB (0, -5, abc, 0.5) exits 2 with one line naming the value and the fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from evaluation.checkpoints import UploadCapError, upload_cap_mb

APP = Path(__file__).resolve().parents[1] / "app.py"


def command(args: list[str]) -> list[str]:
    """The `streamlit run` command line for `args`, with --server.maxUploadSize appended."""
    cap = upload_cap_mb()
    return [
        sys.executable, "-m", "streamlit", "run", str(APP), *args,
        "--server.maxUploadSize", str(cap),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    try:
        cmd = command(list(sys.argv[1:] if argv is None else argv))
    except UploadCapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
