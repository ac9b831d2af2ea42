"""The training loop: per-epoch checkpoints and metrics, exact resume, input checks, the CLI."""

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import deprojector.train as train_module
from deprojector.checkpoint import load_deprojector
from deprojector.data import DataConfig, TrainingDataError, build_dataset, load_part
from deprojector.errors import ConfigMismatchError
from deprojector.model import VTDeprojector, vt_config
from deprojector.text import ClipText
from deprojector.tiny import build_tiny_clip
from deprojector.train import ResumeError, TrainConfig, evaluate, parse_args, train

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = [
    "a cat in a maid outfit",
    "a red car parked on a quiet street",
    "1girl red hair blue eye black skirt",
    "1boy 1girl in class room",
    "a bowl of fruit on a wooden table",
    "mountains under a starry night sky",
    "an old man reading a newspaper",
    "a dog running on the beach at sunset",
]
METRIC_KEYS = {f"heldout_{mode}_{m}" for mode in ("tf", "ar") for m in ("wmse", "mse", "cos")} | {
    "epoch",
    "train_wmse",
    "train_seconds",
    "eval_seconds",
    "samples_per_s",
}
TIMING_KEYS = {"train_seconds", "eval_seconds", "samples_per_s"}


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, tiny_clip_dir) -> Path:
    """A small data folder (38 train / 10 held-out samples) built with the tiny CLIP."""
    folder = tmp_path_factory.mktemp("train-data")
    captions = folder / "captions.txt"
    captions.write_text("\n".join(CAPTIONS))
    cfg = DataConfig(
        captions=captions, clip=tiny_clip_dir, out=folder / "data", samples=48,
        heldout_fraction=0.2, shard_size=16, seed=0,
    )  # fmt: skip
    build_dataset(cfg, progress=False)
    return folder / "data"


def make_config(data: Path, clip: Path, out: Path, **kw) -> TrainConfig:
    settings = dict(epochs=2, batch_size=8, lr=1e-3, seed=0, device="cpu")
    settings.update(kw)
    return TrainConfig(data=data, clip=clip, out=out, **settings)


@pytest.fixture(scope="session")
def two_epoch_run(tmp_path_factory, tiny_data_dir, tiny_clip_dir) -> tuple[TrainConfig, list]:
    """A straight 2-epoch single-process run, shared by several tests."""
    cfg = make_config(tiny_data_dir, tiny_clip_dir, tmp_path_factory.mktemp("run") / "run")
    return cfg, train(cfg)


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_one_checkpoint_per_epoch_with_self_description(two_epoch_run):
    """Each epoch leaves a loadable epoch-N folder whose JSON holds config, seed, data, metrics."""
    cfg, history = two_epoch_run
    assert sorted(p.name for p in cfg.out.iterdir()) == ["epoch-1", "epoch-2", "metrics.jsonl"]
    for epoch in (1, 2):
        folder = cfg.out / f"epoch-{epoch}"
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json",
            "model.safetensors",
            "optimizer.safetensors",
        ]
        model = load_deprojector(folder)
        assert isinstance(model, VTDeprojector) and model.hidden_size == 32
        meta = json.loads((folder / "config.json").read_text())
        assert meta["label"] == f"epoch-{epoch}" and meta["epoch"] == epoch
        assert meta["seed"] == 0
        assert meta["train_config"]["preset"] == "vt-final"
        assert meta["train_config"]["lr"] == 1e-3
        assert (
            meta["data_fingerprint"]
            == json.loads((cfg.data / "manifest.json").read_text())["fingerprint"]
        )
        assert meta["metrics"] == history[epoch - 1]
        assert {"torch", "transformers", "accelerate", "safetensors"} <= set(meta["versions"])


def test_metrics_logged_per_epoch(two_epoch_run, capsys):
    """metrics.jsonl has one finite record per epoch, the same records train() returns."""
    cfg, history = two_epoch_run
    assert [r["epoch"] for r in history] == [1, 2]
    assert read_metrics(cfg.out) == history
    for record in history:
        assert set(record) == METRIC_KEYS
        assert all(math.isfinite(v) for v in record.values())
        assert -1.0 <= record["heldout_tf_cos"] <= 1.0


def test_training_lowers_heldout_error(two_epoch_run, tiny_clip_dir):
    """Two epochs lower the held-out error below that of the untrained model, both modes."""
    cfg, history = two_epoch_run
    clip = ClipText.from_folder(tiny_clip_dir)
    untrained = VTDeprojector.from_clip(clip.text_model, clip.tokenizer, vt_config("vt-final", 32))
    before = evaluate(untrained, load_part(cfg.data, "heldout"), cfg.batch_size)
    assert history[-1]["heldout_tf_wmse"] < before["tf_wmse"]
    assert history[-1]["heldout_ar_wmse"] < before["ar_wmse"]


def test_recorded_metrics_equal_a_fresh_evaluation(two_epoch_run):
    """The held-out metrics in the log are exactly those of the saved checkpoint."""
    cfg, history = two_epoch_run
    model = load_deprojector(cfg.out / "epoch-2")
    fresh = evaluate(model, load_part(cfg.data, "heldout"), cfg.batch_size)
    assert {f"heldout_{k}": v for k, v in fresh.items()} == {
        k: v for k, v in history[-1].items() if k.startswith("heldout_")
    }


