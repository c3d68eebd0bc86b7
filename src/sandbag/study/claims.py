"""The claims a study tests, each an experiment, a rule and a verdict computed from the results.

The verdict rule: for a comparison of arm A with arm B on a metric, take the paired difference d_i = A_i - B_i over
the seeds both arms ran (same seeds), its mean and a 95% confidence interval from Student's t with n - 1 degrees of
freedom. A part is

- **supported** if the interval lies on the claimed side of zero,
- **contradicted** if it lies on the other side,
- **negligible** ("no practical difference") if neither, and the interval lies inside +-the comparison's smallest
  effect of interest (the study's ``smallest_effect`` for its metric, e.g. 0.3 accuracy points),
- **inconclusive** otherwise: a larger study could still move it; `power` says how much larger.

"At least as good" claims (non-inferiority) use a stated margin instead of zero. Each verdict has the p-value of its
own test (zero difference, the non-inferiority margin, or both equivalence bounds), two-sided so that p < 0.05
exactly when the interval decides; `holm` adjusts them over every paired part of every claim (per data set; the
parts that read machine timings form a family of their own, so that the others do not vary with the machine).
A claim is **decided** when every part is supported, contradicted or negligible (or a deterministic check passed or
failed); its verdict is the parts' common verdict, or mixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .i18n import translator

SUPPORTED, CONTRADICTED, INCONCLUSIVE, MIXED = "supported", "contradicted", "inconclusive", "mixed"
NEGLIGIBLE = "negligible"
DECIDED = (SUPPORTED, CONTRADICTED, NEGLIGIBLE)
ALPHA = 0.05  # two-sided: the 95% interval
POWER = 0.8  # the power a study should have to detect an effect
MAX_SEEDS = 10_000  # seeds_needed beyond this is reported as more


def paired_verdict(diffs: list[float], direction: str, margin: float = 0.0, smallest: float | None = None) -> dict:
    """Mean, 95% t-interval, verdict and p-value for paired differences claimed to be > 0 ("greater"), < 0
    ("less"), or not below -margin ("noninferior"); `smallest`: the smallest effect of interest (negligible when
    the interval lies inside +-smallest and nothing else is decided). Inconclusive results carry their `power`."""
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
        out["power"] = power(n, sd, mean - null)
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


def power(n: int, sd: float, observed: float) -> dict:
    """For an inconclusive part: the smallest difference these n seeds detect with 80% power (`detectable`), and
    the seeds that would detect the observed difference with 80% power (`seeds_needed`; None when it cannot be
    said: fewer than 2 seeds, no spread, or no difference)."""
    from scipy import optimize

    if n < 2 or not sd > 0 or not math.isfinite(sd):
        return {"detectable": None, "seeds_needed": None, "observed": observed}
    high = sd
    while detection_power(n, sd, high) < POWER:
        high *= 2
    detectable = optimize.brentq(lambda d: detection_power(n, sd, d) - POWER, 0.0, high, xtol=1e-12 * sd)
    needed = None
    if observed and math.isfinite(observed):
        needed = next((m for m in _seed_counts() if detection_power(m, sd, abs(observed)) >= POWER), None)
    return {"detectable": float(detectable), "seeds_needed": needed, "observed": observed}


def _seed_counts():
    m = 2
    while m <= MAX_SEEDS:
        yield m
        m += 1 if m < 100 else max(1, m // 20)


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
    point both ways), else inconclusive."""
    if verdicts and len(set(verdicts)) == 1:
        return verdicts[0]
    if (SUPPORTED in verdicts and CONTRADICTED in verdicts) or (verdicts and all(v in DECIDED for v in verdicts)):
        return MIXED
    return INCONCLUSIVE


# ----------------------------------------------------------------------------------------------------------------
# Parts of claims: how per-seed differences are formed


