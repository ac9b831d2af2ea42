"""Deprojector checkpoints: save our VT folders, load any supported folder, validate them.

A folder holds `config.json` plus weights (`model.safetensors`, or a legacy `pytorch_model.bin`
read with `torch.load(weights_only=True)`, which refuses pickled code). Three layouts load:
this project's VT, the published v1..v5 models and the author's VT layout.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from deprojector import legacy
from deprojector.config_json import (
    CONFIG_FILE,
    MAX_HIDDEN_SIZE,
    MAX_MEMBERS,
    MAX_VICINITY,
    MAX_WIDTH,
    float_field,
    int_field,
    object_field,
    read_config,
)
from deprojector.errors import (
    CheckpointError,
    ConfigMismatchError,
    InputShapeError,
    NonFiniteWeightsError,
)
from deprojector.model import SEQ_LEN, VTConfig, VTDeprojector, parameter_counts

FORMAT = "deprojector-arena-vt"
FORMAT_VERSION = 1
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
    """Python and the libraries a checkpoint's numbers depend on, stored in every config.json.

    The one owner of this list (training stores the same). transformers and accelerate are read
    from package metadata, not imported, and left out where they are not installed.
    """
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }
    for package in ("transformers", "accelerate"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


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


def read_tensor_shapes(folder: str | Path) -> tuple[dict[str, tuple[int, ...]], Path]:
    """Names and shapes of a folder's tensors, and the weights file.

    A safetensors file is read from its header alone (no tensor is loaded); a legacy .bin can
    only be read whole (see `read_weights`).
    """
    shapes, path, _ = _open_weights(folder)
    return shapes, path


def read_weights(folder: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Tensors of a folder: `model.safetensors` (or another single .safetensors), else the .bin."""
    _, path, load = _open_weights(folder)
    return load(), path


def _open_weights(
    folder: str | Path,
) -> tuple[dict[str, tuple[int, ...]], Path, Callable[[], dict[str, torch.Tensor]]]:
    """(shapes, path, load): the tensor shapes now, the tensors when `load()` is called."""
    folder = Path(folder)
    candidates = [folder / SAFETENSORS_FILE] + sorted(folder.glob("*.safetensors"))
    path = next((p for p in candidates if p.is_file()), None)
    if path is not None:
        try:
            with safetensors.safe_open(path, framework="pt") as handle:
                shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except Exception as exc:  # SafetensorError and OSError carry the reason
            raise _unreadable(path, exc) from exc

        def load() -> dict[str, torch.Tensor]:
            try:
                return safetensors.torch.load_file(path, device="cpu")
            except Exception as exc:
                raise _unreadable(path, exc) from exc

        return shapes, path, load
    path = folder / BIN_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder} holds no weights: expected {SAFETENSORS_FILE} or {BIN_FILE}"
        )
    state = _read_bin(path)
    return {k: tuple(v.shape) for k, v in state.items()}, path, lambda: state


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} could not be read ({exc}): the file is half-written or corrupt "
        f"(size {path.stat().st_size} bytes); save or download it again"
    )


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
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
    return state


def check_shapes(
    model: nn.Module,
    shapes: dict[str, tuple[int, ...]],
    key_map: dict[str, str | None],
    source: Path,
    ignored: tuple[str, ...] = (),
) -> None:
    """Raise ConfigMismatchError unless the file's tensor names and shapes are the model's.

    `model` may live on the meta device: only its state dict's shapes are read.
    """
    state = model.state_dict()
    wanted = {file_key: key for key, file_key in key_map.items() if file_key is not None}
    missing = sorted(set(wanted) - set(shapes))
    unexpected = sorted(set(shapes) - set(wanted) - set(ignored))
    if missing or unexpected:
        raise ConfigMismatchError(
            f"{source}: tensors do not match config.json: {len(missing)} missing "
            f"{missing[:6]}, {len(unexpected)} unexpected {unexpected[:6]}; check that "
            "config.json (hidden size, members, options) belongs to these weights"
        )
    for file_key, key in wanted.items():
        found, expected = tuple(shapes[file_key]), tuple(state[key].shape)
        if found != expected:
            raise ConfigMismatchError(
                f"{source}: tensor {file_key!r} has shape {found}, config.json implies "
                f"{expected}; the config does not describe these weights"
            )


def fill_model(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    key_map: dict[str, str | None],
    source: Path,
    ignored: tuple[str, ...] = (),
) -> None:
    """Copy file tensors into `model` after checking names, shapes and finiteness."""
    check_shapes(model, {k: tuple(v.shape) for k, v in tensors.items()}, key_map, source, ignored)
    state = model.state_dict()
    wanted = {file_key: key for key, file_key in key_map.items() if file_key is not None}
    for file_key in wanted:
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


def _check_hidden_size(
    d: int, field: str, shapes: dict[str, tuple[int, ...]], sos: str, config: Path, weights: Path
) -> None:
    """The config's D against the file's (D,) `sos` vector, before any size is used."""
    found = shapes.get(sos)
    if found is not None and found != (d,):
        raise ConfigMismatchError(
            f"{config}: {field}={d}, but tensor {sos!r} in {weights.name} has shape {found}; "
            f"the config does not describe these weights: set {field} to "
            f"{found[0] if len(found) == 1 else 'the weights hidden size'} or use the "
            "config.json saved with them"
        )


