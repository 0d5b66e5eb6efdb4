"""Confidence intervals for evaluation figures: percentile bootstrap over items, and a paired bootstrap
for tuned minus base on the same items (both resample the same item indices, so item difficulty cancels).

A bottom-layer module (numpy only): the evaluation suite and the safety guard's own measurements
(`safety.measure`, which the guard's build uses) both report figures with these intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

N_BOOT = 2000
SEED = 1234


def bootstrap_ci(values: Sequence[float], stat: Callable[[np.ndarray], float] = np.mean, *,
                 n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float, float]:
    """(point estimate, 2.5th percentile, 97.5th percentile)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.array([stat(x[i]) for i in idx])
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(stat(x)), float(lo), float(hi)


def paired_bootstrap(tuned: Sequence[float], base: Sequence[float], *, n_boot: int = N_BOOT,
                     seed: int = SEED) -> dict[str, float | list[float]]:
    """Mean difference tuned - base with a 95% CI and a two-sided bootstrap p-value."""
    t, b = np.asarray(tuned, dtype=float), np.asarray(base, dtype=float)
    if t.shape != b.shape or t.size == 0:
        raise ValueError("paired bootstrap needs two equally long, non-empty lists")
    d = t - b
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    p = 2 * min((boots <= 0).mean(), (boots >= 0).mean())
    return {"value": float(d.mean()), "ci95": [float(lo), float(hi)], "p_value": float(min(1.0, p))}
