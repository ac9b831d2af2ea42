"""Training data for the deprojector: captions -> (pooled, text_embeds, hidden, mask) shards.

Each sample is normal (input p of a caption, target H of it), split (cut at a space into A and B:
input n + (p_A - n) + (p_B - n), target H of the caption) or combine (input n + (p_C1 - n) +
(p_C2 - n), target H of "C1 C2"), about 40 / 30 / 30 %, plus one empty-string sample per part
(spec section 6). CPU-sized example (tiny CLIP from `deprojector.tiny.build_tiny_clip`):

    python -m deprojector.data --captions captions.txt --clip tiny-clip --out data/tiny \
        --samples 200 --heldout-fraction 0.1 --shard-size 64 --seed 0

Writes `train-00000.safetensors` ..., `heldout-00000.safetensors` ... and `manifest.json`.
Deterministic for a seed on one device; a rerun skips shards already written (each is written
atomically).
"""

import argparse
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from deprojector.device import pick_device
from deprojector.errors import DeprojectorError

FORMAT = "deprojector-data/1"
PARTS = ("train", "heldout")
KIND_SHARES = {"normal": 0.4, "split": 0.3, "combine": 0.3}  # drawn per sample
TENSORS = ("pooled", "text_embeds", "hidden", "mask")


class TrainingDataError(DeprojectorError, ValueError):
    """A data folder is incomplete, inconsistent, or was built with other settings."""


@dataclass(frozen=True)
class DataConfig:
    captions: Path  # text file, one caption per line (blank lines are skipped)
    clip: Path  # folder with tokenizer/ + text_encoder/ (CLIPTextModelWithProjection)
    out: Path
    samples: int | None = None  # total over both parts, empty samples included; None = #captions
    heldout_fraction: float = 0.1  # of captions and of samples, in (0, 1)
    shard_size: int = 1000  # samples per shard file
    seed: int = 0
    batch_size: int = 64  # texts per CLIP forward pass
    device: str = "auto"  # where CLIP runs: "auto" (CUDA when present), "cpu" or "cuda"


@dataclass(frozen=True)
class SampleSpec:
    """One planned sample: the texts whose pooled vectors are summed, and the target text."""

    kind: str  # "empty", "normal", "split" or "combine"
    inputs: tuple[str, ...]  # input = n + sum_i (p_i - n)
    target: str  # its hidden states (and mask) are the target

    def as_normal(self) -> "SampleSpec":
        """The fallback when a text is truncated: the first caption as a normal sample."""
        text = self.target if self.kind == "split" else self.inputs[0]
        return SampleSpec("normal", (text,), text)


