"""The article's tally on hand-worked vote sets, and the checks of the vote interchange frame."""

import pandas as pd
import pytest

from evaluation.tally import (
    VOTE_COLUMNS,
    VoteDataError,
    prepare_votes,
    tally_by_annotator,
    tally_votes,
)


def set_votes(group, va, vb, sa, sb, a_wins=0, b_wins=0, ties=0, annotator="ann-1", outcomes=None):
    """Votes on one comparison; the winner alternates between the left and the right image.

    Vote i is item i (prompt i % 6, epoch-8 for i < 6, seed i), so annotators share items.
    """
    outcomes = outcomes or ["a"] * a_wins + ["b"] * b_wins + ["tie"] * ties
    rows = []
    for i, outcome in enumerate(outcomes):
        left = va if i % 2 == 0 else vb
        winner = {"a": va, "b": vb, "tie": None}[outcome]
        choice = "tie" if winner is None else "left" if winner == left else "right"
        rows.append(
            {
                "study": "s",
                "group": group,
                "comparison": f"{va} vs {vb}",
                "variant_a": va,
                "variant_b": vb,
                "a_setting": sa,
                "b_setting": sb,
                "prompt": f"prompt {i % 6}",
                "prompt_kind": "single" if i % 6 < 3 else "composed",
                "checkpoint": "epoch-8" if i < 6 else "epoch-10",
                "seed": i,
                "annotator": annotator,
                "left_variant": left,
                "choice": choice,
                "shown_at": "2026-11-01T10:00:00Z",
                "voted_at": "2026-11-01T10:00:05Z",
            }
        )
    return rows


def frame(*row_lists):
    return pd.DataFrame([r for rows in row_lists for r in rows])


def summary(group):
    return (
        group.x_sets,
        group.y_sets,
        group.x_points,
        group.y_points,
        group.winner,
        group.decided_by,
    )


def sets_of(group):
    return [
        (s.comparison, s.x_variant, s.y_variant, s.x_wins, s.y_wins, s.ties, s.winner)
        for s in group.sets
    ]


def test_group_decided_by_points_with_a_drawn_set():
    """Sets 1:1 (one set drawn) go to points: 6 beats 5, so x wins by points."""
    votes = frame(
        set_votes("embed_dim", "v1", "v5", "2D", "D", a_wins=3, b_wins=1),
        set_votes("embed_dim", "v2", "v6", "2D", "D", a_wins=1, b_wins=2),
        set_votes("embed_dim", "v3", "v7", "2D", "D", a_wins=2, b_wins=2, ties=1),
    )
    (group,) = tally_votes(votes).groups
    assert (group.group, group.x, group.y) == ("embed_dim", "2D", "D")
    assert sets_of(group) == [
        ("v1 vs v5", "v1", "v5", 3, 1, 0, "x"),
        ("v2 vs v6", "v2", "v6", 1, 2, 0, "y"),
        ("v3 vs v7", "v3", "v7", 2, 2, 1, "draw"),
    ]
    assert summary(group) == (1, 1, 6, 5, "x", "points")


def test_group_decided_by_sets_even_when_points_favour_the_other_side():
    """Sets come first: x wins 2 sets to 1 although y has more points (2 vs 5)."""
    votes = frame(
        set_votes("vicinity", "v1", "v3", "2", "1", a_wins=1),
        set_votes("vicinity", "v2", "v4", "2", "1", a_wins=1),
        set_votes("vicinity", "v5", "v7", "2", "1", b_wins=5),
    )
    (group,) = tally_votes(votes).groups
    assert summary(group) == (2, 1, 2, 5, "x", "sets")


def test_fully_drawn_group():
    """Sets 1:1 and points 3:3 draw the group; ties count for nobody."""
    votes = frame(
        set_votes("vicinity", "v1", "v3", "2", "1", a_wins=2, b_wins=1, ties=4),
        set_votes("vicinity", "v2", "v4", "2", "1", a_wins=1, b_wins=2),
    )
    (group,) = tally_votes(votes).groups
    assert summary(group) == (1, 1, 3, 3, "draw", "draw")


