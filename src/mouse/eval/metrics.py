"""Learning-curve statistics: mean return per episode index with a 95% CI, and the normalised score.

Every array here is ``[R, E]`` float: one row per evaluation run (a held-out task under one env seed),
one column per episode index (episode 1 .. E of the in-context stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z_95 = 1.96  # two-sided 95% quantile of the standard normal


@dataclass(frozen=True)
class Curve:
    """Mean return per episode index with a 95% normal-approximation CI (all lists have length E)."""

    mean: list[float]
    ci95: list[float]  # half-width: 1.96 * sd / sqrt(n), sd with ddof=1 (0 when n == 1)
    n: int  # runs averaged per episode index (tasks x seeds)

    @property
    def lower(self) -> list[float]:
        return [m - c for m, c in zip(self.mean, self.ci95)]

    @property
    def upper(self) -> list[float]:
        return [m + c for m, c in zip(self.mean, self.ci95)]

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": self.ci95, "n": self.n}


def curve(returns: np.ndarray) -> Curve:
    """Mean over runs and 95% CI half-width ``1.96 * sd / sqrt(n)`` per episode index of ``returns [R, E]``."""
    returns = _check_returns(returns, "returns")
    n = returns.shape[0]
    mean = returns.mean(axis=0)
    sd = returns.std(axis=0, ddof=1) if n > 1 else np.zeros_like(mean)
    ci = Z_95 * sd / math.sqrt(n)
    return Curve(mean=[float(x) for x in mean], ci95=[float(x) for x in ci], n=n)


def normalized_score(model: np.ndarray, oracle: np.ndarray, random: np.ndarray) -> tuple[list, list]:
    """Normalised score ``(R - R_random) / (R_oracle - R_random)`` per episode index, and its 95% CI.

    ``R`` are the mean returns over runs (a ratio of means, the usual ICRL convention: 0 = random,
    1 = oracle). The CI half-width is the model's CI divided by ``R_oracle - R_random`` (baselines taken
    as exact). Where the oracle does not beat random (``R_oracle - R_random <= 1e-8``) the score is
    undefined and reported as NaN.
    """
    m, o, r = (
        _check_returns(x, name) for x, name in ((model, "model"), (oracle, "oracle"), (random, "random"))
    )
    if not (m.shape == o.shape == r.shape):
        raise ValueError(
            f"model, oracle and random returns must share one shape [runs, episodes], got {m.shape}, {o.shape}, {r.shape}"
        )
    gap = o.mean(axis=0) - r.mean(axis=0)
    ok = gap > 1e-8
    safe_gap = np.where(ok, gap, 1.0)
    score = np.where(ok, (m.mean(axis=0) - r.mean(axis=0)) / safe_gap, np.nan)
    ci = np.where(ok, np.asarray(curve(m).ci95) / safe_gap, np.nan)
    return [float(x) for x in score], [float(x) for x in ci]


def _check_returns(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} returns must have shape [runs >= 1, episodes >= 1], got {x.shape}")
    return x