@dataclass(frozen=True)
class Compare:
    """metric(arm A) - metric(arm B), paired by seed (or A/B - 1 with ratio=True)."""

    label: str
    metric: str
    a: tuple[str, str]  # (group, arm)
    b: tuple[str, str]
    direction: str
    margin: float = 0.0
    ratio: bool = False
    timed: bool = False  # read from the timing phase (timing.json) where the study has one

    def diffs(self, table: dict, data: str) -> dict[int, float]:
        a, b = table.get((data, *self.a), {}), table.get((data, *self.b), {})
        out = {}
        for seed in sorted(set(a) & set(b)):
            x, y = a[seed].get(self.metric), b[seed].get(self.metric)
            if x is None or y is None:
                continue
            out[seed] = (x / y - 1) if self.ratio else (x - y)
        return out


@dataclass(frozen=True)
class DiffOfDiffs:
    """(metric(A1) - metric(B1)) - (metric(A2) - metric(B2)) per seed: an effect at one setting vs another."""

    label: str
    metric: str
    first: tuple[tuple[str, str], tuple[str, str]]
    second: tuple[tuple[str, str], tuple[str, str]]
    direction: str
    margin: float = 0.0

    def diffs(self, table: dict, data: str) -> dict[int, float]:
        one = Compare("", self.metric, *self.first, "greater").diffs(table, data)
        two = Compare("", self.metric, *self.second, "greater").diffs(table, data)
        return {s: one[s] - two[s] for s in sorted(set(one) & set(two))}


@dataclass(frozen=True)
class Probe:
    """A per-seed value the probe step measured on a trained model (`field` of the run's probes.json), claimed
    > 0 or < 0; with `b`, the paired difference probe(a) - probe(b)."""

    label: str
    key: str  # its name in analysis.json
    field: str  # a key of probes.json
    a: tuple[str, str]
    direction: str
    b: tuple[str, str] | None = None
    margin: float = 0.0

    def diffs(self, table: dict, data: str) -> dict[int, float]:
        a, b = _probed(table, data, self.a, self.field), _probed(table, data, self.b, self.field)
        if self.b is None:
            return a
        return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


@dataclass(frozen=True)
class Check:
    """A deterministic check with a tolerance (no seeds to average): the worst value of probes.json's `field`
    over the runs of arm `a` must be < tolerance."""

    label: str
    key: str
    field: str
    a: tuple[str, str]
    tolerance: float

    def values(self, table: dict, data: str) -> dict[int, float]:
        return _probed(table, data, self.a, self.field)

    def evaluate(self, table: dict, data: str) -> dict:
        return check_verdict(list(self.values(table, data).values()), self.tolerance)


@dataclass(frozen=True)
class ClosedForm:
    """Claim 4: the minimum of a penalized one-weight quadratic, found on a grid, against its closed form
    (`penalty_check`); must agree within `tolerance`, and the L2 minimum must fall toward 0 as lambda grows."""

    label: str
    key: str
    tolerance: float

    def values(self, table: dict, data: str) -> dict[int, float]:
        return {0: penalty_check()["error"]}

    def evaluate(self, table: dict, data: str) -> dict:
        return check_verdict(list(self.values(table, data).values()), self.tolerance)


def check_verdict(values: list[float], tolerance: float) -> dict:
    worst = max(values) if values else math.nan
    verdict = INCONCLUSIVE if not values else SUPPORTED if worst < tolerance else CONTRADICTED
    return {"n": len(values), "mean": worst, "ci_low": math.nan, "ci_high": math.nan, "verdict": verdict,
            "tolerance": tolerance}


def _probed(table: dict, data: str, arm: tuple[str, str] | None, name: str) -> dict[int, float]:
    if arm is None:
        return {}
    out = {}
    for seed, row in table.get((data, *arm), {}).items():
        value = (row.get("probes") or {}).get(name)
        if value is not None:
            out[seed] = value
    return out


# ----------------------------------------------------------------------------------------------------------------
# Claim 4's evidence: closed forms of the penalized one-weight problem against a grid search


def l2_minimum(a: float, w0: float, lam: float) -> float:
    """argmin_w  a/2 (w - w0)^2 + lam/2 w^2  =  a w0 / (a + lam): shrinks toward 0, never reaches it."""
    return a * w0 / (a + lam)


def l1_minimum(a: float, w0: float, alpha: float) -> float:
    """argmin_w  a/2 (w - w0)^2 + alpha |w|  =  sign(w0) max(|w0| - alpha / a, 0): exactly 0 once alpha >= a|w0|."""
    return float(np.sign(w0) * max(abs(w0) - alpha / a, 0.0))


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


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    parts: tuple
    figure: str | None = None
    note: str = ""


