"""Studies as TOML files: `apply` creates or updates a study from one, `dump` writes one back.

    python -m evaluation study apply article.toml [--database-url URL]
    python -m evaluation study dump --study article [--out article.toml] [--force]

The schema is in the README ("Studies as files"). A dumped file lists the study's comparisons
explicitly, so applying it to another database re-creates the same study.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Study
from db.queries import plan as queries
from db.queries.studies import list_studies
from evaluation.plan import MissingImage, StudySpec, create_study, imported_gaps, update_study
from evaluation.study import REFERENCE, REFERENCE_GROUP, StudyError

# key -> (expected type, as said in messages); `settings` and `allocation` are tables
TOP_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "name": (str, "a string"),
    "base": (str, "a string"),
    "variants": (list, "a list of variant names"),
    "reference_comparisons": (list, "a list of variant names"),
    "groups": (list, "a list of hyperparameter names"),
    "comparisons": (list, 'a list of [variant, variant] pairs, e.g. [["vt-1", "vt-2"]]'),
    "checkpoint_labels": (list, "a list of labels"),
    "prompts": (list, "a list of prompt texts"),
    "seeds": (list, "a list of integers"),
    "qc_rate": ((int, float), "a number in [0, 1]"),
    "results_visible_to_voters": (bool, "true or false"),
    "settings": (dict, "a table of SD settings"),
    "allocation": (dict, "a table of allocation options"),
}
REQUIRED = ("name", "base", "variants", "checkpoint_labels", "prompts")
ALLOCATION_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "stop_when_settled": (bool, "true or false"),
    "vote_cap": (int, "a positive integer (leave it out for no cap)"),
    "alpha": ((int, float), "a number in (0, 1)"),
    "delta": ((int, float), "a number in (0, 0.5)"),
    "reason_tags": (list, "a list of up to 6 short tags"),
}


class StudyFileError(StudyError):
    """A study file cannot be read or applied; the message names the file, key and fix."""


@dataclass(frozen=True)
class AppliedStudy:
    study: Study
    created: bool  # False: an existing study was updated
    changed: list[str]  # fields changed by an update
    pairs_added: int  # regular pairs this apply created
    pairs_left_out: int = 0  # pairs not created: they need images imported variants lack
    missing_images: list[MissingImage] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------------


def _typed(source: str, key: str, value: Any, expected: tuple) -> Any:
    kind, said = expected
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise StudyFileError(f"{source}: {key} = {value!r}; expected {said}")
    return value


def _items(source: str, key: str, values: list, kind: type, said: str) -> tuple:
    for i, value in enumerate(values):
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise StudyFileError(f"{source}: {key}[{i}] = {value!r}; expected {said}")
    return tuple(values)


def parse_study_file(text: str, source: str = "study file") -> StudySpec:
    """The StudySpec a study file describes; StudyFileError names the key and the fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyFileError(f"{source}: not valid TOML ({error}); fix the syntax there") from None
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise StudyFileError(f"{source}: unknown key(s) {unknown}; the keys are {sorted(TOP_KEYS)}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise StudyFileError(f"{source}: missing key(s) {missing}; add them (see the README)")
    for key, value in data.items():
        _typed(source, key, value, TOP_KEYS[key])
    allocation = data.get("allocation", {})
    unknown = sorted(set(allocation) - set(ALLOCATION_KEYS))
    if unknown:
        raise StudyFileError(
            f"{source}: unknown key(s) {[f'allocation.{k}' for k in unknown]}; the allocation "
            f"keys are {sorted(ALLOCATION_KEYS)}"
        )
    for key, value in allocation.items():
        _typed(source, f"allocation.{key}", value, ALLOCATION_KEYS[key])
    comparisons = []
    for i, pair in enumerate(data.get("comparisons", [])):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, str) for v in pair)
        ):
            raise StudyFileError(
                f"{source}: comparisons[{i}] = {pair!r}; expected two variant names, "
                'e.g. ["vt-1", "vt-2"]'
            )
        comparisons.append((pair[0], pair[1]))
    return StudySpec(
        name=data["name"],
        base=data["base"],
        variants=_items(source, "variants", data["variants"], str, "a variant name"),
        reference_comparisons=_items(
            source, "reference_comparisons", data.get("reference_comparisons", []), str, "a name"
        ),
        groups=_items(source, "groups", data.get("groups", []), str, "a hyperparameter name"),
        comparisons=tuple(comparisons),
        checkpoint_labels=_items(
            source, "checkpoint_labels", data["checkpoint_labels"], str, "a label"
        ),
        prompts=_items(source, "prompts", data["prompts"], str, "a prompt text"),
        seeds=_items(source, "seeds", data.get("seeds", [0]), int, "an integer"),
        settings=dict(data.get("settings", {})),
        qc_rate=float(data.get("qc_rate", 0.0)),
        results_visible_to_voters=data.get("results_visible_to_voters", False),
        stop_when_settled=allocation.get("stop_when_settled", True),
        vote_cap=allocation.get("vote_cap"),
        alpha=float(allocation.get("alpha", 0.05)),
        delta=float(allocation.get("delta", 0.1)),
        reason_tags=_items(
            source, "allocation.reason_tags", allocation.get("reason_tags", []), str, "a tag"
        ),
    )


