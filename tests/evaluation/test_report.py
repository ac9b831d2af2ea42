"""The study report (evaluation.report): files, tables, grids, refusal to overwrite."""

import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image as PILImage

from db.engine import make_engine, session_factory
from evaluation.photo_demo import PHOTOS, STUDY_NAME, VARIANTS
from evaluation.report import ReportError, main, write_report

sys.path.insert(0, str(Path(__file__).parent))
from report_study import voted_photo_demo  # noqa: E402


@pytest.fixture(scope="module")
def voted(tmp_path_factory):
    """(data dir, database URL) of a photo demo with votes and one excluded voter."""
    data_dir = tmp_path_factory.mktemp("report-data")
    return data_dir, voted_photo_demo(data_dir)


def report(voted, out, **kw):
    data_dir, url = voted
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return write_report(s, data_dir, STUDY_NAME, out, **kw)
    finally:
        engine.dispose()


def test_report_writes_html_tables_grids_and_votes(voted, tmp_path):
    """report.html, tables.md, one grid per label and prompt kind, votes.csv."""
    result = report(voted, tmp_path / "out")
    assert result.files == [
        "grids/photo-composed.png",
        "grids/photo-single.png",
        "report.html",
        "tables.md",
        "votes.csv",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_excluded_annotators_votes_are_left_out_and_said(voted, tmp_path):
    """The excluded voter's votes are not in votes.csv nor the tables; methods name them."""
    result = report(voted, tmp_path / "out")
    votes = pd.read_csv(tmp_path / "out" / "votes.csv")
    assert set(votes["annotator"]) == {"voter-0", "voter-1", "voter-2"}
    assert (result.votes, result.excluded_votes) == (90, 30)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "voter-3 (clicker), 30 votes" in html


def test_tables_use_the_articles_column_names_and_find_the_difference(voted, tmp_path):
    """tables.md has 組数 / 点数 rows, and the base variant wins every group."""
    report(voted, tmp_path / "out")
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| 組数 (sets won) |" in tables and "| 点数 (points) |" in tables
    for group, base_setting in (("jpeg_quality", "95"), ("blur", "0"), ("saturation", "1")):
        assert f"**{group}: winner {base_setting}, decided by sets**" in tables


def test_variants_table_highlights_cells_that_differ_from_the_base(voted, tmp_path):
    """Exactly the one changed hyperparameter of each neighbour is highlighted."""
    report(voted, tmp_path / "out")
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| photo-q10-blur0-sat1.0 | images | **10** | 0 | 1 |" in tables
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count('class="differs"') == len(VARIANTS) - 1


def test_grids_are_labelled_at_full_resolution(voted, tmp_path):
    """A grid holds every variant row and prompt column at the images' own size (256 px)."""
    report(voted, tmp_path / "out")
    single = sum(1 for text in PHOTOS.values() if "," not in text)
    with PILImage.open(tmp_path / "out" / "grids" / "photo-single.png") as grid:
        assert grid.width > single * 256 and grid.height > len(VARIANTS) * 256


def test_report_is_self_contained(voted, tmp_path):
    """No URL in report.html leaves the file: every image is a data: URI."""
    report(voted, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert html.count('<img src="data:image/') == 2


def test_non_empty_out_folder_needs_force(voted, tmp_path):
    """An existing non-empty folder is refused, kept untouched, and replaced with force."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ReportError, match="the folder is not empty; pass --force"):
        report(voted, out)
    assert (out / "notes.txt").read_text() == "mine"
    report(voted, out, force=True)
    assert not (out / "notes.txt").exists() and (out / "report.html").is_file()


def test_command_line_exits_2_for_an_unknown_study(voted, tmp_path, capsys):
    """`python -m evaluation report` names the existing studies when the name is unknown."""
    data_dir, url = voted
    argv = ["--study", "nope", "--out", str(tmp_path / "o"), "--database-url", url]
    assert main([*argv, "--data-dir", str(data_dir)]) == 2
    assert "no such study; existing studies: ['photo-demo']" in capsys.readouterr().err


def test_report_and_import_modules_do_not_import_torch():
    """The Results and Variants pages may import these modules without loading torch & co."""
    import subprocess

    code = (
        "import sys, evaluation.report, evaluation.study_file, evaluation.imports, "
        "evaluation.photo_demo; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_report_of_a_rendered_study_without_files_marks_missing_cells(tmp_path):
    """A study whose images are not on disk (and has no votes) still gets every file; its
    grids are one per label and prompt kind, with grey "missing" cells."""
    from db.engine import upgrade
    from db.synthetic import create_synthetic_study

    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    upgrade(engine)
    try:
        with session_factory(engine).begin() as s:
            create_synthetic_study(s, "synthetic", n_comparisons=2, n_prompts=4)
        with session_factory(engine)() as s:
            result = write_report(s, tmp_path, "synthetic", tmp_path / "out")
    finally:
        engine.dispose()
    assert [f for f in result.files if f.startswith("grids/")] == [
        "grids/epoch-10-composed.png",
        "grids/epoch-10-single.png",
        "grids/epoch-8-composed.png",
        "grids/epoch-8-single.png",
    ]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "No votes have been counted yet." in html
    with PILImage.open(tmp_path / "out" / "grids" / "epoch-8-single.png") as grid:
        assert grid.getpixel((grid.width - 20, grid.height - 20)) == (225, 225, 225)


def test_report_zip_holds_the_same_files(voted):
    """The Results page's download: a zip of the report folder."""
    import io
    import zipfile

    from evaluation.report import report_zip

    data_dir, url = voted
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            data = report_zip(s, data_dir, STUDY_NAME)
    finally:
        engine.dispose()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(names) == [
        f"photo-demo-report/{name}"
        for name in (
            "grids/photo-composed.png",
            "grids/photo-single.png",
            "report.html",
            "tables.md",
            "votes.csv",
        )
    ]
