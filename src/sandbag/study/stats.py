"""The statistics behind every verdict: the paired rule, Holm's adjustment, power, one mean/std convention.

The verdict rule: for a comparison of arm A with arm B on a metric, take the paired difference d_i = A_i - B_i over
the seeds both arms ran (same seeds), its mean and a 95% confidence interval from Student's t with n - 1 degrees of
freedom. A part is

- **supported** if the interval lies on the claimed side of zero ("greater", "less"), above -margin ("noninferior",
  at least as good up to a stated margin) or inside +-margin ("equivalent");
- **contradicted** if it lies on the other side (for "equivalent": wholly outside +-margin);
- **negligible** ("no practical difference") if neither, and the interval lies inside +-the comparison's smallest
  effect of interest (the study's ``smallest_effect`` for its metric, e.g. 0.3 accuracy points);
- **inconclusive** otherwise: a larger study could still move it; `power` says how much larger;
- **not testable** when the metric sits at the same bound in both arms (clean training accuracy 1.0 everywhere, say,
  or each arm's mean within the smallest effect of interest of 1.0): no difference that matters could show, so the
  part is neither decided nor counted, and stays out of Holm's families (`claims.at_bound`).

Each verdict has the p-value of its own test (zero difference, the non-inferiority margin, or both equivalence
bounds), two-sided so that p < 0.05 exactly when the interval decides; `holm` adjusts them over a family of parts.
A claim's verdict is its parts' common verdict, or mixed (`combine`).

Means and standard deviations shown anywhere (tables, figure bands) use `mean_std`: the sample std, ddof 1.
"""

from __future__ import annotations

import math

import numpy as np

SUPPORTED, CONTRADICTED, INCONCLUSIVE, MIXED = "supported", "contradicted", "inconclusive", "mixed"
NEGLIGIBLE = "negligible"
NOT_TESTABLE = "not testable"  # the metric sits at its bound (accuracy 1.0, say) in both arms: no room to measure
DECIDED = (SUPPORTED, CONTRADICTED, NEGLIGIBLE)
ALPHA = 0.05  # two-sided: the 95% interval
POWER = 0.8  # the power a study should have to detect an effect
MAX_SEEDS = 10_000  # seeds_needed beyond this is reported as more


def paired_verdict(diffs: list[float], direction: str, margin: float = 0.0, smallest: float | None = None) -> dict:
    """Mean, 95% t-interval, verdict and p-value for paired differences claimed to be > 0 ("greater"), < 0
    ("less"), not below -margin ("noninferior") or within +-margin ("equivalent"); `smallest`: the smallest effect
    of interest (negligible when the interval lies inside +-smallest and nothing else is decided). Inconclusive
    results carry their `power`."""
    values = [d for d in diffs if d is not None and math.isfinite(d)]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "verdict": INCONCLUSIVE,
                "p": math.nan}
    from scipy import stats  # here, not at the top: scipy takes ~0.5 s to import, and `sandbag train` needs none

    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.inf
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * se if n > 1 else math.inf
    low, high = mean - half, mean + half
    null = -margin if direction == "noninferior" else 0.0
    if direction == "equivalent":
        verdict = (SUPPORTED if -margin < low and high < margin else
                   CONTRADICTED if low > margin or high < -margin else INCONCLUSIVE)
        p = _p_equivalence(mean, se, n, margin)
        out = {"n": n, "mean": mean, "ci_low": low, "ci_high": high, "verdict": verdict, "p": p}
        if verdict == INCONCLUSIVE:  # how many seeds would put the interval inside the bounds
            out["power"] = power(n, sd, margin - abs(mean))
        return out
    if direction == "greater":
        verdict = SUPPORTED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE
    elif direction == "less":
        verdict = SUPPORTED if high < 0 else CONTRADICTED if low > 0 else INCONCLUSIVE
    elif direction == "noninferior":
        verdict = SUPPORTED if low > -margin else CONTRADICTED if high < -margin else INCONCLUSIVE
    else:
        raise ValueError(f"unknown direction {direction!r}")
    p = _p_two_sided(mean - null, se, n)
    if verdict == INCONCLUSIVE and smallest and -smallest < low and high < smallest:
        verdict = NEGLIGIBLE
        p = _p_equivalence(mean, se, n, smallest)
    out = {"n": n, "mean": mean, "ci_low": low, "ci_high": high, "verdict": verdict, "p": p}
    if verdict == INCONCLUSIVE:
        out["power"] = power(n, sd, mean - null, smallest, null)
    return out


