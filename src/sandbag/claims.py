"""The claims a study tests, each an experiment, a rule and a verdict computed from the results.

The verdict rule: for a comparison of arm A with arm B on a metric, take the paired difference d_i = A_i - B_i over
the seeds both arms ran (same seeds), its mean and a 95% confidence interval from Student's t with n - 1 degrees of
freedom. The claim is **supported** if the interval lies on the claimed side of zero, **contradicted** if it lies on
the other side, **inconclusive** otherwise. "At least as good" claims (non-inferiority) use a stated margin instead
of zero. A claim with several parts is supported when every part is, contradicted when every part is; otherwise it
is mixed (some parts each way) or inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE, MIXED = "supported", "contradicted", "inconclusive", "mixed"


def paired_verdict(diffs: list[float], direction: str, margin: float = 0.0) -> dict:
    """Mean, 95% t-interval and verdict for paired differences claimed to be > 0 ("greater"), < 0 ("less"), or
    not below -margin ("noninferior")."""
    values = [d for d in diffs if d is not None and math.isfinite(d)]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "verdict": INCONCLUSIVE}
    mean = sum(values) / n
    if n == 1:
        low, high = -math.inf, math.inf
    else:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    if direction == "greater":
        verdict = SUPPORTED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE
    elif direction == "less":
        verdict = SUPPORTED if high < 0 else CONTRADICTED if low > 0 else INCONCLUSIVE
    elif direction == "noninferior":
        verdict = SUPPORTED if low > -margin else CONTRADICTED if high < -margin else INCONCLUSIVE
    else:
        raise ValueError(f"unknown direction {direction!r}")
    return {"n": n, "mean": mean, "ci_low": low, "ci_high": high, "verdict": verdict}


def combine(verdicts: list[str]) -> str:
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if verdicts and all(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    if SUPPORTED in verdicts and CONTRADICTED in verdicts:
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
    """A per-seed value measured by a post-hoc probe of trained models (analysis.json), claimed > 0 or < 0."""

    label: str
    key: str  # analysis[data][key] = {seed: value}
    direction: str
    margin: float = 0.0

    def diffs(self, table: dict, data: str, analysis: dict | None = None) -> dict[int, float]:
        values = ((analysis or {}).get(data) or {}).get(self.key) or {}
        return {int(seed): v for seed, v in values.items() if v is not None}


@dataclass(frozen=True)
class Check:
    """A deterministic check with a tolerance (no seeds to average): value(analysis) must be < tolerance."""

    label: str
    key: str
    tolerance: float

    def evaluate(self, analysis: dict, data: str) -> dict:
        values = ((analysis or {}).get(data) or {}).get(self.key) or {}
        worst = max(values.values()) if values else math.nan
        verdict = INCONCLUSIVE if not values else SUPPORTED if worst < self.tolerance else CONTRADICTED
        return {"n": len(values), "mean": worst, "ci_low": math.nan, "ci_high": math.nan, "verdict": verdict,
                "tolerance": self.tolerance}


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    parts: tuple
    figure: str | None = None
    note: str = ""


H, E, B = "headline", "extra", "batch"


def claims(cfg: dict) -> list[Claim]:
    """The fifteen claims, in terms of the arms a study runs (cfg: the study config as a dict)."""
    small, ref, large = min(cfg["batch_sizes"]), cfg["batch_size"], max(cfg["batch_sizes"])

    def batch_arm(kind: str, b: int) -> tuple[str, str]:
        return (H, kind) if b == ref else (B, f"{kind}-b{b}")

    techniques = ("l2", "l1", "noise", "dropout", "bn")
    trade = tuple(
        part
        for t in techniques
        for part in (
            Compare(f"{t}: clean train accuracy lower", "train_acc", (H, t), (H, "none"), "less"),
            Compare(f"{t}: test accuracy higher", "test_acc", (H, t), (H, "none"), "greater"),
        )
    )
    speed = [Compare(f"epoch at batch {ref} slower than at {large}", "seconds_per_epoch", batch_arm("none", ref),
                     batch_arm("none", large), "greater")]
    if small < ref:
        speed.insert(0, Compare(f"epoch at batch {small} slower than at {ref}", "seconds_per_epoch",
                                batch_arm("none", small), batch_arm("none", ref), "greater"))
    return [
        Claim(1, "Regularization trades training fit for evaluation performance.", trade, "learning_curves.png"),
        Claim(2, "L2 keeps weights small and narrows the train-test gap.", (
            Compare("weight norm lower with L2", "weight_l2", (H, "l2"), (H, "none"), "less"),
            Compare("gap narrower with L2", "gap", (H, "l2"), (H, "none"), "less"),
        ), "validation_curves.png"),
        Claim(3, "L2 works better with biases left out than with them included.", (
            Compare("test accuracy: biases excluded minus included", "test_acc", (H, "l2"), (E, "l2-bias"),
                    "greater"),
        )),
        Claim(4, "Adding 1/2*lambda*w^2 moves the loss minimum toward zero.", (
            Check("|numeric minimum - closed form| over lambdas (and the minimum falls as lambda grows)",
                  "penalty_minimum_error", 1e-3),
        ), "penalty.png"),
        Claim(5, "L1 yields many weights at or near zero, far more than L2; with the proximal option exactly zero.", (
            Compare("fraction |w| < 1e-3: L1 minus L2", "frac_small", (H, "l1"), (H, "l2"), "greater"),
            Compare("fraction exactly 0: proximal L1 minus plain L1", "frac_zero", (E, "l1-prox"), (H, "l1"),
                    "greater"),
        ), "weight_histograms.png"),
        Claim(6, "Dropout narrows the train-test gap.", (
            Compare("gap: dropout minus none", "gap", (H, "dropout"), (H, "none"), "less"),
        ), "learning_curves.png"),
        Claim(7, "Dropout slows learning and does not cut compute per epoch.", (
            Compare(f"epochs to reach train accuracy {cfg['learn_target']}: dropout minus none", "epochs_to_target",
                    (H, "dropout"), (H, "none"), "greater"),
            Compare("seconds per epoch: dropout / none - 1 (not below -3%)", "seconds_per_epoch", (H, "dropout"),
                    (H, "none"), "noninferior", margin=0.03, ratio=True),
        ), "learning_curves.png"),
        Claim(8, "Dropout belongs to training only: left on at evaluation it lowers accuracy and predictions vary.", (
            Probe("test accuracy: evaluation mode minus dropout left on", "dropout_accuracy_drop", "greater"),
            Probe("fraction of predictions that change between two passes with dropout on", "dropout_disagreement",
                  "greater"),
        ), "dropout.png"),
        Claim(9, "Batch normalization gives each feature mean 0 and std 1 over the mini-batch before scale and "
              "shift.", (
            Check("max |mean| of normalized features (before scale/shift), trained BN models", "bn_z_mean_absmax",
                  1e-3),
            Check("max |std - sqrt(var/(var+eps))| of normalized features (std 1 up to BN's eps)",
                  "bn_z_std_eps_absdev_max", 1e-3),
        ), "bn.png"),
        Claim(10, "BN's batch statistics act as noise: a sample's output changes with its batch companions.", (
            Probe("std of a sample's class probabilities across companion batches: BN model minus no-BN model",
                  "bn_companion_noise_excess", "greater"),
        )),
        Claim(11, f"Very small mini-batches make BN's effect extreme (batch {small} vs {ref}).", (
            DiffOfDiffs(f"test accuracy effect of BN (BN minus none) at batch {small} minus at batch {ref}",
                        "test_acc", (batch_arm("bn", small), batch_arm("none", small)),
                        (batch_arm("bn", ref), batch_arm("none", ref)), "less"),
        ), "batch_size.png"),
        Claim(12, "Larger mini-batches make an epoch faster.", tuple(speed), "batch_size.png"),
        Claim(13, "BN beats dropout on evaluation performance.", (
            Compare("test accuracy: BN minus dropout", "test_acc", (H, "bn"), (H, "dropout"), "greater"),
        ), "headline.png"),
        Claim(14, "BN placed before the activation does at least as well as after it.", (
            Compare("test accuracy: BN before minus BN after (not below -0.5 points)", "test_acc", (H, "bn"),
                    (E, "bn-post"), "noninferior", margin=0.005),
        )),
        Claim(15, "Noise injection narrows the train-test gap.", (
            Compare("gap: noise minus none", "gap", (H, "noise"), (H, "none"), "less"),
        ), "learning_curves.png"),
    ]


def results_table(rows: list[dict]) -> dict:
    """{(data, group, arm): {seed: row}} over finished runs."""
    table: dict = {}
    for row in rows:
        if row.get("status") == "finished":
            table.setdefault((row["data"], row["group"], row["arm"]), {})[int(row["seed"])] = row
    return table


def evaluate_claims(cfg: dict, rows: list[dict], analysis: dict) -> list[dict]:
    """Every claim's verdict per data set, with the numbers behind each part."""
    table = results_table(rows)
    out = []
    for claim in claims(cfg):
        per_data = {}
        for data in cfg["data"]:
            parts = [_evaluate_part(part, table, data, analysis) for part in claim.parts]
            per_data[data] = {"verdict": combine([p["verdict"] for p in parts]), "parts": parts}
        out.append({"number": claim.number, "text": claim.text, "figure": claim.figure, "data": per_data})
    return out


def _evaluate_part(part, table: dict, data: str, analysis: dict) -> dict:
    if isinstance(part, Check):
        return {"label": part.label, "kind": "check", **part.evaluate(analysis, data)}
    get: Callable = part.diffs
    diffs = get(table, data, analysis) if isinstance(part, Probe) else get(table, data)
    result = paired_verdict(list(diffs.values()), part.direction, getattr(part, "margin", 0.0))
    return {"label": part.label, "kind": "paired", "direction": part.direction,
            "margin": getattr(part, "margin", 0.0), "diffs": diffs, **result}
