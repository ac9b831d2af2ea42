"""Study design: the one-difference comparisons ("sets", 組) between model variants.

Pure Python, no torch, no database: `derive_comparisons` turns variants and their hyperparameters
into every pair that differs in exactly one hyperparameter, grouped and oriented (DESIGN.md).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from db.models import REFERENCE_VARIANT

REFERENCE = REFERENCE_VARIANT  # the built-in variant with no deprojector (its owner: db.models)
REFERENCE_GROUP = "deprojector"  # group of the explicit comparisons against the reference
REFERENCE_SETTING = "none"  # the reference's setting in that group


class StudyError(ValueError):
    """A study definition is inconsistent (unknown variant, missing field, duplicate, ...)."""


def check_study_name(name: str) -> None:
    """StudyError for a name commands would misread: one starting with '-' (taken for an
    option by `python -m evaluation generate --study NAME` and other CLIs) or with spaces around
    it (typed on a command line without them, it names no study)."""
    if name != name.strip():
        raise StudyError(f"name: {name!r} has spaces at its start or end; remove them")
    if name.startswith("-"):
        raise StudyError(
            f"name: {name!r} starts with '-', which commands read as an option; start it with a "
            "letter or digit"
        )


@dataclass(frozen=True)
class ComparisonSpec:
    """Two variants that differ in one hyperparameter (`group`), with each side's setting."""

    group: str
    variant_a: str
    variant_b: str
    a_setting: str  # canonical text of variant_a's value, e.g. "2D" or "2"
    b_setting: str

    @property
    def name(self) -> str:
        return f"{self.variant_a} vs {self.variant_b}"


def canonical(value: object) -> str:
    """The text a hyperparameter value is compared by: 2, 2.0 and "2" are all "2"; "2D" stays."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            return text
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def _setting_order(setting: str) -> tuple:
    """Sort key for settings: numbers numerically before text, text alphabetically."""
    try:
        return (0, float(setting), "")
    except ValueError:
        return (1, 0.0, setting)


def derive_comparisons(
    variants: dict[str, dict],
    base: str,
    include_reference: list[str] | tuple[str, ...] = (),
) -> list[ComparisonSpec]:
    """Every pair of `variants` that differs in exactly one hyperparameter, grouped by it.

    `variants` maps a variant name to its hyperparameters, e.g. `{"embed_dim": "2D", "vicinity":
    2}`; values are compared canonically (2 == "2"); a key missing on one side counts as a
    difference. The `reference` variant, if present, takes part only through `include_reference`.

    Orientation: side A is the variant holding the base variant's value for the group's
    hyperparameter. When neither side holds it (a hyperparameter with three or more values, or a
    base without that key), side A is the smaller setting: numbers ascending, then text
    alphabetically.

    `include_reference` names variants to compare against the reference; each gives a comparison
    in group "deprojector" with A = reference (setting "none") and B = the variant (setting: its
    name).

    Order: groups in the order of the base's hyperparameters (others alphabetically, the
    reference group last); within a group by the variants' order in `variants`.
    """
    # 1. Check inputs
    if base not in variants:
        raise StudyError(f"base: variant {base!r} is not among the variants {sorted(variants)}")
    if base == REFERENCE:
        raise StudyError(f"base: {base!r} has no hyperparameters; choose a deprojector variant")
    for name in include_reference:
        if name not in variants or name == REFERENCE:
            raise StudyError(
                f"include_reference: {name!r} is not a deprojector variant of this study "
                f"(variants: {sorted(v for v in variants if v != REFERENCE)})"
            )

    # 2. Canonical hyperparameters, in input order
    order = {name: i for i, name in enumerate(variants)}
    params = {
        name: {key: canonical(value) for key, value in (hp or {}).items()}
        for name, hp in variants.items()
        if name != REFERENCE
    }
    base_params = params[base]

    # 3. One-difference pairs
    by_group: dict[str, list[ComparisonSpec]] = {}
    for first, second in itertools.combinations(params, 2):
        p, q = params[first], params[second]
        differing = [key for key in sorted(set(p) | set(q)) if p.get(key) != q.get(key)]
        if len(differing) != 1:
            continue
        group = differing[0]
        first_setting, second_setting = p.get(group, ""), q.get(group, "")
        base_value = base_params.get(group)
        if second_setting == base_value or (
            first_setting != base_value
            and _setting_order(second_setting) < _setting_order(first_setting)
        ):
            first, second = second, first
            first_setting, second_setting = second_setting, first_setting
        by_group.setdefault(group, []).append(
            ComparisonSpec(group, first, second, first_setting, second_setting)
        )

    # 4. Stable order
    base_keys = list(base_params)
    group_order = sorted(
        by_group, key=lambda g: (base_keys.index(g) if g in base_keys else len(base_keys), g)
    )
    specs = [
        spec
        for group in group_order
        for spec in sorted(by_group[group], key=lambda s: (order[s.variant_a], order[s.variant_b]))
    ]
    specs += [
        ComparisonSpec(REFERENCE_GROUP, REFERENCE, name, REFERENCE_SETTING, name)
        for name in include_reference
    ]
    return specs
