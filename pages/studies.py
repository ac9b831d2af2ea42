"""Studies (admin): create a study, preview its comparisons and counts, run pre-generation in
the background and watch its progress and per-image errors."""

import streamlit as st

from arena_ui import generation, study_form
from arena_ui.identity import require_admin
from arena_ui.selection import visible_studies
from deprojector.prompts import ARTICLE_PROMPTS
from deprojector.settings import SCHEDULERS
from evaluation.study import StudyError

user = require_admin()
st.title("Studies")
if notice := st.session_state.pop("studies_notice", None):
    st.success(notice)


def generation_status(study_id: int, name: str) -> None:
    counts = generation.job_counts(study_id)
    running = generation.worker_running()
    st.progress(
        counts.done / max(counts.total, 1),
        text=f"{counts.done} of {counts.total} images rendered · {counts.failed} failed · {'a worker is running' if running else 'no worker running'}",
    )
    errors = generation.failed_images(study_id)
    if len(errors):
        st.warning(f"{len(errors)} images have errors")
        st.dataframe(errors, hide_index=True)
    if tail := generation.log_tail(study_id):
        with st.expander("Worker log"):
            st.code(tail)


live_status = st.fragment(run_every=2)(generation_status)  # polls while images are missing

for study in visible_studies(user):
    with st.expander(f"**{study.name}** · {study.status}", expanded=study.status != "open"):
        (generation_status if study.status == "open" else live_status)(study.id, study.name)
        start_col, retry_col, visible_col = st.columns(3)
        if start_col.button(
            "Start / resume generation", key=f"gen_{study.id}", disabled=generation.worker_running()
        ):
            log = generation.start(study.id, study.name)
            st.session_state["studies_notice"] = f"Generation of {study.name} started; log: {log}"
            st.rerun()
        if retry_col.button(
            "Retry failed images", key=f"retry_{study.id}", disabled=generation.worker_running()
        ):
            generation.start(study.id, study.name, retry_failed=True)
            st.rerun()
        visible = visible_col.toggle(
            "Voters may see results",
            value=study.results_visible_to_voters,
            key=f"visible_{study.id}",
        )
        if visible != study.results_visible_to_voters:
            generation.set_results_visible(study.id, visible)

st.header("New study")
variants, labels = study_form.variant_choices()
if not variants:
    st.info(
        "Register variants first (Variants page), or build the demo on the Welcome page, to create a study."
    )
    st.stop()
name = st.text_input("Name", key="new_name")
chosen = st.multiselect("Variants", variants, key="new_variants")
base = st.selectbox(
    "Base variant (the candidate; side A of every set)", chosen or [None], key="new_base"
)
with_reference = st.checkbox(
    "Also compare the base with the reference (no deprojector)", key="new_reference"
)
chosen_labels = st.multiselect("Checkpoint labels", labels, default=labels[-2:], key="new_labels")
prompts = st.text_area(
    "Prompts, one per line (a comma makes a composed prompt)",
    "\n".join(ARTICLE_PROMPTS),
    height=160,
    key="new_prompts",
)
st.dataframe(study_form.prompt_table(prompts), hide_index=True)
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
qc_rate = st.slider("Quality-control repeats (share of items)", 0.0, 0.5, 0.0, key="new_qc")
results_visible = st.checkbox("Voters may see results", key="new_visible")

try:
    spec = study_form.build_spec(
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
    )
    summary = study_form.preview(spec)
except (StudyError, ValueError) as error:
    st.info(f"To preview the study: {error}")
    st.stop()

st.subheader("Preview")
st.markdown(
    f"**{len(summary.comparisons)} sets** in {len(summary.comparisons_by_group)} groups · **{summary.pairs} pairs** to judge (+{summary.qc_pairs} quality-control) · **{summary.images} images** ({summary.images_rendered} already rendered)"
)
st.dataframe(study_form.comparisons_frame(summary), hide_index=True)
if summary.unpaired_variants:
    st.warning(
        "In no comparison (they differ from every other chosen variant in two or more "
        "hyperparameters): " + ", ".join(summary.unpaired_variants)
    )
if summary.truncated_prompts:
    st.warning(
        "Longer than CLIP's 77 tokens, so cut when rendered (shorten them to keep every word): "
        + "; ".join(f"“{p}”" for p in summary.truncated_prompts)
    )
if st.button("Create study and start generation", type="primary", key="new_create"):
    study_id = study_form.create(spec)
    log = generation.start(study_id, spec.name)
    st.session_state["studies_notice"] = (
        f"Study {spec.name} created; generation started (log: {log})."
    )
    st.rerun()
