"""The decision board: per comparison (set) an e-value and a status, per group the article's
verdict with its stability and fragility, exactly as `docs/decision-rules.md` fixes them.

Pure functions over the vote interchange frame (raw or `tally.prepare_votes`d); numpy, pandas and
scipy only. The scheduler (`evaluation.scheduling`) calls `comparison_status` on live counts, so
the board and the allocation always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln, ndtri

from evaluation.tally import ensure_prepared, orient_votes, tally_votes

COMPARISON_STATUSES = ("decided", "equivalent", "capped", "open")
GROUP_STATUSES = ("settled", "open")
COMPARISON_COLUMNS = (
    "group",
    "comparison",
    "x_variant",
    "y_variant",
    "x_wins",
    "y_wins",
    "ties",
    "leader",
    "e_value",
    "status",
    "votes_needed",
)
GROUP_COLUMNS = ("group", "x", "y", "winner", "decided_by", "stability", "fragility", "status")
EQUIVALENCE_CONFIDENCE = 0.99  # the study looks after every vote (decision-rules.md)
# z of the 99 % interval (2.576), computed once: the scheduler checks statuses on every call
EQUIVALENCE_Z = float(ndtri(0.5 + EQUIVALENCE_CONFIDENCE / 2))
EQUIVALENCE_MIN_VOTES = 10  # decisive votes before `equivalent` can be called
NEEDED_MIN_VOTES = 6  # below this many decisive votes no estimate is given
NEEDED_MAX = 10_000  # estimates above this are reported as none
LOG_E_MAX = 690.0  # e-values are reported up to e^690 (~1e300): JSON has no infinity
STABLE_SHARE = 0.95  # a group is settled when its verdict holds in this share of resamples


@dataclass(frozen=True)
class DecisionSettings:
    """A study's decision settings."""

    alpha: float = 0.05  # error bound: decided when the e-value reaches 1 / alpha
    delta: float = 0.1  # equivalence margin around a win share of 1/2
    vote_cap: int | None = None  # live votes (ties included) after which a comparison is capped

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(
                f"alpha={self.alpha!r}; expected a number between 0 and 1 (e.g. 0.05)."
            )
        if not 0 <= self.delta < 0.5:
            raise ValueError(f"delta={self.delta!r}; expected a number in [0, 0.5) (e.g. 0.1).")
        if self.vote_cap is not None and self.vote_cap < 1:
            raise ValueError(f"vote_cap={self.vote_cap!r}; expected a positive integer or None.")


@dataclass(frozen=True)
class StudyState:
    """Comparisons no longer served (decided, equivalent or capped) and still open, and the
    estimated votes still needed (None when some open comparison has no estimate)."""

    settled: int
    open: int
    votes_needed: int | None


# ---------------------------------------------------------------------------------------------
# Per comparison


def log_e_value(n, k):
    """log E(n, k) = n log 2 + lgamma(k+1) + lgamma(n-k+1) - lgamma(n+2), element-wise; k may be
    fractional (the continuous form used for votes still needed)."""
    n = np.asarray(n, dtype=float)
    k = np.asarray(k, dtype=float)
    return n * np.log(2.0) + gammaln(k + 1) + gammaln(n - k + 1) - gammaln(n + 2)


def e_value(n: int, k: int) -> float:
    """The Bayes factor of "win share uniform on [0, 1]" against "win share 1/2" after k wins of
    n decisive votes (symmetric: E(n, k) = E(n, n - k))."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"n={n!r}, k={k!r}; expected 0 <= k <= n.")
    return float(np.exp(log_e_value(n, k)))


def _inside_margin(k, n, delta: float) -> np.ndarray:
    """The 99 % Wilson interval of k/n lies inside [0.5 - delta, 0.5 + delta].

    `evaluation.stats.wilson_interval`'s formula with z fixed (that function looks z up with
    scipy.stats on every call, ~1 ms, too slow for the scheduler's hot path).
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z2 = EQUIVALENCE_Z * EQUIVALENCE_Z
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = EQUIVALENCE_Z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - half >= 0.5 - delta) & (centre + half <= 0.5 + delta)