def test_rows_with_a_setting_y_are_read_with_sides_swapped():
    """x is the first row's a_setting; a comparison holding y on side A counts A's wins for y."""
    votes = frame(
        set_votes("mlp_dim", "v1", "v2", "2D", "D", a_wins=2, b_wins=1),
        set_votes("mlp_dim", "v4", "v3", "D", "2D", a_wins=3, b_wins=1),
    )
    (group,) = tally_votes(votes).groups
    assert (group.x, group.y) == ("2D", "D")
    assert sets_of(group) == [
        ("v1 vs v2", "v1", "v2", 2, 1, 0, "x"),
        ("v4 vs v3", "v3", "v4", 1, 3, 0, "y"),
    ]
    assert summary(group) == (1, 1, 3, 4, "y", "points")


def test_orientation_follows_frame_order():
    """The same votes with the swapped comparison first make its A setting ('D') x."""
    votes = frame(
        set_votes("mlp_dim", "v4", "v3", "D", "2D", a_wins=3, b_wins=1),
        set_votes("mlp_dim", "v1", "v2", "2D", "D", a_wins=2, b_wins=1),
    )
    (group,) = tally_votes(votes).groups
    assert (group.x, group.y) == ("D", "2D")
    assert summary(group) == (1, 1, 4, 3, "x", "points")


def test_group_with_three_setting_values_gives_one_table_per_pair():
    """Values 10, 20, 30: one table per pair, named '<group>: <x> vs <y>', in first-row order."""
    votes = frame(
        set_votes("steps", "s10", "s20", "10", "20", a_wins=2, b_wins=1),
        set_votes("embed_dim", "v1", "v5", "2D", "D", a_wins=1),
        set_votes("steps", "s20", "s30", "20", "30", b_wins=2),
        set_votes("steps", "s30", "s10", "30", "10", a_wins=1, b_wins=1),
        set_votes("steps", "t10", "t20", "10", "20", ties=2),
    )
    groups = tally_votes(votes).groups
    assert [(g.group, g.x, g.y) for g in groups] == [
        ("steps: 10 vs 20", "10", "20"),
        ("steps: 20 vs 30", "20", "30"),
        ("steps: 30 vs 10", "30", "10"),
        ("embed_dim", "2D", "D"),
    ]
    assert sets_of(groups[0]) == [
        ("s10 vs s20", "s10", "s20", 2, 1, 0, "x"),
        ("t10 vs t20", "t10", "t20", 0, 0, 2, "draw"),
    ]
    assert summary(groups[0]) == (1, 0, 2, 1, "x", "sets")
    assert summary(groups[1]) == (0, 1, 0, 2, "y", "sets")
    assert summary(groups[2]) == (0, 0, 1, 1, "draw", "draw")


def test_to_dict_has_the_cli_shape():
    """to_dict gives exactly the keys of the CLI's JSON, with plain ints and strings."""
    votes = frame(set_votes("embed_dim", "v1", "v5", "2D", "D", a_wins=1, ties=1))
    out = tally_votes(votes).to_dict()
    assert list(out) == ["groups"]
    group = out["groups"][0]
    assert list(group) == [
        "group",
        "x",
        "y",
        "sets",
        "x_sets",
        "y_sets",
        "x_points",
        "y_points",
        "winner",
        "decided_by",
    ]
    assert group["sets"] == [
        {
            "comparison": "v1 vs v5",
            "x_variant": "v1",
            "y_variant": "v5",
            "x_wins": 1,
            "y_wins": 0,
            "ties": 1,
            "winner": "x",
        }
    ]
    assert type(group["x_points"]) is int and type(group["sets"][0]["ties"]) is int


def test_majority_mode_counts_each_item_once():
    """Per item the plurality decides; 1:1 or win:tie pluralities make the item a tie."""
    # Item i is shared by the three annotators; their outcomes (A-side view) per item:
    # item 0: a a b -> a;  item 1: a b tie -> tie;  item 2: b b tie -> b;  item 3: a tie tie -> tie
    per_annotator = {
        "ann-1": ["a", "a", "b", "a"],
        "ann-2": ["a", "b", "b", "tie"],
        "ann-3": ["b", "tie", "tie", "tie"],
    }
    votes = frame(
        *(
            set_votes("embed_dim", "v1", "v5", "2D", "D", annotator=ann, outcomes=outs)
            for ann, outs in per_annotator.items()
        )
    )
    (votes_mode,) = tally_votes(votes).groups
    assert (votes_mode.x_points, votes_mode.y_points) == (4, 4)
    (majority,) = tally_votes(votes, mode="majority").groups
    assert sets_of(majority) == [("v1 vs v5", "v1", "v5", 1, 1, 2, "draw")]


