"""Accepting deprojector checkpoints into the arena: the one path for the Variants page, the demo
and the import commands, and the check generation makes before it uses one.

A checkpoint folder is an upload or a copy stored under a generated name in the data dir, or a
folder on the server that resolves, every file in it included (symlinked folders followed),
inside an allowed root (the data dir and `ARENA_CHECKPOINT_ROOTS`). It is validated by
`deprojector.checkpoint.inspect_checkpoint` before its row is written; the sha256 of its weights
is recorded then and compared again by `verify_checkpoint` before images are rendered with it.
Functions taking a Session never commit. torch is imported lazily (inside functions).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.engine import data_dir as default_data_dir
from db.models import REFERENCE_VARIANT, Checkpoint, Variant
from db.queries.variants import variant_by_name
from evaluation.image_store import sha256_file
from evaluation.study import canonical

CHECKPOINTS_DIR = "checkpoints"  # uploads and imports, under the data dir
UPLOAD_CAP_ENV = "ARENA_MAX_UPLOAD_MB"
DEFAULT_UPLOAD_CAP_MB = 512  # MiB; also `server.maxUploadSize` in .streamlit/config.toml
MAX_CONFIG_BYTES = 2**20  # an uploaded config.json is a few KiB; 1 MiB is plenty
ROOTS_ENV = "ARENA_CHECKPOINT_ROOTS"  # extra folders (os.pathsep-separated) admins may register
WEIGHT_SUFFIXES = (".safetensors", ".bin")
KINDS = {"vt": "vt", "author-vt": "vt", "legacy": "legacy"}  # inspect kind -> Variant.kind


class CheckpointRejected(ValueError):
    """A checkpoint or its variant cannot be accepted (or used); the message says why and what
    to do."""


class CheckpointChanged(CheckpointRejected):
    """A registered checkpoint's weights are no longer the ones whose sha256 was recorded."""


class UploadCapError(ValueError):
    """`ARENA_MAX_UPLOAD_MB` is not a whole number of MiB >= 1."""


# 1. The upload cap -------------------------------------------------------------------------


def upload_cap_mb(environ: Mapping[str, str] | None = None) -> int:
    """`ARENA_MAX_UPLOAD_MB` checked: a whole number of MiB, at least 1 (default 512).

    The server's own ceiling (Streamlit's `server.maxUploadSize`) is set from it at start, so a
    bad value is a start-up error, not a page that fails later.
    """
    text = (environ if environ is not None else os.environ).get(UPLOAD_CAP_ENV, "").strip()
    if not text:
        return DEFAULT_UPLOAD_CAP_MB
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise UploadCapError(
            f"{UPLOAD_CAP_ENV}={text!r}: expected a whole number of MiB, at least 1; set e.g. "
            f"{UPLOAD_CAP_ENV}={DEFAULT_UPLOAD_CAP_MB} (or unset it for {DEFAULT_UPLOAD_CAP_MB})"
        )
    return value


def max_upload_bytes() -> int:
    return upload_cap_mb() * 2**20


# 2. Where a checkpoint folder may be -----------------------------------------------------------


def allowed_roots(data_dir: Path | None = None) -> list[Path]:
    """The data dir plus the folders listed in ARENA_CHECKPOINT_ROOTS, resolved."""
    base = Path(data_dir).resolve() if data_dir is not None else default_data_dir()
    extra = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [base, *(Path(p).expanduser().resolve() for p in extra)]


def resolve_server_folder(text: str, data_dir: Path | None = None) -> Path:
    """The folder `text` names, resolved, if it and every file in it lie in an allowed root.

    A relative path is taken relative to the data dir. `..`, absolute paths elsewhere and
    symlinks (to files or folders, at any depth) that lead out of the folder's root are refused.
    """
    text = (text or "").strip()
    if not text:
        raise CheckpointRejected("folder path is empty; type a folder on the server")
    if not text.isprintable():
        raise CheckpointRejected(f"folder path {text!r} contains control characters")
    roots = allowed_roots(data_dir)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = roots[0] / path
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise CheckpointRejected(
            f"folder {text!r} resolves to {resolved}, outside the allowed roots "
            f"{[str(r) for r in roots]}; move it under the data dir or add its parent to "
            f"{ROOTS_ENV}"
        )
    if not resolved.is_dir():
        raise CheckpointRejected(f"folder {text!r} ({resolved}) does not exist or is not a folder")
    root = next(r for r in roots if resolved.is_relative_to(r))
    _check_files_inside(resolved, root)
    return resolved