def read_captions(path: Path) -> list[str]:
    """Non-blank, stripped lines of a UTF-8 caption file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"--captions {str(path)!r}: no such file; expected a UTF-8 text file with one caption per line"
        )
    captions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    captions = [c for c in captions if c]
    if len(captions) < 2:
        raise TrainingDataError(
            f"--captions {str(path)!r}: found {len(captions)} non-blank lines; "
            "expected at least 2 captions (one for each data part)"
        )
    return captions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_part(captions: list[str], count: int, rng: np.random.Generator) -> list[SampleSpec]:
    """`count` samples: the empty one first, then kinds drawn per sample from KIND_SHARES.

    Captions are used in passes of a fresh permutation, so each is used about equally often.
    Splits with no usable space and combines with a single caption fall back to normal here;
    truncation is only known after encoding (see `SampleSpec.as_normal`).
    """
    specs = [SampleSpec("empty", ("",), "")]
    order: list[int] = []
    while len(specs) < count:
        if not order:
            order = rng.permutation(len(captions)).tolist()
        i = order.pop()
        caption = captions[i]
        u = rng.random()
        if u < KIND_SHARES["normal"]:
            specs.append(SampleSpec("normal", (caption,), caption))
        elif u < KIND_SHARES["normal"] + KIND_SHARES["split"]:
            cuts = [
                k
                for k, ch in enumerate(caption)
                if ch == " " and caption[:k].strip() and caption[k + 1 :].strip()
            ]
            if not cuts:
                specs.append(SampleSpec("normal", (caption,), caption))
                continue
            k = cuts[rng.integers(len(cuts))]
            halves = (caption[:k].strip(), caption[k + 1 :].strip())
            specs.append(SampleSpec("split", halves, caption))
        else:
            if len(captions) < 2:
                specs.append(SampleSpec("normal", (caption,), caption))
                continue
            j = int(rng.integers(len(captions) - 1))
            j += j >= i  # any other caption
            first, second = caption, captions[j]
            specs.append(SampleSpec("combine", (first, second), f"{first} {second}"))
    return specs


def plan(cfg: DataConfig, captions: list[str]) -> dict[str, list[SampleSpec]]:
    """The samples of both parts. Held-out captions are disjoint from training captions."""
    n_samples = len(captions) if cfg.samples is None else cfg.samples
    if n_samples < 4:
        raise TrainingDataError(
            f"--samples {n_samples}: expected at least 4 (two per part, the empty sample included)"
        )
    if not 0.0 < cfg.heldout_fraction < 1.0:
        raise TrainingDataError(
            f"--heldout-fraction {cfg.heldout_fraction}: expected a number strictly between 0 and 1"
        )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(captions))
    n_heldout_captions = min(len(captions) - 1, max(1, round(len(captions) * cfg.heldout_fraction)))
    heldout_captions = [captions[i] for i in sorted(order[:n_heldout_captions])]
    train_captions = [captions[i] for i in sorted(order[n_heldout_captions:])]
    n_heldout = min(n_samples - 2, max(2, round(n_samples * cfg.heldout_fraction)))
    return {
        "train": plan_part(
            train_captions, n_samples - n_heldout, np.random.default_rng([cfg.seed, 0])
        ),
        "heldout": plan_part(heldout_captions, n_heldout, np.random.default_rng([cfg.seed, 1])),
    }


def encode_shard(clip, specs: list[SampleSpec], null, batch_size: int):
    """Encode the texts of `specs` and assemble the samples; returns (tensors, final specs).

    `null` is the encoding of "" (pooled n (D,), text_embeds t_n (P,)). Composed inputs are
    n + sum_i (p_i - n); text_embeds are composed the same way, which equals W applied to the
    composed pooled vector because W is linear with no bias.
    """
    texts = list(dict.fromkeys(t for s in specs for t in (*s.inputs, s.target)))
    targets = {s.target for s in specs} | {s.as_normal().target for s in specs}
    pooled, text_embeds, truncated, hidden, mask = {}, {}, {}, {}, {}
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        enc = clip.encode(batch)
        batch_pooled, batch_embeds = enc.pooled.cpu(), enc.text_embeds.cpu()  # (b, D), (b, P)
        batch_hidden, batch_mask = enc.hidden.cpu(), enc.mask.cpu()  # (b, 77, D), (b, 77)
        for row, text in enumerate(batch):
            pooled[text], text_embeds[text] = batch_pooled[row], batch_embeds[row]
            truncated[text] = enc.truncated[row]
            if text in targets:  # keep (77, D) states only where they are needed
                hidden[text], mask[text] = batch_hidden[row].clone(), batch_mask[row].clone()

    final = []
    for s in specs:
        if s.kind in ("split", "combine") and any(truncated[t] for t in (*s.inputs, s.target)):
            s = s.as_normal()  # a truncated text's pooled vector does not see all of it
        final.append(s)

    def compose(vectors: dict, origin: torch.Tensor, s: SampleSpec) -> torch.Tensor:
        # n + sum_i (p_i - n) = sum_i p_i - (k - 1) n; for one input exactly p
        return sum(vectors[t] for t in s.inputs) - (len(s.inputs) - 1) * origin

    tensors = {
        "pooled": torch.stack([compose(pooled, null["pooled"], s) for s in final]),  # (N, D)
        "text_embeds": torch.stack(
            [compose(text_embeds, null["text_embeds"], s) for s in final]
        ),  # (N, P)
        "hidden": torch.stack([hidden[s.target] for s in final]).float(),  # (N, 77, D)
        "mask": torch.stack([mask[s.target] for s in final]).to(torch.int64),  # (N, 77)
    }
    return {name: t.contiguous() for name, t in tensors.items()}, final


def shard_name(part: str, index: int) -> str:
    return f"{part}-{index:05d}.safetensors"


def build_key(cfg: DataConfig, captions_sha256: str) -> str:
    """Identifies the settings a shard was built with, so a resume never mixes two builds."""
    settings = {
        "format": FORMAT,
        "captions_sha256": captions_sha256,
        "clip": str(Path(cfg.clip).resolve()),
        "samples": cfg.samples,
        "heldout_fraction": cfg.heldout_fraction,
        "shard_size": cfg.shard_size,
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_shard_meta(path: Path) -> dict[str, str]:
    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def shard_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 of a shard's content. Not of its bytes: safetensors orders metadata arbitrarily."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_shard(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    """Write to a temporary name in the same folder, then rename: a shard is whole or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def build_dataset(cfg: DataConfig, progress: bool = True) -> dict:
    """Build (or finish building) the data folder `cfg.out`; returns the manifest."""
    from deprojector.text import ClipText

    # 1. Check inputs and plan every sample (cheap, text only)
    if cfg.shard_size < 1 or cfg.batch_size < 1:
        raise TrainingDataError(
            f"--shard-size {cfg.shard_size} / --batch-size {cfg.batch_size}: expected positive integers"
        )
    captions_path = Path(cfg.captions)
    captions = read_captions(captions_path)
    captions_sha256 = sha256_file(captions_path)
    specs = plan(cfg, captions)
    key = build_key(cfg, captions_sha256)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    # 2. Load CLIP and encode "" once: n and t_n are the origin of every composed input
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise TrainingDataError(f"--device {cfg.device!r}: expected 'auto', 'cpu' or 'cuda'")
    clip = ClipText.from_folder(
        cfg.clip, device=pick_device(None if cfg.device == "auto" else cfg.device)
    )
    empty = clip.encode([""])
    if empty.text_embeds is None:
        raise TrainingDataError(
            f"--clip {str(cfg.clip)!r}: text_encoder/ has no text projection; "
            "expected a CLIPTextModelWithProjection (text_embeds t = W p)"
        )
    null = {"pooled": empty.pooled[0].cpu(), "text_embeds": empty.text_embeds[0].cpu()}

    # 3. Shards: skip those already written by this build, encode the rest
    parts = {}
    total = sum(len(s) for s in specs.values())
    with tqdm(total=total, unit="sample", desc="deprojector data", disable=not progress) as bar:
        for part, part_specs in specs.items():
            kinds = dict.fromkeys(["empty", *KIND_SHARES], 0)
            shards = []
            for index in range(math.ceil(len(part_specs) / cfg.shard_size)):
                chunk = part_specs[index * cfg.shard_size : (index + 1) * cfg.shard_size]
                path = out / shard_name(part, index)
                if path.exists():
                    meta = read_shard_meta(path)
                    if meta.get("build_key") != key:
                        raise TrainingDataError(
                            f"{path}: written by another build (key {meta.get('build_key')!r}, "
                            f"expected {key!r}: other captions, CLIP folder, seed or sizes); "
                            "use another --out folder or delete this one"
                        )
                    shard_kinds = json.loads(meta["kinds"])
                    digest = shard_digest(load_file(path), meta)
                else:
                    with torch.no_grad():
                        tensors, final = encode_shard(clip, chunk, null, cfg.batch_size)
                    shard_kinds = [s.kind for s in final]
                    metadata = {
                        "format": FORMAT,
                        "build_key": key,
                        "part": part,
                        "kinds": json.dumps(shard_kinds),
                        "texts": json.dumps([[list(s.inputs), s.target] for s in final]),
                    }
                    write_shard(path, tensors, metadata)
                    digest = shard_digest(tensors, metadata)
                for kind in shard_kinds:
                    kinds[kind] += 1
                shards.append({"file": path.name, "samples": len(chunk), "digest": digest})
                bar.update(len(chunk))
            parts[part] = {"samples": len(part_specs), "kinds": kinds, "shards": shards}

    # 4. Manifest last: its presence means the folder is complete
    fingerprint = hashlib.sha256(
        json.dumps([[s["file"], s["digest"]] for p in parts.values() for s in p["shards"]]).encode()
    ).hexdigest()
    manifest = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "seed": cfg.seed,
        "clip": str(Path(cfg.clip).resolve()),
        "hidden_size": int(null["pooled"].shape[0]),
        "projection_dim": int(null["text_embeds"].shape[0]),
        "captions": {
            "file": str(captions_path.resolve()),
            "sha256": captions_sha256,
            "count": len(captions),
        },
        "samples": total,
        "parts": parts,
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a complete data folder (built by `build_dataset`)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise TrainingDataError(
            f"{path}: missing; the data folder is not complete. "
            "Run (or rerun, it resumes) `python -m deprojector.data --out "
            f"{folder} ...` first"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise TrainingDataError(
            f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}; rebuild the data"
        )
    return manifest


