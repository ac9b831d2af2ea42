"""Deprojector checkpoints: save our VT folders, load any supported folder, validate them.

A folder holds `config.json` plus weights (`model.safetensors`, or a legacy `pytorch_model.bin`
read with `torch.load(weights_only=True)`, which refuses pickled code). Three layouts load:
this project's VT, the published v1..v5 models and the author's VT layout.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from deprojector import legacy
from deprojector.errors import (
    CheckpointError,
    ConfigMismatchError,
    InputShapeError,
    NonFiniteWeightsError,
)
from deprojector.model import VTConfig, VTDeprojector, parameter_counts

FORMAT = "deprojector-arena-vt"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
BIN_FILE = "pytorch_model.bin"
RESERVED_META = {"format", "format_version", "config", "num_members", "fuse"}

Deprojector = VTDeprojector | legacy.LegacyDeprojector


@dataclass(frozen=True)
class CheckpointInfo:
    kind: str  # "vt" (this project), "legacy" (published v1..v5) or "author-vt"
    hidden_size: int
    num_members: int
    params_total: int
    params_trainable: int
    config: dict[str, Any]


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


def save_checkpoint(model: VTDeprojector, folder: str | Path, meta: dict | None = None) -> Path:
    """Write `folder/model.safetensors` + `folder/config.json` atomically; returns the folder.

    `meta` (seed, epoch, data fingerprint, metrics, ...) is stored in config.json beside the
    model config; library versions are added unless given. An existing folder is replaced.
    """
    folder = Path(folder)
    meta = dict(meta or {})
    clash = sorted(RESERVED_META & set(meta))
    if clash:
        raise ValueError(f"meta keys {clash} are reserved by the checkpoint format; rename them")
    meta.setdefault("versions", library_versions())
    counts = parameter_counts(model, model.hidden_size)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "num_members": model.num_members,
        "fuse": model.fuse,
        "hyperparameters": model.config.hyperparameters(),
        "params_total": counts["params_total"],
        "params_trainable": counts["params_trainable"],
        **meta,
    }
    try:
        config_text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"meta must be plain JSON (finite numbers, str, list, dict): {exc}"
        ) from exc

    # 1. Write everything into a hidden sibling folder, then swap it in with renames.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors = {
            k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()
        }
        safetensors.torch.save_file(tensors, tmp / SAFETENSORS_FILE, metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(config_text + "\n")
        for name in (SAFETENSORS_FILE, CONFIG_FILE):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        # 2. Replace an existing folder: move it aside first, so a crash never leaves neither.
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


# --- reading ------------------------------------------------------------------------------


def read_config(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist; pass a folder path")
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing; a checkpoint folder needs config.json beside its weights"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc}); the file is half-written or corrupt: "
            "save or download the checkpoint again"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}; expected a JSON object")
    return data


def read_weights(folder: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Tensors of a folder: `model.safetensors` (or another single .safetensors), else the .bin."""
    folder = Path(folder)
    candidates = [folder / SAFETENSORS_FILE] + sorted(folder.glob("*.safetensors"))
    path = next((p for p in candidates if p.is_file()), None)
    if path is not None:
        try:
            return safetensors.torch.load_file(path, device="cpu"), path
        except Exception as exc:  # SafetensorError and OSError carry the reason
            raise CheckpointError(
                f"{path} could not be read ({exc}): the file is half-written or corrupt "
                f"(size {path.stat().st_size} bytes); save or download it again"
            ) from exc
    path = folder / BIN_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder} holds no weights: expected {SAFETENSORS_FILE} or {BIN_FILE}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path} contains pickled objects other than tensors, refused without running "
                "them (torch.load weights_only=True); expected a plain state dict of tensors. "
                "Convert it on a trusted machine to model.safetensors."
            ) from exc
        raise CheckpointError(
            f"{path} could not be read ({type(exc).__name__}: {exc}); the file is half-written "
            "or corrupt: download it again"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a dict of name -> tensor; expected a "
            "state dict as saved by save_pretrained"
        )
    return state, path


def fill_model(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    key_map: dict[str, str | None],
    source: Path,
    ignored: tuple[str, ...] = (),
) -> None:
    """Copy file tensors into `model` after checking names, shapes and finiteness."""
    state = model.state_dict()
    wanted = {file_key: key for key, file_key in key_map.items() if file_key is not None}
    missing = sorted(set(wanted) - set(tensors))
    unexpected = sorted(set(tensors) - set(wanted) - set(ignored))
    if missing or unexpected:
        raise ConfigMismatchError(
            f"{source}: tensors do not match config.json: {len(missing)} missing "
            f"{missing[:6]}, {len(unexpected)} unexpected {unexpected[:6]}; check that "
            "config.json (hidden size, members, options) belongs to these weights"
        )
    for file_key, key in wanted.items():
        found, expected = tuple(tensors[file_key].shape), tuple(state[key].shape)
        if found != expected:
            raise ConfigMismatchError(
                f"{source}: tensor {file_key!r} has shape {found}, config.json implies "
                f"{expected}; the config does not describe these weights"
            )
        if tensors[file_key].is_floating_point() and not bool(
            torch.isfinite(tensors[file_key]).all()
        ):
            bad = int((~torch.isfinite(tensors[file_key])).sum())
            raise NonFiniteWeightsError(
                f"{source}: tensor {file_key!r} holds {bad} NaN/Inf values; the checkpoint is "
                "broken (training diverged?): use an earlier epoch's checkpoint"
            )
    with torch.no_grad():
        for file_key, key in wanted.items():
            state[key].copy_(tensors[file_key])


