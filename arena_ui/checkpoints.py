"""Accepting deprojector checkpoints into the arena: uploads, server folders, legacy imports.

Every checkpoint is validated by `deprojector.checkpoint.inspect_checkpoint` (loads, shapes
match the config, finite weights) before a row is written. Uploads and imports are stored under
generated names in the data dir, never under a name or path the user typed; a registered server
folder must resolve (symlinks followed) inside an allowed root. torch is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import data_dir
from db.models import Checkpoint, Variant
from evaluation.study import canonical

CHECKPOINTS_DIR = "checkpoints"  # uploads and imports, under the data dir
MAX_UPLOAD_MB_ENV = "ARENA_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 512
ROOTS_ENV = "ARENA_CHECKPOINT_ROOTS"  # extra folders (os.pathsep-separated) admins may register
WEIGHT_SUFFIXES = (".safetensors", ".bin")
KINDS = {"vt": "vt", "author-vt": "vt", "legacy": "legacy"}  # inspect kind -> Variant.kind


class CheckpointRejected(ValueError):
    """A checkpoint or its variant cannot be accepted; the message says why and what to do."""


def max_upload_bytes() -> int:
    return int(os.environ.get(MAX_UPLOAD_MB_ENV, DEFAULT_MAX_UPLOAD_MB)) * 2**20


def allowed_roots() -> list[Path]:
    """The data dir plus the folders listed in ARENA_CHECKPOINT_ROOTS, resolved."""
    extra = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [data_dir(), *(Path(p).expanduser().resolve() for p in extra)]


def resolve_server_folder(text: str) -> Path:
    """The folder `text` names, resolved, if it (and every file in it) lies in an allowed root.

    A relative path is taken relative to the data dir. `..`, absolute paths elsewhere and
    symlinks that lead out of the roots are refused.
    """
    text = (text or "").strip()
    if not text:
        raise CheckpointRejected("folder path is empty; type a folder on the server")
    if not text.isprintable():
        raise CheckpointRejected(f"folder path {text!r} contains control characters")
    roots = allowed_roots()
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
    for item in resolved.rglob("*"):
        if not item.resolve().is_relative_to(root):
            raise CheckpointRejected(
                f"{item} is a symlink to {item.resolve()}, outside the allowed root {root}; "
                "copy the real file into the folder instead"
            )
    return resolved


def _new_folder(prefix: str) -> Path:
    return data_dir() / CHECKPOINTS_DIR / f"{prefix}-{uuid.uuid4().hex[:12]}"


def save_upload(weights_name: str, weights: bytes, config: bytes) -> Path:
    """Write an uploaded safetensors file and its JSON config under a generated folder name."""
    cap = max_upload_bytes()
    if len(weights) > cap:
        raise CheckpointRejected(
            f"{weights_name!r} is {len(weights) / 2**20:.1f} MiB, above the upload cap of "
            f"{cap / 2**20:.0f} MiB; register the folder on the server instead, or raise "
            f"{MAX_UPLOAD_MB_ENV}"
        )
    if not weights_name.lower().endswith(".safetensors"):
        raise CheckpointRejected(
            f"{weights_name!r} is not a .safetensors file; uploads must be safetensors "
            "(a legacy .bin folder can be imported from the server)"
        )
    try:
        parsed = json.loads(config.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointRejected(f"the config file is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise CheckpointRejected(f"the config file holds a {type(parsed).__name__}, not an object")
    folder = _new_folder("upload")
    partial = folder.with_name(f".{folder.name}.partial")
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(weights)
    (partial / "config.json").write_bytes(config)
    partial.rename(folder)
    return folder


def import_folder(text: str) -> Path:
    """Copy a server folder (e.g. a published legacy checkpoint) under a generated name."""
    source = resolve_server_folder(text)
    folder = _new_folder("import")
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.copytree(source, partial, symlinks=False)
    partial.rename(folder)
    return folder


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


def _canonical(hyperparameters: dict[str, Any]) -> dict[str, str]:
    """Hyperparameters compared the way comparisons are derived (2 == "2")."""
    return {key: canonical(value) for key, value in hyperparameters.items()}


def _sha256_weights(folder: Path) -> str:
    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    digest = hashlib.sha256()
    for path in weights:
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def register(
    s: Session,
    variant_name: str,
    label: str,
    folder: Path,
    info,
    hyperparameters: dict[str, Any] | None = None,
    notes: str = "",
) -> Checkpoint:
    """Add the checkpoint `folder` (validated: `info`) as `label` of the variant, creating the
    variant if new. Does not commit."""
    variant_name, label = variant_name.strip(), label.strip()
    for what, value in (("variant name", variant_name), ("checkpoint label", label)):
        if not value or not value.isprintable() or len(value) > 64:
            raise CheckpointRejected(
                f"{what} {value!r}: expected 1-64 printable characters, e.g. 'vt-final' / 'epoch-8'"
            )
    if variant_name == "reference":
        raise CheckpointRejected(
            "'reference' is the built-in no-deprojector variant; pick another name"
        )
    kind = KINDS[info.kind]
    hyper = hyperparameters if hyperparameters is not None else derived_hyperparameters(info)
    variant = s.scalar(select(Variant).where(Variant.name == variant_name))
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
    if any(c.label == label for c in variant.checkpoints):
        raise CheckpointRejected(
            f"variant {variant_name!r} already has a checkpoint labelled {label!r}; pick another label"
        )
    base = data_dir()
    path = folder.relative_to(base).as_posix() if folder.is_relative_to(base) else str(folder)
    checkpoint = Checkpoint(
        variant=variant,
        label=label,
        path=path,
        sha256=_sha256_weights(folder),
        params_total=info.params_total,
        params_trainable=info.params_trainable,
        hidden_size=info.hidden_size,
    )
    s.add(checkpoint)
    s.flush()
    return checkpoint


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


def accept(
    folder: Path,
    variant_name: str,
    label: str,
    hyperparameters_text: str = "",
    notes: str = "",
    owned: bool = True,
) -> Checkpoint:
    """Validate `folder` and register it; a rejected folder we created (`owned`) is removed."""
    from arena_ui.resources import transaction

    try:
        hyper = parse_hyperparameters(hyperparameters_text)
        info = inspect(folder)
        with transaction() as s:
            return register(s, variant_name, label, folder, info, hyper, notes)
    except Exception:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def catalogue() -> tuple[list[dict], list[dict]]:
    """(variants, checkpoints) as rows for display."""
    from arena_ui.resources import transaction

    with transaction(readonly=True) as s:
        variants = s.scalars(select(Variant).order_by(Variant.name)).all()
        variant_rows = [
            {
                "variant": v.name,
                "kind": v.kind,
                "hyperparameters": json.dumps(v.hyperparameters, sort_keys=True),
                "checkpoints": ", ".join(c.label for c in v.checkpoints),
                "notes": v.notes,
            }
            for v in variants
        ]
        checkpoint_rows = [
            {
                "variant": v.name,
                "label": c.label,
                "params_total": c.params_total,
                "params_trainable": c.params_trainable,
                "hidden_size": c.hidden_size,
                "path": c.path,
                "sha256": c.sha256[:16],
            }
            for v in variants
            for c in v.checkpoints
        ]
    return variant_rows, checkpoint_rows
