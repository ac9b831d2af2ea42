"""Studies as TOML files (evaluation.study_file): apply, dump, update rules, escaping."""

import tomllib

import pytest
from sqlalchemy import func, select

from db.engine import session_factory
from db.models import Checkpoint, ImagePair, Study, Variant
from evaluation.study_file import (
    StudyFileError,
    apply_study_file,
    dump_study,
    main,
    parse_study_file,
    toml_value,
)
from tests.migrated import migrated_sqlite

DESIGN = {"vt-1": (2, 2), "vt-2": (1, 2), "vt-3": (2, 1), "vt-4": (1, 1)}

STUDY = """
name = "article"
base = "vt-1"
variants = ["reference", "vt-1", "vt-2", "vt-3", "vt-4"]
reference_comparisons = ["vt-1"]
checkpoint_labels = ["epoch-8", "epoch-10"]
prompts = ["a cat", "a girl, red hair, \\"quoted\\""]
seeds = [0, 1]
qc_rate = 0.0
results_visible_to_voters = false

[settings]
model_path = "sd"
scheduler = "ddim"
steps = 4
width = 64
height = 64

[allocation]
stop_when_settled = true
vote_cap = 40
alpha = 0.05
delta = 0.1
reason_tags = ["anatomy", "text"]
"""


def make_factory(path):
    engine = migrated_sqlite(path)
    factory = session_factory(engine)
    with factory.begin() as s:
        for name, (e, v) in DESIGN.items():
            variant = Variant(
                name=name, kind="vt", hyperparameters={"embed_dim": f"{e}D", "vicinity": v}
            )
            s.add(variant)
            for label in ("epoch-8", "epoch-10"):
                s.add(Checkpoint(variant=variant, label=label, path=f"ck/{name}", sha256="0"))
    return engine, factory


@pytest.fixture
def factory(tmp_path):
    engine, factory = make_factory(tmp_path / "one.sqlite3")
    yield factory
    engine.dispose()


def pairs(s):
    return s.scalar(select(func.count()).select_from(ImagePair).where(ImagePair.qc_kind.is_(None)))


def test_apply_dump_apply_recreates_the_same_study(factory, tmp_path):
    """A dumped study applied to another database gives the same study and the same file."""
    with factory.begin() as s:
        applied = apply_study_file(s, STUDY)
        assert applied.created and applied.pairs_added == 5 * 2 * 2 * 2
    with factory() as s:
        first = dump_study(s, "article")
    engine, other = make_factory(tmp_path / "two.sqlite3")
    try:
        with other.begin() as s:
            apply_study_file(s, first)
        with other() as s:
            assert dump_study(s, "article") == first
            study = s.scalar(select(Study))
            assert [c.name for c in study.comparisons] == [
                "vt-1 vs vt-2",
                "vt-3 vs vt-4",
                "vt-1 vs vt-3",
                "vt-2 vs vt-4",
                "reference vs vt-1",
            ]
            assert (study.vote_cap, study.reason_tags) == (40, ["anatomy", "text"])
            assert [sp.prompt.text for sp in study.study_prompts][1] == 'a girl, red hair, "quoted"'
    finally:
        engine.dispose()


def test_reapplying_a_dump_changes_nothing(factory):
    """Applying the dump of a study to itself is a no-op."""
    with factory.begin() as s:
        apply_study_file(s, STUDY)
    with factory() as s:
        text = dump_study(s, "article")
    with factory.begin() as s:
        again = apply_study_file(s, text)
        assert (again.created, again.changed, again.pairs_added) == (False, [], 0)


def test_update_changes_allocation_and_adds_pairs_for_a_new_seed(factory):
    """Allocation options change in place; a new seed adds its pairs, old pairs stay."""
    with factory.begin() as s:
        apply_study_file(s, STUDY)
        before = {p.id for p in s.scalars(select(ImagePair))}
    changed = STUDY.replace("seeds = [0, 1]", "seeds = [0, 1, 2]").replace(
        "vote_cap = 40", "vote_cap = 80"
    )
    with factory.begin() as s:
        update = apply_study_file(s, changed)
        assert set(update.changed) == {"vote_cap", "seeds"}
        assert update.pairs_added == 5 * 2 * 2
        assert before <= {p.id for p in s.scalars(select(ImagePair))}
        assert s.scalar(select(Study.vote_cap)) == 80


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"a cat", ', "", "prompts: ['a cat'] would be removed"),
        ("steps = 4", "steps = 8", "settings: "),
        ('base = "vt-1"', 'base = "vt-2"', "base: 'vt-2' is not the study's base 'vt-1'"),
    ],
    ids=["remove-prompt", "settings", "base"],
)
def test_update_that_would_destroy_pairs_is_refused(factory, old, new, message):
    """Removing a prompt, changing SD settings or the base is refused, naming the field."""
    with factory.begin() as s:
        apply_study_file(s, STUDY)
    with factory.begin() as s, pytest.raises(StudyFileError, match=message.replace("[", r"\[")):
        apply_study_file(s, STUDY.replace(old, new), source="article.toml")