def _p_two_sided(delta: float, se: float, n: int) -> float:
    """p of H0: difference = 0 (delta = mean - null), two-sided t with n - 1 degrees of freedom."""
    from scipy import stats

    if n < 2:
        return 1.0
    if se == 0:
        return 0.0 if delta != 0 else 1.0
    return float(2 * stats.t.sf(abs(delta) / se, n - 1))


def _p_equivalence(mean: float, se: float, n: int, bound: float) -> float:
    """Two one-sided tests (mean > -bound and mean < +bound), doubled: p < 0.05 exactly when the 95% interval lies
    inside +-bound."""
    from scipy import stats

    if se == 0:
        return 0.0 if abs(mean) < bound else 1.0
    one_sided = max(stats.t.sf((mean + bound) / se, n - 1), stats.t.sf((bound - mean) / se, n - 1))
    return float(min(1.0, 2 * one_sided))


def detection_power(n: int, sd: float, effect: float) -> float:
    """Probability that n paired seeds with spread `sd` decide (95% interval excludes 0) for a true mean difference
    `effect`: the noncentral t distribution."""
    from scipy import stats

    if n < 2 or not sd > 0:
        return math.nan
    df, crit = n - 1, stats.t.ppf(1 - ALPHA / 2, n - 1)
    nc = effect / (sd / math.sqrt(n))
    value = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    return value if math.isfinite(value) else 1.0  # scipy gives nan far out in the tail, where the power is 1


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)  # decision_power's quadrature over the sample spread


def decision_power(n: int, sd: float, mean: float, smallest: float | None = None, null: float = 0.0) -> float:
    """Probability that n paired seeds decide a part whose differences are normal with this mean and sd: the 95%
    interval excludes `null` (supported or contradicted), or lies inside +-`smallest` (negligible; not counted
    without a smallest effect of interest).

    For a sample standard deviation s the interval is mean-hat +- h, h = t * s / sqrt(n), and mean-hat is normal
    around `mean`; it decides when mean-hat lies outside [null - h, null + h] or inside the negligible zone
    (-(smallest - h), smallest - h). The two events' union is the first plus the part of the zone inside the
    first's complement. s is integrated out over its chi distribution (Gauss-Legendre in its quantiles)."""
    from scipy import special, stats

    if n < 2 or not sd > 0:
        return math.nan
    se = sd / math.sqrt(n)
    quantiles = (_NODES + 1) / 2  # Gauss-Legendre on (0, 1)
    s = sd * np.sqrt(stats.chi2.ppf(quantiles, n - 1) / (n - 1))
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * s / math.sqrt(n)

    def below(x):  # P(mean-hat < x)
        return special.ndtr((x - mean) / se)

    excludes = below(null - half) + 1 - below(null + half)
    zone = np.maximum(0.0, (smallest or 0.0) - half)
    low, high = np.maximum(-zone, null - half), np.minimum(zone, null + half)
    inside = np.where(high > low, below(high) - below(low), 0.0)
    return float(np.clip(np.sum(_WEIGHTS / 2 * (excludes + inside)), 0.0, 1.0))


