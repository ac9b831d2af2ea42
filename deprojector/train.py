"""Train a VT deprojector on a data folder; one checkpoint per epoch, resumable, data-parallel.

CPU-sized example on the tiny models (under a minute on 2 idle cores, mostly imports):

    mkdir -p runs && printf '%s\\n' "a cat in a maid outfit" "a red car on a quiet street" \\
        "1girl red hair blue eye black skirt" "1boy 1girl in class room" \\
        "a bowl of fruit on a wooden table" "mountains under a starry night sky" > runs/captions.txt
    python -c "from deprojector.tiny import build_tiny_clip; build_tiny_clip('runs/tiny-clip')"
    python -m deprojector.data --captions runs/captions.txt --clip runs/tiny-clip \\
        --out runs/tiny-data --samples 200 --heldout-fraction 0.2 --shard-size 100
    python -m deprojector.train --data runs/tiny-data --clip runs/tiny-clip --preset vt-final \\
        --out runs/tiny-run --epochs 2 --batch-size 20 --device cpu

Writes `OUT/epoch-N/` (model.safetensors; config.json with config, seed, data fingerprint, metrics
and versions; optimizer.safetensors with Adam and RNG state) and `OUT/metrics.jsonl`: per epoch the
training loss and, on the held-out part, weighted MSE (the loss), plain MSE over positions 1..76
and mean per-position cosine similarity, teacher-forced (tf) and free-running (ar). Hidden states
(N x 77 x D float32) are not held in memory: each batch's rows are read from the shard files (one
seeded permutation over all shards per epoch), so 100k samples at D = 768 train in < 4 GB. Rerunning the same command resumes after the last complete
epoch. Data-parallel (same files; only process 0 writes; --batch-size stays the global batch):

    accelerate launch --multi_gpu --num_processes 2 -m deprojector.train --data ... --out ...

Without CUDA the same launch runs 2 CPU processes over gloo (add --device cpu); accelerate's own
`--cpu` launcher needs MPI for more than one process.
"""

import argparse
import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from deprojector.checkpoint import library_versions, load_deprojector, save_checkpoint
from deprojector.data import open_part, read_manifest
from deprojector.errors import ConfigMismatchError, DeprojectorError
from deprojector.model import PRESETS, VTDeprojector, preset_shape, vt_config, weighted_mse
from deprojector.text import ClipText

OPTIMIZER_FILE = "optimizer.safetensors"
METRICS_FILE = "metrics.jsonl"
EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
# Settings a resumed run must share with the run it continues (epochs may grow).
RESUME_KEYS = ("preset", "hidden_size", "batch_size", "lr", "seed", "members")
METRIC_NAMES = ("wmse", "mse", "cos")  # weighted MSE, unweighted MSE, mean cosine similarity


class ResumeError(DeprojectorError, ValueError):
    """An output folder holds checkpoints of a run with other settings or other data."""


@dataclass(frozen=True)
class TrainConfig:
    data: Path  # folder written by `python -m deprojector.data`
    clip: Path  # the CLIP folder the data was built with (tokenizer/ + text_encoder/)
    out: Path  # run folder: epoch-N/ checkpoints and metrics.jsonl
    preset: str = "vt-final"  # deprojector.model.PRESETS name or combination (preset_shape)
    hidden_size: int | None = None  # D; None = the CLIP model's (they must agree)
    epochs: int = 10  # total; a resumed run continues up to this many
    batch_size: int = 100  # global batch, split across processes; also the eval chunk size
    lr: float = 1e-3  # Adam learning rate
    seed: int = 0  # model init and the per-epoch shuffling
    members: int = 1  # ensemble members K, each trained on its own loss
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"


class _TeacherForced(nn.Module):
    """The deprojector seen by DDP: its forward returns every member's output (K, B, 77, D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.forward_members(embeds, hidden)


def member_losses(outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted MSE of each member, summed: members are trained independently. outputs (K, B, 77, D)."""
    return sum(weighted_mse(out, target, mask) for out in outputs)


