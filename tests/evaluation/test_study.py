"""The one-difference comparisons of a study (evaluation.study)."""

from collections import Counter

import pytest

from evaluation.study import (
    ComparisonSpec,
    StudyError,
    canonical,
    check_study_name,
    derive_comparisons,
)

# The article's tournament: a 2x2x2 design with the all-changed corner missing; #1 is the base.
ARTICLE = {
    "vt-1": {"embed_dim": "2D", "vicinity": 2, "mlp_dim": "2D"},
    "vt-2": {"embed_dim": "1D", "vicinity": 2, "mlp_dim": "2D"},
    "vt-3": {"embed_dim": "2D", "vicinity": 1, "mlp_dim": "2D"},
    "vt-4": {"embed_dim": "2D", "vicinity": 2, "mlp_dim": "1D"},
    "vt-5": {"embed_dim": "1D", "vicinity": 1, "mlp_dim": "2D"},
    "vt-6": {"embed_dim": "1D", "vicinity": 2, "mlp_dim": "1D"},
    "vt-7": {"embed_dim": "2D", "vicinity": 1, "mlp_dim": "1D"},
    "reference": {},
}


def test_article_design_gives_three_comparisons_per_hyperparameter():
    """The seven-model design yields exactly 3 one-difference sets per hyperparameter, 9 in all."""
    specs = derive_comparisons(ARTICLE, base="vt-1")
    assert Counter(s.group for s in specs) == {"embed_dim": 3, "vicinity": 3, "mlp_dim": 3}
    assert len({frozenset((s.variant_a, s.variant_b)) for s in specs}) == 9


def test_side_a_holds_the_base_setting():
    """In every set, side A has the base variant's value of the hyperparameter that differs."""
    specs = derive_comparisons(ARTICLE, base="vt-1")
    base = {"embed_dim": "2D", "vicinity": "2", "mlp_dim": "2D"}
    for s in specs:
        assert s.a_setting == base[s.group] != s.b_setting
        assert canonical(ARTICLE[s.variant_a][s.group]) == s.a_setting
        assert canonical(ARTICLE[s.variant_b][s.group]) == s.b_setting


def test_each_set_differs_in_exactly_its_group():
    """The two variants of a set agree on every hyperparameter except the group's."""
    for s in derive_comparisons(ARTICLE, base="vt-1"):
        a, b = ARTICLE[s.variant_a], ARTICLE[s.variant_b]
        assert [k for k in a if canonical(a[k]) != canonical(b[k])] == [s.group]


def test_values_are_compared_canonically():
    """2, 2.0 and "2" are the same setting, so variants differing only in spelling never pair."""
    variants = {
        "a": {"vicinity": 2, "embed_dim": "2D"},
        "b": {"vicinity": "2", "embed_dim": "1D"},
        "c": {"vicinity": 2.0, "embed_dim": "2D"},
    }
    specs = derive_comparisons(variants, base="a")
    assert [(s.group, s.variant_a, s.variant_b) for s in specs] == [
        ("embed_dim", "a", "b"),
        ("embed_dim", "c", "b"),
    ]


def test_orientation_without_the_base_value_is_ascending():
    """When neither side holds the base's value, the smaller setting is side A."""
    variants = {"base": {"vicinity": 2}, "v3": {"vicinity": 3}, "v1": {"vicinity": 1}}
    specs = derive_comparisons(variants, base="base")
    assert [(s.variant_a, s.variant_b, s.a_setting, s.b_setting) for s in specs] == [
        ("base", "v3", "2", "3"),
        ("base", "v1", "2", "1"),
        ("v1", "v3", "1", "3"),
    ]


def test_reference_comparisons_are_added_explicitly():
    """The reference takes part only through include_reference, as side A with setting "none"."""
    specs = derive_comparisons(ARTICLE, base="vt-1", include_reference=["vt-1", "vt-4"])
    ref = [s for s in specs if s.group == "deprojector"]
    assert ref == [
        ComparisonSpec("deprojector", "reference", "vt-1", "none", "vt-1"),
        ComparisonSpec("deprojector", "reference", "vt-4", "none", "vt-4"),
    ]
    assert ref[0].name == "reference vs vt-1"
    assert all("reference" not in (s.variant_a, s.variant_b) for s in specs[:-2])


@pytest.mark.parametrize(
    ("base", "include", "field"),
    [
        ("vt-9", (), "base"),
        ("reference", (), "base"),
        ("vt-1", ("vt-9",), "include_reference"),
    ],
)
def test_bad_input_names_the_field(base, include, field):
    """An unknown base or reference partner raises StudyError naming the field and the value."""
    with pytest.raises(StudyError, match=field):
        derive_comparisons(ARTICLE, base=base, include_reference=include)


@pytest.mark.parametrize(
    ("name", "message"),
    [("-x", "starts with '-'"), ("--study", "starts with '-'"), (" tiny", "spaces at its start")],
)
def test_names_commands_would_misread_are_refused(name, message):
    """A study name starting with '-' (an option to `generate --study NAME`) or padded with
    spaces is refused, naming the field, the value and the fix."""
    with pytest.raises(StudyError, match=f"name: {name!r} .*{message}"):
        check_study_name(name)
    check_study_name("vt-1 vs reference")  # dashes inside a name are fine