def _check_files_inside(folder: Path, root: Path) -> None:
    """Refuse any entry under `folder` (walking into symlinked folders too) that resolves
    outside `root`, and symlinked folders that lead back up (a loop)."""
    seen: set[Path] = set()
    for here, folders, files in os.walk(folder, followlinks=True):
        real = Path(here).resolve()
        if real in seen:
            raise CheckpointRejected(
                f"{here} links back to {real}, which the folder already holds (a loop); remove "
                "that symlink"
            )
        seen.add(real)
        for name in [*folders, *files]:
            item = Path(here) / name
            target = item.resolve()
            if not target.is_relative_to(root):
                raise CheckpointRejected(
                    f"{item} is a symlink to {target}, outside the allowed root {root}; copy "
                    "the real file into the folder instead"
                )


def checkpoint_folder(path: str, data_dir: Path | None = None) -> Path:
    """The folder of a checkpoint row's `path` (relative to the data dir, or absolute)."""
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = Path(path)
    return folder if folder.is_absolute() else base / folder


# 3. Folders the arena creates: uploads and copies ----------------------------------------------


def _new_folder(data_dir: Path | None, prefix: str) -> Path:
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    return base / CHECKPOINTS_DIR / f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextmanager
def _building(folder: Path) -> Iterator[Path]:
    """A hidden `.NAME.partial` sibling to fill, renamed to `folder` on success and removed on
    any failure (nothing half-written is ever left)."""
    partial = folder.with_name(f".{folder.name}.partial")
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        yield partial
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def save_upload(
    weights_name: str, weights: bytes, config: bytes, data_dir: Path | None = None
) -> Path:
    """Write an uploaded safetensors file and its JSON config under a generated folder name."""
    cap = max_upload_bytes()
    if len(weights) > cap:
        raise CheckpointRejected(
            f"{weights_name!r} is {len(weights) / 2**20:.1f} MiB, above the upload cap of "
            f"{cap / 2**20:.0f} MiB; register the folder on the server instead, or raise "
            f"{UPLOAD_CAP_ENV}"
        )
    if not weights_name.lower().endswith(".safetensors"):
        raise CheckpointRejected(
            f"{weights_name!r} is not a .safetensors file; uploads must be safetensors "
            "(a legacy .bin folder can be imported from the server)"
        )
    if len(config) > MAX_CONFIG_BYTES:
        raise CheckpointRejected(
            f"the config file is {len(config) / 2**20:.1f} MiB, above the {MAX_CONFIG_BYTES // 2**20}"
            " MiB a config.json may have; upload the config.json saved beside the weights"
        )
    try:
        parsed = json.loads(config.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointRejected(f"the config file is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise CheckpointRejected(f"the config file holds a {type(parsed).__name__}, not an object")
    folder = _new_folder(data_dir, "upload")
    with _building(folder) as partial:
        partial.mkdir()
        (partial / "model.safetensors").write_bytes(weights)
        (partial / "config.json").write_bytes(config)
    return folder


def import_folder(text: str, data_dir: Path | None = None) -> Path:
    """Copy a server folder (e.g. a published legacy checkpoint) under a generated name."""
    source = resolve_server_folder(text, data_dir)
    folder = _new_folder(data_dir, "import")
    with _building(folder) as partial:
        shutil.copytree(source, partial, symlinks=False)
    return folder


@contextmanager
def discard_on_failure(folder: Path, owned: bool = True) -> Iterator[Path]:
    """Remove `folder` if anything inside the block fails (a rejected checkpoint, a name
    collision, a failed commit), when the arena created it (`owned`); a registered server
    folder (`owned=False`) is never touched."""
    try:
        yield folder
    except BaseException:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
        raise


# 4. Validation and registration ---------------------------------------------------------------


def inspect(folder: Path):
    """`inspect_checkpoint(folder)`, its errors turned into CheckpointRejected."""
    from deprojector.checkpoint import inspect_checkpoint
    from deprojector.errors import DeprojectorError

    try:
        return inspect_checkpoint(folder)
    except (DeprojectorError, OSError, ValueError) as exc:
        raise CheckpointRejected(f"checkpoint rejected: {exc}") from exc


def derived_hyperparameters(info) -> dict[str, Any]:
    """The hyperparameters the comparisons are derived from, read from the checkpoint."""
    if "hyperparameters" in info.config:
        return dict(info.config["hyperparameters"])
    if info.kind == "author-vt":
        from deprojector.model import VTConfig

        fields = {k: v for k, v in info.config.items() if k != "num_members"}
        return VTConfig.from_dict(fields).hyperparameters()
    keys = ("ensemble_size", "apply_mlp_to_input", "relative_to_null")
    return {"architecture": "legacy", **{k: info.config[k] for k in keys if k in info.config}}


def parse_hyperparameters(text: str) -> dict[str, Any] | None:
    """None for an empty box (derive from the checkpoint), else the JSON object typed."""
    if not (text or "").strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointRejected(
            f'hyperparameters {text!r} are not valid JSON ({exc}); e.g. {{"vicinity": 2}}'
        ) from exc
    if not isinstance(value, dict):
        raise CheckpointRejected(f"hyperparameters must be a JSON object, got {text!r}")
    return value


def _canonical(hyperparameters: dict[str, Any]) -> dict[str, str]:
    """Hyperparameters compared the way comparisons are derived (2 == "2")."""
    return {key: canonical(value) for key, value in hyperparameters.items()}


def _weight_files(folder: Path, with_optimizer: bool = False) -> list[Path]:
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.suffix in WEIGHT_SUFFIXES and (with_optimizer or not p.name.startswith("optimizer"))
    )


def _sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: Path) -> str:
    """sha256 over the folder's weight files (.safetensors, .bin; a training run's
    `optimizer.safetensors` left out) in name order; for the usual single `model.safetensors`
    it is that file's sha256."""
    weights = _weight_files(folder)
    if not weights:
        raise CheckpointRejected(
            f"{folder} holds no weights file (.safetensors or .bin); restore the checkpoint's "
            "weights"
        )
    return sha256_file(weights[0]) if len(weights) == 1 else _sha256_of(weights)


