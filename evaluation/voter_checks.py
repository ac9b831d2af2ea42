"""Checks on the annotators: agreement with the others, consistency on quality-control repeats,
position bias, speed and FastChat's outlier test; and tie rates by kind and per prompt.

Pure functions over the vote interchange frame (raw or `tally.prepare_votes`d); a `qc_kind`
column (`db.queries.live_votes_frame(..., include_qc=True)`) marks QC repeats, which count only
for `qc_consistency`. Both tie kinds ("tie", "both_bad") are ties here, as in every tally.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.tally import ensure_prepared, item_index

OUTLIER_THRESHOLD = 20.0  # flagged when the product of 1/(2p) exceeds this
OUTLIER_MIN_VOTES = 5  # annotators with fewer votes get no outlier score
TIE_KINDS = ("tie", "both_bad")
VOTER_CHECK_COLUMNS = (
    "annotator",
    "votes",
    "agreement_loo",
    "shared_items",
    "qc_consistency",
    "qc_votes",
    "left_share",
    "median_seconds",
    "outlier_score",
    "flagged",
)


def _seconds(votes: pd.DataFrame) -> np.ndarray:
    """Seconds from shown to voted per row (NaN where either time is missing)."""
    shown = pd.to_datetime(votes["shown_at"], utc=True, errors="coerce", format="ISO8601")
    voted = pd.to_datetime(votes["voted_at"], utc=True, errors="coerce", format="ISO8601")
    return (voted - shown).dt.total_seconds().to_numpy(dtype=float)


def _per_annotator_median(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    frame = pd.DataFrame({"a": codes, "v": values})
    medians = frame.groupby("a")["v"].median()
    out = np.full(n, np.nan)
    out[medians.index.to_numpy()] = medians.to_numpy()
    return out


def voter_checks(votes: pd.DataFrame) -> pd.DataFrame:
    """One row per annotator (columns VOTER_CHECK_COLUMNS):

    - `votes`: regular (non-QC) votes;
    - `agreement_loo`: share of the annotator's shared items (an image pair others judged too,
      with a unique plurality among the others) where they chose as that plurality did
      (A, B or tie); `shared_items` counts those items;
    - `qc_consistency`: share of their QC repeats judged as they judged the original pair (same
      winning variant, or a tie both times); `qc_votes` counts those repeats;
    - `left_share`: share of their decisive votes that went to the left image (0.5 = no bias);
    - `median_seconds`: median time from shown to voted;
    - `outlier_score`: FastChat's test. Per vote, a p-value against the other annotators' votes
      on the same comparison, p = (1 + others' votes whose outcome is at most as frequent
      among them as this vote's) / (1 + others' votes); the score is the product of 1/(2p)
      over the annotator's votes (votes on comparisons nobody else judged are skipped); NaN
      under 5 votes. `flagged` when the score exceeds 20.
    """
    qc = (
        votes["qc_kind"].notna().to_numpy()
        if "qc_kind" in votes.columns
        else np.zeros(len(votes), dtype=bool)
    )
    prepared = ensure_prepared(votes)
    annotator = prepared["annotator"].array
    names = annotator.categories
    n_ann = len(names)
    ann = annotator.codes.astype(np.int64)
    outcome = prepared["outcome"].to_numpy().astype(np.int64) + 1  # 0 B won, 1 tie, 2 A won
    regular = ~qc

    # 1. Agreement with the leave-one-out plurality on shared items (regular votes only)
    item, n_items = item_index(prepared)
    r_item, r_out, r_ann = item[regular], outcome[regular], ann[regular]
    item_counts = np.bincount(r_item * 3 + r_out, minlength=3 * n_items).reshape(-1, 3)
    others = item_counts[r_item].copy()  # (n_regular, 3)
    others[np.arange(len(r_out)), r_out] -= 1
    top = others.max(axis=1)
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    shared = (others.sum(axis=1) > 0) & unique_top
    agree = shared & (others.argmax(axis=1) == r_out)
    shared_items = np.bincount(r_ann[shared], minlength=n_ann)
    agreed = np.bincount(r_ann[agree], minlength=n_ann)

    # 2. QC repeats against the annotator's own vote on the original pair
    qc_votes = np.bincount(ann[qc], minlength=n_ann)
    consistent = np.zeros(n_ann)
    if qc.any():
        key = item * n_ann + ann
        original = pd.Series(outcome[regular], index=key[regular])
        original = original[~original.index.duplicated()]
        repeat = original.reindex(key[qc]).to_numpy()
        same = repeat == outcome[qc]
        consistent = np.bincount(ann[qc], weights=same.astype(float), minlength=n_ann)

    # 3. Position bias and speed (regular votes)
    choice = prepared["choice"].astype(str).to_numpy()
    decisive = regular & np.isin(choice, ("left", "right"))
    left = np.bincount(ann[decisive & (choice == "left")], minlength=n_ann)
    decisive_n = np.bincount(ann[decisive], minlength=n_ann)
    seconds = _seconds(prepared)
    median = _per_annotator_median(ann[regular], seconds[regular], n_ann)

    # 4. FastChat's outlier test per vote, against the others' votes on the comparison
    comp = prepared["comparison"].array.codes.astype(np.int64)[regular]
    n_comp = len(prepared["comparison"].array.categories)
    comp_counts = np.bincount(comp * 3 + r_out, minlength=3 * n_comp).reshape(-1, 3)
    own = np.bincount((r_ann * n_comp + comp) * 3 + r_out, minlength=3 * n_comp * n_ann)
    own = own.reshape(n_ann, n_comp, 3)
    rest = comp_counts[comp] - own[r_ann, comp]  # (n_regular, 3) others' outcomes
    total = rest.sum(axis=1)
    mine = rest[np.arange(len(r_out)), r_out]
    as_rare = (rest * (rest <= mine[:, None])).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (1 + as_rare) / (1 + total)
        log_factor = np.where(total > 0, -np.log(2 * p), 0.0)
    log_score = np.bincount(r_ann, weights=log_factor, minlength=n_ann)
    n_votes = np.bincount(r_ann, minlength=n_ann)
    score = np.where(n_votes >= OUTLIER_MIN_VOTES, np.exp(np.minimum(log_score, 690.0)), np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame(
            {
                "annotator": [str(x) for x in names],
                "votes": n_votes,
                "agreement_loo": np.where(shared_items > 0, agreed / shared_items, np.nan),
                "shared_items": shared_items,
                "qc_consistency": np.where(qc_votes > 0, consistent / qc_votes, np.nan),
                "qc_votes": qc_votes,
                "left_share": np.where(decisive_n > 0, left / decisive_n, np.nan),
                "median_seconds": median,
                "outlier_score": score,
                "flagged": np.nan_to_num(score, nan=0.0) > OUTLIER_THRESHOLD,
            },
            columns=list(VOTER_CHECK_COLUMNS),
        )
    return table[(n_votes > 0) | (qc_votes > 0)].reset_index(drop=True)


def tie_rates(votes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(by kind, by prompt) tie rates of the regular votes.

    by kind: one row per tie kind ("tie" = same, "both_bad" = neither follows the prompt) with
    `votes` and `share` of all votes. by prompt: `votes`, `tie`, `both_bad`, `tie_share` (both
    kinds) and `mostly_ties` (True when more than half the prompt's votes are ties: the prompt
    does not discriminate between the variants), in order of first appearance.
    Reads the `choice` column as it is, so it works on raw files too.
    """
    if "qc_kind" in votes.columns:
        votes = votes[votes["qc_kind"].isna()]
    choice = votes["choice"].astype(str)
    n = len(choice)
    by_kind = pd.DataFrame(
        {
            "kind": list(TIE_KINDS),
            "votes": [int((choice == kind).sum()) for kind in TIE_KINDS],
        }
    )
    by_kind["share"] = by_kind["votes"] / n if n else np.nan
    frame = pd.DataFrame(
        {
            "prompt": votes["prompt"].astype(str).to_numpy(),
            "tie": (choice == "tie").to_numpy(),
            "both_bad": (choice == "both_bad").to_numpy(),
        }
    )
    grouped = frame.groupby("prompt", sort=False)
    by_prompt = pd.DataFrame(
        {
            "votes": grouped.size(),
            "tie": grouped["tie"].sum().astype(int),
            "both_bad": grouped["both_bad"].sum().astype(int),
        }
    ).reset_index()
    by_prompt["tie_share"] = (by_prompt["tie"] + by_prompt["both_bad"]) / by_prompt["votes"]
    by_prompt["mostly_ties"] = by_prompt["tie_share"] > 0.5
    return by_kind, by_prompt