def _part_files(folder: Path, part: str) -> list[Path]:
    """The shard files of one part, in manifest order, each checked to exist."""
    if part not in PARTS:
        raise ValueError(f"part={part!r}: expected one of {PARTS}")
    manifest = read_manifest(folder)
    paths = []
    for shard in manifest["parts"][part]["shards"]:
        path = folder / shard["file"]
        if not path.is_file():
            raise TrainingDataError(
                f"{path}: listed in manifest.json but missing; rebuild the data"
            )
        paths.append(path)
    return paths


def load_part(folder: str | Path, part: str) -> dict[str, torch.Tensor]:
    """All samples of one part (`"train"` or `"heldout"`) as tensors in memory: pooled (N, D),
    text_embeds (N, P), hidden (N, 77, D), mask (N, 77). See `open_part` for large parts."""
    loaded = []
    for path in _part_files(Path(folder), part):
        tensors = load_file(path)
        missing = [name for name in TENSORS if name not in tensors]
        if missing:
            raise TrainingDataError(f"{path}: tensors {missing} missing; expected {list(TENSORS)}")
        loaded.append(tensors)
    return {name: torch.cat([t[name] for t in loaded]) for name in TENSORS}


MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on a header


def _tensor_location(path: Path, name: str) -> tuple[int, tuple[int, ...]]:
    """(byte offset of the data, shape) of float32 tensor `name` in a safetensors file.

    Read from the file's header (8-byte little-endian length + JSON); no tensor is loaded.
    """
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= MAX_HEADER_BYTES:
            raise TrainingDataError(f"{path}: not a safetensors file (header length {length})")
        try:
            header = json.loads(f.read(length))
            entry = header[name]
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingDataError(
                f"{path}: tensor {name!r} not found in a readable safetensors header ({exc}); "
                "rebuild the data"
            ) from exc
    if entry.get("dtype") != "F32" or end - begin != 4 * math.prod(shape):
        raise TrainingDataError(
            f"{path}: tensor {name!r} is {entry.get('dtype')} {list(shape)} over {end - begin} "
            "bytes; expected float32 as written by `python -m deprojector.data`: rebuild the data"
        )
    return 8 + length + begin, shape


