"""Results: a summary per hyperparameter, the article's tables, the statistics, voter checks
and exclusions, a Bradley-Terry leaderboard, the pairs behind a comparison, the grid of
images, and downloads. A voter sees them only once their own queue is done."""

from functools import partial

import altair as alt
import pandas as pd
import streamlit as st

from arena_ui.exclusions import exclusion_controls
from arena_ui.identity import require_user
from arena_ui.inspector import inspect_pair
from arena_ui.resources import image_file, transaction
from arena_ui.results_data import (
    all_votes,
    counted_votes,
    decision_board,
    fingerprint,
    leaderboard,
    report_bytes,
    voter_checks,
)
from arena_ui.selection import selected_study
from db.queries import (
    comparison_pairs,
    exclusion_history,
    get_study,
    grid_choices,
    study_grid,
)
from evaluation import result_tables as tables
from evaluation import stats
from evaluation.blindness import results_access
from evaluation.downloads import FORMATS, exclusions_csv, export_bytes, file_name
from evaluation.tally import tally_votes
from evaluation.voter_checks import tie_rates


def interval_chart(
    frame: pd.DataFrame, value: str, low: str, high: str, row: str, title: str, *, share: bool
) -> alt.Chart:
    """A point per row with its interval as a bar and its value written beside it, rows in
    the frame's order with full (wrapped) labels; share charts get a line at 0.5."""
    frame = frame.assign(_label=[tables.wrap_label(str(v)) for v in frame[row]])
    frame["_text"] = [
        f"{v:.0%}" if share else f"{v:.0f}" for v in frame[value].astype(float).fillna(0)
    ]
    axis = alt.Axis(labelLimit=0, labelExpr="split(datum.label, '\\n')", title=None)
    y = alt.Y("_label:N", sort=list(frame["_label"]), axis=axis)
    scale = alt.Scale(domain=[0, 1]) if share else alt.Scale(zero=False)
    ticks = [0, 0.25, 0.5, 0.75, 1] if share else alt.Undefined
    base = alt.Chart(frame)
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X(
            f"{low}:Q",
            title=title,
            scale=scale,
            axis=alt.Axis(format=".0%" if share else "d", values=ticks),
        ),
        x2=f"{high}:Q",
        y=y,
    )
    points = base.mark_point(filled=True, size=80).encode(x=f"{value}:Q", y=y)
    text = base.mark_text(align="left", dx=8, dy=-10).encode(x=f"{value}:Q", y=y, text="_text:N")
    layers = [bars, points, text]
    if share:
        half = alt.Chart(pd.DataFrame({"half": [0.5]}))
        layers.insert(0, half.mark_rule(strokeDash=[4, 4], color="gray").encode(x="half:Q"))
    height = 40 + 44 * len(frame)
    return alt.layer(*layers).properties(height=height)


def show_table(frame: pd.DataFrame, key: str | None = None) -> None:
    st.dataframe(frame, hide_index=True, width="stretch", key=key)


def show_with_badges(frame: pd.DataFrame) -> None:
    """A table whose Status column is drawn as a coloured badge."""

    def badge(value: str) -> str:
        background, colour = tables.STATUS_COLOUR.get(value, ("#ffffff", "#000000"))
        return f"background-color: {background}; color: {colour}; font-weight: 600"

    st.dataframe(frame.style.map(badge, subset=["Status"]), hide_index=True, width="stretch")


user = require_user()
study = selected_study(user)
if study is None:
    st.info("No study yet: an admin creates one on the Studies page to continue.")
    st.stop()
with transaction(readonly=True) as s:
    access = results_access(s, user.id, user.is_admin, study.id)
if access.reason == "closed_to_voters":
    st.error(f"The results of **{study.name}** are not open to voters.")
    st.stop()