def power(n: int, sd: float, observed: float, smallest: float | None = None, null: float = 0.0) -> dict:
    """For an inconclusive part: the smallest difference these n seeds detect with 80% power (`detectable`), and
    the seeds that would decide the part with 80% probability were the observed difference from `null`
    (`observed`) and spread the truth (`seeds_needed`; None when it cannot be said: fewer than 2 seeds, no spread,
    or no difference and no smallest effect). With a smallest effect of interest, deciding includes showing the
    difference negligible, which a small observed difference reaches long before detecting it
    (`decide_by_negligible` says that this was counted)."""
    from scipy import optimize

    out = {"detectable": None, "seeds_needed": None, "observed": observed}
    if n < 2 or not sd > 0 or not math.isfinite(sd):
        return out
    high = sd
    while detection_power(n, sd, high) < POWER:
        high *= 2
    out["detectable"] = float(optimize.brentq(lambda d: detection_power(n, sd, d) - POWER, 0.0, high,
                                              xtol=1e-12 * sd))
    if smallest and math.isfinite(observed):
        out["decide_by_negligible"] = True
        out["seeds_needed"] = next((m for m in _seed_counts()
                                    if decision_power(m, sd, observed + null, smallest, null) >= POWER), None)
    elif observed and math.isfinite(observed):
        out["seeds_needed"] = next((m for m in _seed_counts() if detection_power(m, sd, abs(observed)) >= POWER),
                                   None)
    return out


def _seed_counts():
    m = 2
    while m <= MAX_SEEDS:
        yield m
        m += 1 if m < 100 else max(1, m // 20)


DIRECTIONS = ("greater", "less", "noninferior", "equivalent")
NEEDS_MARGIN = ("noninferior", "equivalent")


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; nan for fewer than two values): the one convention of every
    table and figure band."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan
    mean = sum(v) / len(v)
    return mean, (math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else math.nan)


def standard_error(values) -> float:
    """The standard error of the mean (ddof 1; nan for fewer than two values)."""
    v = [x for x in values if x is not None]
    return mean_std(v)[1] / math.sqrt(len(v)) if len(v) > 1 else math.nan


def probability_of_improvement(diffs: list[float]) -> dict:
    """P(A > B) over paired seeds: the share of seeds whose difference A - B is above zero (a tie counts half), with
    its 95% Wilson score interval (Bouthillier et al. 2021 and rliable report it unpaired; here each seed is a
    pair). {"p": share, "low": ..., "high": ..., "n": seeds}; nan without seeds."""
    values = [d for d in diffs if d is not None and math.isfinite(d)]
    n = len(values)
    if n == 0:
        return {"p": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    share = (sum(d > 0 for d in values) + 0.5 * sum(d == 0 for d in values)) / n
    z = 1.959963984540054  # the standard normal's 97.5% point
    center = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return {"p": share, "low": max(0.0, center - half), "high": min(1.0, center + half), "n": n}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i + 1), made monotone, capped at 1 (nan stays
    nan and does not count)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and math.isfinite(p))
    m = len(order)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its parts': their common verdict, mixed when decided parts differ (or when parts
    point both ways), else inconclusive. Parts that are not testable do not count (all of them: not testable)."""
    if verdicts and all(v == NOT_TESTABLE for v in verdicts):
        return NOT_TESTABLE
    verdicts = [v for v in verdicts if v != NOT_TESTABLE]
    if verdicts and len(set(verdicts)) == 1:
        return verdicts[0]
    if (SUPPORTED in verdicts and CONTRADICTED in verdicts) or (verdicts and all(v in DECIDED for v in verdicts)):
        return MIXED
    return INCONCLUSIVE


def check_verdict(values: list[float], tolerance: float) -> dict:
    worst = max(values) if values else math.nan
    verdict = INCONCLUSIVE if not values else SUPPORTED if worst < tolerance else CONTRADICTED
    return {"n": len(values), "mean": worst, "ci_low": math.nan, "ci_high": math.nan, "verdict": verdict,
            "tolerance": tolerance}