class ShardedRows:
    """A float32 tensor of shape (N, ...) split across shard files, read by rows on demand.

    `rows[index]` (an int array, tensor, slice or int) reads just those rows with positioned
    reads into a fresh tensor: the OS page cache holds the files, this process only the batch.
    """

    def __init__(self, paths: list[Path], name: str) -> None:
        self.paths = paths
        located = [_tensor_location(path, name) for path in paths]
        self.offsets = [offset for offset, _ in located]
        self.row_shape = located[0][1][1:] if located else ()
        for path, (_, shape) in zip(paths, located, strict=True):
            if shape[1:] != self.row_shape:
                raise TrainingDataError(
                    f"{path}: {name!r} rows have shape {list(shape[1:])}, the first shard's "
                    f"{list(self.row_shape)}; the shards come from different builds: rebuild"
                )
        counts = [shape[0] for _, shape in located]
        self.starts = np.cumsum([0, *counts])  # shard k holds rows starts[k] .. starts[k+1]-1
        self.row_bytes = 4 * math.prod(self.row_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.starts[-1]), *self.row_shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, int | np.integer):
            return self[[index]][0]
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        rows = rows.astype(np.int64).reshape(-1)
        if rows.size and not (0 <= rows.min() and rows.max() < len(self)):
            raise IndexError(f"rows {rows.min()}..{rows.max()} outside 0..{len(self) - 1}")
        out = np.empty((rows.size, *self.row_shape), dtype=np.float32)
        shards = np.searchsorted(self.starts, rows, side="right") - 1
        # One open per shard touched; each row is one contiguous read straight into `out`.
        for k in np.unique(shards):
            with open(self.paths[k], "rb", buffering=0) as f:
                for i in np.flatnonzero(shards == k):
                    f.seek(self.offsets[k] + (int(rows[i]) - int(self.starts[k])) * self.row_bytes)
                    if f.readinto(memoryview(out[i]).cast("B")) != self.row_bytes:
                        raise TrainingDataError(
                            f"{self.paths[k]}: ends inside row {rows[i]}; the file is truncated: "
                            "rebuild the data"
                        )
        return torch.from_numpy(out)