H, E, B = "headline", "extra", "batch"


def batch_arm(arms: list[dict], base: str, b: int, ref: int) -> tuple[str, str]:
    """The arm that runs `base` (e.g. none, bn) at batch size b: the headline arm at the reference batch size,
    else the batch group's arm for b (named as the plan names it)."""
    if b == ref:
        return (H, base)
    found = next((a for a in arms if a["group"] == B and a.get("base") == base and a["batch_size"] == b), None)
    return (B, found["arm"]) if found else (B, f"{base}-b{b}")


def headline_techniques(arms: list[dict]) -> list[str]:
    """The headline arms compared with none (every technique, in the plan's order)."""
    return [a["arm"] for a in arms if a["group"] == H and a["arm"] != "none"]


def arms_from_rows(rows: list[dict], cfg: dict) -> list[dict]:
    """The arms found in a results table: the fallback for a study.json written before it recorded its arms."""
    seen: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["group"], r["arm"])
        if key not in seen:
            base = r["arm"].rsplit("-b", 1)[0] if r["group"] == B else r["arm"]
            seen[key] = {"group": r["group"], "arm": r["arm"], "technique": r["technique"],
                         "batch_size": r.get("batch_size") or cfg["batch_size"], "base": base, "figures": []}
    order = {g: i for i, g in enumerate(("sweep", H, E, B))}
    return sorted(seen.values(), key=lambda a: order.get(a["group"], len(order)))


def arms_named(claim: Claim) -> set[tuple[str, str]]:
    """Every (group, arm) a claim's parts read."""
    out = set()
    for part in claim.parts:
        if isinstance(part, DiffOfDiffs):
            out |= {*part.first, *part.second}
        else:
            out |= {x for x in (getattr(part, "a", None), getattr(part, "b", None)) if x is not None}
    return out


