"""Imported image variants: a manifest of files (prompt, seed, image) instead of rendering.

    python -m evaluation import-images --variant NAME --manifest FILE.csv \
        [--hyperparameters JSON] [--checkpoint LABEL] [--data-dir DIR] [--database-url URL]

Everything is validated before anything is written; files are copied, content-addressed and
atomically, to `imported/<sha[:2]>/<sha>.<ext>` under the data directory. An imported image is
an `Image` row of the variant's `Checkpoint` for its label, with settings_hash `"imported"`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy.orm import Session

from db.models import IMPORTED, Checkpoint, Image, Prompt, Variant
from db.queries import plan as queries
from deprojector.prompts import prompt_kind, prompt_parts
from evaluation.image_store import sha256_file

IMAGES_KIND = "images"  # Variant.kind of an imported variant
IMPORTS_DIR = "imported"  # under the data directory; generation's file cleaning never looks here
DEFAULT_LABEL = "imported"  # checkpoint label when neither --checkpoint nor the column gives one
COLUMNS = ("prompt", "seed", "image")  # required manifest columns
OPTIONAL_COLUMNS = ("checkpoint",)
FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}  # PIL format -> stored extension
MAX_SEED = 2**63 - 1


class ImportRejected(ValueError):
    """A manifest, an image or an archive is not importable; the message names each problem
    (manifest row, column, value and the fix). Nothing has been written."""


@dataclass(frozen=True)
class ImportLimits:
    """Caps that keep a bad upload from filling the disk or the memory."""

    max_image_bytes: int = 25 * 2**20  # one image file
    max_side: int = 8192  # pixels, width and height
    max_files: int = 5000  # entries in a zip archive (and rows in a manifest)
    max_total_bytes: int = 2 * 2**30  # uncompressed size of a zip archive
    max_ratio: float = 200.0  # uncompressed / compressed size of one zip entry (zip bombs)


@dataclass(frozen=True)
class ManifestRow:
    """One validated manifest row and the image file it names."""

    row: int  # the row number in the CSV file, the header being row 1
    prompt: str
    seed: int
    checkpoint: str  # label
    source: Path  # the image file, resolved
    image: str  # the image path as written in the manifest
    format: str  # PIL format: PNG, JPEG or WEBP
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class ImportResult:
    variant: str
    labels: list[str]  # checkpoint labels the variant now has images for
    images: int  # rows of the manifest
    added: int  # Image rows created by this import (the rest already existed, identical)


# -- validation ----------------------------------------------------------------------------------


def _where(manifest: Path, row: int, column: str, value: object) -> str:
    return f"{manifest.name} row {row}, column {column!r}: {value!r}"


def _text_problem(text: str) -> str | None:
    if not text.strip():
        return "is empty; give some text"
    bad = next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        return f"contains the control character {bad!r}; remove it"
    return None


def _check_image(path: Path, limits: ImportLimits) -> tuple[str, int, int] | str:
    """(format, width, height), or the problem with the file as a message tail."""
    from PIL import Image as PILImage

    size = path.stat().st_size
    if size > limits.max_image_bytes:
        return (
            f"is {size} bytes, over the {limits.max_image_bytes}-byte cap; shrink or re-encode it"
        )
    try:
        with PILImage.open(path) as image:
            fmt, (width, height) = image.format, image.size
            if fmt not in FORMATS:
                return f"is a {fmt} image; convert it to PNG, JPEG or WebP"
            if max(width, height) > limits.max_side:
                return (
                    f"is {width}x{height} pixels, over the {limits.max_side}-pixel cap; "
                    "downscale it"
                )
            image.load()  # decodes every pixel: a truncated file fails here
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as error:
        return f"does not decode as an image ({error}); re-export it as PNG, JPEG or WebP"
    return fmt, width, height


def read_manifest(
    manifest: str | Path, checkpoint: str | None = None, limits: ImportLimits | None = None
) -> list[ManifestRow]:
    """Validate the manifest and every image it names; ImportRejected lists every problem.

    Columns `prompt,seed,image` (+ optional `checkpoint`, overriding `checkpoint` per row);
    image paths are relative to the manifest's folder and may not leave it.
    """
    limits = limits or ImportLimits()
    manifest = Path(manifest)
    default_label = checkpoint or DEFAULT_LABEL
    if not manifest.is_file():
        raise ImportRejected(f"manifest {manifest}: no such file; give the path of the CSV file")
    folder = manifest.resolve().parent
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportRejected(
            f"manifest {manifest.name}: not UTF-8 text ({error.reason} at byte {error.start}); "
            "save it as UTF-8 CSV"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise ImportRejected(
            f"manifest {manifest.name} row 1 (header): columns {header}; "
            + (f"missing {missing}" if missing else f"unknown {unknown}")
            + "; the header must be prompt,seed,image with an optional checkpoint column"
        )
    reader.fieldnames = header

    problems: list[str] = []
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, int, str], int] = {}
    for row_number, record in enumerate(reader, start=2):
        if row_number - 1 > limits.max_files:
            raise ImportRejected(
                f"manifest {manifest.name}: more than {limits.max_files} rows; split it into "
                "several imports"
            )
        if None in record:  # more cells than header columns
            problems.append(
                f"{manifest.name} row {row_number}: {len(header) + len(record[None])} cells for "
                f"{len(header)} columns; quote values that contain commas"
            )
            continue
        values = {key: (value or "").strip() for key, value in record.items()}
        bad = len(problems)
        # prompt
        prompt = values["prompt"]
        if (problem := _text_problem(prompt)) is not None:
            problems.append(f"{_where(manifest, row_number, 'prompt', prompt)} {problem}")
        # seed
        seed = -1
        try:
            seed = int(values["seed"])
            if not 0 <= seed <= MAX_SEED:
                raise ValueError
        except ValueError:
            problems.append(
                f"{_where(manifest, row_number, 'seed', values['seed'])} is not a whole number "
                f"in [0, 2**63-1]; write the seed the image was made with, e.g. 0"
            )
        # checkpoint label
        label = values.get("checkpoint") or default_label
        if (problem := _text_problem(label)) is not None or len(label) > 64:
            problem = problem or "is longer than 64 characters; shorten it"
            problems.append(f"{_where(manifest, row_number, 'checkpoint', label)} {problem}")
        # image path: relative, inside the manifest's folder, an existing file
        raw = values["image"]
        source = None
        if not raw:
            problems.append(
                f"{_where(manifest, row_number, 'image', raw)} is empty; give the image file's "
                "path relative to the manifest"
            )
        elif Path(raw).is_absolute() or PurePosixPath(raw.replace("\\", "/")).is_absolute():
            problems.append(
                f"{_where(manifest, row_number, 'image', raw)} is an absolute path; give the "
                "path relative to the manifest's folder"
            )
        else:
            candidate = (folder / raw).resolve()
            if not candidate.is_relative_to(folder):
                problems.append(
                    f"{_where(manifest, row_number, 'image', raw)} leaves the manifest's folder "
                    f"{folder}; move the image into that folder"
                )
            elif not candidate.is_file():
                problems.append(
                    f"{_where(manifest, row_number, 'image', raw)}: no such file in {folder}; "
                    "check the name (case matters) or add the file"
                )
            else:
                source = candidate
        if source is not None:
            checked = _check_image(source, limits)
            if isinstance(checked, str):
                problems.append(f"{_where(manifest, row_number, 'image', raw)} {checked}")
                source = None
        if len(problems) > bad or source is None:
            continue
        key = (prompt, seed, label)
        if key in seen:
            problems.append(
                f"{_where(manifest, row_number, 'image', raw)}: prompt, seed and checkpoint "
                f"({prompt!r}, {seed}, {label!r}) repeat row {seen[key]}; keep one image per "
                "prompt, seed and checkpoint"
            )
            continue
        seen[key] = row_number
        fmt, width, height = checked
        rows.append(
            ManifestRow(
                row=row_number,
                prompt=prompt,
                seed=seed,
                checkpoint=label,
                source=source,
                image=raw,
                format=fmt,
                width=width,
                height=height,
                sha256=sha256_file(source),
            )
        )
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ImportRejected(
            f"nothing was imported; {len(problems)} problem(s) in {manifest}:\n  - "
            + "\n  - ".join(shown)
            + more
        )
    if not rows:
        raise ImportRejected(
            f"manifest {manifest.name}: no rows; add one row per image (prompt,seed,image)"
        )
    return rows


# -- writing -------------------------------------------------------------------------------------


def copy_image(data_dir: Path, source: Path, sha256: str, fmt: str) -> str:
    """Copy `source` to its content-addressed name under the data dir, atomically (temp file,
    fsync, rename); returns the path relative to the data dir. An existing copy is kept."""
    folder = data_dir / IMPORTS_DIR / sha256[:2]
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{sha256}.{FORMATS[fmt]}"
    if not final.is_file():
        temp = folder / f".tmp-{sha256[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(source, "rb") as src, open(temp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temp, final)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
    return final.relative_to(data_dir).as_posix()


def _label_digest(images: list[Image]) -> str:
    """Checkpoint.sha256 of an imported label: sha256 over its images' (prompt, seed, sha)."""
    lines = sorted(f"{i.prompt_id}\t{i.seed}\t{i.sha256}" for i in images)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def import_images(
    session: Session,
    data_dir: str | Path,
    variant: str,
    manifest: str | Path,
    *,
    hyperparameters: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    notes: str = "",
    limits: ImportLimits | None = None,
) -> ImportResult:
    """Validate `manifest`, copy its images under `data_dir` and register `variant` (kind
    `images`) with one Checkpoint per label; the caller commits. Also "register a server folder".

    Importing again into the same images variant adds new (prompt, seed, checkpoint) rows and
    keeps identical ones; a different file for an existing row, other hyperparameters or a
    variant of another kind is refused (votes may already point at those images).
    """
    # 1. Check inputs: the name, the variant, every row and file
    data_dir = Path(data_dir)
    if (problem := _text_problem(variant)) is not None or len(variant) > 64:
        problem = problem or "is longer than 64 characters; shorten it"
        raise ImportRejected(f"--variant {variant!r} {problem}")
    hyperparameters = dict(hyperparameters or {})
    rows = read_manifest(manifest, checkpoint, limits)
    row = queries.variants_by_name(session, [variant]).get(variant)
    if row is not None and row.kind != IMAGES_KIND:
        raise ImportRejected(
            f"--variant {variant!r}: a {row.kind} variant of that name exists; choose another "
            "name for the imported images"
        )
    if row is not None and hyperparameters and row.hyperparameters != hyperparameters:
        raise ImportRejected(
            f"--hyperparameters {json.dumps(hyperparameters)}: variant {variant!r} has "
            f"{json.dumps(row.hyperparameters)}; give the same or import under a new name"
        )

    # 2. Existing images of the variant: identical rows are kept, changed files refused
    checkpoints: dict[str, Checkpoint] = {}
    existing: dict[tuple[str, int, str], Image] = {}
    if row is not None:
        checkpoints = {c.label: c for c in row.checkpoints}
        existing = queries.variant_images(session, row.id)
    changed = [
        f"{Path(manifest).name} row {r.row}, column 'image': {r.image!r} differs from the image "
        f"already imported for ({r.prompt!r}, {r.seed}, {r.checkpoint!r}); import it under a "
        "new variant name"
        for r in rows
        if (r.prompt, r.seed, r.checkpoint) in existing
        and existing[(r.prompt, r.seed, r.checkpoint)].sha256 != r.sha256
    ]
    if changed:
        raise ImportRejected("nothing was imported:\n  - " + "\n  - ".join(changed))

    # 3. Files (before the rows, as generation does: a crash leaves at most an unused file)
    paths = {r.sha256: copy_image(data_dir, r.source, r.sha256, r.format) for r in rows}

    # 4. Rows: variant, prompts, checkpoints, images
    if row is None:
        row = Variant(name=variant, kind=IMAGES_KIND, hyperparameters=hyperparameters, notes=notes)
        session.add(row)
        session.flush()
    texts = sorted({r.prompt for r in rows})
    prompts = queries.prompts_by_text(session, texts)
    for text in texts:
        if text not in prompts:
            prompts[text] = Prompt(text=text, kind=prompt_kind(text), parts=prompt_parts(text))
            session.add(prompts[text])
    added = 0
    for r in rows:
        if r.checkpoint not in checkpoints:
            checkpoints[r.checkpoint] = Checkpoint(
                variant=row, label=r.checkpoint, path=IMPORTS_DIR, sha256=""
            )
            session.add(checkpoints[r.checkpoint])
        if (r.prompt, r.seed, r.checkpoint) in existing:
            continue
        image = Image(
            checkpoint=checkpoints[r.checkpoint],
            prompt=prompts[r.prompt],
            seed=r.seed,
            settings_hash=IMPORTED,
            path=paths[r.sha256],
            sha256=r.sha256,
            width=r.width,
            height=r.height,
            settings={"source": IMPORTED, "file": r.image, "format": r.format},
        )
        session.add(image)
        existing[(r.prompt, r.seed, r.checkpoint)] = image
        added += 1
    session.flush()
    for label, ckpt in checkpoints.items():
        ckpt.sha256 = _label_digest([i for (_, _, lab), i in existing.items() if lab == label])
    session.flush()
    return ImportResult(
        variant=variant,
        labels=sorted({r.checkpoint for r in rows} | set(checkpoints)),
        images=len(rows),
        added=added,
    )


