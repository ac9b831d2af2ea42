"""Statistics around the article's tally: win shares with Wilson intervals and sign tests,
breakdowns, position bias and agreement between annotators (Krippendorff's alpha).

Pure functions over the vote interchange frame (raw or `tally.prepare_votes`d) or a `Tally`;
numpy/pandas/scipy only. Intervals are 95 % unless `confidence` says otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from evaluation.tally import Tally, ensure_prepared, item_index, orient_votes

AGREEMENT_METRICS = ("nominal", "ordinal", "interval")


def wilson_interval(
    successes: np.ndarray | int, n: np.ndarray | int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion, element-wise; NaN where n == 0."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    z = sps.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def sign_test(successes: np.ndarray | int, n: np.ndarray | int) -> np.ndarray:
    """Two-sided exact sign test (binomial, p = 1/2) per element; NaN where n == 0."""
    k = np.atleast_1d(np.asarray(successes, dtype=np.int64))
    n = np.atleast_1d(np.asarray(n, dtype=np.int64))
    p = np.full(k.shape, np.nan)
    for i in np.flatnonzero(n > 0):  # one call per table row, never per vote
        p[i] = sps.binomtest(int(k[i]), int(n[i]), 0.5).pvalue
    return p


def _share_columns(wins: np.ndarray, losses: np.ndarray, confidence: float, prefix: str) -> dict:
    n = wins + losses
    low, high = wilson_interval(wins, n, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = wins / n
    return {
        f"{prefix}_share": share,
        f"{prefix}_low": low,
        f"{prefix}_high": high,
        "p_value": sign_test(wins, n),
    }


def group_win_shares(tally: Tally, confidence: float = 0.95) -> pd.DataFrame:
    """Pooled win share of each side per table, with Wilson intervals and a sign-test p-value.

    Ties are left out (share = x points / (x points + y points)). `disagree` is True when the
    sets winner and the points winner are opposite sides: the article's rule then gives the
    group to the side that won fewer image pairs. Votes of several annotators on one item are
    counted as independent here, so the p-value is optimistic when annotators agree.
    """
    rows = []
    for g in tally.groups:
        sets_winner = "x" if g.x_sets > g.y_sets else "y" if g.y_sets > g.x_sets else "draw"
        points_winner = (
            "x" if g.x_points > g.y_points else "y" if g.y_points > g.x_points else "draw"
        )
        rows.append(
            {
                "group": g.group,
                "x": g.x,
                "y": g.y,
                "x_points": g.x_points,
                "y_points": g.y_points,
                "ties": sum(s.ties for s in g.sets),
                "sets_winner": sets_winner,
                "points_winner": points_winner,
                "winner": g.winner,
                "decided_by": g.decided_by,
                "disagree": {sets_winner, points_winner} == {"x", "y"},
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "group",
            "x",
            "y",
            "x_points",
            "y_points",
            "ties",
            "sets_winner",
            "points_winner",
            "winner",
            "decided_by",
            "disagree",
        ],
    )
    x = frame["x_points"].to_numpy(dtype=np.int64)
    y = frame["y_points"].to_numpy(dtype=np.int64)
    shares = _share_columns(x, y, confidence, "x")
    frame["x_share"] = shares["x_share"]
    frame["x_low"] = shares["x_low"]
    frame["x_high"] = shares["x_high"]
    frame["y_share"] = 1 - shares["x_share"]
    frame["y_low"] = 1 - shares["x_high"]
    frame["y_high"] = 1 - shares["x_low"]
    frame["p_value"] = shares["p_value"]
    return frame


def breakdown(votes: pd.DataFrame, by: str, confidence: float = 0.95) -> pd.DataFrame:
    """x-side wins, y-side wins and ties per table and per value of `by` (e.g. prompt_kind,
    checkpoint), with the x side's win share, its Wilson interval and a sign-test p-value."""
    votes = ensure_prepared(votes)
    if by not in votes.columns:
        raise ValueError(
            f"by={by!r} is not a column of the vote frame; try prompt_kind or checkpoint."
        )
    orient = orient_votes(votes)
    cat = pd.Categorical(votes[by])
    n_tables, n_values = len(orient.names), len(cat.categories)
    key = (orient.table * n_values + cat.codes) * 3 + orient.x_outcome + 1
    counts = np.bincount(key, minlength=n_tables * n_values * 3).reshape(n_tables, n_values, 3)
    t_idx, v_idx = np.nonzero(counts.sum(axis=2) > 0)
    y_wins, ties, x_wins = (counts[t_idx, v_idx, i] for i in range(3))
    frame = pd.DataFrame(
        {
            "group": [orient.names[t] for t in t_idx],
            "x": [orient.x[t] for t in t_idx],
            "y": [orient.y[t] for t in t_idx],
            by: [str(cat.categories[v]) for v in v_idx],
            "x_wins": x_wins,
            "y_wins": y_wins,
            "ties": ties,
        }
    )
    for column, values in _share_columns(x_wins, y_wins, confidence, "x").items():
        frame[column] = values
    return frame