if access.reason == "settled":
    st.info(
        f"**{study.name}** is settled: no pair is being served now. Its results open for you "
        f"when an admin closes the study, or once you have judged your {access.pairs_left} "
        "remaining pairs if a comparison reopens: until then they could tell you which model "
        "made an image you may still judge."
    )
    st.stop()
if access.reason == "queue_left":
    left = {0: "a few repeat pairs", 1: "1 pair"}.get(
        access.pairs_left, f"{access.pairs_left} pairs"
    )
    st.info(
        f"The results of **{study.name}** open for you once you have judged all its pairs "
        f"({left} left): until then they would tell you which model made an image you still "
        "judge. Finish them on the Vote page to continue."
    )
    st.stop()

st.title(f"Results: {study.name}")
print_key = fingerprint(study.id)
votes = counted_votes(study.id, print_key)
with transaction(readonly=True) as s:
    exclusions = exclusion_history(s, study.id)
    row = get_study(s, study.id)
    rules = (row.alpha, row.delta, row.vote_cap)
live_excluded = [e for e in exclusions if e.restored_at is None]
if live_excluded:
    names = ", ".join(f"**{e.annotator}**" for e in live_excluded)
    st.warning(
        f"Left out of every tally, chart and download below: {names} (excluded by an admin)."
    )
if votes.empty:
    st.info("No votes counted yet: results appear after the first vote on the Vote page.")
    if user.is_admin and live_excluded:
        exclusion_controls(study.id, user.id, live_excluded)  # e.g. to restore the only voter
    st.stop()

voters = votes["annotator"].nunique()
st.caption(
    f"{len(votes)} live votes by {voters} annotator{'' if voters == 1 else 's'}. "
    "Same and both bad (ties) count for nobody."
)

board = decision_board(study.id, print_key, *rules)
state = board.summary()
st.header("Decision board")
st.markdown(tables.study_state_sentence(state.settled, state.open, state.votes_needed))
show_with_badges(tables.board_comparisons_table(board.comparisons))
st.caption(
    f"Decided: the e-value reaches {1 / rules[0]:.0f} (1/alpha); equivalent: the 99% "
    f"interval of the win share lies within 50% ± {rules[1]:.0%}. " + tables.VOTES_NEEDED_CAVEAT
)
show_with_badges(tables.board_groups_table(board.groups))
st.caption(
    "Stability: the share of bootstrap resamples of whole prompts that give the same "
    "verdict. A group is settled when every set is decided or equivalent and stability "
    "is at least 95%."
)

mode = st.radio(
    "Count",
    ["votes", "majority"],
    horizontal=True,
    key="results_mode",
    format_func={
        "votes": "every vote is a point",
        "majority": "one point per pair (majority of annotators)",
    }.get,
)
tally = tally_votes(votes, mode=mode)
shares = stats.group_win_shares(tally)

st.header("Summary")
st.caption(
    "Per hyperparameter: the winning setting, what decided it (sets won first, points when "
    "sets are level), and the winner's share of the decisive image-pair votes with its 95% "
    "interval."
)
show_table(tables.summary_card(tally, shares))

st.header("The article's tables")
st.caption(
    "Per hyperparameter: each set (組) goes to the side with more wins; the setting with more "
    "sets won (組数) wins the group, points (点数, all image-pair wins) break a level count."
)
for group in tally.groups:
    st.subheader(group.group)
    show_table(tables.set_table(group))
    show_table(tables.group_summary(group))
    st.markdown(tables.verdict(group))

st.header("Pooled win shares")
for row in shares[shares["disagree"]].itertuples():
    sets_side, points_side = (
        row.x if w == "x" else row.y for w in (row.sets_winner, row.points_winner)
    )
    st.warning(
        f"**{row.group}**: the sets winner ({sets_side}) and the points winner ({points_side}) "
        "disagree; the article's rule gives the group to the side that won fewer image pairs."
    )
