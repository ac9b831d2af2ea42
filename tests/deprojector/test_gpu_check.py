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


def test_gpu_check_builds_the_real_sd15_architecture(monkeypatch):
    """The GPU check's configs give SD 1.5's exact parameter counts (UNet, VAE, CLIP-L text)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu_check

    with torch.device("meta"):  # shapes only, no memory
        unet = UNet2DConditionModel(**gpu_check.SD15_UNET)
        vae = AutoencoderKL(**gpu_check.SD15_VAE)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **gpu_check.CLIP_L_TEXT))

    def count(model):
        return sum(p.numel() for p in model.parameters())

    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)
