"""A publishable study report: one self-contained HTML file, Markdown tables, grids, votes.

    python -m evaluation report --study photo-demo --out report/ [--force] [--data-dir DIR]

Writes `report.html` (images embedded as data: URIs, no external URL, prints well),
`tables.md` (the same tables; the article's 組数 / 点数 columns), `grids/*.png` (one per
checkpoint label and prompt kind: rows = reference then variants in study order, columns =
prompts, full resolution) and `votes.csv` (the votes the tables count). Written into a temporary
folder and renamed; an existing non-empty DIR is replaced only with --force.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from db.models import Study
from db.queries.exclusions import live_exclusions
from db.queries.plan import study_named
from db.queries.report import allocation_rule_counts, study_images
from db.queries.results import live_votes_frame
from db.queries.studies import list_studies
from evaluation.study import REFERENCE, canonical

GRIDS_DIR = "grids"


class ReportError(ValueError):
    """The report cannot be written (no such study, the output folder exists, ...)."""


@dataclass(frozen=True)
class ReportResult:
    out: Path
    files: list[str]  # written, relative to `out`
    votes: int  # votes counted (exclusions removed)
    excluded_votes: int


@dataclass
class _Section:
    title: str
    html: list[str] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)


# -- tables ------------------------------------------------------------------------------------


def _html_table(frame: pd.DataFrame, highlight: set[tuple[int, str]] | None = None) -> str:
    """An HTML table; `highlight` holds (row position, column) cells to mark."""
    highlight = highlight or set()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            mark = ' class="differs"' if (i, column) in highlight else ""
            cells.append(f"<td{mark}>{html.escape(_fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_table(frame: pd.DataFrame, highlight: set[tuple[int, str]] | None = None) -> str:
    highlight = highlight or set()

    def cell(value: object) -> str:
        return _fmt(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    for i, row in enumerate(frame.itertuples(index=False)):
        values = [
            f"**{cell(v)}**" if (i, c) in highlight else cell(v)
            for c, v in zip(frame.columns, row, strict=True)
        ]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return ""
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _table(section: _Section, frame: pd.DataFrame, caption: str = "", highlight=None) -> None:
    if caption:
        section.html.append(f"<p class='caption'>{html.escape(caption)}</p>")
        section.markdown.append(f"**{caption}**\n")
    section.html.append(_html_table(frame, highlight))
    section.markdown.append(_md_table(frame, highlight) + "\n")


def _paragraph(section: _Section, text: str) -> None:
    section.html.append(f"<p>{html.escape(text)}</p>")
    section.markdown.append(text + "\n")


# -- the study ---------------------------------------------------------------------------------


def _variants(study: Study) -> list[Any]:
    """The study's variants in study order: the reference first, then the base, then as they
    appear in the comparisons."""
    seen: dict[str, Any] = {}
    for c in study.comparisons:
        for v in (c.variant_a, c.variant_b):
            seen.setdefault(v.name, v)
    order = [n for n in seen if n == REFERENCE]
    if study.base_variant is not None and study.base_variant.name in seen:
        order.append(study.base_variant.name)
    order += [n for n in seen if n not in order]
    return [seen[n] for n in order]


def _variants_section(study: Study) -> _Section:
    section = _Section("Variants")
    variants = _variants(study)
    keys = list(dict.fromkeys(k for v in variants for k in (v.hyperparameters or {})))
    base = (study.base_variant.hyperparameters or {}) if study.base_variant else {}
    rows, highlight = [], set()
    for i, v in enumerate(variants):
        row = {"variant": v.name, "kind": v.kind}
        for key in keys:
            value = (v.hyperparameters or {}).get(key)
            row[key] = "" if value is None else canonical(value)
            if v.name != REFERENCE and canonical(value) != canonical(base.get(key)):
                highlight.add((i, key))
        rows.append(row)
    _paragraph(
        section,
        f"Base variant: {study.base_variant.name if study.base_variant else '-'}. Highlighted "
        "cells differ from the base variant.",
    )
    _table(section, pd.DataFrame(rows, columns=["variant", "kind", *keys]), highlight=highlight)
    return section


def _comparisons_section(study: Study, votes: pd.DataFrame) -> _Section:
    section = _Section("Comparisons")
    counts = votes.groupby("comparison").size() if len(votes) else pd.Series(dtype=int)
    rows = [
        {
            "comparison": c.name,
            "group": c.group,
            "A": c.variant_a.name,
            "B": c.variant_b.name,
            "A setting": c.a_setting,
            "B setting": c.b_setting,
            "votes": int(counts.get(c.name, 0)),
        }
        for c in study.comparisons
    ]
    _table(section, pd.DataFrame(rows))
    return section


def _methods_section(
    study: Study, votes: pd.DataFrame, exclusions, excluded_votes: int, rules: dict[str, int]
) -> _Section:
    section = _Section("Methods")
    per = votes.groupby("annotator").size().sort_values(ascending=False) if len(votes) else None
    who = (
        f"{len(per)} annotators cast {len(votes)} counted votes ("
        + ", ".join(f"{name}: {n}" for name, n in per.items())
        + ")."
        if per is not None
        else "No votes have been counted yet."
    )
    left_a = float((votes["left_variant"] == votes["variant_a"]).mean()) if len(votes) else 0.0
    settings = study.settings or {}
    sd = (
        ", ".join(f"{k} = {v}" for k, v in settings.items())
        if settings
        else "none (every image was imported from files)"
    )
    cap = "no cap" if study.vote_cap is None else f"at most {study.vote_cap} votes per comparison"
    rule = (
        f"comparisons stop being served once settled (e-value above 1/alpha, alpha = "
        f"{study.alpha}; equivalence margin delta = {study.delta}), {cap}"
        if study.stop_when_settled
        else f"every pair is served to every annotator (full grid), {cap}"
    )
    served = ", ".join(f"{k}: {v}" for k, v in sorted(rules.items())) or "none yet"
    excluded = (
        "Excluded annotators (their votes are left out of every table): "
        + "; ".join(f"{n} ({r or 'no reason given'})" for n, r in exclusions)
        + f", {excluded_votes} votes."
        if exclusions
        else "No annotator was excluded."
    )
    _paragraph(section, who)
    _paragraph(
        section,
        "Judging was blind: the images of a pair were shown side by side without the variant "
        "names, and the left/right order was drawn at random for each showing "
        f"(counterbalanced: variant A was on the left in {left_a:.0%} of the counted votes). "
        f"Quality-control repeats: {study.qc_rate:.0%} of items (not counted in the tables).",
    )
    _paragraph(
        section,
        f"Seeds: {', '.join(str(s) for s in study.seeds)}. Checkpoint labels: "
        f"{', '.join(study.checkpoint_labels)}. Stable Diffusion settings: {sd}.",
    )
    _paragraph(
        section,
        f"Allocation rule: {rule}. Live votes (excluded annotators' included) by the rule that "
        f"served them: {served}.",
    )
    _paragraph(section, excluded)
    return section


def _settings_section(study: Study) -> _Section:
    section = _Section("Study settings")
    rows = [
        ("name", study.name),
        ("status", study.status),
        ("base variant", study.base_variant.name if study.base_variant else ""),
        ("prompts", len(study.study_prompts)),
        ("seeds", ", ".join(str(s) for s in study.seeds)),
        ("checkpoint labels", ", ".join(study.checkpoint_labels)),
        ("quality-control rate", study.qc_rate),
        ("stop when settled", study.stop_when_settled),
        ("vote cap", "none" if study.vote_cap is None else study.vote_cap),
        ("alpha", study.alpha),
        ("delta", study.delta),
        ("reason tags", ", ".join(study.reason_tags or []) or "none"),
        *[(f"SD {k}", v) for k, v in (study.settings or {}).items()],
    ]
    _table(section, pd.DataFrame(rows, columns=["setting", "value"]))
    prompts = pd.DataFrame(
        [(sp.position + 1, sp.prompt.text, sp.prompt.kind) for sp in study.study_prompts],
        columns=["#", "prompt", "kind"],
    )
    _table(section, prompts, "Prompts")
    return section


def _tally_section(votes: pd.DataFrame) -> _Section:
    from evaluation.tally import tally_votes

    section = _Section("Tally (the article's tables)")
    if not len(votes):
        _paragraph(section, "No votes yet.")
        return section
    tally = tally_votes(votes)
    for g in tally.groups:
        rows = [
            {
                "組 (set)": s.comparison,
                f"x: {g.x}": s.x_wins,
                f"y: {g.y}": s.y_wins,
                "ties": s.ties,
                "winner": s.winner,
            }
            for s in g.sets
        ]
        rows.append({"組 (set)": "組数 (sets won)", f"x: {g.x}": g.x_sets, f"y: {g.y}": g.y_sets})
        rows.append({"組 (set)": "点数 (points)", f"x: {g.x}": g.x_points, f"y: {g.y}": g.y_points})
        verdict = {"x": g.x, "y": g.y, "draw": "draw"}[g.winner]
        by = "" if g.winner == "draw" else f", decided by {g.decided_by}"
        _table(section, pd.DataFrame(rows), f"{g.group}: winner {verdict}{by}")
    return section


def _board_section(study: Study, votes: pd.DataFrame, seed: int) -> _Section:
    section = _Section("Decision board")
    try:
        from evaluation.decisions import DecisionSettings, decide
    except ImportError:
        _paragraph(section, "The decision board is not available in this installation.")
        return section
    if not len(votes):
        _paragraph(section, "No votes yet.")
        return section
    board = decide(
        votes,
        DecisionSettings(alpha=study.alpha, delta=study.delta, vote_cap=study.vote_cap),
        seed=seed,
    )
    state = board.summary()
    needed = "unknown" if state.votes_needed is None else state.votes_needed
    _paragraph(
        section,
        f"Comparisons settled: {state.settled}, open: {state.open}; estimated votes still "
        f"needed: {needed}.",
    )
    _table(section, board.comparisons, "Comparisons")
    _table(section, board.groups, "Groups")
    return section


def _leaderboard_section(votes: pd.DataFrame, rounds: int, seed: int) -> _Section:
    from evaluation.ranking import bootstrap_leaderboard

    section = _Section("Leaderboard (Bradley-Terry)")
    if not len(votes):
        _paragraph(section, "No votes yet.")
        return section
    board = bootstrap_leaderboard(votes, rounds=rounds, seed=seed)
    _paragraph(
        section,
        f"Elo-scaled Bradley-Terry scores with {board.confidence:.0%} intervals from {rounds} "
        f"bootstrap rounds over prompts (seed {seed}). Ties count half a win each way.",
    )
    columns = ["rank", "variant", "votes", "wins", "ties", "elo", "elo_low", "elo_high"]
    _table(section, board.table[columns].round(1))
    return section


# -- grids ---------------------------------------------------------------------------------------


def _grids(study: Study, images, data_dir: Path, folder: Path) -> list[tuple[str, Path]]:
    """One grid per checkpoint label and prompt kind, first seed; (title, file) each."""
    from evaluation.grids import grid_image

    rows = [v.name for v in _variants(study)]
    prompts = [(sp.prompt.text, sp.prompt.kind) for sp in study.study_prompts]
    seed = study.seeds[0]
    paths = {
        (i.variant, i.checkpoint_label, i.prompt): (None if i.path is None else data_dir / i.path)
        for i in images
        if i.seed == seed
    }
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for label in study.checkpoint_labels:
        for kind in dict.fromkeys(k for _, k in prompts):
            columns = [text for text, k in prompts if k == kind]
            title = f"{study.name} - checkpoint {label} - {kind} prompts - seed {seed}"
            cells = {(r, c): paths.get((r, label, c)) for r in rows for c in columns}
            grid = grid_image(title, rows, columns, cells)
            path = folder / f"{_slug(label)}-{kind}.png"
            grid.save(path, format="PNG")
            written.append((title, path))
    return written


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-") or "x"


def _data_uri(path: Path) -> str:
    """JPEG data URI of a grid (the PNG stays in grids/; JPEG keeps report.html small)."""
    from PIL import Image as PILImage

    with PILImage.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# -- writing -------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.differs { background: #ffe08a; font-weight: bold; }
.caption { font-weight: bold; margin-bottom: 0.2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; } table, figure { break-inside: avoid; }
  td.differs { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _html(study: Study, sections: list[_Section], grids: list[tuple[str, Path]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Study report: {html.escape(study.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Study report: {html.escape(study.name)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(section.html)
    parts.append("<h2>Image grids</h2>")
    for title, path in grids:
        parts.append(
            f'<figure><img src="{_data_uri(path)}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(title)} (full resolution: {GRIDS_DIR}/{path.name})"
            "</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(study: Study, sections: list[_Section], grids: list[tuple[str, Path]]) -> str:
    out = [f"# Study report: {study.name}\n"]
    for section in sections:
        out.append(f"## {section.title}\n")
        out.extend(section.markdown)
    out.append("## Image grids\n")
    out.extend(f"- {title}: `{GRIDS_DIR}/{path.name}`" for title, path in grids)
    return "\n".join(out) + "\n"


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: a file, not a folder; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ReportError(f"--out {out}: the folder is not empty; pass --force to replace it")


def write_report(
    session: Session,
    data_dir: str | Path,
    study_name: str,
    out: str | Path,
    *,
    force: bool = False,
    rounds: int = 200,
    seed: int = 0,
) -> ReportResult:
    """Write the report of study `study_name` to the folder `out` (see the module docstring).

    Reads only (the caller's session is not written). `rounds` and `seed` set the leaderboard's
    bootstrap and the decision board's simulation. ReportError for an unknown study or a
    non-empty `out` without `force`.
    """
    from evaluation.export import write_votes_csv

    # 1. Check inputs
    out, data_dir = Path(out), Path(data_dir)
    _check_out(out, force)
    study = study_named(session, study_name)
    if study is None:
        known = [s.name for s in list_studies(session)]
        raise ReportError(f"--study {study_name!r}: no such study; existing studies: {known}")

    # 2. Votes, less those of excluded annotators
    votes = live_votes_frame(session, study.id, include_excluded=True)  # counted below
    exclusions = sorted((e.annotator, e.reason) for e in live_exclusions(session, study.id))
    excluded = votes["annotator"].isin([name for name, _ in exclusions])
    excluded_votes = int(excluded.sum())
    votes = votes[~excluded].reset_index(drop=True)

    # 3. Sections, then everything into a temporary sibling folder, then one rename
    sections = [
        _settings_section(study),
        _methods_section(
            study, votes, exclusions, excluded_votes, allocation_rule_counts(session, study.id)
        ),
        _variants_section(study),
        _comparisons_section(study, votes),
        _tally_section(votes),
        _board_section(study, votes, seed),
        _leaderboard_section(votes, rounds, seed),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    temp.chmod(0o755)  # mkdtemp makes it private; the report is meant to be shared
    try:
        grids = _grids(study, study_images(session, study.id), data_dir, temp / GRIDS_DIR)
        (temp / "report.html").write_text(_html(study, sections, grids), encoding="utf-8")
        (temp / "tables.md").write_text(_markdown(study, sections, grids), encoding="utf-8")
        write_votes_csv(votes, temp / "votes.csv")
        files = sorted(p.relative_to(temp).as_posix() for p in temp.rglob("*") if p.is_file())
        _check_out(out, force)  # again: another writer may have filled it meanwhile
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(temp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return ReportResult(out=out, files=files, votes=len(votes), excluded_votes=excluded_votes)


def report_zip(
    session: Session, data_dir: str | Path, study_name: str, *, rounds: int = 200, seed: int = 0
) -> bytes:
    """The report as the bytes of a zip (`<study>-report/` with the same files), for a
    download button; written to a temporary folder that is removed afterwards."""
    import zipfile

    with tempfile.TemporaryDirectory(prefix="arena-report-") as temp:
        folder = Path(temp) / f"{_slug(study_name)}-report"
        result = write_report(session, data_dir, study_name, folder, rounds=rounds, seed=seed)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in result.files:
                archive.write(folder / name, f"{folder.name}/{name}")
        return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when written, 2 when refused (reason on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--data-dir", default=None, help="default: ARENA_DATA_DIR, else ./data")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    parser.add_argument("--rounds", type=int, default=200, help="leaderboard bootstrap rounds")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap / simulation seed")
    args = parser.parse_args(argv)

    from db.engine import data_dir as default_data_dir
    from db.engine import make_engine, session_factory

    engine = make_engine(args.database_url)
    try:
        with session_factory(engine, readonly=True)() as s:
            result = write_report(
                s,
                Path(args.data_dir) if args.data_dir else default_data_dir(),
                args.study,
                args.out,
                force=args.force,
                rounds=args.rounds,
                seed=args.seed,
            )
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"wrote {len(result.files)} files to {result.out} ({result.votes} votes counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