chart_rows = shares.assign(
    label=[
        f"{g}: {x} (vs {y})"
        for g, x, y in zip(shares["group"], shares["x"], shares["y"], strict=True)
    ]
)
st.altair_chart(
    interval_chart(
        chart_rows,
        "x_share",
        "x_low",
        "x_high",
        "label",
        "win share of the setting named",
        share=True,
    ),
    width="stretch",
)
show_table(tables.win_share_table(shares))

st.header("Breakdowns")
for by, title in [("prompt_kind", "Prompt kind"), ("checkpoint", "Checkpoint")]:
    st.subheader(f"By {title.lower()}")
    show_table(tables.breakdown_table(stats.breakdown(votes, by), by, title))

st.header("Ties and reasons")
by_kind, by_prompt = tie_rates(votes)
st.subheader("Tie rate by kind")
show_table(tables.tie_kind_table(by_kind))
st.subheader("Tie rate per prompt")
flagged = by_prompt.loc[by_prompt["mostly_ties"], "prompt"].tolist()
if flagged:
    st.warning(
        "Most votes are ties on "
        + ", ".join(f"“{p}”" for p in flagged)
        + ": such a prompt does not discriminate between the variants."
    )
show_table(tables.tie_prompt_table(by_prompt))
reasons = tables.reason_tag_table(votes)
st.subheader("Reason tags")
if reasons.empty:
    st.caption("No counted vote carries a reason tag yet.")
else:
    st.caption("Reason tags the annotators chose, per hyperparameter, and how those votes went.")
    show_table(reasons)

st.header("Position bias and agreement")
show_table(tables.position_bias_table(stats.position_bias(votes), "Scope"))
agreement = stats.annotator_agreement(votes)
sentence = tables.agreement_sentence(agreement, votes["annotator"].nunique())
if sentence:
    st.markdown(sentence)
else:
    st.caption(
        "Krippendorff's alpha over image pairs judged by at least two annotators "
        "(1 = perfect agreement, 0 = chance)."
    )
    show_table(tables.agreement_table(agreement))

if user.is_admin:
    st.header("Voter checks")
    checks = voter_checks(study.id, print_key)
    excluded_names = {e.annotator for e in live_excluded}
    st.caption(
        "Per annotator: agreement with the majority of the others on the pairs they share, "
        "consistency on quality-control repeats (sides swapped), how often the left image "
        "won (50% = no position bias), median seconds per vote, and FastChat's outlier "
        "score (flagged above 20; only with 5 votes or more)."
    )
    show_table(tables.voter_checks_table(checks, excluded_names))
    for name in checks.loc[checks["flagged"], "annotator"]:
        if name not in excluded_names:
            st.warning(f"**{name}** votes unlike the others (outlier score above 20).")
    exclusion_controls(study.id, user.id, live_excluded)

st.header("Bradley-Terry leaderboard")
ranking = leaderboard(study.id, print_key)
st.caption("Elo-scaled strength; bars are 95% bootstrap intervals that resample whole prompts.")
st.altair_chart(
    interval_chart(ranking, "elo", "elo_low", "elo_high", "variant", "Elo", share=False),
    width="stretch",
)
show_table(tables.leaderboard_table(ranking))

st.header("Drill-down")
comparison = st.selectbox(
    "Comparison", sorted(votes["comparison"].unique()), key="results_comparison"
)
with transaction(readonly=True) as s:
    pairs = comparison_pairs(s, study.id, comparison)
name_a, name_b = comparison.split(" vs ")
inspectable = [item for item in pairs if item.image_a and item.image_b]
if inspectable:
    with st.expander("Inspect one pair closely: zoom both, flicker (hold X), swipe"):
        item = st.selectbox(
            "Pair",
            inspectable,
            format_func=lambda i: f"{i.prompt} · {i.checkpoint} · seed {i.seed}",
            key="results_inspect_pair",
        )
        inspect_pair(
            image_file(item.image_a),
            image_file(item.image_b),
            labels=(f"A: {name_a}", f"B: {name_b}"),
            key="results_drill_inspector",
        )