def _vt_settings(config_json: dict[str, Any], source: str) -> tuple[VTConfig, int, float]:
    """(config, members, fuse) of this project's config.json, every field typed and bounded."""
    fields = object_field(config_json, "config", source)
    names = {f.name for f in dataclasses.fields(VTConfig)}
    if set(fields) != names:
        raise ConfigMismatchError(
            f"{source}: VT config fields do not match: unknown {sorted(set(fields) - names)}, "
            f"missing {sorted(names - set(fields))}; expected exactly {sorted(names)}"
        )
    d = int_field(fields, "hidden_size", source, 1, MAX_HIDDEN_SIZE, name="config.hidden_size")
    try:
        config = VTConfig(
            hidden_size=d,
            num_heads=int_field(fields, "num_heads", source, 1, d, name="config.num_heads"),
            embed_dim=int_field(fields, "embed_dim", source, 1, MAX_WIDTH, name="config.embed_dim"),
            vicinity=int_field(fields, "vicinity", source, 1, MAX_VICINITY, name="config.vicinity"),
            mlp_dim=int_field(fields, "mlp_dim", source, 1, MAX_WIDTH, name="config.mlp_dim"),
            max_positions=int_field(
                fields, "max_positions", source, SEQ_LEN, SEQ_LEN, name="config.max_positions"
            ),
            layer_norm_eps=float_field(
                fields, "layer_norm_eps", source, 1e-12, 1.0, 1e-5, name="config.layer_norm_eps"
            ),
        )
    except ValueError as exc:
        raise ConfigMismatchError(f"{source}: invalid VT config ({exc})") from exc
    members = int_field(
        config_json,
        "num_members",
        source,
        1,
        MAX_MEMBERS,
        default=1,
        fix="set it to the number of members whose weights the folder holds",
    )
    fuse = float_field(config_json, "fuse", source, 0.0, 1.0, 0.0)
    return config, members, fuse


def _check_hyperparameters(config_json: dict[str, Any], config: VTConfig, source: str) -> None:
    """The study-facing `hyperparameters` field must be what the (checked) config implies."""
    stored = config_json.get("hyperparameters", config.hyperparameters())
    if stored != config.hyperparameters():
        raise ConfigMismatchError(
            f"{source}: hyperparameters={stored!r}, but the model config implies "
            f"{config.hyperparameters()}; the arena derives comparisons from this field: "
            "set it to that value or remove it"
        )


def _build(
    make: Callable[[], Deprojector],
    key_map_of: Callable[[Any], dict[str, str | None]],
    shapes: dict[str, tuple[int, ...]],
    weights_path: Path,
    load: Callable[[], dict[str, torch.Tensor]],
    ignored: tuple[str, ...] = (),
) -> Deprojector:
    """Check every name and shape on a meta-device skeleton, then build and fill the model."""
    # 1. The skeleton allocates nothing: a config claiming huge sizes fails here, cheaply.
    with torch.device("meta"):
        skeleton = make()
    check_shapes(skeleton, shapes, key_map_of(skeleton), weights_path, ignored)
    # 2. Every size now equals the file's, so the real model is as big as the weights.
    model = make()
    fill_model(model, load(), key_map_of(model), weights_path, ignored)
    return model


def _load(folder: str | Path) -> tuple[str, Deprojector, dict[str, Any]]:
    """(kind, model, config dict) of any supported folder, validated.

    config.json is never trusted: its sizes are typed, bounded and checked against the tensor
    shapes in the weights file's header before a model is built.
    """
    config_json = read_config(folder)
    config_path = Path(folder) / CONFIG_FILE
    source = str(config_path)
    shapes, weights_path, load = _open_weights(folder)
    names = set(shapes)
    if config_json.get("format") == FORMAT:
        # 1. This project's VT.
        config, members, fuse = _vt_settings(config_json, source)
        _check_hidden_size(
            config.hidden_size, "config.hidden_size", shapes, "sos", config_path, weights_path
        )
        model = _build(
            lambda: VTDeprojector(config, members, fuse),
            lambda m: {k: k for k in m.state_dict()},
            shapes,
            weights_path,
            load,
        )
        _check_hyperparameters(config_json, config, source)
        return "vt", model, config_json
    if "format" in config_json:
        raise CheckpointError(
            f"{config_path}: format={config_json['format']!r} is unknown; expected {FORMAT!r}, "
            "a published deprojector config or the author's VT config"
        )
    if legacy.is_author_vt(config_json, names):
        # 2. A VT saved by the author's code.
        config, members = legacy.author_vt_config(config_json, source)
        _check_hidden_size(
            config.hidden_size, "hidden_size", shapes, "sos_embed", config_path, weights_path
        )
        model = _build(
            lambda: VTDeprojector(config, members),
            legacy.author_vt_key_map,
            shapes,
            weights_path,
            load,
        )
        info = {**config.to_dict(), "num_members": members}
        return "author-vt", model, info
    if "sos_embed" in names and any(n.startswith("encoder_layer") for n in names):
        # 3. The published v1..v5 layout.
        config = legacy.legacy_config(config_json, names, source)
        _check_hidden_size(
            config.hidden_size, "hidden_size", shapes, "sos_embed", config_path, weights_path
        )
        model = _build(
            lambda: legacy.LegacyDeprojector(config),
            legacy.legacy_key_map,
            shapes,
            weights_path,
            load,
            legacy.LEGACY_IGNORED_KEYS,
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
