"""bench/gpu_check.sh runs end to end at tiny sizes on CPU and leaves its figures under $OUT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_cpu(tmp_path):
    """`gpu_check.sh --tiny` writes a log and a JSON with every figure the GPU run reports."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    for key in (
        "naive_images_per_s",
        "batched_vt_images_per_s",
        "batched_reference_images_per_s",
        "deproject_share_per_image_pct",
        "train_samples_per_s",
    ):
        assert figures[key] > 0, key
    assert figures["config"]["tiny"] is True and figures["device_name"] == "cpu"
    log = (tmp_path / "gpu_check.log").read_text()
    assert "images/s" in log and "samples/s" in log