def comparison_status(
    x_wins, y_wins, ties, settings: DecisionSettings = DecisionSettings()
) -> np.ndarray:
    """Status per comparison ('decided', 'equivalent', 'capped', 'open'), element-wise over
    live counts; the one rule the board and the scheduler share."""
    x = np.atleast_1d(np.asarray(x_wins, dtype=np.int64))
    y = np.atleast_1d(np.asarray(y_wins, dtype=np.int64))
    t = np.atleast_1d(np.asarray(ties, dtype=np.int64))
    n = x + y
    k = np.maximum(x, y)
    decided = log_e_value(n, k) >= np.log(1.0 / settings.alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        equivalent = (n >= EQUIVALENCE_MIN_VOTES) & _inside_margin(k, n, settings.delta)
    capped = (
        (n + t >= settings.vote_cap) if settings.vote_cap is not None else np.zeros_like(decided)
    )
    return np.select(
        [decided, equivalent, capped], ["decided", "equivalent", "capped"], "open"
    ).astype(object)


def _first_true(block: np.ndarray) -> np.ndarray:
    """Column of the first True per row of a (C, M) mask, -1 where none."""
    found = block.any(axis=1)
    return np.where(found, block.argmax(axis=1), -1)


def votes_needed(x_wins, y_wins, ties, settings: DecisionSettings = DecisionSettings()):
    """Votes still needed per comparison if the leader's share k/n continues (decision-rules.md):
    the fewer of the paths to `decided` and to `equivalent`, divided by the decisive share and
    rounded up. Returns an Int64 array, <NA> when the comparison is not open, n < 6, neither path
    applies or the estimate exceeds 10,000."""
    x = np.atleast_1d(np.asarray(x_wins, dtype=np.int64))
    y = np.atleast_1d(np.asarray(y_wins, dtype=np.int64))
    t = np.atleast_1d(np.asarray(ties, dtype=np.int64))
    status = comparison_status(x, y, t, settings)
    result = pd.array(np.full(len(x), pd.NA), dtype="Int64")
    rows = np.flatnonzero((status == "open") & (x + y >= NEEDED_MIN_VOTES))
    if not len(rows):
        return result
    n = (x + y)[rows].astype(float)
    q = np.maximum(x, y)[rows] / n  # (C,)
    to_decide = q != 0.5
    to_equiv = np.abs(q - 0.5) < settings.delta
    log_threshold = np.log(1.0 / settings.alpha)
    best = np.full(len(rows), -1, dtype=np.int64)
    # Search m in growing blocks; most comparisons stop in the first one.
    start, size = 0, 64
    pending = to_decide | to_equiv
    while pending.any() and start <= NEEDED_MAX:
        m = np.arange(start, min(start + size, NEEDED_MAX + 1), dtype=float)  # (M,)
        idx = np.flatnonzero(pending)
        total = n[idx, None] + m[None, :]  # (C', M)
        share = q[idx, None]
        hit = np.zeros(total.shape, dtype=bool)
        hit |= to_decide[idx, None] & (log_e_value(total, share * total) >= log_threshold)
        hit |= (
            to_equiv[idx, None]
            & (total >= EQUIVALENCE_MIN_VOTES)
            & _inside_margin(share * total, total, settings.delta)
        )
        first = _first_true(hit)
        done = first >= 0
        best[idx[done]] = start + first[done]
        pending[idx[done]] = False
        start += len(m)
        size *= 4
    ok = best >= 0
    needed = np.ceil(best * (n + t[rows]) / n - 1e-9).astype(np.int64)
    ok &= needed <= NEEDED_MAX
    result[rows[ok]] = needed[ok]
    return result


# ---------------------------------------------------------------------------------------------
# Per group: fragility


def _sign(d: int) -> int:
    return (d > 0) - (d < 0)


def _fewest_removals(x_wins, y_wins, strict: bool) -> int | None:
    """Fewest x-side votes to remove so that the verdict is no longer x's: sets (sum of the
    sets' signs) below 0, or sets level and points x - y <= 0 (< 0 when `strict`). None when
    impossible.

    Only x-side removals can help (the condition is monotone in every set's x - y). Each set
    ends x, level or y; for each outcome the removals it allows form an interval [lo, hi]. A
    dynamic programme over the sets keeps, per sum of signs, the Pareto front of
    (sum of lo, sum of hi); removals beyond the lo's are free in signs and lower the points.
    """
    points = int(sum(x_wins) - sum(y_wins))
    fronts: dict[int, list[tuple[int, int]]] = {0: [(0, 0)]}
    for x, y in zip(x_wins, y_wins, strict=True):
        d = int(x - y)
        options = []  # (sign, lo, hi): removing a in [lo, hi] x votes leaves this sign
        if d >= 1:
            options.append((1, 0, d - 1))
        if d >= 0:
            options.append((0, d, d))
        if y >= 1:
            options.append((-1, max(0, d + 1), int(x)))
        nxt: dict[int, list[tuple[int, int]]] = {}
        for total, front in fronts.items():
            for sign, lo, hi in options:
                nxt.setdefault(total + sign, []).extend((a + lo, b + hi) for a, b in front)
        fronts = {s: _pareto(front) for s, front in nxt.items()}
    best = None
    need = points + 1 if strict else points  # removals for points x - y to reach < 0 / <= 0
    for total, front in fronts.items():
        for lo, hi in front:
            if total < 0:
                cost = lo
            elif total == 0 and hi >= need:
                cost = max(lo, need)
            else:
                continue
            best = cost if best is None else min(best, cost)
    return best


def _pareto(front: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep the (lo, hi) pairs not beaten by one with a lower-or-equal lo and higher-or-equal hi."""
    kept: list[tuple[int, int]] = []
    for lo, hi in sorted(set(front), key=lambda p: (p[0], -p[1])):
        if not kept or hi > kept[-1][1]:
            kept.append((lo, hi))
    return kept


def fragility(x_wins, y_wins) -> int:
    """The fewest votes whose removal changes the group's verdict (sets won, then points), from
    the sets' decisive counts. 0 when no decisive vote exists (any vote would change a draw)."""
    x_wins = [int(v) for v in x_wins]
    y_wins = [int(v) for v in y_wins]
    signs = sum(_sign(x - y) for x, y in zip(x_wins, y_wins, strict=True))
    points = sum(x_wins) - sum(y_wins)
    verdict = _sign(signs) if signs else _sign(points)
    if verdict > 0:
        result = _fewest_removals(x_wins, y_wins, strict=False)
    elif verdict < 0:
        result = _fewest_removals(y_wins, x_wins, strict=False)
    else:
        options = [
            _fewest_removals(x_wins, y_wins, strict=True),
            _fewest_removals(y_wins, x_wins, strict=True),
        ]
        options = [v for v in options if v is not None]
        result = min(options) if options else 0
    assert result is not None  # removing every decisive vote always gives a draw
    return int(result)


# ---------------------------------------------------------------------------------------------
# Per group: stability


def _verdicts(counts: np.ndarray) -> np.ndarray:
    """Verdict codes (+1 x, -1 y, 0 draw) from (..., S, 3) counts [y wins, ties, x wins]."""
    d = counts[..., 2] - counts[..., 0]
    sets = np.sign(d).sum(axis=-1)
    points = d.sum(axis=-1)
    return np.where(sets != 0, np.sign(sets), np.sign(points))


def bootstrap_stability(prompt_counts: np.ndarray, rounds: int, rng: np.random.Generator) -> float:
    """Share of prompt-bootstrap resamples whose verdict equals the observed one.

    prompt_counts: (P, S, 3) counts [y wins, ties, x wins] per prompt and set of one group.
    Each round draws multinomial prompt weights (P,) and takes the weighted counts.
    """
    p = prompt_counts.shape[0]
    observed = _verdicts(prompt_counts.sum(axis=0))
    weights = rng.multinomial(p, np.full(p, 1.0 / p), size=rounds)  # (B, P)
    resampled = (weights @ prompt_counts.reshape(p, -1)).reshape(rounds, *prompt_counts.shape[1:])
    return float((_verdicts(resampled) == observed).mean())


# ---------------------------------------------------------------------------------------------
# The board


@dataclass(frozen=True)
class DecisionBoard:
    """Per comparison and per group decisions; `seed` and `rounds` of the stability bootstrap."""

    comparisons: pd.DataFrame
    groups: pd.DataFrame
    settings: DecisionSettings
    seed: int
    rounds: int

    def summary(self) -> StudyState:
        """Comparisons settled (no longer served) / open and the study's votes still needed."""
        status = self.comparisons["status"]
        is_open = status == "open"
        needed = self.comparisons.loc[is_open, "votes_needed"]
        total = None if needed.isna().any() else int(needed.sum())
        return StudyState(
            settled=int((~is_open).sum()), open=int(is_open.sum()), votes_needed=total
        )

    def to_json(self) -> dict:
        """Exactly the object of `python -m evaluation decide --format json`."""
        comparisons = [
            {
                "group": str(r.group),
                "comparison": str(r.comparison),
                "x_variant": str(r.x_variant),
                "y_variant": str(r.y_variant),
                "x_wins": int(r.x_wins),
                "y_wins": int(r.y_wins),
                "ties": int(r.ties),
                "leader": r.leader if isinstance(r.leader, str) else None,
                "e_value": float(r.e_value),
                "status": str(r.status),
                "votes_needed": None if pd.isna(r.votes_needed) else int(r.votes_needed),
            }
            for r in self.comparisons.itertuples(index=False)
        ]
        groups = [
            {
                "group": str(r.group),
                "x": str(r.x),
                "y": str(r.y),
                "winner": str(r.winner),
                "stability": float(r.stability),
                "fragility": int(r.fragility),
                "status": str(r.status),
            }
            for r in self.groups.itertuples(index=False)
        ]
        return {"comparisons": comparisons, "groups": groups}


def decide(
    votes: pd.DataFrame,
    settings: DecisionSettings = DecisionSettings(),
    seed: int = 0,
    rounds: int = 1000,
) -> DecisionBoard:
    """The decision board of a vote frame (raw or prepared): sides and group names as the
    article's tally (`tally.tally_votes`), statuses as decision-rules.md, stability from
    `rounds` seeded bootstrap resamples of whole prompts within each group."""
    votes = ensure_prepared(votes)
    orient = orient_votes(votes)
    tally = tally_votes(votes)
    n_sets = len(orient.set_comparison)

    # 1. Per comparison: counts [y wins, ties, x wins], e-value, status, votes still needed
    counts = np.bincount(orient.set_code * 3 + orient.x_outcome + 1, minlength=3 * n_sets).reshape(
        n_sets, 3
    )
    y, t, x = counts[:, 0], counts[:, 1], counts[:, 2]
    status = comparison_status(x, y, t, settings)
    table_name = np.asarray(orient.names, dtype=object)
    comparisons = pd.DataFrame(
        {
            "group": table_name[orient.set_table] if n_sets else [],
            "comparison": orient.set_comparison,
            "x_variant": orient.set_x_variant,
            "y_variant": orient.set_y_variant,
            "x_wins": x,
            "y_wins": y,
            "ties": t,
            "leader": np.where(x > y, "x", np.where(y > x, "y", None)).astype(object),
            "e_value": np.exp(np.minimum(log_e_value(x + y, np.maximum(x, y)), LOG_E_MAX)),
            "status": status,
            "votes_needed": votes_needed(x, y, t, settings),
        },
        columns=list(COMPARISON_COLUMNS),
    )

    # 2. Per group: verdict (the tally's), stability (prompt bootstrap), fragility, status
    prompt = votes["prompt"].array.codes.astype(np.int64)
    n_prompts = len(votes["prompt"].array.categories)
    cell = (prompt * n_sets + orient.set_code) * 3 + orient.x_outcome + 1
    per_prompt = np.bincount(cell, minlength=n_prompts * n_sets * 3).reshape(n_prompts, n_sets, 3)
    rng = np.random.default_rng(seed)
    by_name = {g.group: g for g in tally.groups}
    rows = []
    for table, name in enumerate(orient.names):
        g = by_name.get(name)
        if g is None:
            continue
        sets = np.flatnonzero(orient.set_table == table)
        table_counts = per_prompt[:, sets, :]
        table_counts = table_counts[table_counts.sum(axis=(1, 2)) > 0]  # the group's prompts
        settled_sets = np.isin(status[sets], ("decided", "equivalent")).all()
        stability = bootstrap_stability(table_counts, rounds, rng)
        rows.append(
            {
                "group": name,
                "x": g.x,
                "y": g.y,
                "winner": g.winner,
                "decided_by": g.decided_by,
                "stability": stability,
                "fragility": fragility(x[sets], y[sets]),
                "status": "settled" if settled_sets and stability >= STABLE_SHARE else "open",
            }
        )
    groups = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    return DecisionBoard(
        comparisons=comparisons, groups=groups, settings=settings, seed=seed, rounds=rounds
    )
