"""Studies (admin): each study's life cycle (draft -> generating -> open -> closed -> archived),
its background generation worker (start, stop, restart when stalled, time left), its voting
settings; and a form to plan and create a new study."""

from dataclasses import asdict

import streamlit as st

from arena_ui import study_form
from arena_ui.identity import require_admin
from arena_ui.resources import transaction
from db.engine import data_dir
from db.errors import DbError
from db.queries import (
    STUDY_TRANSITIONS,
    change_study_status,
    failed_images,
    get_study,
    job_counts,
    list_studies,
    planning_choices,
    seconds_per_image,
    update_study_settings,
)
from evaluation import worker
from evaluation.jobs import worker_running
from evaluation.plan import create_study, plan_summary
from evaluation.study import StudyError
from evaluation.study_file import dump_study

require_admin()
st.title("Studies")
if notice := st.session_state.pop("studies_notice", None):
    st.success(notice)
    st.toast(notice)  # seen also when the page is scrolled down to the form

ACTIONS = {  # button key -> (label, from which statuses, the status it moves the study to)
    "close": ("Close study", ("draft", "generating", "open"), "closed"),
    "reopen": ("Reopen", ("closed",), "open"),
    "archive": ("Archive", ("draft", "closed"), "archived"),
    "unarchive": ("Unarchive", ("archived",), "closed"),
}


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def shown_state(status: str, images_to_render: int, busy: bool) -> str:
    """The study's status as the page shows it: 'stalled' for a generating study whose worker
    is gone."""
    return "stalled" if worker.is_stalled(status, images_to_render, busy) else status


def workers_busy(study_id: int) -> tuple[int | None, bool]:
    """(the study's worker pid or None, whether any worker runs)."""
    pid = worker.worker_pid(data_dir(), study_id)
    return pid, pid is not None or worker_running(data_dir())


def study_panel(study_id: int, shown: str) -> None:
    """Progress, time left, worker controls and life-cycle buttons of one study."""
    with transaction(readonly=True) as s:
        study = get_study(s, study_id)
        counts = job_counts(s, study_id)
        errors = failed_images(s, study_id)
        rate = seconds_per_image(s, study_id)
    pid, busy = workers_busy(study_id)
    stalled = worker.is_stalled(study.status, counts.to_render, busy)
    if shown_state(study.status, counts.to_render, busy) != shown:
        st.rerun()  # the worker moved it (e.g. generating -> open, or died): redraw the page

    # 1. Where generation stands
    text = f"{counts.done} of {counts.total} images rendered · {counts.failed} failed"
    left = worker.seconds_left(counts.to_render, rate[0] if rate else None)
    if pid is not None and left is not None:
        text += f" · about {minutes(left)} left ({rate[0]:.1f} s per image over {rate[1]})"
    st.progress(counts.done / max(counts.total, 1), text=text)
    if stalled:
        st.warning(
            "**Stalled**: this study is marked generating but no worker is running (it was "
            "killed or the machine restarted). Restart generation to render the rest."
        )
    elif pid is not None:
        st.caption(f"Worker running (pid {pid}).")
    elif busy:
        st.caption("Another study's worker is running; one worker runs at a time.")
    elif study.status == "draft" and counts.to_render:
        st.caption(
            f"Not generating: start generation to render the {counts.to_render} images left; "
            "voting opens when every image exists."
        )

    # 2. Buttons: worker first, then the life cycle
    buttons = []
    if pid is not None:
        buttons.append(("Stop worker", "stop"))
    elif counts.to_render and study.status in ("draft", "generating"):
        buttons.append(("Restart generation" if stalled else "Start / resume generation", "gen"))
    if counts.failed and pid is None:
        buttons.append(("Retry failed images", "retry"))
    buttons += [
        (label, key)
        for key, (label, sources, to) in ACTIONS.items()
        if study.status in sources and to in STUDY_TRANSITIONS[study.status]
    ]
    row = st.container(horizontal=True)  # wraps on a phone
    for label, action in buttons:
        if not row.button(label, key=f"{action}_{study_id}", disabled=busy and action == "gen"):
            continue
        if action == "stop":
            stopping = worker.stop_worker(data_dir(), study_id)
            st.session_state["studies_notice"] = (
                f"Asked the worker of {study.name} to stop; it gives its images in progress back."
                if stopping
                else f"The worker of {study.name} had already stopped."
            )
        elif action in ("gen", "retry"):
            log = worker.start_worker(data_dir(), study_id, study.name, action == "retry")
            st.session_state["studies_notice"] = f"Generation of {study.name} started; log: {log}"
        else:
            with transaction() as s:
                changed = change_study_status(s, study_id, ACTIONS[action][2])
            st.session_state["studies_notice"] = f"{study.name} is now {changed.status}."
        st.rerun()

    # 3. What went wrong
    if len(errors):
        st.warning(f"{len(errors)} images have errors")
        st.dataframe(errors, hide_index=True)
    if tail := worker.log_tail(data_dir(), study_id):
        with st.expander("Worker log"):
            st.code(tail)


