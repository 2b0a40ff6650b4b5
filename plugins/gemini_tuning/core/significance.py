"""The paired significance tests of the promotion gate (:mod:`gemini_tuning.core.gate`): McNemar's exact test,
a seeded paired bootstrap, and the one-sided sign test of the pairwise judgements. Pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from gemini_tuning.core.gate_types import _is_int

__all__ = ["mcnemar_exact", "paired_bootstrap", "sign_test"]

_ZERO = 1e-12  # |difference| below this is a tie
_CHUNK = 256  # bootstrap resamples drawn per block (bounded memory; fixed so results never depend on it)


def mcnemar_exact(b: int, c: int, *, alternative: Literal["two-sided", "greater", "less"] = "two-sided") -> float:
    """Exact McNemar p-value: binomial test of ``b`` successes in ``b + c`` discordant pairs, p = 0.5.

    ``b`` = pairs the first model (challenger) got right and the second got wrong, ``c`` the reverse.
    ``alternative="greater"`` is the one-sided test of "first model better" (P[X >= b]); the gate uses it.
    No discordant pair -> 1.0 (no evidence either way).
    """
    if not (_is_int(b) and _is_int(c)) or b < 0 or c < 0:
        raise ValueError(f"b and c must be non-negative integers, got {b!r}, {c!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown alternative {alternative!r}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # lazy: scipy.stats is slow to import

    return float(min(1.0, binomtest(b, b + c, 0.5, alternative=alternative).pvalue))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int, seed: int,
                     confidence: float = 0.95) -> dict:
    """Paired bootstrap of mean(a - b): resample pairs with replacement, deterministic for a seed.

    Returns ``{"n", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "confidence", "p_value",
    "p_value_bootstrap", "p_floor", "n_nonzero", "resamples", "seed", "alternative"}`` where ``ci_*`` is the
    two-sided percentile interval at ``confidence`` and ``p_value`` is one-sided for H1: mean(a) > mean(b):
    ``p_value_bootstrap = (1 + #{resampled mean diff <= 0}) / (resamples + 1)``, floored at
    ``p_floor = 0.5 ** n_nonzero`` (the smallest p-value an exact sign-flip test on these pairs can reach).
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    if len(a) == 0:
        raise ValueError("paired_bootstrap needs at least one pair")
    if not _is_int(resamples) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
        raise ValueError("paired_bootstrap: scores must be finite")
    d = xa - xb
    n = len(d)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=float)
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        means[start:start + k] = d[idx].mean(axis=1)
    p_boot = (1 + int(np.count_nonzero(means <= _ZERO))) / (resamples + 1)
    n_nonzero = int(np.count_nonzero(np.abs(d) > _ZERO))
    p_floor = 0.5 ** n_nonzero
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {
        "n": n,
        "mean_a": float(xa.mean()),
        "mean_b": float(xb.mean()),
        "mean_diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "confidence": float(confidence),
        "p_value": float(min(1.0, max(p_boot, p_floor))),
        "p_value_bootstrap": float(p_boot),
        "p_floor": float(p_floor),
        "n_nonzero": n_nonzero,
        "resamples": resamples,
        "seed": seed,
        "alternative": "greater",
    }


def sign_test(wins: int, losses: int, p0: float = 0.5) -> float:
    """One-sided exact sign (binomial) test: P[X >= wins] for X ~ Bin(wins + losses, p0). No pair -> 1.0."""
    if not (_is_int(wins) and _is_int(losses)) or wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be non-negative integers, got {wins!r}, {losses!r}")
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0!r}")
    if wins + losses == 0:
        return 1.0
    from scipy.stats import binomtest  # lazy: scipy.stats is slow to import

    return float(min(1.0, binomtest(wins, wins + losses, p0, alternative="greater").pvalue))