def test_resume_continues_exactly(two_epoch_run, tmp_path):
    """Stopping after epoch 1 and rerunning gives the same epoch-2 weights as a straight run."""
    straight, history = two_epoch_run
    cfg = replace(straight, out=tmp_path / "run")
    train(replace(cfg, epochs=1))
    # A crash while writing epoch 2 leaves a partial folder and an incomplete epoch-2/.
    (cfg.out / ".epoch-2.partial").mkdir()
    (cfg.out / "epoch-2").mkdir()
    (cfg.out / "epoch-2" / "config.json").write_text("{}")

    resumed = train(cfg)
    assert [r["epoch"] for r in resumed] == [1, 2]
    expected = load_file(straight.out / "epoch-2" / "model.safetensors")
    got = load_file(cfg.out / "epoch-2" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    for a, b in zip(history, read_metrics(cfg.out), strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {
            k: v for k, v in b.items() if k not in TIMING_KEYS
        }


def test_finished_run_is_not_retrained(two_epoch_run):
    """Rerunning a finished run returns its history and leaves its checkpoints untouched."""
    cfg, history = two_epoch_run
    stamp = (cfg.out / "epoch-2" / "model.safetensors").stat().st_mtime_ns
    assert train(cfg) == history
    assert (cfg.out / "epoch-2" / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "change, message",
    [({"lr": 1e-2}, "lr=0.001.*lr=0.01"), ({"seed": 5}, "seed=0.*seed=5")],
)
def test_resume_refuses_other_settings(two_epoch_run, change, message):
    """Continuing a run with another learning rate or seed fails and names the setting."""
    cfg, _ = two_epoch_run
    with pytest.raises(ResumeError, match=message):
        train(replace(cfg, epochs=3, **change))


def test_ensemble_members_are_trained(tiny_data_dir, tiny_clip_dir, tmp_path):
    """--members 2 saves a 2-member ensemble whose members differ and both moved from init."""
    cfg = make_config(tiny_data_dir, tiny_clip_dir, tmp_path / "ens", epochs=1, members=2)
    train(cfg)
    model = load_deprojector(cfg.out / "epoch-1")
    assert model.num_members == 2
    a, b = (dict(model.members[k].named_parameters()) for k in (0, 1))
    trainable = [n for n, p in a.items() if p.requires_grad]
    assert any(not torch.equal(a[n], b[n]) for n in trainable)
    clip = ClipText.from_folder(tiny_clip_dir)
    init = VTDeprojector.from_clip(
        clip.text_model, clip.tokenizer, vt_config("vt-final", 32), num_members=2, seed=0
    )
    for k in (0, 1):
        start = dict(init.members[k].named_parameters())
        trained = dict(model.members[k].named_parameters())
        assert any(not torch.equal(start[n], trained[n]) for n in trainable)


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"epochs": 0}, ValueError, "--epochs 0"),
        ({"lr": 0.0}, ValueError, "--lr 0.0"),
        ({"device": "tpu"}, ValueError, "--device 'tpu'"),
        ({"preset": "vt-huge"}, ValueError, "--preset 'vt-huge'"),
        ({"hidden_size": 64}, ConfigMismatchError, "--hidden-size 64.*32"),
        ({"clip": Path("/nonexistent/clip")}, FileNotFoundError, "/nonexistent/clip"),
    ],
)
def test_bad_settings_are_refused(two_epoch_run, tmp_path, change, error, message):
    """Invalid options raise before training, naming the option and the value."""
    cfg, _ = two_epoch_run
    with pytest.raises(error, match=message):
        train(replace(cfg, out=tmp_path / "bad", **change))


def test_incomplete_data_folder_is_refused(two_epoch_run, tmp_path):
    """A data folder without manifest.json (an unfinished build) is refused, naming the file."""
    cfg, _ = two_epoch_run
    with pytest.raises(TrainingDataError, match="manifest.json"):
        train(replace(cfg, data=tmp_path, out=tmp_path / "run"))


def test_data_from_another_clip_is_refused(two_epoch_run, tmp_path):
    """Training with a CLIP model other than the data's fails instead of learning garbage."""
    cfg, _ = two_epoch_run
    other = build_tiny_clip(tmp_path / "other-clip", hidden_size=32, seed=1)
    with pytest.raises(ConfigMismatchError, match="not built with the CLIP model"):
        train(replace(cfg, clip=other, out=tmp_path / "run"))


def test_cli_parses_into_the_config(tmp_path):
    """Every documented option lands in TrainConfig; defaults are the article's settings."""
    cfg = parse_args(["--data", "d", "--clip", "c", "--out", "o"])
    assert cfg == TrainConfig(data=Path("d"), clip=Path("c"), out=Path("o"))
    assert (cfg.preset, cfg.epochs, cfg.batch_size, cfg.lr) == ("vt-final", 10, 100, 1e-3)
    cfg = parse_args(
        [
            "--data", "d", "--clip", "c", "--out", "o", "--preset", "vt-mlp-4d", "--hidden-size", "32",
            "--epochs", "3", "--batch-size", "7", "--lr", "0.01", "--seed", "4", "--members", "2",
            "--device", "cpu",
        ]
    )  # fmt: skip
    assert cfg == TrainConfig(
        data=Path("d"), clip=Path("c"), out=Path("o"), preset="vt-mlp-4d", hidden_size=32,
        epochs=3, batch_size=7, lr=0.01, seed=4, members=2, device="cpu",
    )  # fmt: skip


def test_help_documents_the_example(capsys):
    """--help shows the module docstring's CPU-sized example and every option."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "python -m deprojector.train --data runs/tiny-data" in text
    for option in ("--hidden-size", "--epochs", "--batch-size", "--lr", "--seed", "--members"):
        assert option in text


@pytest.mark.slow
def test_docstring_example_runs(tmp_path):
    """The exact commands in the module docstring run (on the tiny models) and train 2 epochs."""
    block = re.search(r"CPU-sized example.*?:\n\n(.*?)\n\n", train_module.__doc__, re.S).group(1)
    script = re.sub(r"^\s+", "", block, flags=re.M)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(read_metrics(tmp_path / "runs" / "tiny-run")) == 2
    assert "epoch 2/2" in result.stdout
