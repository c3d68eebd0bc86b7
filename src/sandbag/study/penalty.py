"""Claim 4's evidence: the penalized one-weight problem, its closed forms against a grid search (no torch).

loss(w) = a/2 (w - w0)^2, plus 1/2 lam w^2 (L2) or alpha |w| (L1). The figures draw it; the claim checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def l2_minimum(a: float, w0: float, lam: float) -> float:
    """argmin_w  a/2 (w - w0)^2 + lam/2 w^2  =  a w0 / (a + lam): shrinks toward 0, never reaches it."""
    return a * w0 / (a + lam)


def l1_minimum(a: float, w0: float, alpha: float) -> float:
    """argmin_w  a/2 (w - w0)^2 + alpha |w|  =  sign(w0) max(|w0| - alpha / a, 0): exactly 0 once alpha >= a|w0|."""
    return float(np.sign(w0) * max(a * abs(w0) - alpha, 0.0) / a)  # a|w0| - alpha: exactly 0 at the threshold


def grid(lo: float, hi: float, n: int) -> np.ndarray:
    """n evenly spaced points on [lo, hi], plus w = 0 exactly when it lies inside (where L1 puts its minimum)."""
    points = np.linspace(lo, hi, n)
    return np.union1d(points, [0.0]) if lo <= 0 <= hi else points


def numeric_minimum(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, n: int = 200001) -> float:
    """The grid argmin of a vectorized f on n points of [lo, hi] (0 included when inside): accurate to
    (hi - lo) / (n - 1)."""
    if not hi > lo or n < 2:
        raise ValueError(f"need lo < hi and n >= 2, got lo={lo}, hi={hi}, n={n}")
    points = grid(lo, hi, n)
    return float(points[int(np.argmin(f(points)))])


PENALTY_PROBLEM = {"lams": (0.5, 1, 2, 4), "alphas": (1, 2.5, 4.5, 6), "a": 1.0, "w0": 4.5, "n": 20001}


def penalty_span(w0: float) -> tuple[float, float]:
    """The w range the penalty problem is solved (and plotted) on."""
    span = max(abs(w0), 1.0)
    return min(0.0, w0) - 0.45 * span - 0.5, max(0.0, w0) + 0.45 * span + 0.5


def penalty_minima(lams=PENALTY_PROBLEM["lams"], alphas=PENALTY_PROBLEM["alphas"], a: float = 1.0, w0: float = 4.5,
                   n: int = 20001) -> dict[str, list[dict]]:
    """For loss a/2 (w - w0)^2 plus lam/2 w^2 (each lam) and plus alpha |w| (each alpha): the grid minimum next to
    the closed form. {"l2": [{"lam", "numeric_min", "closed_form"}...], "l1": [{"alpha", ...}...]}."""
    if not a > 0:
        raise ValueError(f"the loss curvature a must be > 0, got {a}")
    lo, hi = penalty_span(w0)

    def solve(term, value, closed, name):
        w_num = numeric_minimum(lambda v: a * (v - w0) ** 2 / 2 + term(v), lo, hi, n)
        return {name: float(value), "numeric_min": w_num, "closed_form": float(closed(a, w0, value))}

    return {"l2": [solve(lambda v, lam=lam: lam * v**2 / 2, lam, l2_minimum, "lam") for lam in lams],
            "l1": [solve(lambda v, al=al: al * np.abs(v), al, l1_minimum, "alpha") for al in alphas]}


def penalty_check(**problem) -> dict:
    """Claim 4's evidence: the largest |grid minimum - closed form| over the L2 and L1 problems (inf unless the L2
    minimum falls strictly as lambda grows and stays in (0, w0)), with the minima behind it."""
    p = {**PENALTY_PROBLEM, **problem}
    minima = penalty_minima(p["lams"], p["alphas"], p["a"], p["w0"], p["n"])
    errors = [abs(m["numeric_min"] - m["closed_form"]) for part in ("l2", "l1") for m in minima[part]]
    l2 = [m["numeric_min"] for m in minima["l2"]]
    falls = all(b < a for a, b in zip(l2, l2[1:], strict=False)) and all(0 < v < p["w0"] for v in l2)
    error = (max(errors) if errors else 0.0) if falls else math.inf
    return {"error": error, "falls": falls, "minima": minima}