def test_per_annotator_tables_keep_the_pooled_orientation():
    """Each annotator's table uses the pooled x/y, even if their own first vote is swapped."""
    votes = frame(
        set_votes("mlp_dim", "v1", "v2", "2D", "D", a_wins=2, annotator="ann-1"),
        set_votes("mlp_dim", "v4", "v3", "D", "2D", a_wins=1, b_wins=2, annotator="ann-2"),
    )
    tables = tally_by_annotator(votes)
    assert sorted(tables) == ["ann-1", "ann-2"]
    (g2,) = tables["ann-2"].groups
    assert (g2.x, g2.y) == ("2D", "D")
    assert sets_of(g2) == [("v4 vs v3", "v3", "v4", 2, 1, 0, "x")]
    (g1,) = tables["ann-1"].groups
    assert summary(g1) == (1, 0, 2, 0, "x", "sets")


def test_prepare_votes_derives_the_winner_from_choice_and_left_variant():
    """left/right plus which variant was on the left give the winning variant; ties have none."""
    votes = frame(set_votes("embed_dim", "v1", "v5", "2D", "D", outcomes=["a", "b", "b", "tie"]))
    prepared = prepare_votes(votes)
    assert list(votes["left_variant"]) == ["v1", "v5", "v1", "v5"]
    assert list(votes["choice"]) == ["left", "left", "right", "tie"]
    assert list(prepared["outcome"]) == [1, -1, -1, 0]
    assert list(prepared["winner"].astype(object).where(prepared["winner"].notna(), None)) == [
        "v1",
        "v5",
        "v5",
        None,
    ]


def test_prepare_votes_ignores_extra_columns_and_reads_settings_as_text():
    """Extra columns are dropped; numeric settings become strings ('2' not 2)."""
    votes = frame(set_votes("vicinity", "v1", "v3", 2, 1, a_wins=1))
    votes["qc_kind"] = None
    prepared = prepare_votes(votes)
    assert "qc_kind" not in prepared.columns
    assert list(prepared.columns[: len(VOTE_COLUMNS)]) == list(VOTE_COLUMNS)
    (group,) = tally_votes(prepared).groups
    assert (group.x, group.y) == ("2", "1")


def _broken(column, value, row):
    votes = frame(set_votes("embed_dim", "v1", "v5", "2D", "D", a_wins=2, b_wins=2))
    votes.loc[row - 1, column] = value
    return votes


@pytest.mark.parametrize(
    ("votes", "row", "column", "text"),
    [
        (_broken("choice", "lft", 3), 3, "choice", "'lft'"),
        (_broken("left_variant", "v9", 2), 2, "left_variant", "'v9'"),
        (_broken("annotator", "", 4), 4, "annotator", "required"),
        (_broken("b_setting", "2D", 1), 1, "b_setting", "'2D'"),
        (_broken("variant_b", "v6", 3), 3, "variant_b", "same comparison"),
        (
            frame(set_votes("g", "v1", "v5", "2D", "D", a_wins=1)).drop(columns="choice"),
            None,
            "choice",
            "missing",
        ),
    ],
)
def test_malformed_votes_name_the_row_and_column(votes, row, column, text):
    """A bad value raises VoteDataError naming the 1-based row and the column."""
    with pytest.raises(VoteDataError) as info:
        prepare_votes(votes)
    assert (info.value.row, info.value.column) == (row, column)
    assert f"'{column}'" in str(info.value) and text in str(info.value)
    if row is not None:
        assert f"row {row}" in str(info.value)


def test_csv_source_names_the_line():
    """With a file name as source, the message names the CSV line (data row + 1)."""
    with pytest.raises(VoteDataError, match=r"votes\.csv line 4 \(data row 3\), column 'choice'"):
        prepare_votes(_broken("choice", "maybe", 3), source="votes.csv")


def test_to_frame_has_one_row_per_set_with_group_totals():
    """The display frame repeats each table's totals beside every one of its sets."""
    votes = frame(
        set_votes("embed_dim", "v1", "v5", "2D", "D", a_wins=3, b_wins=1),
        set_votes("embed_dim", "v2", "v6", "2D", "D", a_wins=1, b_wins=2),
    )
    table = tally_votes(votes).to_frame()
    assert table["comparison"].tolist() == ["v1 vs v5", "v2 vs v6"]
    assert table["winner"].tolist() == ["x", "y"]
    assert table["x_points"].tolist() == [4, 4] and table["group_winner"].tolist() == ["x", "x"]