def apply_study_file(session: Session, text: str, source: str = "study file") -> AppliedStudy:
    """Create the study the file describes, or update the existing study of that name
    (`evaluation.plan.update_study`: additions and allocation options only). Does not commit."""
    spec = parse_study_file(text, source)
    exists = queries.study_named(session, spec.name) is not None
    try:
        if not exists:
            missing, left_out = imported_gaps(session, spec)
            study = create_study(session, spec)
            pairs = queries.regular_pair_count(session, study.id)
            return AppliedStudy(study, True, [], pairs, left_out, missing)
        update = update_study(session, spec)
    except StudyFileError:
        raise
    except StudyError as error:
        raise StudyFileError(f"{source}: {error}") from None
    return AppliedStudy(
        update.study,
        False,
        update.changed,
        update.pairs_added,
        update.pairs_left_out,
        update.missing_images,
    )


# -- writing -------------------------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_value(value: Any) -> str:
    """One TOML value: strings (escaped), booleans, integers, finite floats, lists of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written to a study file")
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in _ESCAPES:
                out.append(_ESCAPES[ch])
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"{value!r} ({type(value).__name__}) cannot be written to a study file")


def _lines(key: str, value: Any) -> list[str]:
    if isinstance(value, list | tuple) and len(value) > 1 and not isinstance(value[0], int):
        return [f"{key} = ["] + [f"    {toml_value(v)}," for v in value] + ["]"]
    return [f"{key} = {toml_value(value)}"]


def dump_study(session: Session, name: str) -> str:
    """The study file of study `name` (StudyFileError when there is none)."""
    study = queries.study_named(session, name)
    if study is None:
        known = [s.name for s in list_studies(session)]
        raise StudyFileError(f"--study {name!r}: no such study; existing studies: {list(known)}")
    base = study.base_variant.name
    variants = [base]
    for c in study.comparisons:
        for v in (c.variant_a.name, c.variant_b.name):
            if v not in variants:
                variants.append(v)
    reference = [
        c.variant_b.name
        for c in study.comparisons
        if c.variant_a.name == REFERENCE and c.group == REFERENCE_GROUP
    ]
    explicit = [
        [c.variant_a.name, c.variant_b.name]
        for c in study.comparisons
        if not (c.variant_a.name == REFERENCE and c.group == REFERENCE_GROUP)
    ]
    out = [
        f"# Study {study.name!r}: python -m evaluation study apply FILE re-creates it",
        *_lines("name", study.name),
        *_lines("base", base),
        *_lines("variants", variants),
        *_lines("reference_comparisons", reference),
        *_lines("comparisons", explicit),
        *_lines("checkpoint_labels", list(study.checkpoint_labels)),
        *_lines("prompts", [sp.prompt.text for sp in study.study_prompts]),
        *_lines("seeds", list(study.seeds)),
        *_lines("qc_rate", float(study.qc_rate)),
        *_lines("results_visible_to_voters", bool(study.results_visible_to_voters)),
        "",
        "[settings]",
        *[line for key, value in study.settings.items() for line in _lines(key, value)],
        "",
        "[allocation]",
        *_lines("stop_when_settled", bool(study.stop_when_settled)),
        *([] if study.vote_cap is None else _lines("vote_cap", int(study.vote_cap))),
        *_lines("alpha", float(study.alpha)),
        *_lines("delta", float(study.delta)),
        *_lines("reason_tags", list(study.reason_tags or [])),
    ]
    return "\n".join(out) + "\n"


def write_text_atomic(path: Path, text: str, force: bool = False) -> None:
    """Write `text` to `path` via a temp file and rename; an existing file only with `force`."""
    if path.exists() and not force:
        raise StudyFileError(f"--out {path}: the file exists; pass --force to replace it")
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# -- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 when the file or the study is refused (reason on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation study", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    apply = sub.add_parser("apply", help="create or update a study from a TOML file")
    apply.add_argument("file", help="the study file, e.g. article.toml")
    apply.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    dump = sub.add_parser("dump", help="write a study as a TOML file")
    dump.add_argument("--study", required=True, help="study name")
    dump.add_argument("--out", default=None, help="file to write (default: standard output)")
    dump.add_argument("--force", action="store_true", help="replace an existing --out file")
    dump.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    args = parser.parse_args(argv)

    from db.engine import make_engine, session_factory

    engine = make_engine(args.database_url)
    try:
        if args.action == "apply":
            path = Path(args.file)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                print(
                    f"error: {path}: cannot read it ({error}); give a UTF-8 TOML file",
                    file=sys.stderr,
                )
                return 2
            with session_factory(engine).begin() as s:
                result = apply_study_file(s, text, source=path.name)
                if result.created:
                    print(
                        f"created study {result.study.name!r} ({result.study.status}), "
                        f"{result.pairs_added} pairs"
                    )
                else:
                    print(
                        f"updated study {result.study.name!r}: changed {result.changed or 'nothing'}"
                        f", {result.pairs_added} pairs added"
                    )
                if result.pairs_left_out:
                    print(
                        f"{result.pairs_left_out} pairs left out: imported variants lack "
                        f"{len(result.missing_images)} images, e.g. {result.missing_images[0]}"
                    )
        else:
            with session_factory(engine)() as s:
                text = dump_study(s, args.study)
            if args.out is None:
                sys.stdout.write(text)
            else:
                write_text_atomic(Path(args.out), text, args.force)
                print(f"wrote {args.out}")
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