def _chunk_sums(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Sums over a chunk of B samples of the per-sample metrics (positions 1..76; 0 is fixed)."""
    b = pred.shape[0]
    err = (pred[:, 1:] - target[:, 1:]).square()  # (B, 76, D)
    cos = F.cosine_similarity(pred[:, 1:], target[:, 1:], dim=-1)  # (B, 76)
    return [
        weighted_mse(pred, target, mask).item() * b,
        err.mean(dim=(1, 2)).sum().item(),
        cos.mean(dim=1).sum().item(),
    ]


@torch.no_grad()
def evaluate(
    model: nn.Module, heldout: dict[str, torch.Tensor], batch_size: int, accelerator=None
) -> dict[str, float]:
    """Held-out metrics, teacher-forced (`tf_*`) and free-running (`ar_*`, model.deproject).

    The data is cut into fixed chunks of `batch_size`; with an accelerator, process r evaluates
    chunks r, r + P, ... and the per-chunk sums are all-reduced, so the result is bit-identical
    to a single-process evaluation of the same model.
    """
    model.eval()
    device = model.sos.device
    n = heldout["pooled"].shape[0]
    starts = list(range(0, n, batch_size))
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    # (chunks, 1 + 6): sample count, then tf and ar sums; zero rows for other processes' chunks
    table = torch.zeros(len(starts), 1 + 2 * len(METRIC_NAMES), dtype=torch.float64)
    for c in range(rank, len(starts), world):
        rows = slice(starts[c], starts[c] + batch_size)
        embeds = heldout["pooled"][rows].to(device)
        target = heldout["hidden"][rows].to(device)  # (B, 77, D)
        mask = heldout["mask"][rows].to(device)
        teacher = model(embeds, target)  # (B, 77, D), members averaged
        free = model.deproject(embeds)  # (B, 77, D), 76 autoregressive steps
        sums = _chunk_sums(teacher, target, mask) + _chunk_sums(free, target, mask)
        table[c] = torch.tensor([embeds.shape[0], *sums], dtype=torch.float64)
    if accelerator is not None and world > 1:
        # x + 0 is exact, so summing the per-process tables reassembles the full one
        table = accelerator.reduce(table.to(accelerator.device), reduction="sum").cpu()
    totals = table.sum(dim=0)
    names = [f"{mode}_{m}" for mode in ("tf", "ar") for m in METRIC_NAMES]
    return {name: (totals[i + 1] / totals[0]).item() for i, name in enumerate(names)}


# --- optimizer + RNG state in safetensors (no pickle) --------------------------------------


def save_training_state(
    path: Path, optimizer: torch.optim.Optimizer, meta: dict[str, object]
) -> None:
    """Adam's tensors as `state.<param>.<name>`, its param groups and `meta` as JSON metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "param_groups": json.dumps(state["param_groups"]),
        "scalars": json.dumps(scalars),
        **{k: json.dumps(v) for k, v in meta.items()},
    }
    save_file(tensors, str(path), metadata=metadata)


