"""The article's tally: per set (組) wins, ties and winner; per group sets won (組数), then points (点数).

Input is the vote interchange frame (DESIGN.md, "Vote interchange format"); `prepare_votes` checks it
and derives the winner of each vote. Everything is vectorised over integer codes, so a million
votes tally in a fraction of a second. Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

VOTE_COLUMNS = (
    "study",
    "group",
    "comparison",
    "variant_a",
    "variant_b",
    "a_setting",
    "b_setting",
    "prompt",
    "prompt_kind",
    "checkpoint",
    "seed",
    "annotator",
    "left_variant",
    "choice",
    "shown_at",
    "voted_at",
)
# Choices that count for neither side ("same" and "both bad"). The statistics' owner of this rule
# (db.models.TIE_CHOICES must equal it; evaluation never imports db).
TIE_CHOICES = ("tie", "both_bad")
CHOICES = ("left", "right", *TIE_CHOICES)
# Columns that may be empty; every other column must hold a value in every row.
OPTIONAL_COLUMNS = ("shown_at", "voted_at")
# What a comparison is: these must be the same in every row of one comparison.
COMPARISON_COLUMNS = ("group", "variant_a", "variant_b", "a_setting", "b_setting")
# An item is one image pair as an annotator sees it (majority mode decides items).
ITEM_COLUMNS = ("comparison", "prompt", "checkpoint", "seed")
TALLY_MODES = ("votes", "majority")


class VoteDataError(ValueError):
    """A vote frame or file breaks the interchange format; names the row (1-based) and column."""

    def __init__(self, message: str, row: int | None = None, column: str | None = None):
        super().__init__(message)
        self.row = row
        self.column = column


# ---------------------------------------------------------------------------------------------
# Checking the input


def _where(position: int, source: str | None) -> str:
    """Human position of a data row: 'row 3', or 'votes.csv line 4 (data row 3)' for a CSV file."""
    if source is None:
        return f"row {position + 1}"
    # Line 1 is the header, so data row k sits on line k + 1.
    return f"{source} line {position + 2} (data row {position + 1})"


def _fail(position: int, column: str, found: object, expected: str, source: str | None):
    raise VoteDataError(
        f"{_where(position, source)}, column '{column}': found {found!r}; expected {expected}. "
        "Fix or drop that row.",
        row=position + 1,
        column=column,
    )


def _as_category(series: pd.Series) -> pd.Categorical:
    """The column as a Categorical with text categories (a setting 2 becomes '2')."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cat = series.array
    elif pd.api.types.is_string_dtype(series.dtype):
        cat = pd.Categorical(series)
    else:
        # Factorize first, then turn only the distinct values into text (a million int seeds
        # would otherwise become a million Python strings).
        codes, uniques = pd.factorize(series)
        cat = pd.Categorical.from_codes(codes, categories=uniques)
    if pd.api.types.infer_dtype(cat.categories) in ("string", "empty"):
        return cat
    names = np.array([str(c) for c in cat.categories], dtype=object)
    text, merged = np.unique(names, return_inverse=True)  # 1 and '1' are the same text
    codes = np.where(cat.codes >= 0, merged[cat.codes], -1)
    return pd.Categorical.from_codes(codes, categories=text)


def _shared_codes(cats: list[pd.Categorical]) -> tuple[pd.Index, list[np.ndarray]]:
    """Recode several Categoricals onto one set of categories; returns (categories, codes)."""
    union = pd.Index(
        pd.unique(np.concatenate([np.asarray(c.categories, dtype=object) for c in cats]))
    )
    codes = []
    for c in cats:
        mapping = union.get_indexer(c.categories).astype(np.int64)
        codes.append(np.where(c.codes >= 0, mapping[c.codes], -1))
    return union, codes


