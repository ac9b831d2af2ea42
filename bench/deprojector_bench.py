"""Benchmark of the VT deprojector on CPU: cached vs naive inference, and training throughput.

    .venv/bin/python bench/deprojector_bench.py                    # D = 768, as in RESULTS.md
    .venv/bin/python bench/deprojector_bench.py --hidden-size 64   # a quick smoke run

Random weights (the speed does not depend on them). Prints a table and one JSON line.
Targets (issue 2): cached <= 55 ms/prompt at batch 1, <= 25 ms/prompt at batch 16, training
>= 26 samples/s; the author's prefix-recomputing code took 1.1 s / 0.44 s per prompt on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deprojector.model import SEQ_LEN, VTDeprojector, vt_config, weighted_mse  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Fastest of `repeats` calls, in seconds, after one warm-up call (the 2 cores are shared,
    so the minimum is the least disturbed figure)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_inference(model: VTDeprojector, batch: int, repeats: int) -> dict:
    embeds = torch.randn(batch, model.hidden_size, generator=torch.Generator().manual_seed(batch))
    cached = timed(lambda: model.deproject(embeds), repeats)
    naive = timed(lambda: model.deproject(embeds, use_cache=False), 1)
    diff = (model.deproject(embeds) - model.deproject(embeds, use_cache=False)).abs().max()
    return {
        "batch": batch,
        "cached_ms_per_prompt": 1000 * cached / batch,
        "naive_ms_per_prompt": 1000 * naive / batch,
        "speedup": naive / cached,
        "max_abs_diff": float(diff),
    }


def bench_weight_streaming(model: VTDeprojector) -> float:
    """ms to multiply one vector by every weight a cached step reads (10 D^2 at vt-final), 76
    times: the memory-bandwidth floor of batch-1 decoding in float32 on this machine."""
    m = model.members[0]
    w = m.inference_weights()
    weights = [w["w_qkv"], w["t"], w["w_a"], m.mlp_fc1.weight.detach(), m.mlp_fc2.weight.detach()]
    inputs = [torch.randn(1, t.shape[1]) for t in weights]

    def run():
        with torch.no_grad():
            for _ in range(SEQ_LEN - 1):
                for t, x in zip(weights, inputs, strict=True):
                    torch.nn.functional.linear(x, t)

    return 1000 * timed(run, 3)


def bench_training(model: VTDeprojector, batch: int, steps: int) -> float:
    d = model.hidden_size
    g = torch.Generator().manual_seed(0)
    embeds, target = torch.randn(batch, d, generator=g), torch.randn(batch, SEQ_LEN, d, generator=g)
    mask = (torch.arange(SEQ_LEN) < torch.randint(3, 40, (batch, 1), generator=g)).float()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        loss = weighted_mse(model(embeds, target), target, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return batch / timed(step, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--preset", default="vt-final")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of cached inference")
    parser.add_argument("--train-batch", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load = os.getloadavg()
    model = VTDeprojector(vt_config(args.preset, args.hidden_size), seed=0)
    with torch.no_grad():
        model.null.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
        model.sos.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(2))
    model.eval()
    rows = [bench_inference(model, batch, args.repeats) for batch in (1, 16)]
    floor = bench_weight_streaming(model)
    samples_per_s = bench_training(model.train(), args.train_batch, args.train_steps)

    print(
        f"VT {args.preset} D={args.hidden_size}, torch {torch.__version__}, "
        f"{args.threads} threads, {platform.processor() or platform.machine()}, "
        f"load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print("| batch | cached ms/prompt | naive ms/prompt | speedup | max abs diff |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['cached_ms_per_prompt']:.1f} | {r['naive_ms_per_prompt']:.1f} "
            f"| {r['speedup']:.1f}x | {r['max_abs_diff']:.1e} |"
        )
    print(f"batch-1 weight-streaming floor (76 steps x per-step weights): {floor:.1f} ms")
    print(
        f"training (batch {args.train_batch}, fwd + weighted MSE + bwd + Adam): {samples_per_s:.1f} samples/s"
    )
    print(
        json.dumps(
            {
                "preset": args.preset,
                "hidden_size": args.hidden_size,
                "threads": args.threads,
                "load_average": load[0],
                "inference": rows,
                "batch1_weight_streaming_floor_ms": floor,
                "train_samples_per_s": samples_per_s,
            }
        )
    )


if __name__ == "__main__":
    main()