def register(
    s: Session,
    variant_name: str,
    label: str,
    folder: Path,
    info,
    hyperparameters: dict[str, Any] | None = None,
    notes: str = "",
    *,
    data_dir: Path | None = None,
    existing_ok: bool = False,
) -> Checkpoint:
    """Add the checkpoint `folder` (validated: `info`) as `label` of the variant, creating the
    variant if new; the hyperparameters default to the checkpoint's own. With `existing_ok`, a
    label the variant already has for this same folder is returned as it is (reruns of the
    demo). Does not commit."""
    variant_name, label = variant_name.strip(), label.strip()
    for what, value in (("variant name", variant_name), ("checkpoint label", label)):
        if not value or not value.isprintable() or len(value) > 64:
            raise CheckpointRejected(
                f"{what} {value!r}: expected 1-64 printable characters, e.g. 'vt-final' / 'epoch-8'"
            )
    if variant_name == REFERENCE_VARIANT:
        raise CheckpointRejected(
            f"{REFERENCE_VARIANT!r} is the built-in no-deprojector variant; pick another name"
        )
    kind = KINDS[info.kind]
    hyper = hyperparameters if hyperparameters is not None else derived_hyperparameters(info)
    base = Path(data_dir).resolve() if data_dir is not None else default_data_dir()
    folder = Path(folder).resolve()
    path = folder.relative_to(base).as_posix() if folder.is_relative_to(base) else str(folder)
    variant = variant_by_name(s, variant_name)
    if variant is None:
        variant = Variant(name=variant_name, kind=kind, hyperparameters=hyper, notes=notes)
        s.add(variant)
        s.flush()
    elif variant.kind != kind:
        raise CheckpointRejected(
            f"variant {variant_name!r} is of kind {variant.kind!r} but this checkpoint is "
            f"{kind!r}; pick another variant name"
        )
    elif _canonical(variant.hyperparameters) != _canonical(hyper):
        raise CheckpointRejected(
            f"variant {variant_name!r} has hyperparameters {variant.hyperparameters} but this "
            f"checkpoint has {hyper}; register it under another variant name"
        )
    same = next((c for c in variant.checkpoints if c.label == label), None)
    if same is not None:
        if existing_ok and same.path == path:
            return same
        raise CheckpointRejected(
            f"variant {variant_name!r} already has a checkpoint labelled {label!r}; pick another label"
        )
    checkpoint = Checkpoint(
        variant=variant,
        label=label,
        path=path,
        sha256=weights_sha256(folder),
        params_total=info.params_total,
        params_trainable=info.params_trainable,
        hidden_size=info.hidden_size,
    )
    s.add(checkpoint)
    s.flush()
    return checkpoint


# 5. Before use ---------------------------------------------------------------------------------


def verify_checkpoint(path: str, sha256: str, data_dir: Path | None = None) -> Path:
    """The folder of a registered checkpoint, checked again before generation uses it: it and
    every file in it still resolve inside an allowed root, and its weights still have the
    sha256 recorded at registration (`CheckpointChanged` otherwise)."""
    folder = checkpoint_folder(path, data_dir)
    resolved = resolve_server_folder(str(folder), data_dir)
    found = weights_sha256(resolved)
    # rows registered before the optimizer state was left out hashed it too
    if found != sha256 and _sha256_of(_weight_files(resolved, with_optimizer=True)) != sha256:
        raise CheckpointChanged(
            f"checkpoint folder {folder}: its weights changed since registration (sha256 "
            f"{found[:16]}..., recorded {sha256[:16]}...); restore the original weights, or "
            "register the new ones under a new label on the Variants page"
        )
    return resolved