def claims(cfg: dict, arms: list[dict], lang: str = "en") -> list[Claim]:
    """The fifteen claims, in terms of the arms a study runs (cfg: the study config as a dict; arms: the plan's
    expanded arms, `sandbag.study.plan.planned_arms`, as study.json records them)."""
    small, ref, large = min(cfg["batch_sizes"]), cfg["batch_size"], max(cfg["batch_sizes"])
    tr = translator(lang)

    def batch(base: str, b: int) -> tuple[str, str]:
        return batch_arm(arms, base, b, ref)

    techniques = headline_techniques(arms)
    trade = tuple(
        part
        for t in techniques
        for part in (
            Compare(tr("{tech}: clean train accuracy lower", tech=t), "train_acc", (H, t), (H, "none"), "less"),
            Compare(tr("{tech}: test accuracy higher", tech=t), "test_acc", (H, t), (H, "none"), "greater"),
        )
    )
    speed = [Compare(tr("epoch at batch {a} slower than at {b}", a=ref, b=large), "seconds_per_epoch",
                     batch("none", ref), batch("none", large), "greater", timed=True)]
    if small < ref:
        speed.insert(0, Compare(tr("epoch at batch {a} slower than at {b}", a=small, b=ref), "seconds_per_epoch",
                                batch("none", small), batch("none", ref), "greater", timed=True))
    return [
        Claim(1, tr("Regularization trades training fit for evaluation performance."), trade, "learning_curves.png"),
        Claim(2, tr("L2 keeps weights small and narrows the train-test gap."), (
            Compare(tr("weight norm lower with L2"), "weight_l2", (H, "l2"), (H, "none"), "less"),
            Compare(tr("gap narrower with L2"), "gap", (H, "l2"), (H, "none"), "less"),
        ), "validation_curves.png"),
        Claim(3, tr("L2 works better with biases left out than with them included."), (
            Compare(tr("test accuracy: biases excluded minus included"), "test_acc", (H, "l2"), (E, "l2-bias"),
                    "greater"),
        )),
        Claim(4, tr("Adding 1/2*lambda*w^2 moves the loss minimum toward zero."), (
            ClosedForm(tr("|numeric minimum - closed form| over lambdas (and the minimum falls as lambda grows)"),
                       "penalty_minimum_error", 1e-3),
        ), "penalty.png"),
        Claim(5, tr("L1 yields many weights at or near zero, far more than L2; with the proximal option exactly "
                    "zero."), (
            Compare(tr("fraction |w| < 1e-3: L1 minus L2"), "frac_small", (H, "l1"), (H, "l2"), "greater"),
            Compare(tr("fraction exactly 0: proximal L1 minus plain L1"), "frac_zero", (E, "l1-prox"), (H, "l1"),
                    "greater"),
        ), "weight_histograms.png"),
        Claim(6, tr("Dropout narrows the train-test gap."), (
            Compare(tr("gap: dropout minus none"), "gap", (H, "dropout"), (H, "none"), "less"),
        ), "learning_curves.png"),
        Claim(7, tr("Dropout slows learning and does not cut compute per epoch."), (
            Compare(tr("epochs to reach train accuracy {target}: dropout minus none", target=cfg["learn_target"]),
                    "epochs_to_target", (H, "dropout"), (H, "none"), "greater"),
            Compare(tr("seconds per epoch: dropout / none - 1 (not below -3%)"), "seconds_per_epoch",
                    (H, "dropout"), (H, "none"), "noninferior", margin=0.03, ratio=True, timed=True),
        ), "learning_curves.png"),
        Claim(8, tr("Dropout belongs to training only: left on at evaluation it lowers accuracy and predictions "
                    "vary."), (
            Probe(tr("test accuracy: evaluation mode minus dropout left on"), "dropout_accuracy_drop",
                  "dropout_accuracy_drop", (H, "dropout"), "greater"),
            Probe(tr("fraction of predictions that change between two passes with dropout on"),
                  "dropout_disagreement", "dropout_disagreement", (H, "dropout"), "greater"),
        ), "dropout.png"),
        Claim(9, tr("Batch normalization gives each feature mean 0 and std 1 over the mini-batch before scale and "
              "shift."), (
            Check(tr("max |mean| of normalized features (before scale/shift), trained BN models"),
                  "bn_z_mean_absmax", "bn_z_mean_absmax", (H, "bn"), 1e-3),
            Check(tr("max |std - sqrt(var/(var+eps))| of normalized features (std 1 up to BN's eps)"),
                  "bn_z_std_eps_absdev_max", "bn_z_std_eps_absdev_max", (H, "bn"), 1e-3),
        ), "bn.png"),
        Claim(10, tr("BN's batch statistics act as noise: a sample's output changes with its batch companions."), (
            Probe(tr("std of a sample's class probabilities across companion batches: BN model minus no-BN model"),
                  "bn_companion_noise_excess", "companion_prob_std_mean", (H, "bn"), "greater", b=(H, "none")),
        )),
        Claim(11, tr("Very small mini-batches make BN's effect extreme (batch {small} vs {ref}).", small=small,
                     ref=ref), (
            DiffOfDiffs(tr("test accuracy effect of BN (BN minus none) at batch {small} minus at batch {ref}",
                           small=small, ref=ref),
                        "test_acc", (batch("bn", small), batch("none", small)),
                        (batch("bn", ref), batch("none", ref)), "less"),
        ), "batch_size.png"),
        Claim(12, tr("Larger mini-batches make an epoch faster."), tuple(speed), "batch_size.png"),
        Claim(13, tr("BN beats dropout on evaluation performance."), (
            Compare(tr("test accuracy: BN minus dropout"), "test_acc", (H, "bn"), (H, "dropout"), "greater"),
        ), "headline.png"),
        Claim(14, tr("BN placed before the activation does at least as well as after it."), (
            Compare(tr("test accuracy: BN before minus BN after (not below -0.5 points)"), "test_acc", (H, "bn"),
                    (E, "bn-post"), "noninferior", margin=0.005),
        )),
        Claim(15, tr("Noise injection narrows the train-test gap."), (
            Compare(tr("gap: noise minus none"), "gap", (H, "noise"), (H, "none"), "less"),
        ), "learning_curves.png"),
    ]


