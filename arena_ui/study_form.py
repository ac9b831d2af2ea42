"""The Studies page's forms: the new-study form, turned into an `evaluation.plan.StudySpec`, and
a study's voting settings (allocation options, reason tags), editable after creation.

Parsing errors are `StudyError`s naming the field, like the planner's own checks.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass

import pandas as pd
import streamlit as st

from deprojector.prompts import ARTICLE_PROMPTS, prompt_kind, prompt_parts
from deprojector.settings import SCHEDULERS
from evaluation.plan import MAX_REASON_TAGS, PlanSummary, StudySpec
from evaluation.study import StudyError

MAX_TAG_LENGTH = 32  # evaluation.plan's limit too
CLEAR_NAME_KEY = "new_name_clear"  # set after a study is created: the next run empties the name


@dataclass(frozen=True)
class VotingSettings:
    """A study's allocation options and reason tags, as the admin sets them."""

    stop_when_settled: bool = True  # serve only open comparisons once warmed up; False = grid
    vote_cap: int | None = None  # votes per comparison; None = no cap
    alpha: float = 0.05  # a comparison is decided when its e-value reaches 1 / alpha
    delta: float = 0.1  # equivalence margin around a 50 % win share
    reason_tags: tuple[str, ...] = ()


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


def parse_reason_tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags -> a tuple; StudyError for more than 6, a repeat, one too long or
    holding a control character."""
    tags = tuple(tag.strip() for tag in text.split(",") if tag.strip())
    if len(tags) > MAX_REASON_TAGS:
        raise StudyError(
            f"reason tags: {len(tags)} given ({', '.join(tags)}); at most {MAX_REASON_TAGS}, "
            "drop some"
        )
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH:
            raise StudyError(
                f"reason tags: {tag!r} is over {MAX_TAG_LENGTH} characters; shorten it"
            )
        if any(unicodedata.category(ch) == "Cc" for ch in tag):
            raise StudyError(f"reason tags: {tag!r} contains a control character; remove it")
    if len(set(tags)) != len(tags):
        raise StudyError(f"reason tags: {', '.join(tags)} repeats a tag; give each once")
    return tags


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
    voting: VotingSettings = VotingSettings(),  # noqa: B008 - frozen, never mutated
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
        **asdict(voting),
    )


def study_file_name(name: str) -> str:
    """A safe file name for the study's file: `<name>.toml` with anything but letters, digits,
    '.', '-' and '_' replaced by '_'."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") + ".toml"


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


def voting_inputs(key: str, current: VotingSettings, thresholds: bool = True) -> VotingSettings:
    """Widgets for the allocation options and reason tags (keys `<key>_stop_when_settled`,
    `_vote_cap`, `_alpha`, `_delta`, `_reason_tags`); raises StudyError for bad tags."""
    stop = st.toggle(
        "Stop when settled: once warmed up, serve only comparisons not decided yet (off: every "
        "pair to every voter, the full grid)",
        value=current.stop_when_settled,
        key=f"{key}_stop_when_settled",
    )
    cap = st.number_input(
        "Vote cap per comparison (0 = no cap)",
        min_value=0,
        max_value=100_000,
        value=current.vote_cap or 0,
        step=10,
        key=f"{key}_vote_cap",
    )
    alpha, delta = current.alpha, current.delta
    if thresholds:
        left, right = st.columns(2)
        alpha = left.number_input(
            "α (decided when the e-value reaches 1/α)",
            min_value=0.001,
            max_value=0.5,
            value=current.alpha,
            step=0.01,
            format="%.3f",
            key=f"{key}_alpha",
        )
        delta = right.number_input(
            "δ (equivalent when the win share is within 0.5 ± δ)",
            min_value=0.01,
            max_value=0.49,
            value=current.delta,
            step=0.01,
            key=f"{key}_delta",
        )
    tags = st.text_input(
        f"Reason tags voters may attach (up to {MAX_REASON_TAGS}, comma-separated)",
        ", ".join(current.reason_tags),
        placeholder="e.g. anatomy, text, composition",
        key=f"{key}_reason_tags",
    )
    return VotingSettings(
        stop_when_settled=stop,
        vote_cap=int(cap) or None,
        alpha=float(alpha),
        delta=float(delta),
        reason_tags=parse_reason_tags(tags),
    )


def new_study_form(variants: list[str], labels: list[str]) -> StudySpec:
    """The new-study widgets (keys `new_*`); returns the spec or raises StudyError."""
    labels = sorted(labels, key=natural_key)
    if st.session_state.pop(CLEAR_NAME_KEY, False):
        st.session_state["new_name"] = ""  # before the widget exists, so Streamlit allows it
    name = st.text_input("Name", key="new_name")
    chosen = st.multiselect("Variants", variants, key="new_variants")
    base = st.selectbox(
        "Base variant (the candidate; side A of every set)", chosen or [None], key="new_base"
    )
    with_reference = st.checkbox(
        "Also compare the base with the reference (no deprojector)", key="new_reference"
    )
    chosen_labels = st.multiselect(
        "Checkpoint labels", labels, default=labels[-2:], key="new_labels"
    )
    prompts = st.text_area(
        "Prompts, one per line (a comma makes a composed prompt)",
        "\n".join(ARTICLE_PROMPTS),
        height=160,
        key="new_prompts",
    )
    st.dataframe(prompt_table(prompts), hide_index=True)
    seeds = st.text_input("Seeds", "0", key="new_seeds")
    st.subheader("Stable Diffusion settings")
    c1, c2, c3 = st.columns(3)
    settings = {
        "model_path": c1.text_input(
            "SD model folder (diffusers layout; relative to the data dir or absolute)",
            "demo/sd",
            key="new_model",
        ),
        "scheduler": c2.selectbox("Scheduler", SCHEDULERS, key="new_scheduler"),
        "steps": int(c3.number_input("Steps", 1, 1000, 30, key="new_steps")),
        "guidance": float(c1.number_input("Guidance", 0.0, 50.0, 7.5, key="new_guidance")),
        "width": int(c2.number_input("Width", 8, 4096, 512, step=8, key="new_width")),
        "height": int(c3.number_input("Height", 8, 4096, 512, step=8, key="new_height")),
        "negative_prompt": st.text_input("Negative prompt", "", key="new_negative"),
    }
    st.subheader("Voting")
    qc_rate = st.slider("Quality-control repeats (share of items)", 0.0, 0.5, 0.0, key="new_qc")
    results_visible = st.checkbox("Voters may see results", key="new_visible")
    voting = voting_inputs("new", VotingSettings())
    return build_spec(
        name,
        chosen,
        base,
        chosen_labels,
        prompts,
        seeds,
        settings,
        with_reference,
        qc_rate,
        results_visible,
        voting,
    )
