"""The studies page's form, turned into an `evaluation.plan.StudySpec` (checked on the way).

Parsing errors are `StudyError`s naming the field, like the planner's own checks.
"""

from __future__ import annotations

import re

import pandas as pd
from sqlalchemy import select

from arena_ui.resources import transaction
from db.models import Checkpoint, Variant
from deprojector.prompts import prompt_kind, prompt_parts
from evaluation.plan import PlanSummary, StudySpec, create_study, plan_summary
from evaluation.study import REFERENCE, StudyError


def variant_choices() -> tuple[list[str], list[str]]:
    """(registered variant names except the reference, every checkpoint label in use)."""
    with transaction(readonly=True) as s:
        names = s.scalars(
            select(Variant.name).where(Variant.name != REFERENCE).order_by(Variant.name)
        ).all()
        labels = s.scalars(select(Checkpoint.label).distinct()).all()
    return list(names), sorted(labels, key=natural_key)


def natural_key(text: str) -> list:
    """Sort key that puts 'epoch-2' before 'epoch-10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def prompt_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def prompt_table(text: str) -> pd.DataFrame:
    """Each prompt with its kind by the comma rule and the parts it is composed of."""
    return pd.DataFrame(
        [
            {"prompt": p, "kind": prompt_kind(p), "parts": " | ".join(prompt_parts(p))}
            for p in prompt_lines(text)
        ],
        columns=["prompt", "kind", "parts"],
    )


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError as exc:
        raise StudyError(
            f"seeds: {text!r}; expected integers separated by commas, e.g. 0, 1"
        ) from exc


def build_spec(
    name: str,
    variants: list[str],
    base: str | None,
    labels: list[str],
    prompts_text: str,
    seeds_text: str,
    settings: dict,
    compare_with_reference: bool = False,
    qc_rate: float = 0.0,
    results_visible: bool = False,
) -> StudySpec:
    if not base:
        raise StudyError("base: choose the candidate variant (side A of every set)")
    return StudySpec(
        name=name.strip(),
        variants=tuple(variants),
        base=base,
        checkpoint_labels=tuple(labels),
        prompts=tuple(prompt_lines(prompts_text)),
        seeds=parse_seeds(seeds_text),
        settings=dict(settings),
        reference_comparisons=(base,) if compare_with_reference else (),
        qc_rate=float(qc_rate),
        results_visible_to_voters=results_visible,
    )


def preview(spec: StudySpec) -> PlanSummary:
    """What `create` would make; nothing is written."""
    with transaction(readonly=True) as s:
        summary = plan_summary(s, spec)
    return summary


def comparisons_frame(summary: PlanSummary) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "group": c.group,
                "set (組)": c.name,
                "A (base's setting)": f"{c.variant_a} ({c.a_setting})",
                "B": f"{c.variant_b} ({c.b_setting})",
            }
            for c in summary.comparisons
        ]
    ).sort_values(["group", "set (組)"], kind="stable")


def create(spec: StudySpec) -> int:
    """Write the study (pairs, images, jobs); returns its id."""
    with transaction() as s:
        return create_study(s, spec).id