def open_part(folder: str | Path, part: str) -> dict[str, torch.Tensor | ShardedRows]:
    """One part without holding its hidden states in memory: like `load_part`, but `hidden`
    is a `ShardedRows` read from the shard files on demand (index it with the rows of a
    batch); pooled (N, D) and mask (N, 77), 2 % of the bytes, are loaded. text_embeds is left
    out (training does not use it)."""
    paths = _part_files(Path(folder), part)
    small: dict[str, list[torch.Tensor]] = {"pooled": [], "mask": []}
    for path in paths:
        try:
            with safe_open(path, framework="pt") as f:
                names = set(f.keys())
                for name in small:
                    if name in names:
                        small[name].append(f.get_tensor(name))
        except Exception as exc:  # SafetensorError and OSError carry the reason
            raise TrainingDataError(
                f"{path}: cannot be read ({exc}); the shard is truncated or corrupt: rebuild "
                "the data"
            ) from exc
        missing = [name for name in TENSORS if name not in names]
        if missing:
            raise TrainingDataError(f"{path}: tensors {missing} missing; expected {list(TENSORS)}")
    hidden = ShardedRows(paths, "hidden")
    data = {name: torch.cat(tensors) for name, tensors in small.items()}
    if hidden.shape[0] != data["pooled"].shape[0]:
        raise TrainingDataError(
            f"{folder}: {part} has {hidden.shape[0]} hidden rows but {data['pooled'].shape[0]} "
            "pooled rows; rebuild the data"
        )
    return {**data, "hidden": hidden}


def parse_args(argv: list[str] | None = None) -> DataConfig:
    parser = argparse.ArgumentParser(
        prog="python -m deprojector.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--captions", type=Path, required=True, help="text file, one caption per line"
    )
    parser.add_argument(
        "--clip", type=Path, required=True, help="folder with tokenizer/ and text_encoder/"
    )
    parser.add_argument("--out", type=Path, required=True, help="data folder to write (or finish)")
    parser.add_argument(
        "--samples", type=int, default=None, help="total samples (default: number of captions)"
    )
    parser.add_argument("--heldout-fraction", type=float, default=DataConfig.heldout_fraction)
    parser.add_argument("--shard-size", type=int, default=DataConfig.shard_size)
    parser.add_argument("--seed", type=int, default=DataConfig.seed)
    parser.add_argument(
        "--batch-size", type=int, default=DataConfig.batch_size, help="texts per CLIP call"
    )
    parser.add_argument(
        "--device", default=DataConfig.device, help="where CLIP runs: auto, cpu or cuda"
    )
    return DataConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    manifest = build_dataset(parse_args(argv))
    for part, info in manifest["parts"].items():
        print(
            f"{part}: {info['samples']} samples in {len(info['shards'])} shards, kinds {info['kinds']}"
        )
    print(f"fingerprint {manifest['fingerprint']}")


if __name__ == "__main__":
    main()
