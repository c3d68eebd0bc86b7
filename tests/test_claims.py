"""The verdict rule on synthetic result tables: a clear effect is supported, its mirror contradicted, noise
inconclusive."""

import numpy as np
import pytest

from sandbag.claims import CONTRADICTED, INCONCLUSIVE, MIXED, SUPPORTED, combine, evaluate_claims, paired_verdict


def test_t_interval_matches_scipy():
    from scipy import stats

    d = list(np.random.default_rng().normal(0.3, 1.0, size=7))
    result = paired_verdict(d, "greater")
    low, high = stats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
    assert result["ci_low"] == pytest.approx(low) and result["ci_high"] == pytest.approx(high)


@pytest.mark.parametrize("direction,sign", [("greater", 1), ("less", -1)])
def test_clear_effect_supported_mirror_contradicted_noise_inconclusive(direction, sign):
    rng = np.random.default_rng()
    effect = sign * (0.05 + rng.normal(0, 0.005, size=6))
    assert paired_verdict(list(effect), direction)["verdict"] == SUPPORTED
    assert paired_verdict(list(-effect), direction)["verdict"] == CONTRADICTED
    noise = rng.normal(0, 0.05, size=6)
    noise -= noise.mean()  # zero-mean noise: the interval always straddles 0
    assert paired_verdict(list(noise), direction)["verdict"] == INCONCLUSIVE


def test_non_inferiority_margin_and_degenerate_inputs():
    assert paired_verdict([-0.001, -0.002, 0.0, -0.001], "noninferior", margin=0.005)["verdict"] == SUPPORTED
    assert paired_verdict([-0.05, -0.06, -0.055], "noninferior", margin=0.005)["verdict"] == CONTRADICTED
    assert paired_verdict([0.2], "greater")["verdict"] == INCONCLUSIVE  # one seed: no interval
    assert paired_verdict([], "greater")["verdict"] == INCONCLUSIVE
    assert paired_verdict([0.1, 0.1, 0.1], "greater")["verdict"] == SUPPORTED  # zero spread, clear sign


def test_combining_parts():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([CONTRADICTED, CONTRADICTED]) == CONTRADICTED
    assert combine([SUPPORTED, CONTRADICTED]) == MIXED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE


def _rows(arm_metrics: dict, seeds=range(5), data="d", noise=0.0):
    rng = np.random.default_rng()
    rows = []
    for (group, arm), metrics in arm_metrics.items():
        for seed in seeds:
            row = {"data": data, "group": group, "arm": arm, "seed": seed, "status": "finished"}
            row.update({k: v + rng.normal(0, noise) for k, v in metrics.items()})
            rows.append(row)
    return rows


def test_claims_follow_from_a_synthetic_table():
    cfg = {"data": ["d"], "batch_sizes": [8, 32], "batch_size": 32, "learn_target": 0.9}
    base = {"train_acc": 1.0, "test_acc": 0.90, "gap": 0.10, "weight_l2": 20.0}
    rows = _rows({
        ("headline", "none"): base,
        ("headline", "dropout"): {"train_acc": 0.97, "test_acc": 0.93, "gap": 0.04, "weight_l2": 20.0},
        ("headline", "noise"): {"train_acc": 1.0, "test_acc": 0.88, "gap": 0.12, "weight_l2": 20.0},
        ("headline", "bn"): {"test_acc": 0.90},
    }, noise=0.002)
    by_number = {v["number"]: v["data"]["d"] for v in evaluate_claims(cfg, rows, analysis={})}
    assert by_number[6]["verdict"] == SUPPORTED  # dropout narrows the gap
    assert by_number[15]["verdict"] == CONTRADICTED  # noise widened it in this table
    assert by_number[13]["verdict"] == CONTRADICTED  # bn 0.90 < dropout 0.93
    assert by_number[3]["verdict"] == INCONCLUSIVE  # no runs for it: nothing to claim
    part = by_number[6]["parts"][0]
    assert part["n"] == 5 and part["mean"] == pytest.approx(-0.06, abs=0.01)
