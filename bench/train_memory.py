"""Peak memory and speed of VT training when hidden states are read from the shards on demand
(`deprojector.data.open_part`, what `python -m deprojector.train` does) vs held in memory
(`load_part`, the old way). Issue 10 #11: 100k samples at D = 768 under 4 GB, samples/s within
10 % of in-memory.

    .venv/bin/python bench/train_memory.py --samples 100000 --memory-samples 10000 --steps 20
    .venv/bin/python bench/train_memory.py --samples 2000 --memory-samples 500 \\
        --hidden-size 64 --steps 5                                           # a quick smoke run

1. Writes a synthetic data folder (random tensors as real shards in `deprojector.data`'s format,
   with a manifest; no CLIP needed) of --samples, and a second folder holding the first
   --memory-samples of it (links to the same shard files).
2. Trains vt-final (random init) for --steps batches of a seeded permutation over the whole part,
   as the training loop does (forward of every member, weighted MSE, backward, Adam), once per
   mode in a fresh subprocess so that each peak RSS (ru_maxrss) is its own:
   sharded on the big folder, sharded on the small one, in memory on the small one.
Prints a table and one JSON line. The data folder is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deprojector.data import FORMAT, load_part, open_part, shard_name, write_shard  # noqa: E402
from deprojector.model import SEQ_LEN, VTDeprojector, vt_config  # noqa: E402
from deprojector.train import member_losses  # noqa: E402


def write_synthetic(folder: Path, samples: int, d: int, shard_size: int, seed: int = 0) -> None:
    """A data folder of random samples: `samples` train rows, 2 held-out rows."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    parts = {}
    for part, count in (("train", samples), ("heldout", 2)):
        shards = []
        for index, start in enumerate(range(0, count, shard_size)):
            n = min(shard_size, count - start)
            lengths = torch.randint(3, 40, (n, 1), generator=g)
            tensors = {
                "pooled": torch.randn(n, d, generator=g),
                "text_embeds": torch.randn(n, d, generator=g),
                "hidden": torch.randn(n, SEQ_LEN, d, generator=g),
                "mask": (torch.arange(SEQ_LEN) < lengths).to(torch.int64),
            }
            meta = {"format": FORMAT, "build_key": "synthetic", "part": part}
            meta["kinds"] = json.dumps(["normal"] * n)
            write_shard(folder / shard_name(part, index), tensors, meta)
            shards.append({"file": shard_name(part, index), "samples": n, "digest": "synthetic"})
        parts[part] = {"samples": count, "kinds": {"normal": count}, "shards": shards}
    write_manifest(folder, d, parts)


def write_manifest(folder: Path, d: int, parts: dict) -> None:
    manifest = {
        "format": FORMAT,
        "fingerprint": "synthetic",
        "hidden_size": d,
        "projection_dim": d,
        "samples": sum(p["samples"] for p in parts.values()),
        "parts": parts,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def link_subset(big: Path, small: Path, samples: int) -> int:
    """`small` holds links to the first shards of `big` covering `samples` train rows."""
    manifest = json.loads((big / "manifest.json").read_text())
    small.mkdir(parents=True, exist_ok=True)
    train, total = [], 0
    for shard in manifest["parts"]["train"]["shards"]:
        if total >= samples:
            break
        train.append(shard)
        total += shard["samples"]
    for shard in train + manifest["parts"]["heldout"]["shards"]:
        target = small / shard["file"]
        if not target.exists():
            os.symlink(big / shard["file"], target)
    parts = {
        "train": {"samples": total, "kinds": {"normal": total}, "shards": train},
        "heldout": manifest["parts"]["heldout"],
    }
    write_manifest(small, manifest["hidden_size"], parts)
    return total


def run_mode(mode: str, data: Path, steps: int, batch: int, seed: int) -> dict:
    """Train `steps` batches; the figures of this process alone (run in a fresh subprocess)."""
    began = time.perf_counter()
    part = open_part(data, "train") if mode == "sharded" else load_part(data, "train")
    load_s = time.perf_counter() - began
    d = part["pooled"].shape[1]
    n = part["pooled"].shape[0]
    model = VTDeprojector(vt_config("vt-final", d), seed=seed).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    order = np.random.default_rng([seed, 1]).permutation(n)  # as train.py's epoch 1
    step_s, read_s = [], []
    for s in range(0, min(n, steps * batch), batch):
        start = time.perf_counter()
        rows = torch.from_numpy(order[s : s + batch])
        embeds, target, mask = part["pooled"][rows], part["hidden"][rows], part["mask"][rows]
        read = time.perf_counter()
        loss = member_losses(model.forward_members(embeds, target), target, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step_s.append(time.perf_counter() - start)
        read_s.append(read - start)
    # Linux reports ru_maxrss in KiB
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    median = statistics.median(step_s)
    return {
        "mode": mode,
        "samples": n,
        "steps": len(step_s),
        "batch": batch,
        "load_s": load_s,
        "peak_rss_mib": peak_mb,
        "median_step_s": median,
        "samples_per_s": batch / median,
        "median_read_ms": 1000 * statistics.median(read_s),
        "read_share": sum(read_s) / sum(step_s),
    }


def subprocess_run(args: argparse.Namespace, mode: str, data: Path) -> dict:
    command = [sys.executable, __file__, "--run", mode, "--data", str(data)]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    command += ["--threads", str(args.threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--memory-samples", type=int, default=10_000)
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--data", type=Path, default=Path("/tmp/deprojector-train-memory"))
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--run", choices=("sharded", "memory"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.run:  # one mode, in its own process
        print(json.dumps(run_mode(args.run, args.data, args.steps, args.batch_size, seed=0)))
        return

    # 1. Data: the big folder (written once; reused with --keep) and the in-memory subset
    big, small = args.data / "big", args.data / "small"
    began = time.perf_counter()
    if not (big / "manifest.json").is_file():
        write_synthetic(big, args.samples, args.hidden_size, args.shard_size)
    write_s = time.perf_counter() - began
    link_subset(big, small, args.memory_samples)
    size_gb = sum(p.stat().st_size for p in big.iterdir()) / 1e9

    # 2. Train in each mode; the big in-memory run is what no longer fits
    try:
        load = os.getloadavg()
        results = [
            subprocess_run(args, "memory", small),
            subprocess_run(args, "sharded", small),
            subprocess_run(args, "sharded", big),
        ]
        load_after = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(args.data)

    print(
        f"D={args.hidden_size}, {args.samples} samples ({size_gb:.1f} GB on disk, written in "
        f"{write_s:.0f} s), batch {args.batch_size}, {args.steps} steps, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} -> {load_after[0]:.1f}"
    )
    print("| mode | samples | peak RSS MiB | samples/s | median read ms/batch | read share |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['samples']} | {r['peak_rss_mib']:.0f} | "
            f"{r['samples_per_s']:.1f} | {r['median_read_ms']:.1f} | {100 * r['read_share']:.1f} % |"
        )
    print(json.dumps({"samples": args.samples, "size_gb": size_gb, "results": results}))


if __name__ == "__main__":
    main()