def _check_members(config_json: dict, key: str, source: Path) -> int:
    value = config_json.get(key, 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CheckpointError(f"{source}: {key}={value!r}; expected a positive integer")
    return value


def _load(folder: str | Path) -> tuple[str, Deprojector, dict[str, Any]]:
    """(kind, model, config dict) of any supported folder, validated."""
    config_json = read_config(folder)
    config_path = Path(folder) / CONFIG_FILE
    tensors, weights_path = read_weights(folder)
    names = set(tensors)
    if config_json.get("format") == FORMAT:
        # 1. This project's VT.
        try:
            config = VTConfig.from_dict(config_json["config"])
            fuse = float(config_json.get("fuse", 0.0))
            model = VTDeprojector(
                config, _check_members(config_json, "num_members", config_path), fuse
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_path}: invalid VT config ({exc})") from exc
        fill_model(model, tensors, {k: k for k in model.state_dict()}, weights_path)
        return "vt", model, config_json
    if "format" in config_json:
        raise CheckpointError(
            f"{config_path}: format={config_json['format']!r} is unknown; expected {FORMAT!r}, "
            "a published deprojector config or the author's VT config"
        )
    if legacy.is_author_vt(config_json, names):
        # 2. A VT saved by the author's code.
        config, members = legacy.author_vt_config(config_json, str(config_path))
        model = VTDeprojector(config, members)
        fill_model(model, tensors, legacy.author_vt_key_map(model), weights_path)
        info = {**config.to_dict(), "num_members": members}
        return "author-vt", model, info
    if "sos_embed" in names and any(n.startswith("encoder_layer") for n in names):
        # 3. The published v1..v5 layout.
        _check_members(config_json, "ensemble_size", config_path)
        model = legacy.LegacyDeprojector(legacy.legacy_config(config_json, names, str(config_path)))
        fill_model(
            model, tensors, legacy.legacy_key_map(model), weights_path, legacy.LEGACY_IGNORED_KEYS
        )
        return "legacy", model, config_json
    raise CheckpointError(
        f"{weights_path}: unknown layout (tensors such as {sorted(names)[:4]}); expected this "
        "project's VT, a published v1..v5 deprojector or an author-layout VT"
    )


def load_deprojector(
    folder: str | Path, member: int | None = None, device: str | torch.device = "cpu"
) -> Deprojector:
    """Load any supported deprojector folder; `member=k` keeps ensemble member k alone."""
    _, model, _ = _load(folder)
    if member is not None:
        if not 0 <= member < model.num_members:
            raise CheckpointError(
                f"member={member} but {folder} has {model.num_members} member(s); "
                f"choose 0..{model.num_members - 1} or leave it out for the whole ensemble"
            )
        model = model.member(member)
    return model.to(device).eval()


def inspect_checkpoint(folder: str | Path) -> CheckpointInfo:
    """Load and fully validate a folder (layout, shapes vs config, finite weights)."""
    kind, model, config = _load(folder)
    counts = parameter_counts(model, model.hidden_size)
    return CheckpointInfo(
        kind=kind,
        hidden_size=model.hidden_size,
        num_members=model.num_members,
        params_total=counts["params_total"],
        params_trainable=counts["params_trainable"],
        config=config,
    )


def deproject_file(
    model_dir: str | Path,
    inputs: str | Path,
    out: str | Path,
    from_projected: bool = False,
    member: int | None = None,
) -> Path:
    """Read (N, D) float32 embeddings from `inputs` (.npy), write (N, 77, D) float32 to `out`."""
    inputs, out = Path(inputs), Path(out)
    model = load_deprojector(model_dir, member=member)
    if not inputs.is_file():
        raise InputShapeError(f"--inputs {inputs} does not exist; expected a .npy file")
    try:
        array = np.load(inputs, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputShapeError(f"--inputs {inputs} is not a readable .npy array ({exc})") from exc
    d = model.hidden_size
    if array.ndim != 2 or array.shape[1] != d or not np.issubdtype(array.dtype, np.floating):
        raise InputShapeError(
            f"--inputs {inputs} holds a {array.dtype} array of shape {array.shape}; expected "
            f"float32 (N, {d}) {'projected text embeddings' if from_projected else 'pooled embeddings'}"
        )
    if not np.isfinite(array).all():
        raise InputShapeError(f"--inputs {inputs} holds NaN/Inf values; expected finite embeddings")
    embeds = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    hidden = model.deproject(embeds, from_projected=from_projected)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, hidden.cpu().numpy().astype(np.float32))
    return out