def _first_rows(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Position of the first row of each code 0..n_codes-1 (len(codes) where a code is absent)."""
    first = np.full(n_codes, len(codes), dtype=np.int64)
    # pandas' hash-based drop_duplicates keeps first occurrences: O(n), no sort.
    kept = pd.Series(codes).drop_duplicates()
    first[kept.to_numpy()] = kept.index.to_numpy()
    return first


def prepare_votes(votes: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Check a vote interchange frame and derive each vote's winner.

    Returns a new frame with the 16 interchange columns (extra columns dropped; text columns as
    Categoricals, settings as strings) plus `outcome` (int8: +1 variant_a won, -1 variant_b won,
    0 tie: any of TIE_CHOICES) and `winner` (the winning variant, missing for a tie). Raises
    `VoteDataError` naming the first bad row and its column; `source` (a file name) makes the
    message name CSV lines.
    """
    # 1. Every column present.
    missing = [c for c in VOTE_COLUMNS if c not in votes.columns]
    if missing:
        where = f"{source} line 1 (header)" if source else "the vote frame"
        raise VoteDataError(
            f"{where}: missing column(s) {', '.join(repr(c) for c in missing)}; expected the "
            f"vote interchange columns {', '.join(VOTE_COLUMNS)}. Add the column(s) or re-export "
            "the votes.",
            row=None,
            column=missing[0],
        )
    n = len(votes)
    cats = {c: _as_category(votes[c]) for c in VOTE_COLUMNS if c not in OPTIONAL_COLUMNS}

    # 2. Required values present (missing or empty text both count as absent).
    for column, cat in cats.items():
        absent = cat.codes < 0
        empty = np.flatnonzero(cat.categories == "")
        if len(empty):
            absent = absent | (cat.codes == empty[0])
        if absent.any():
            _fail(int(np.argmax(absent)), column, "", "a value (the column is required)", source)

    # 3. Choices known.
    choice = cats["choice"]
    known = np.isin(np.asarray(choice.categories, dtype=object), CHOICES)
    if not known.all():
        bad = ~known[choice.codes]
        pos = int(np.argmax(bad))
        _fail(pos, "choice", choice.categories[choice.codes[pos]], ", ".join(CHOICES), source)

    # 4. Variants and settings consistent: left_variant is one of the two, the sides differ.
    variants, (a_var, b_var, left_var) = _shared_codes(
        [cats["variant_a"], cats["variant_b"], cats["left_variant"]]
    )
    left_is_a = left_var == a_var
    bad = ~left_is_a & (left_var != b_var)
    if bad.any():
        pos = int(np.argmax(bad))
        _fail(
            pos,
            "left_variant",
            variants[left_var[pos]],
            f"variant_a {variants[a_var[pos]]!r} or variant_b {variants[b_var[pos]]!r}",
            source,
        )
    if (a_var == b_var).any():
        pos = int(np.argmax(a_var == b_var))
        _fail(pos, "variant_b", variants[b_var[pos]], "a variant other than variant_a", source)
    settings, (a_set, b_set) = _shared_codes([cats["a_setting"], cats["b_setting"]])
    if (a_set == b_set).any():
        pos = int(np.argmax(a_set == b_set))
        _fail(pos, "b_setting", settings[b_set[pos]], "a setting other than a_setting", source)

    # 5. A comparison means the same thing in every row.
    comp = cats["comparison"].codes.astype(np.int64)
    first_of_row = _first_rows(comp, len(cats["comparison"].categories))[comp]
    codes_by_column = {
        "group": cats["group"].codes,
        "variant_a": a_var,
        "variant_b": b_var,
        "a_setting": a_set,
        "b_setting": b_set,
    }
    for column in COMPARISON_COLUMNS:
        codes = codes_by_column[column]
        differs = codes != codes[first_of_row]
        if differs.any():
            pos = int(np.argmax(differs))
            first = int(first_of_row[pos])
            expected = (
                f"{votes[column].iloc[first]!r} as in {_where(first, source)} "
                "of the same comparison"
            )
            _fail(pos, column, votes[column].iloc[pos], expected, source)

    # 6. Derive the outcome from the A side's view: choice says left/right, left_variant says who.
    choice_code = np.asarray(choice.categories, dtype=object)
    picked_left = (choice_code == "left")[choice.codes]
    picked_right = (choice_code == "right")[choice.codes]
    a_won = (picked_left & left_is_a) | (picked_right & ~left_is_a)
    b_won = (picked_left & ~left_is_a) | (picked_right & left_is_a)
    outcome = a_won.astype(np.int8) - b_won.astype(np.int8)
    winner_code = np.where(a_won, a_var, np.where(b_won, b_var, -1))

    columns = {}
    variant_dtype = pd.CategoricalDtype(variants)
    setting_dtype = pd.CategoricalDtype(settings)
    recoded = {"variant_a": a_var, "variant_b": b_var, "left_variant": left_var}
    for column in VOTE_COLUMNS:
        if column in recoded:
            columns[column] = pd.Categorical.from_codes(recoded[column], dtype=variant_dtype)
        elif column in ("a_setting", "b_setting"):
            code = a_set if column == "a_setting" else b_set
            columns[column] = pd.Categorical.from_codes(code, dtype=setting_dtype)
        elif column in cats:
            columns[column] = cats[column]
        else:
            columns[column] = votes[column].array  # timestamps stay as they came
    columns["outcome"] = outcome
    columns["winner"] = pd.Categorical.from_codes(winner_code, dtype=variant_dtype)
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def ensure_prepared(votes: pd.DataFrame) -> pd.DataFrame:
    """`votes` if it already went through `prepare_votes`, else the prepared copy."""
    prepared = ("outcome", "winner", "variant_a", "a_setting")
    if all(c in votes.columns for c in prepared) and all(
        isinstance(votes[c].dtype, pd.CategoricalDtype) for c in prepared[1:]
    ):
        return votes
    return prepare_votes(votes)


# ---------------------------------------------------------------------------------------------
# Orientation: which setting is x in each table, which rows are read swapped


@dataclass(frozen=True)
class Orientation:
    """Row-level assignment of votes to tables (one per group, or per pair of a group's values)."""

    names: list[str]  # table name per table: the group, or "<group>: <x> vs <y>"
    groups: list[str]  # the hyperparameter of each table
    x: list[str]  # x setting per table
    y: list[str]
    table: np.ndarray  # (n,) table index of each row, tables in output order
    set_code: np.ndarray  # (n,) set index of each row, sets in output order
    set_table: np.ndarray  # (n_sets,) table index of each set
    set_comparison: list[str]
    set_x_variant: list[str]
    set_y_variant: list[str]
    x_outcome: np.ndarray  # (n,) int8: +1 x side won, -1 y side won, 0 tie


def _reorder(codes: np.ndarray, order_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber codes so that they sort by order_key (stable); returns (new codes, old-of-new)."""
    old_of_new = np.argsort(order_key, kind="stable")
    new_of_old = np.empty_like(old_of_new)
    new_of_old[old_of_new] = np.arange(len(old_of_new))
    return new_of_old[codes], old_of_new


def orient_votes(votes: pd.DataFrame) -> Orientation:
    """Assign rows to tables and sides, as DESIGN.md says.

    For each group, x is the a_setting of the group's first row in frame order and y the other
    value; rows whose a_setting is y are read with sides swapped. A group whose hyperparameter takes
    more than two values gets one table per pair of values, oriented the same way (x is the
    a_setting of the first row holding that pair). Tables follow the first appearance of their
    group, then of their pair; sets (comparisons) follow their first appearance in the table.
    """
    votes = ensure_prepared(votes)
    n = len(votes)
    group = votes["group"].array
    g = group.codes.astype(np.int64)
    a = votes["a_setting"].array.codes.astype(np.int64)
    b = votes["b_setting"].array.codes.astype(np.int64)
    settings = votes["a_setting"].array.categories
    s = len(settings)

    # 1. Tables: (group, unordered pair of settings), numbered by first appearance.
    pair_key = (g * s + np.minimum(a, b)) * s + np.maximum(a, b)
    table, _ = pd.factorize(pair_key)
    n_tables = int(table.max()) + 1 if n else 0
    first = _first_rows(table, n_tables)
    # Keep the tables of one group together: order by the group's first row, then the table's.
    group_rank, _ = pd.factorize(g)  # numbered by first appearance
    table, old_of_new = _reorder(table, group_rank[first] * (n + 1) + first)
    first = first[old_of_new]

    x_code = a[first]
    y_code = b[first]
    flipped = a != x_code[table]
    x_outcome = np.where(flipped, -votes["outcome"].to_numpy(), votes["outcome"].to_numpy())
    x_outcome = x_outcome.astype(np.int8)

    table_group = [str(group.categories[g[i]]) for i in first]
    tables_per_group = pd.Series(table_group).value_counts()
    names = [
        f"{grp}: {settings[xc]} vs {settings[yc]}" if tables_per_group[grp] > 1 else grp
        for grp, xc, yc in zip(table_group, x_code, y_code, strict=True)
    ]

    # 2. Sets: comparisons within a table, by first appearance.
    comp = votes["comparison"].array
    c = comp.codes.astype(np.int64)
    set_code, _ = pd.factorize(table * len(comp.categories) + c)
    n_sets = int(set_code.max()) + 1 if n else 0
    set_first = _first_rows(set_code, n_sets)
    set_code, old_of_new = _reorder(set_code, table[set_first] * (n + 1) + set_first)
    set_first = set_first[old_of_new]

    variant_a = votes["variant_a"].array
    variant_b = votes["variant_b"].array
    set_flipped = flipped[set_first]
    a_names = variant_a.categories[variant_a.codes[set_first]]
    b_names = variant_b.categories[variant_b.codes[set_first]]
    return Orientation(
        names=names,
        groups=table_group,
        x=[str(settings[i]) for i in x_code],
        y=[str(settings[i]) for i in y_code],
        table=table,
        set_code=set_code,
        set_table=table[set_first],
        set_comparison=[str(comp.categories[c[i]]) for i in set_first],
        set_x_variant=[str(v) for v in np.where(set_flipped, b_names, a_names)],
        set_y_variant=[str(v) for v in np.where(set_flipped, a_names, b_names)],
        x_outcome=x_outcome,
    )


# ---------------------------------------------------------------------------------------------
# The tally


@dataclass(frozen=True)
class SetTally:
    """One set (組): a comparison's wins for each side and its winner ('x', 'y' or 'draw')."""

    comparison: str
    x_variant: str
    y_variant: str
    x_wins: int
    y_wins: int
    ties: int
    winner: str

    def to_dict(self) -> dict:
        return {
            "comparison": self.comparison,
            "x_variant": self.x_variant,
            "y_variant": self.y_variant,
            "x_wins": self.x_wins,
            "y_wins": self.y_wins,
            "ties": self.ties,
            "winner": self.winner,
        }


@dataclass(frozen=True)
class GroupTally:
    """One table: sets won (組数), points (点数), the winner and what decided it."""

    group: str  # table name: the hyperparameter, or "<group>: <x> vs <y>"
    x: str
    y: str
    sets: list[SetTally]
    x_sets: int
    y_sets: int
    x_points: int
    y_points: int
    winner: str  # "x", "y" or "draw"
    decided_by: str  # "sets", "points" or "draw"
    hyperparameter: str = ""  # the group column's value (not part of the JSON interface)

    def to_dict(self) -> dict:
        return {
            "group": self.group,
            "x": self.x,
            "y": self.y,
            "sets": [s.to_dict() for s in self.sets],
            "x_sets": self.x_sets,
            "y_sets": self.y_sets,
            "x_points": self.x_points,
            "y_points": self.y_points,
            "winner": self.winner,
            "decided_by": self.decided_by,
        }


@dataclass(frozen=True)
class Tally:
    """All tables of a vote frame, in output order."""

    groups: list[GroupTally] = field(default_factory=list)
    mode: str = "votes"  # "votes" (every live vote is a point) or "majority" (one per item)

    def to_dict(self) -> dict:
        """Exactly the JSON object of `python -m evaluation tally --format json`."""
        return {"groups": [g.to_dict() for g in self.groups]}

    def to_frame(self) -> pd.DataFrame:
        """One row per set with its table's totals, for display."""
        rows = [
            {
                "group": g.group,
                "x": g.x,
                "y": g.y,
                **s.to_dict(),
                "x_sets": g.x_sets,
                "y_sets": g.y_sets,
                "x_points": g.x_points,
                "y_points": g.y_points,
                "group_winner": g.winner,
                "decided_by": g.decided_by,
            }
            for g in self.groups
            for s in g.sets
        ]
        return pd.DataFrame(rows)


def _winner(x: int, y: int) -> str:
    return "x" if x > y else "y" if y > x else "draw"


def _build(orient: Orientation, counts: np.ndarray, mode: str) -> Tally:
    """Tables from per-set counts (n_sets, 3) = [y wins, ties, x wins]; sets with no votes skipped."""
    groups = []
    for t, name in enumerate(orient.names):
        sets = [
            SetTally(
                comparison=orient.set_comparison[k],
                x_variant=orient.set_x_variant[k],
                y_variant=orient.set_y_variant[k],
                x_wins=int(counts[k, 2]),
                y_wins=int(counts[k, 0]),
                ties=int(counts[k, 1]),
                winner=_winner(int(counts[k, 2]), int(counts[k, 0])),
            )
            for k in np.flatnonzero(orient.set_table == t)
            if counts[k].sum() > 0
        ]
        if not sets:
            continue
        x_sets = sum(s.winner == "x" for s in sets)
        y_sets = sum(s.winner == "y" for s in sets)
        x_points = sum(s.x_wins for s in sets)
        y_points = sum(s.y_wins for s in sets)
        if x_sets != y_sets:
            winner, decided_by = _winner(x_sets, y_sets), "sets"
        elif x_points != y_points:
            winner, decided_by = _winner(x_points, y_points), "points"
        else:
            winner, decided_by = "draw", "draw"
        groups.append(
            GroupTally(
                group=name,
                x=orient.x[t],
                y=orient.y[t],
                sets=sets,
                x_sets=x_sets,
                y_sets=y_sets,
                x_points=x_points,
                y_points=y_points,
                winner=winner,
                decided_by=decided_by,
                hyperparameter=orient.groups[t],
            )
        )
    return Tally(groups=groups, mode=mode)


def item_index(votes: pd.DataFrame) -> tuple[np.ndarray, int]:
    """(item number per vote, number of items) of a prepared frame; an item is one image pair
    (comparison + prompt + checkpoint + seed), numbered in order of first appearance."""
    key = np.zeros(len(votes), dtype=np.int64)
    for column in ITEM_COLUMNS:
        cat = votes[column].array
        key = key * (len(cat.categories) + 1) + cat.codes
    item, _ = pd.factorize(key)
    return item, int(item.max()) + 1 if len(item) else 0


def _item_outcomes(votes: pd.DataFrame, orient: Orientation) -> tuple[np.ndarray, np.ndarray]:
    """Majority per item: (set index per item, x-outcome per item). A tied plurality is a tie."""
    item, n_items = item_index(votes)
    counts = np.bincount(item * 3 + orient.x_outcome + 1, minlength=3 * n_items).reshape(-1, 3)
    top = counts.max(axis=1, keepdims=True)
    shared_top = (counts == top).sum(axis=1) > 1
    item_outcome = np.where(shared_top, 0, counts.argmax(axis=1) - 1).astype(np.int8)
    item_set = orient.set_code[_first_rows(item, n_items)]
    return item_set, item_outcome


def tally_votes(votes: pd.DataFrame, mode: str = "votes") -> Tally:
    """The article's tally of a vote frame (raw or prepared).

    mode "votes": every live vote is a point (the default, and the CLI's). mode "majority": each
    item (comparison + prompt + checkpoint + seed) counts once, decided by the plurality of its
    annotators' votes; a tied plurality makes the item a tie.
    """
    if mode not in TALLY_MODES:
        raise ValueError(f"mode={mode!r}; expected one of {', '.join(TALLY_MODES)}.")
    votes = ensure_prepared(votes)
    orient = orient_votes(votes)
    n_sets = len(orient.set_comparison)
    if mode == "votes":
        set_code, outcome = orient.set_code, orient.x_outcome
    else:
        set_code, outcome = _item_outcomes(votes, orient)
    counts = np.bincount(set_code * 3 + outcome + 1, minlength=3 * n_sets).reshape(-1, 3)
    return _build(orient, counts, mode)


def tally_by_annotator(votes: pd.DataFrame) -> dict[str, Tally]:
    """One tally per annotator, every table oriented as in the pooled tally (same x and y)."""
    votes = ensure_prepared(votes)
    orient = orient_votes(votes)
    n_sets = len(orient.set_comparison)
    annotator = votes["annotator"].array
    n_ann = len(annotator.categories)
    key = (annotator.codes.astype(np.int64) * n_sets + orient.set_code) * 3 + orient.x_outcome + 1
    counts = np.bincount(key, minlength=n_ann * n_sets * 3).reshape(n_ann, n_sets, 3)
    return {
        str(name): _build(orient, counts[i], "votes")
        for i, name in enumerate(annotator.categories)
        if counts[i].sum() > 0
    }