def random_votes(seed: int, n_votes: int) -> pd.DataFrame:
    """A random but well-formed vote frame: 1-3 hyperparameters with 2-4 values each (so some
    have pairwise tables), 1-2 comparisons per pair of values in either orientation, every
    choice (both kinds of tie included), shared items, rows in random order."""
    import random

    rng = random.Random(seed)
    comparisons = []
    for g in range(rng.randint(1, 3)):
        values = [str(v) for v in rng.sample(range(1, 9), rng.randint(2, 4))]
        pairs = [(x, y) for i, x in enumerate(values) for y in values[i + 1 :]]
        for x, y in rng.sample(pairs, rng.randint(1, len(pairs))):
            for run in range(rng.randint(1, 2)):
                sa, sb = (x, y) if rng.random() < 0.5 else (y, x)
                va, vb = f"h{g}={sa}-r{run}", f"h{g}={sb}-r{run}"
                comparisons.append((f"h{g}", va, vb, sa, sb))
    rows = []
    for _ in range(n_votes):
        group, va, vb, sa, sb = rng.choice(comparisons)
        rows.append(
            {
                "study": "s",
                "group": group,
                "comparison": f"{va} vs {vb}",
                "variant_a": va,
                "variant_b": vb,
                "a_setting": sa,
                "b_setting": sb,
                "prompt": f"prompt {rng.randint(0, 2)}",
                "prompt_kind": "single",
                "checkpoint": "epoch-1",
                "seed": rng.randint(0, 1),
                "annotator": f"ann-{rng.randint(0, 3)}",
                "left_variant": rng.choice((va, vb)),
                "choice": rng.choice(("left", "left", "right", "right", "tie", "both_bad")),
                "shown_at": "2026-11-01T10:00:00Z",
                "voted_at": "2026-11-01T10:00:05Z",
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("mode", ["votes", "majority"])
@pytest.mark.parametrize("seed", range(40))
def test_fast_tally_agrees_with_the_plain_reference(seed, mode):
    """On random vote frames the vectorised tally equals the row-by-row reference of the rule."""
    from evaluation.tally_reference import reference_tally

    votes = random_votes(seed, n_votes=[5, 40, 300][seed % 3])
    assert tally_votes(votes, mode=mode).to_dict() == reference_tally(votes, mode=mode)


def test_reference_tally_follows_the_article_on_a_hand_worked_case():
    """The oracle itself: x wins 2 sets to 1 though y has more points; both_bad is a tie."""
    from evaluation.tally_reference import reference_tally

    votes = frame(
        set_votes("vicinity", "v2", "v1", "2", "1", a_wins=2, b_wins=1),
        set_votes("vicinity", "v2b", "v1b", "2", "1", a_wins=1, b_wins=0, ties=3),
        set_votes("vicinity", "v2c", "v1c", "2", "1", a_wins=0, b_wins=6),
    )
    votes.loc[votes["choice"] == "tie", "choice"] = "both_bad"
    (group,) = reference_tally(votes)["groups"]
    assert (group["x_sets"], group["y_sets"], group["x_points"], group["y_points"]) == (2, 1, 3, 7)
    assert (group["winner"], group["decided_by"]) == ("x", "sets")
    assert group["sets"][1]["ties"] == 3


def test_both_bad_counts_as_a_tie_like_tie():
    """A 'both_bad' vote counts for neither side, exactly as a 'tie' does."""
    tie = frame(set_votes("vicinity", "v2", "v1", "2", "1", a_wins=2, b_wins=1, ties=2))
    both_bad = tie.assign(choice=tie["choice"].replace("tie", "both_bad"))
    assert tally_votes(both_bad).to_dict() == tally_votes(tie).to_dict()
    assert list(prepare_votes(both_bad)["outcome"]) == list(prepare_votes(tie)["outcome"])


def test_tie_choices_are_the_databases():
    """The statistics' TIE_CHOICES and CHOICES are those the database accepts."""
    from db import models
    from evaluation import tally

    assert tally.TIE_CHOICES == models.TIE_CHOICES
    assert set(tally.CHOICES) == set(models.CHOICES)