def load_training_state(path: Path) -> tuple[dict, torch.Tensor, dict[str, object]]:
    """(optimizer state_dict, torch RNG state, meta) written by `save_training_state`."""
    with safe_open(path, framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in json.loads(metadata.pop("scalars")).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    param_groups = json.loads(metadata.pop("param_groups"))
    meta = {k: json.loads(v) for k, v in metadata.items()}
    return {"state": state, "param_groups": param_groups}, tensors["rng.torch"], meta


def last_checkpoint(out: Path) -> tuple[int, Path] | None:
    """The highest complete `epoch-N` folder (one holding the optimizer state), or None."""
    found = []
    for path in out.glob("epoch-*") if out.is_dir() else []:
        match = EPOCH_DIR.match(path.name)
        if match and (path / OPTIMIZER_FILE).is_file() and (path / "model.safetensors").is_file():
            found.append((int(match.group(1)), path))
    return max(found) if found else None


def settings_of(cfg: TrainConfig, hidden_size: int) -> dict[str, object]:
    """The TrainConfig as plain JSON, with D resolved."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
    settings["hidden_size"] = hidden_size
    return settings


def check_config(cfg: TrainConfig) -> None:
    """Fail early with the option name, the value and what is expected."""
    positive = {"--epochs": cfg.epochs, "--batch-size": cfg.batch_size, "--members": cfg.members}
    for option, value in positive.items():
        if value < 1:
            raise ValueError(f"{option} {value}: expected a positive integer")
    if not cfg.lr > 0:
        raise ValueError(f"--lr {cfg.lr}: expected a positive learning rate such as 1e-3")
    try:
        preset_shape(cfg.preset)
    except ValueError as exc:
        raise ValueError(f"--preset {cfg.preset!r}: {exc}") from None
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {cfg.device!r}: expected 'auto', 'cpu' or 'cuda'")
    if not Path(cfg.clip).is_dir():
        raise FileNotFoundError(
            f"--clip {str(cfg.clip)!r}: no such folder; expected the CLIP folder "
            "(tokenizer/ + text_encoder/) the data was built with"
        )


def train(cfg: TrainConfig) -> list[dict]:
    """Train (or resume) and return one metrics record per epoch, earlier epochs included."""
    from accelerate import Accelerator

    # 1. Check inputs; the accelerator decides the device and this process's rank
    check_config(cfg)
    manifest = read_manifest(cfg.data)
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    if cfg.device == "cuda" and accelerator.device.type != "cuda":
        raise ValueError("--device cuda: no CUDA device is visible; use --device auto or cpu")
    out = Path(cfg.out)
    main = accelerator.is_main_process

    # 2. Model from the CLIP model: constants (sos, null, W^-1) and initialisation
    clip = ClipText.from_folder(cfg.clip)
    d = clip.hidden_size
    if cfg.hidden_size is not None and cfg.hidden_size != d:
        raise ConfigMismatchError(
            f"--hidden-size {cfg.hidden_size}, but the CLIP model in {cfg.clip} has hidden size "
            f"{d}; leave --hidden-size out or pass {d}"
        )
    if manifest["hidden_size"] != d:
        raise ConfigMismatchError(
            f"--data {cfg.data}: samples have D = {manifest['hidden_size']}, the CLIP model in "
            f"{cfg.clip} has D = {d}; rebuild the data with this CLIP model"
        )
    torch.manual_seed(cfg.seed)
    model = VTDeprojector.from_clip(
        clip.text_model, clip.tokenizer, vt_config(cfg.preset, d), cfg.members, cfg.seed
    )
    del clip

    # 3. Data: pooled inputs and masks in memory, hidden states (98 % of the bytes) read from
    # the shard files batch by batch; row 0 of each part is the "" sample, whose input is n
    train_data, heldout = open_part(cfg.data, "train"), open_part(cfg.data, "heldout")
    if not torch.allclose(train_data["pooled"][0], model.null, atol=1e-4):
        raise ConfigMismatchError(
            f"--data {cfg.data} was not built with the CLIP model in {cfg.clip} (its empty-string "
            f'sample differs from pooled("")); rebuild the data or pass the right --clip'
        )
    settings = settings_of(cfg, d)
    data_info = {
        "folder": str(Path(cfg.data).resolve()),
        "fingerprint": manifest["fingerprint"],
        "train_samples": int(train_data["pooled"].shape[0]),
        "heldout_samples": int(heldout["pooled"].shape[0]),
    }
    model.to(accelerator.device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)

    # 4. Resume after the last complete epoch: weights, Adam state, RNG, metrics history
    history: list[dict] = []
    start = 0
    found = last_checkpoint(out)
    if found is not None:
        start, folder = found
        optimizer_state, rng, meta = load_training_state(folder / OPTIMIZER_FILE)
        saved = meta["train_config"]
        for key in RESUME_KEYS:
            if saved.get(key) != settings[key]:
                raise ResumeError(
                    f"{folder}: trained with {key}={saved.get(key)!r}, this run has "
                    f"{key}={settings[key]!r}; use the same settings or another --out folder"
                )
        if meta["data_fingerprint"] != manifest["fingerprint"]:
            raise ResumeError(
                f"{folder}: trained on data {meta['data_fingerprint'][:12]}, --data {cfg.data} is "
                f"{manifest['fingerprint'][:12]}; use that data or another --out folder"
            )
        model.load_state_dict(load_deprojector(folder).state_dict())
        optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(rng)
        history = meta["history"]
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_metrics(out, history)  # drops lines of epochs that never got a checkpoint

    # 5. Epochs: the same seeded shuffle on every process; process r takes rows r, r + P, ...
    wrapped, optimizer = accelerator.prepare(_TeacherForced(model), optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes
    n = train_data["pooled"].shape[0]
    for epoch in range(start + 1, cfg.epochs + 1):
        began = time.perf_counter()
        wrapped.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        sums = torch.zeros(2, dtype=torch.float64)  # loss * samples, samples
        for s in range(0, n, cfg.batch_size):
            batch = order[s : s + cfg.batch_size]
            if len(batch) < world:
                continue  # a last batch too small to give every process a sample
            rows = torch.from_numpy(batch[rank::world])
            embeds = train_data["pooled"][rows].to(accelerator.device)  # (b, D)
            target = train_data["hidden"][rows].to(accelerator.device)  # (b, 77, D)
            mask = train_data["mask"][rows].to(accelerator.device)  # (b, 77)
            loss = member_losses(wrapped(embeds, target), target, mask) / cfg.members
            # DDP averages gradients over processes; weighting by this process's share of the
            # batch makes that average the gradient of the whole batch's mean loss
            share = len(rows) * world / len(batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss * share)
            optimizer.step()
            sums += torch.tensor([loss.item() * len(rows), len(rows)], dtype=torch.float64)
        if world > 1:
            sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
        seconds = time.perf_counter() - began
        metrics = evaluate(model, heldout, cfg.batch_size, accelerator)
        record = {
            "epoch": epoch,
            "train_wmse": (sums[0] / sums[1]).item(),
            **{f"heldout_{k}": v for k, v in metrics.items()},
            "train_seconds": seconds,
            "samples_per_s": sums[1].item() / seconds,  # training only, all processes
            "eval_seconds": time.perf_counter() - began - seconds,
        }
        history.append(record)

        # 6. Checkpoint (process 0 only): a hidden folder renamed to epoch-N when complete
        if main:
            folder = out / f"epoch-{epoch}"
            partial = out / f".epoch-{epoch}.partial"
            meta = {
                "label": folder.name,
                "epoch": epoch,
                "seed": cfg.seed,
                "train_config": settings,
                "data": data_info,
                "data_fingerprint": manifest["fingerprint"],
                "metrics": record,
                "processes": world,
                "versions": library_versions(),
            }
            save_checkpoint(model, partial, meta)
            save_training_state(
                partial / OPTIMIZER_FILE,
                optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                {
                    "train_config": settings,
                    "data_fingerprint": manifest["fingerprint"],
                    "epoch": epoch,
                    "history": history,
                },
            )
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(partial, folder)
            write_metrics(out, history)
            print(format_record(record, cfg.epochs), flush=True)
        accelerator.wait_for_everyone()
    return history


def write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl: one JSON line per checkpointed epoch, rewritten whole (atomic)."""
    tmp = out / f".{METRICS_FILE}.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, out / METRICS_FILE)


def format_record(record: dict, epochs: int) -> str:
    tf = " ".join(f"{m} {record[f'heldout_tf_{m}']:.4g}" for m in METRIC_NAMES)
    ar = " ".join(f"{m} {record[f'heldout_ar_{m}']:.4g}" for m in METRIC_NAMES)
    return (
        f"epoch {record['epoch']}/{epochs}  train wmse {record['train_wmse']:.4g}  "
        f"held-out teacher-forced {tf} | free-running {ar}  "
        f"train {record['train_seconds']:.1f} s ({record['samples_per_s']:.0f} samples/s), "
        f"eval {record['eval_seconds']:.1f} s"
    )


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m deprojector.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = TrainConfig(data=Path(), clip=Path(), out=Path())
    parser.add_argument("--data", type=Path, required=True, help="folder from deprojector.data")
    parser.add_argument(
        "--clip", type=Path, required=True, help="CLIP folder the data was built with"
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (epoch-N/ checkpoints)")
    parser.add_argument(
        "--preset",
        default=defaults.preset,
        help=f"one of {', '.join(sorted(PRESETS))}, or their changes combined, "
        "e.g. vt-embed-1d-vicinity-1",
    )
    parser.add_argument(
        "--hidden-size", type=int, default=None, help="D; default the CLIP model's (must match)"
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global batch")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--members", type=int, default=defaults.members, help="ensemble size K")
    parser.add_argument("--device", default=defaults.device, choices=("auto", "cpu", "cuda"))
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