# -- zip archives --------------------------------------------------------------------------------


def _entry_problem(info: zipfile.ZipInfo, limits: ImportLimits) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        return "would be written outside the archive's folder; remove it"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link; put the file itself in the archive"
    if info.file_size > limits.max_image_bytes and not name.lower().endswith(".csv"):
        return f"is {info.file_size} bytes, over the {limits.max_image_bytes}-byte cap"
    if info.file_size > limits.max_ratio * max(info.compress_size, 1) and info.file_size > 2**20:
        return (
            f"expands {info.file_size / max(info.compress_size, 1):.0f}-fold, over the "
            f"{limits.max_ratio:.0f}-fold cap (a zip bomb?); re-create the archive"
        )
    return None


def extract_zip(archive: str | Path | IO[bytes], folder: Path, limits: ImportLimits) -> None:
    """Extract `archive` into `folder` after checking every entry; ImportRejected otherwise."""
    if isinstance(archive, str | Path):
        label = Path(archive).name
    else:
        label = Path(str(getattr(archive, "name", None) or "archive.zip")).name
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > limits.max_files:
                raise ImportRejected(
                    f"{label}: {len(infos)} files, over the {limits.max_files}-file cap; split "
                    "it into several archives"
                )
            total = sum(i.file_size for i in infos)
            if total > limits.max_total_bytes:
                raise ImportRejected(
                    f"{label}: {total} bytes uncompressed, over the {limits.max_total_bytes}-byte "
                    "cap; split it into several archives"
                )
            problems = [
                f"{label} entry {i.filename!r} {p}"
                for i in infos
                if (p := _entry_problem(i, limits)) is not None
            ]
            if problems:
                raise ImportRejected("nothing was imported:\n  - " + "\n  - ".join(problems))
            written = 0
            for info in infos:
                target = folder / PurePosixPath(info.filename.replace("\\", "/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                # the header's sizes may lie: count what is actually written
                with zf.open(info) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        written += len(block)
                        if written > limits.max_total_bytes or dst.tell() > info.file_size:
                            raise ImportRejected(
                                f"{label} entry {info.filename!r} expands beyond its declared "
                                "size; re-create the archive"
                            )
                        dst.write(block)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
        raise ImportRejected(
            f"{label}: not a readable zip archive ({error}); re-create it"
        ) from None
    except RuntimeError as error:  # zipfile: an encrypted entry
        raise ImportRejected(f"{label}: {error}; upload an archive without a password") from None
    except IsADirectoryError as error:  # "a" both a file and a folder in the archive
        raise ImportRejected(
            f"{label}: entry {error.filename!r} is both a file and a folder; re-create it"
        ) from None


def _find_manifest(folder: Path, manifest_name: str) -> Path:
    """`manifest_name` at the top of the archive or inside its single top folder."""
    candidates = [folder / manifest_name, *sorted(folder.glob(f"*/{manifest_name}"))]
    found = [c for c in candidates if c.is_file()]
    if len(found) != 1:
        raise ImportRejected(
            f"archive: {len(found)} files named {manifest_name!r} at its top or in a top folder "
            f"({[p.relative_to(folder).as_posix() for p in found]}); put exactly one manifest "
            "next to the images"
        )
    return found[0]


def import_zip(
    session: Session,
    data_dir: str | Path,
    variant: str,
    archive: str | Path | IO[bytes],
    *,
    manifest_name: str = "manifest.csv",
    hyperparameters: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    notes: str = "",
    limits: ImportLimits | None = None,
) -> ImportResult:
    """Safely extract a zip (no path traversal, links, oversize or bomb entries) into a
    temporary folder and import its manifest as `import_images` does; the caller commits."""
    limits = limits or ImportLimits()
    with tempfile.TemporaryDirectory(prefix="arena-import-") as temp:
        folder = Path(temp)
        extract_zip(archive, folder, limits)
        return import_images(
            session,
            data_dir,
            variant,
            _find_manifest(folder, manifest_name),
            hyperparameters=hyperparameters,
            checkpoint=checkpoint,
            notes=notes,
            limits=limits,
        )


# -- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when imported, 2 when refused (the reasons on stderr; nothing written)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation import-images", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--variant", required=True, help="name of the images variant")
    parser.add_argument("--manifest", required=True, help="CSV with prompt,seed,image[,checkpoint]")
    parser.add_argument("--hyperparameters", default=None, help='JSON, e.g. {"blur": 2}')
    parser.add_argument("--checkpoint", default=None, help=f"label (default {DEFAULT_LABEL!r})")
    parser.add_argument("--data-dir", default=None, help="default: ARENA_DATA_DIR, else ./data")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    args = parser.parse_args(argv)

    from db.engine import data_dir as default_data_dir
    from db.engine import make_engine, session_factory

    try:
        hyperparameters = json.loads(args.hyperparameters) if args.hyperparameters else {}
        if not isinstance(hyperparameters, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        print(
            f"error: --hyperparameters {args.hyperparameters!r}: {error}; give a JSON object, "
            "e.g. '{\"blur\": 2}'",
            file=sys.stderr,
        )
        return 2
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    engine = make_engine(args.database_url)
    try:
        with session_factory(engine).begin() as s:
            result = import_images(
                s,
                data_dir,
                args.variant,
                args.manifest,
                hyperparameters=hyperparameters,
                checkpoint=args.checkpoint,
            )
    except ImportRejected as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(
        f"variant {result.variant!r}: {result.images} images ({result.added} new), "
        f"checkpoint labels {result.labels}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