def position_bias(
    votes: pd.DataFrame, by: str | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """Share of decisive votes that went to the image on the left, with its Wilson interval and a
    sign-test p-value against 1/2; one row overall, or one per value of `by` (e.g. annotator)."""
    votes = ensure_prepared(votes)
    choice = votes["choice"].array
    code = np.asarray(choice.categories, dtype=object)
    picked = np.select(
        [(code == "left")[choice.codes], (code == "right")[choice.codes]], [0, 1], default=2
    )
    if by is None:
        labels, values = ["all"], np.zeros(len(votes), dtype=np.int64)
    else:
        cat = pd.Categorical(votes[by])
        labels, values = [str(c) for c in cat.categories], cat.codes.astype(np.int64)
    counts = np.bincount(values * 3 + picked, minlength=3 * len(labels)).reshape(-1, 3)
    keep = counts.sum(axis=1) > 0
    counts = counts[keep]
    frame = pd.DataFrame(
        {
            by or "scope": np.asarray(labels, dtype=object)[keep],
            "left_wins": counts[:, 0],
            "right_wins": counts[:, 1],
            "ties": counts[:, 2],
        }
    )
    for column, vals in _share_columns(counts[:, 0], counts[:, 1], confidence, "left").items():
        frame[column] = vals
    return frame


def krippendorff_alpha(counts: np.ndarray, metric: str = "ordinal") -> float:
    """Krippendorff's alpha from value counts per unit: counts[u, c] = how many coders gave unit u
    the c-th value (values ordered, equally spaced for the interval metric). Units with fewer
    than two values are not pairable and are left out. NaN when nothing varies."""
    if metric not in AGREEMENT_METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {', '.join(AGREEMENT_METRICS)}.")
    counts = np.asarray(counts, dtype=float)
    m = counts.sum(axis=1)
    counts, m = counts[m >= 2], m[m >= 2]
    if len(m) == 0:
        return float("nan")
    # 1. Coincidence matrix o[c, k] = sum_u (n_uc n_uk - [c == k] n_uc) / (m_u - 1).   (K, K)
    w = 1.0 / (m - 1)
    o = np.einsum("u,uc,uk->ck", w, counts, counts) - np.diag(w @ counts)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    # 2. Squared distance between values under the metric.   (K, K)
    v = np.arange(len(n_c), dtype=float)
    if metric == "nominal":
        delta = (v[:, None] != v[None, :]).astype(float)
    elif metric == "interval":
        delta = (v[:, None] - v[None, :]) ** 2
    else:  # ordinal: the marginal mass between c and k, minus half of each end
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(len(n_c)), np.arange(len(n_c)))
        hi = np.maximum.outer(np.arange(len(n_c)), np.arange(len(n_c)))
        between = cum[hi] - cum[lo] + n_c[lo]
        delta = (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    # 3. alpha = 1 - observed / expected disagreement.
    d_observed = (o * delta).sum()
    d_expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    if d_expected == 0:
        return float("nan")
    return float(1 - d_observed / d_expected)


def item_value_counts(votes: pd.DataFrame) -> tuple[np.ndarray, pd.Categorical]:
    """Per item (comparison + prompt + checkpoint + seed): counts of [B better, tie, A better],
    and each item's group. Choices are read from the A side's view, so agreement is about the
    images, not about which side of the screen they were on."""
    votes = ensure_prepared(votes)
    item, n_items = item_index(votes)
    counts = np.bincount(item * 3 + votes["outcome"].to_numpy() + 1, minlength=3 * n_items)
    group = votes["group"].array
    item_group = np.zeros(n_items, dtype=group.codes.dtype)
    item_group[item] = group.codes  # an item belongs to one comparison, so to one group
    return counts.reshape(-1, 3), pd.Categorical.from_codes(item_group, dtype=group.dtype)


def annotator_agreement(votes: pd.DataFrame, metric: str = "ordinal") -> pd.DataFrame:
    """Krippendorff's alpha on B better < tie < A better, over items judged at least twice;
    one row for all items, then one per group (hyperparameter)."""
    counts, item_group = item_value_counts(votes)
    judged = counts.sum(axis=1)
    multi = judged >= 2
    scopes = [("all", np.ones(len(counts), dtype=bool))]
    scopes += [(str(g), np.asarray(item_group == g)) for g in pd.unique(item_group)]
    rows = []
    for scope, mask in scopes:
        sel = mask & multi
        rows.append(
            {
                "scope": scope,
                "metric": metric,
                "items": int(sel.sum()),
                "votes": int(judged[sel].sum()),
                "alpha": krippendorff_alpha(counts[sel], metric),
            }
        )
    return pd.DataFrame(rows)