def voting_settings(study) -> None:
    """The study's allocation options and reason tags, editable after creation; and its
    definition as a file."""
    current = study_form.VotingSettings(
        stop_when_settled=study.stop_when_settled,
        vote_cap=study.vote_cap,
        alpha=study.alpha,
        delta=study.delta,
        reason_tags=tuple(study.reason_tags or ()),
    )
    row = st.container(horizontal=True)
    with row.popover("Voting settings"):
        try:
            chosen = study_form.voting_inputs(f"edit_{study.id}", current)
        except StudyError as error:
            st.error(str(error))
            chosen = None
        visible = st.toggle(
            "Voters may see results",
            value=study.results_visible_to_voters,
            key=f"visible_{study.id}",
        )
        unchanged = (chosen, visible) == (current, study.results_visible_to_voters)
        if st.button("Save", key=f"save_{study.id}", disabled=chosen is None or unchanged):
            with transaction() as s:
                update_study_settings(s, study.id, **asdict(chosen))
                get_study(s, study.id).results_visible_to_voters = visible
            st.session_state["studies_notice"] = f"Voting settings of {study.name} saved."
            st.rerun()
    with transaction(readonly=True) as s:
        text = dump_study(s, study.name)
    row.download_button(
        "Download as file",
        text,
        file_name=study_form.study_file_name(study.name),
        mime="application/toml",
        key=f"download_{study.id}",
        help="The study's definition as a TOML file; `python -m evaluation study apply "
        "FILE` re-creates it",
    )


live_panel = st.fragment(run_every=2)(study_panel)  # polls while a worker may be at work

with transaction(readonly=True) as s:
    studies = list_studies(s)
for study in reversed(studies):  # newest first
    state = study.status
    if state == "generating":
        with transaction(readonly=True) as s:
            to_render = job_counts(s, study.id).to_render
        state = shown_state(state, to_render, workers_busy(study.id)[1])
    with st.expander(
        f"**{study.name}** · {state}", expanded=state in ("draft", "generating", "stalled")
    ):
        try:
            panel = live_panel if study.status in ("draft", "generating") else study_panel
            panel(study.id, state)
            voting_settings(study)
        except (DbError, StudyError) as error:
            st.error(str(error))

st.header("New study")
with transaction(readonly=True) as s:
    variants, labels = planning_choices(s)
if not variants:
    st.info(
        "Register variants first (Variants page), or build the demo on the Welcome page, to create a study."
    )
    st.stop()
try:
    spec = study_form.new_study_form(variants, labels)
    with transaction(readonly=True) as s:
        summary = plan_summary(s, spec)
except StudyError as error:
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
    try:
        with transaction() as s:
            study = create_study(s, spec)
            study_id, status = study.id, study.status
    except (DbError, StudyError) as error:
        st.error(str(error))
        st.stop()
    st.session_state[study_form.CLEAR_NAME_KEY] = True  # the form is ready for the next study
    if status == "draft":
        log = worker.start_worker(data_dir(), study_id, spec.name)
        notice = f"Study {spec.name} created; generation started (log: {log})."
    else:
        notice = f"Study {spec.name} created; every image already exists, so it is open."
    st.session_state["studies_notice"] = notice
    st.rerun()