def localize(verdicts: list[dict], cfg: dict, arms: list[dict], lang: str) -> list[dict]:
    """`verdicts` (English, as verdicts.json holds them) with each claim's text and each part's label in `lang`:
    the same claims built in both languages name the same parts in the same order."""
    if lang == "en":
        return verdicts
    words = {}
    for en, other in zip(claims(cfg, arms, "en"), claims(cfg, arms, lang), strict=True):
        words[en.text] = other.text
        words.update((a.label, b.label) for a, b in zip(en.parts, other.parts, strict=True))
    return [{**v, "text": words.get(v["text"], v["text"]),
             "data": {d: {**r, "parts": [{**p, "label": words.get(p["label"], p["label"])} for p in r["parts"]]}
                      for d, r in v["data"].items()}} for v in verdicts]


def results_table(rows: list[dict]) -> dict:
    """{(data, group, arm): {seed: row}} over finished runs (a row may carry its run's probes under "probes")."""
    table: dict = {}
    for row in rows:
        if row.get("status") == "finished":
            table.setdefault((row["data"], row["group"], row["arm"]), {})[int(row["seed"])] = row
    return table


def evaluate_claims(cfg: dict, rows: list[dict], arms: list[dict] | None = None,
                    timing: list[dict] | None = None) -> list[dict]:
    """Every claim's verdict per data set, with the numbers behind each part, whether it is decided, and whether
    each decided paired part survives Holm's correction over all paired parts of all claims (per data set).
    `rows`: result rows, each with its run's probes.json under "probes" where the claims need it; `arms`: the
    plan's arms (default: those in rows); `timing`: the timing phase's rows (timing.json), which the timed parts
    read instead of the runs' own epoch times."""
    table = results_table(rows)
    timed = results_table([{**r, "status": "finished"} for r in timing]) if timing else table
    smallest = cfg.get("smallest_effect") or {}
    out = []
    for claim in claims(cfg, arms if arms is not None else arms_from_rows(rows, cfg)):
        per_data = {}
        for data in cfg["data"]:
            parts = [evaluate_part(part, timed if getattr(part, "timed", False) else table, data, smallest)
                     for part in claim.parts]
            per_data[data] = {"verdict": combine([p["verdict"] for p in parts]),
                              "decided": all(p["verdict"] in DECIDED for p in parts), "parts": parts}
        out.append({"number": claim.number, "text": claim.text, "figure": claim.figure, "data": per_data})
    for data in cfg["data"]:
        paired = [p for v in out for p in v["data"][data]["parts"] if p["kind"] == "paired"]
        # the timed parts form a family of their own: machine timings vary from run to run, and the other parts'
        # adjusted p-values (and so verdicts.json) must not, for the same seeds
        for family in ([p for p in paired if not p["timed"]], [p for p in paired if p["timed"]]):
            for part, adjusted in zip(family, holm([p["p"] for p in family]), strict=True):
                part["p_holm"] = adjusted
                part["holm"] = part["verdict"] in DECIDED and adjusted < ALPHA
    return out


def evaluate_part(part, table: dict, data: str, smallest: dict | None = None) -> dict:
    if isinstance(part, Check | ClosedForm):
        return {"label": part.label, "kind": "check", **part.evaluate(table, data)}
    diffs = part.diffs(table, data)
    effect = (smallest or {}).get(getattr(part, "metric", None))
    result = paired_verdict(list(diffs.values()), part.direction, part.margin, effect)
    return {"label": part.label, "kind": "paired", "direction": part.direction, "margin": part.margin,
            "smallest_effect": effect, "timed": getattr(part, "timed", False), "diffs": diffs, **result}


def probe_values(cfg: dict, rows: list[dict], arms: list[dict]) -> dict:
    """analysis.json: per data set, every probed quantity a claim reads, per seed ({data: {key: {seed: value}}})."""
    table = results_table(rows)
    out: dict = {}
    for claim in claims(cfg, arms):
        for part in claim.parts:
            if isinstance(part, Probe | Check | ClosedForm):
                for data in cfg["data"]:
                    values = part.values(table, data) if not isinstance(part, Probe) else part.diffs(table, data)
                    out.setdefault(data, {})[part.key] = values
    return out