def test_explicit_comparisons_keep_only_those_sets(factory):
    """`comparisons` restricts the derived sets; the reference comparison stays."""
    text = STUDY.replace(
        'reference_comparisons = ["vt-1"]',
        'reference_comparisons = ["vt-1"]\ncomparisons = [["vt-2", "vt-1"]]',
    )
    with factory.begin() as s:
        study = apply_study_file(s, text).study
        assert [c.name for c in study.comparisons] == ["vt-1 vs vt-2", "reference vs vt-1"]


def test_unknown_key_is_refused_with_the_known_keys():
    """A misspelt key is named, with the list of keys the file may have."""
    with pytest.raises(StudyFileError) as error:
        parse_study_file(STUDY.replace("seeds =", "sedes ="), "a.toml")
    assert str(error.value).startswith("a.toml: unknown key(s) ['sedes']; the keys are [")


def test_wrong_type_is_refused():
    """A value of the wrong type is named with the expected type."""
    with pytest.raises(StudyFileError) as error:
        parse_study_file(STUDY.replace("vote_cap = 40", 'vote_cap = "40"'), "a.toml")
    assert str(error.value) == (
        "a.toml: allocation.vote_cap = '40'; expected a positive integer (leave it out for no cap)"
    )


def test_invalid_toml_names_the_line():
    """A syntax error names the file and the line."""
    with pytest.raises(StudyFileError, match=r"a.toml: not valid TOML \(.*line 2"):
        parse_study_file('name = "x"\nbase = \n', "a.toml")


@pytest.mark.parametrize(
    "value",
    [
        'quote " and \\ backslash',
        "new\nline\ttab",
        "bell \x07 del \x7f",
        "unicode: 猫 ✓",
        0.1,
        1e-9,
    ],
)
def test_written_values_read_back_identically(value):
    """Strings with quotes, backslashes, control characters and Unicode survive a round trip."""
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_dump_refuses_to_overwrite_without_force(factory, tmp_path, capsys):
    """`study dump --out FILE` writes once; an existing file needs --force."""
    with factory.begin() as s:
        apply_study_file(s, STUDY)
    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    out = tmp_path / "article.toml"
    assert main(["dump", "--study", "article", "--out", str(out), "--database-url", url]) == 0
    assert tomllib.loads(out.read_text())["name"] == "article"
    assert main(["dump", "--study", "article", "--out", str(out), "--database-url", url]) == 2
    assert "pass --force" in capsys.readouterr().err
    argv = ["dump", "--study", "article", "--out", str(out), "--force", "--database-url", url]
    assert main(argv) == 0


def test_groups_keep_only_those_hyperparameters_sets(factory):
    """`groups` keeps the named hyperparameters' sets (and the reference comparison)."""
    text = STUDY.replace(
        'reference_comparisons = ["vt-1"]',
        'reference_comparisons = ["vt-1"]\ngroups = ["vicinity"]',
    )
    with factory.begin() as s:
        study = apply_study_file(s, text).study
        assert {c.group for c in study.comparisons} == {"vicinity", "deprojector"}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("alpha = 0.05", "alpha = 1.5", "a.toml: alpha: 1.5 is outside (0, 1); e.g. 0.05"),
        (
            "vote_cap = 40",
            "vote_cap = 0",
            "a.toml: vote_cap: 0; expected a positive integer or none",
        ),
        (
            'reason_tags = ["anatomy", "text"]',
            'reason_tags = ["a", "b", "c", "d", "e", "f", "g"]',
            "a.toml: reason_tags: ['a', 'b', 'c', 'd', 'e', 'f', 'g']; expected at most 6 "
            "distinct tags",
        ),
        (
            'reference_comparisons = ["vt-1"]',
            'reference_comparisons = ["vt-1"]\ngroups = ["colour"]',
            "a.toml: groups: 'colour' is not a group of these variants (['embed_dim', "
            "'vicinity']); drop it or add variants that differ in it",
        ),
    ],
    ids=["alpha", "vote-cap", "tags", "group"],
)
def test_bad_allocation_or_selection_is_refused(factory, old, new, message):
    """Allocation options and groups are checked, naming the key, the value and the fix."""
    with factory.begin() as s, pytest.raises(StudyFileError) as error:
        apply_study_file(s, STUDY.replace(old, new), source="a.toml")
    assert str(error.value) == message
