"""Time to build the photo demo (target: under 30 s on CPU) and to write its report.

    .venv/bin/python bench/photo_demo_bench.py

Cold build in a fresh data directory (photos through the pipelines, import, study), a rerun
(nothing to add), then the report of the study with 4 voters x 30 pairs. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "evaluation")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from db.engine import make_engine, session_factory  # noqa: E402
from evaluation.photo_demo import STUDY_NAME, build_photo_demo  # noqa: E402
from evaluation.report import write_report  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as temp:
        data_dir = Path(temp) / "data"
        began = time.perf_counter()
        build_photo_demo(data_dir)
        cold = time.perf_counter() - began
        began = time.perf_counter()
        build_photo_demo(data_dir)
        warm = time.perf_counter() - began

        from report_study import voted_photo_demo  # votes on the already-built demo

        engine = make_engine(voted_photo_demo(data_dir))
        try:
            began = time.perf_counter()
            with session_factory(engine)() as s:
                result = write_report(s, data_dir, STUDY_NAME, Path(temp) / "report")
            report = time.perf_counter() - began
        finally:
            engine.dispose()
        size = (result.out / "report.html").stat().st_size
    figures = {
        "photo_demo_cold_s": round(cold, 2),
        "photo_demo_rerun_s": round(warm, 2),
        "report_s": round(report, 2),
        "report_html_bytes": size,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(f"photo demo, cold build: {cold:.2f} s (target < 30 s); rerun {warm:.2f} s")
    print(f"report of 90 counted votes: {report:.2f} s, report.html {size / 1e6:.2f} MB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
