"""Data-parallel training under `accelerate launch`: two CPU processes, same files, exact metrics."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deprojector.checkpoint import load_deprojector
from deprojector.data import DataConfig, build_dataset, load_part
from deprojector.train import TrainConfig, evaluate, train

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = [
    "a cat in a maid outfit",
    "a red car parked on a quiet street",
    "1girl red hair blue eye black skirt",
    "1boy 1girl in class room",
    "a bowl of fruit on a wooden table",
    "mountains under a starry night sky",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(cfg: TrainConfig, home: Path) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes 2 -m deprojector.train ... --device cpu`."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        # accelerate's --cpu launcher needs MPI for several processes; --multi_gpu starts them
        # with torchrun, and on a machine without CUDA they talk over gloo on the CPU
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
        "-m", "deprojector.train",
        "--data", str(cfg.data), "--clip", str(cfg.clip), "--out", str(cfg.out),
        "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size), "--seed", str(cfg.seed),
        "--device", "cpu",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(home),  # no user-level accelerate config file is read
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, tiny_clip_dir):
    """Two processes write the single-process checkpoint format, train the same model, and log
    held-out metrics identical to a single-process evaluation of the saved checkpoints."""
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(CAPTIONS))
    data = tmp_path / "data"
    build_dataset(
        DataConfig(
            captions=captions, clip=tiny_clip_dir, out=data, samples=36, heldout_fraction=0.36,
            shard_size=16,
        ),
        progress=False,
    )  # fmt: skip
    # 23 train samples in batches of 8: the last batch (7) splits unevenly, 4 + 3; 13 held-out
    # samples make two evaluation chunks (8 + 5), one per process
    single = TrainConfig(
        data=data, clip=tiny_clip_dir, out=tmp_path / "single", epochs=2, batch_size=8,
        device="cpu",
    )  # fmt: skip
    single_history = train(single)
    parallel = replace(single, out=tmp_path / "parallel")

    result = launch_two_processes(parallel, tmp_path / "hf-home")

    assert result.returncode == 0, result.stderr[-3000:]
    # Only the main process prints and writes.
    assert [
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("epoch ")
    ] == [
        "1/2",
        "2/2",
    ]
    assert sorted(p.name for p in parallel.out.iterdir()) == sorted(
        p.name for p in single.out.iterdir()
    )
    heldout = load_part(data, "heldout")
    assert heldout["pooled"].shape[0] == 13 and load_part(data, "train")["pooled"].shape[0] == 23
    history = [
        json.loads(line) for line in (parallel.out / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in history] == [1, 2]
    for epoch, record in enumerate(history, start=1):
        folder = parallel.out / f"epoch-{epoch}"
        reference = single.out / f"epoch-{epoch}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            p.name for p in reference.iterdir()
        )
        meta = json.loads((folder / "config.json").read_text())
        assert meta.keys() == json.loads((reference / "config.json").read_text()).keys()
        assert meta["processes"] == 2 and meta["metrics"] == record

        # Gathered held-out metrics equal a one-process evaluation of the saved weights, exactly.
        # torchrun starts each process with OMP_NUM_THREADS=1, and CPU float sums depend on the
        # thread count, so this evaluation uses one thread too.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fresh = evaluate(load_deprojector(folder), heldout, parallel.batch_size)
        finally:
            torch.set_num_threads(threads)
        assert {f"heldout_{k}": v for k, v in fresh.items()} == {
            k: v for k, v in record.items() if k.startswith("heldout_")
        }

        # Data parallelism computes the same training as one process (up to float rounding).
        weights, expected = (
            load_file(folder / "model.safetensors"),
            load_file(reference / "model.safetensors"),
        )
        assert weights.keys() == expected.keys()
        for name in weights:
            torch.testing.assert_close(weights[name], expected[name], atol=1e-5, rtol=1e-4)
        assert record["train_wmse"] == pytest.approx(
            single_history[epoch - 1]["train_wmse"], rel=1e-5
        )