for item in pairs:
    st.markdown(
        f"**{item.prompt}** · {item.checkpoint} · seed {item.seed} — {name_a} wins "
        f"{item.a_wins}, {name_b} wins {item.b_wins}, ties {item.ties}"
    )
    col_a, col_b = st.columns(2)
    for col, path, side, name in [
        (col_a, item.image_a, "A", name_a),
        (col_b, item.image_b, "B", name_b),
    ]:
        if path:
            col.image(
                str(image_file(path)), caption=f"{side}: {name}", width=256, output_format="PNG"
            )

st.header("Grid")
st.caption(
    "As in the article's figures: rows are variants (the reference first), columns the prompts."
)
with transaction(readonly=True) as s:
    labels, seeds = grid_choices(s, study.id)
col_label, col_seed = st.columns(2)
label = col_label.selectbox("Checkpoint", labels, key="results_grid_label")
seed = col_seed.selectbox("Seed", seeds, key="results_grid_seed")
with transaction(readonly=True) as s:
    grid = study_grid(s, study.id, label, seed)
header = st.columns([1] + [2] * len(grid.prompts))
header[0].markdown("**variant**")
for col, prompt in zip(header[1:], grid.prompts, strict=True):
    col.markdown(f"**{prompt}**")
for variant in grid.variants:
    row = st.columns([1] + [2] * len(grid.prompts))
    row[0].markdown(variant)
    for col, prompt in zip(row[1:], grid.prompts, strict=True):
        path = grid.images.get((variant, prompt))
        if path:
            col.image(str(image_file(path)), output_format="PNG")
        else:
            col.caption("not rendered")
rendered = [v for v in grid.variants if any((v, p) in grid.images for p in grid.prompts)]
if len(rendered) >= 2:
    with st.expander("Compare two rows of the grid closely: zoom both, flicker (hold X), swipe"):
        pick_a, pick_b, pick_prompt = st.columns(3)
        first = pick_a.selectbox("First", rendered, key="results_grid_first")
        second = pick_b.selectbox("Second", rendered, index=1, key="results_grid_second")
        prompt = pick_prompt.selectbox("Prompt", grid.prompts, key="results_grid_prompt")
        paths = grid.images.get((first, prompt)), grid.images.get((second, prompt))
        if all(paths):
            inspect_pair(
                image_file(paths[0]),
                image_file(paths[1]),
                labels=(first, second),
                key="results_grid_inspector",
            )
        else:
            st.caption("One of the two has no image for this prompt.")

st.header("Downloads")
if live_excluded:
    st.caption("The vote files hold the votes counted above: excluded annotators are left out.")
for col, kind, label in zip(
    st.columns(3), FORMATS, ["Votes CSV", "Votes Parquet", "FastChat battles JSON"], strict=True
):
    name, mime = file_name(kind), FORMATS[kind][1]
    col.download_button(
        label,
        partial(export_bytes, votes, kind),  # written only when clicked
        file_name=f"{study.name}-{name}",
        mime=mime,
        key=f"download_{kind}",
        on_click="ignore",
    )
if user.is_admin:
    st.download_button(
        "Study report (zip)",
        partial(report_bytes, study.name),  # written only when clicked
        file_name=f"{study.name}-report.zip",
        mime="application/zip",
        key="download_report",
        on_click="ignore",
        help="report.html (self-contained), tables.md, grids/ and votes.csv",
    )
if exclusions:
    every = pd.DataFrame([e.__dict__ for e in exclusions])
    per_annotator = all_votes(study.id, print_key)["annotator"].value_counts()
    every["votes"] = [int(per_annotator.get(name, 0)) for name in every["annotator"]]
    st.download_button(
        "Exclusions CSV",
        partial(exclusions_csv, every),
        file_name=f"{study.name}-exclusions.csv",
        mime="text/csv",
        key="download_exclusions",
        on_click="ignore",
    )
