"""Bradley-Terry leaderboard over all variants, with a seeded bootstrap over whole prompts.

Votes are first aggregated to per-prompt win counts (P, V, V); a bootstrap round re-weights the
prompts with multinomial counts and refits, all rounds at once (Newton's method on the concave
log-likelihood, vectorised over rounds). Raw rows are touched once. Ties count half a win each way.

Scores: `log_strength` is the natural-log Bradley-Terry strength, centred to mean 0 over the
variants (P(i beats j) = 1 / (1 + exp(s_j - s_i))); `elo` is the same on an Elo-like scale,
1000 + 400 * s / ln(10) (a 400-point gap = 10:1 odds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.tally import ensure_prepared

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / np.log(10.0)
LEADERBOARD_COLUMNS = (
    "votes",
    "wins",
    "ties",
    "log_strength",
    "low",
    "high",
    "elo",
    "elo_low",
    "elo_high",
)


@dataclass(frozen=True)
class PairCounts:
    """Wins per prompt: wins[p, i, j] = votes on prompt p where variant i beat j (ties half)."""

    variants: list[str]
    prompts: list[str]
    wins: np.ndarray  # (P, V, V) float64
    ties: np.ndarray  # (V,) ties per variant (each tie counted for both variants)


def aggregate_pairs(votes: pd.DataFrame) -> PairCounts:
    """Count (prompt, winner, loser) over the votes; variants are those that appear in a vote."""
    votes = ensure_prepared(votes)
    a = votes["variant_a"].array.codes.astype(np.int64)
    b = votes["variant_b"].array.codes.astype(np.int64)
    outcome = votes["outcome"].to_numpy()
    used = np.flatnonzero(np.bincount(np.concatenate([a, b]), minlength=1))
    remap = np.full(len(votes["variant_a"].array.categories), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    a, b = remap[a], remap[b]
    prompt_cat = votes["prompt"].array
    prompt, used_prompts = pd.factorize(prompt_cat.codes)
    prompts = prompt_cat.categories[used_prompts]
    v, p = len(used), len(prompts)
    # A decisive vote adds 1 to (prompt, winner, loser); a tie adds 1/2 each way.
    winner = np.where(outcome >= 0, a, b)
    loser = np.where(outcome >= 0, b, a)
    weight = np.where(outcome == 0, 0.5, 1.0)
    key = (prompt * v + winner) * v + loser
    wins = np.bincount(key, weights=weight, minlength=p * v * v)
    tie = outcome == 0
    wins += np.bincount(
        ((prompt * v + loser) * v + winner)[tie], weights=weight[tie], minlength=p * v * v
    )
    ties = np.bincount(a[tie], minlength=v) + np.bincount(b[tie], minlength=v)
    names = votes["variant_a"].array.categories[used]
    return PairCounts(
        variants=[str(x) for x in names],
        prompts=[str(x) for x in prompts],
        wins=wins.reshape(p, v, v),
        ties=ties,
    )


def _log_likelihood(theta: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    """Bradley-Terry log-likelihood plus the prior's virtual games, per leading index."""
    diff = theta[..., :, None] - theta[..., None, :]  # (..., V, V)
    fit = -(wins * np.logaddexp(0.0, -diff)).sum(axis=(-1, -2))
    virtual = -(np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum(axis=-1)
    return fit + prior * virtual


def fit_bradley_terry(
    wins: np.ndarray, prior: float = 0.01, tol: float = 1e-10, max_iter: int = 100
) -> np.ndarray:
    """Bradley-Terry log-strengths, mean 0, from wins (..., V, V); leading axes are fitted at once.

    Maximum likelihood by Newton's method with step halving (the log-likelihood is concave, so
    this converges in a handful of steps where the MM algorithm needs hundreds). `prior`: each
    variant also plays `prior` won and `prior` lost virtual games against a fixed opponent of
    strength 0, which keeps the fit finite for an unbeaten variant or a disconnected comparison
    graph and is negligible next to real counts.
    """
    wins = np.asarray(wins, dtype=float)
    if prior <= 0:
        raise ValueError(f"prior={prior}; expected > 0 (it keeps the fit finite).")
    games = wins + np.swapaxes(wins, -1, -2)  # (..., V, V) symmetric
    theta = np.zeros(wins.shape[:-1])  # (..., V)
    current = _log_likelihood(theta, wins, prior)
    eye = np.eye(theta.shape[-1], dtype=bool)
    for _ in range(max_iter):
        # 1. Gradient and Hessian of the log-likelihood.   (..., V) and (..., V, V)
        p = 1.0 / (1.0 + np.exp(theta[..., None, :] - theta[..., :, None]))  # P(i beats j)
        q = 1.0 / (1.0 + np.exp(-theta))  # P(i beats the virtual opponent)
        grad = (wins - games * p).sum(axis=-1) + prior * (1 - 2 * q)
        curv = games * p * (1 - p)
        hess = np.where(eye, 0.0, curv)
        diag = -curv.sum(axis=-1) - 2 * prior * q * (1 - q)
        hess = hess + eye * diag[..., None, :]
        # 2. Newton direction, then halve the step wherever it would lower the likelihood.
        step = np.linalg.solve(-hess, grad[..., None])[..., 0]
        size = np.ones(theta.shape[:-1])
        for _ in range(40):
            candidate = theta + size[..., None] * step
            value = _log_likelihood(candidate, wins, prior)
            worse = value < current - 1e-12 * np.abs(current)
            if not worse.any():
                break
            size = np.where(worse, size / 2, size)
        theta, current = candidate, value
        if np.abs(size[..., None] * step).max() < tol:
            break
    return theta - theta.mean(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Leaderboard:
    """Bradley-Terry scores with bootstrap intervals, best first; `seed` reproduces the intervals."""

    table: (
        pd.DataFrame
    )  # variant, votes, wins, ties, log_strength, low, high, elo, elo_low, elo_high
    rounds: int
    seed: int
    confidence: float
    resample_unit: str = "prompt"


def bootstrap_leaderboard(
    votes: pd.DataFrame,
    rounds: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    prior: float = 0.01,
) -> Leaderboard:
    """Fit Bradley-Terry to all votes; percentile intervals from `rounds` bootstrap samples of
    whole prompts (a prompt drawn k times counts all its votes k times).

    Scores are only comparable within a connected part of the comparison graph (a study's
    one-difference pairs connect all its variants; a frame filtered to one group may not).
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}; expected at least 1 bootstrap round.")
    pairs = aggregate_pairs(votes)
    p, v = len(pairs.prompts), len(pairs.variants)
    if v == 0:
        empty = pd.DataFrame(columns=["rank", "variant", *LEADERBOARD_COLUMNS])
        return Leaderboard(table=empty, rounds=rounds, seed=seed, confidence=confidence)
    # 1. Point estimate on all votes.
    wins = pairs.wins.sum(axis=0)  # (V, V)
    score = fit_bradley_terry(wins, prior)
    # 2. Bootstrap: multinomial prompt weights, one matrix product, one batched fit.
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(p, np.full(p, 1.0 / p), size=rounds).astype(float)  # (R, P)
    boot_wins = (weights @ pairs.wins.reshape(p, v * v)).reshape(rounds, v, v)
    boot = fit_bradley_terry(boot_wins, prior)  # (R, V)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail], axis=0)
    decisive = wins.sum(axis=1) - 0.5 * pairs.ties  # ties were added as half wins
    table = pd.DataFrame(
        {
            "variant": pairs.variants,
            "votes": (wins.sum(axis=1) + wins.sum(axis=0)).round().astype(np.int64),
            "wins": decisive.round().astype(np.int64),
            "ties": pairs.ties.astype(np.int64),
            "log_strength": score,
            "low": low,
            "high": high,
            "elo": ELO_BASE + ELO_SCALE * score,
            "elo_low": ELO_BASE + ELO_SCALE * low,
            "elo_high": ELO_BASE + ELO_SCALE * high,
        }
    )
    table = table.sort_values("log_strength", ascending=False, kind="stable")
    table.insert(0, "rank", np.arange(1, v + 1))
    return Leaderboard(
        table=table.reset_index(drop=True), rounds=rounds, seed=seed, confidence=confidence
    )
