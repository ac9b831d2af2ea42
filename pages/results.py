"""Results: the article's tables per hyperparameter, the statistics, a Bradley-Terry
leaderboard, the pairs behind a comparison, the grid of images, and downloads."""

from functools import partial

import altair as alt
import streamlit as st

from arena_ui.downloads import FORMATS, export_bytes, file_name
from arena_ui.gallery import comparison_pairs, grid_choices, study_grid
from arena_ui.identity import require_user
from arena_ui.resources import image_file
from arena_ui.results_data import leaderboard, study_votes, vote_fingerprint
from arena_ui.selection import selected_study
from arena_ui.tables import group_summary, set_table, verdict
from evaluation import stats
from evaluation.tally import tally_votes


def interval_chart(frame, value: str, low: str, high: str, row: str, title: str) -> alt.Chart:
    """A point per row with its interval as a bar, rows in the frame's order."""
    y = alt.Y(row, sort=list(frame[row]), title=None)
    bars = (
        alt.Chart(frame)
        .mark_rule()
        .encode(x=alt.X(low, title=title, scale=alt.Scale(zero=False)), x2=high, y=y)
    )
    points = (
        alt.Chart(frame)
        .mark_point(filled=True, size=80)
        .encode(x=value, y=y, tooltip=list(frame.columns))
    )
    return bars + points


user = require_user()
study = selected_study(user)
if study is None:
    st.info("No study yet: an admin creates one on the Studies page to continue.")
    st.stop()
if not (user.is_admin or study.results_visible_to_voters):
    st.error(f"The results of **{study.name}** are not open to voters until the study ends.")
    st.stop()

st.title(f"Results: {study.name}")
fingerprint = vote_fingerprint(study.id)
votes = study_votes(study.id, fingerprint)
if votes.empty:
    st.info("No votes yet: results appear after the first vote on the Vote page.")
    st.stop()

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
st.caption(
    f"{len(votes)} live votes by {votes['annotator'].nunique()} annotators. Same (tie) counts for nobody."
)

st.header("The article's tables")
st.caption(
    "Per hyperparameter: each set (組) goes to the side with more wins; the setting with more sets won (組数) wins the group, points (点数, all image-pair wins) break a level count."
)
for group in tally.groups:
    st.subheader(group.group)
    st.dataframe(set_table(group), hide_index=True)
    st.dataframe(group_summary(group), hide_index=True)
    st.markdown(verdict(group))

st.header("Pooled win shares")
shares = stats.group_win_shares(tally)
for row in shares[shares["disagree"]].itertuples():
    sets_side, points_side = (
        row.x if w == "x" else row.y for w in (row.sets_winner, row.points_winner)
    )
    st.warning(
        f"**{row.group}**: the sets winner ({sets_side}) and the points winner ({points_side}) disagree; the article's rule gives the group to the side that won fewer image pairs."
    )
st.altair_chart(interval_chart(shares, "x_share", "x_low", "x_high", "group", "x side's win share"))
st.dataframe(shares, hide_index=True)

st.header("Breakdowns")
for by, title in [
    ("prompt_kind", "By prompt kind (single / composed)"),
    ("checkpoint", "By checkpoint"),
]:
    st.subheader(title)
    st.dataframe(stats.breakdown(votes, by), hide_index=True)

st.header("Position bias and agreement")
st.dataframe(stats.position_bias(votes), hide_index=True)
st.dataframe(stats.position_bias(votes, by="annotator"), hide_index=True)
st.caption(
    "Krippendorff's alpha over items judged by at least two annotators (1 = perfect agreement, 0 = chance)."
)
st.dataframe(stats.annotator_agreement(votes), hide_index=True)

st.header("Bradley-Terry leaderboard")
board = leaderboard(study.id, fingerprint)
st.caption("Elo-scaled strength; bars are 95% bootstrap intervals that resample whole prompts.")
st.altair_chart(interval_chart(board, "elo", "elo_low", "elo_high", "variant", "Elo"))
st.dataframe(board, hide_index=True)

st.header("Drill-down")
comparison = st.selectbox(
    "Comparison", sorted(votes["comparison"].unique()), key="results_comparison"
)
for item in comparison_pairs(study.id, comparison):
    st.markdown(
        f"**{item.prompt}** · {item.checkpoint} · seed {item.seed} — A wins {item.a_wins}, B wins {item.b_wins}, same {item.ties}"
    )
    col_a, col_b = st.columns(2)
    for col, path, side in [(col_a, item.image_a, "A"), (col_b, item.image_b, "B")]:
        if path:
            col.image(
                str(image_file(path)),
                caption=f"{side}: {comparison.split(' vs ')[0 if side == 'A' else 1]}",
                width=256,
                output_format="PNG",
            )

st.header("Grid")
st.caption(
    "As in the article's figures: rows are variants (the reference first), columns the prompts."
)
labels, seeds = grid_choices(study.id)
col_label, col_seed = st.columns(2)
label = col_label.selectbox("Checkpoint", labels, key="results_grid_label")
seed = col_seed.selectbox("Seed", seeds, key="results_grid_seed")
grid = study_grid(study.id, label, seed)
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

st.header("Downloads")
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
