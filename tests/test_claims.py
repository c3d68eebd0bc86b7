"""The verdict rule against scipy on fresh random data, `combine` against its definition, claim 4's closed-form check,
and the claims on synthetic result tables. Randomized tests take conftest's `fresh_seed` (printed on failure)."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from sandbag.study import schema
from sandbag.study.claims import evaluate_claims
from sandbag.study.penalty import l1_minimum, l2_minimum, numeric_minimum, penalty_check
from sandbag.study.stats import (
    CONTRADICTED,
    DECIDED,
    INCONCLUSIVE,
    MIXED,
    NEGLIGIBLE,
    SUPPORTED,
    combine,
    decision_power,
    detection_power,
    holm,
    mean_std,
    paired_verdict,
    power,
    standard_error,
)

VERDICTS = (SUPPORTED, CONTRADICTED, NEGLIGIBLE, INCONCLUSIVE)


def _oracle(d: np.ndarray, direction: str, margin: float = 0.0, smallest: float | None = None):
    """scipy's t-interval and the verdict rule written from the module docstring."""
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    zero = -margin if direction == "noninferior" else 0.0
    if direction == "equivalent":
        verdict = (SUPPORTED if -margin < low and high < margin else
                   CONTRADICTED if low > margin or high < -margin else INCONCLUSIVE)
        return low, high, verdict
    if direction == "less":
        verdict = SUPPORTED if high < 0 else CONTRADICTED if low > 0 else INCONCLUSIVE
    else:
        verdict = SUPPORTED if low > zero else CONTRADICTED if high < zero else INCONCLUSIVE
    if verdict == INCONCLUSIVE and smallest is not None and -smallest < low and high < smallest:
        verdict = NEGLIGIBLE
    return low, high, verdict


@pytest.mark.parametrize("direction", ["greater", "less", "noninferior"])
def test_paired_verdict_matches_scipy_on_random_data(direction, fresh_seed):
    rng = np.random.default_rng(fresh_seed)
    for _ in range(200):
        n = int(rng.integers(2, 12))
        d = rng.normal(rng.normal(0, 0.05), rng.uniform(0.001, 0.05), size=n)
        margin = float(rng.uniform(0, 0.02)) if direction == "noninferior" else 0.0
        smallest = float(rng.uniform(0.005, 0.05))
        result = paired_verdict(list(d), direction, margin, smallest)
        low, high, verdict = _oracle(d, direction, margin, smallest)
        assert result["n"] == n and result["mean"] == pytest.approx(d.mean(), abs=1e-12), (fresh_seed, d)
        assert result["ci_low"] == pytest.approx(low, rel=1e-9, abs=1e-12), (fresh_seed, d)
        assert result["ci_high"] == pytest.approx(high, rel=1e-9, abs=1e-12), (fresh_seed, d)
        assert result["verdict"] == verdict, (fresh_seed, d, margin, result)
        # the t-test agrees: a one-sided p < 0.025 exactly when the interval clears zero on that side
        p = stats.ttest_1samp(d, -margin if direction == "noninferior" else 0.0,
                              alternative="less" if direction == "less" else "greater").pvalue
        assert (p < 0.025) == (verdict == SUPPORTED) or math.isclose(p, 0.025, rel_tol=1e-6), (fresh_seed, d, p)
        # the verdict's own p-value is below 0.05 exactly when it decides
        assert (result["p"] < 0.05) == (verdict in DECIDED) or math.isclose(result["p"], 0.05, rel_tol=1e-6), (
            fresh_seed, d, result)
        if verdict == NEGLIGIBLE:  # two one-sided tests at the equivalence bounds, doubled
            tost = max(stats.ttest_1samp(d, -smallest, alternative="greater").pvalue,
                       stats.ttest_1samp(d, smallest, alternative="less").pvalue)
            assert result["p"] == pytest.approx(2 * tost, rel=1e-6), (fresh_seed, d)
        elif verdict != INCONCLUSIVE:
            two_sided = stats.ttest_1samp(d, -margin if direction == "noninferior" else 0.0).pvalue
            assert result["p"] == pytest.approx(two_sided, rel=1e-6), (fresh_seed, d)


def test_paired_verdict_drops_missing_values_and_handles_degenerate_inputs():
    assert paired_verdict([0.2], "greater")["verdict"] == INCONCLUSIVE  # one seed: no interval
    assert paired_verdict([0.2], "greater")["ci_low"] == -math.inf
    empty = paired_verdict([], "greater")
    assert empty["n"] == 0 and empty["verdict"] == INCONCLUSIVE
    assert all(math.isnan(empty[k]) for k in ("mean", "ci_low", "ci_high", "p"))
    assert paired_verdict([0.1, None, math.nan, 0.1, 0.1], "greater")["n"] == 3
    assert paired_verdict([0.1, 0.1, 0.1], "greater")["verdict"] == SUPPORTED  # zero spread, clear sign
    assert paired_verdict([-0.001, -0.002, 0.0, -0.001], "noninferior", margin=0.005)["verdict"] == SUPPORTED
    assert paired_verdict([-0.05, -0.06, -0.055], "noninferior", margin=0.005)["verdict"] == CONTRADICTED
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        paired_verdict([1.0, 2.0], "sideways")


def _combine_oracle(verdicts):
    if verdicts and len(set(verdicts)) == 1:
        return verdicts[0]
    if {SUPPORTED, CONTRADICTED} <= set(verdicts):
        return MIXED
    if verdicts and set(verdicts) <= {SUPPORTED, CONTRADICTED, NEGLIGIBLE}:
        return MIXED  # decided, but not the same way
    return INCONCLUSIVE


def test_combine_matches_its_definition_on_every_short_list():
    for n in range(0, 4):
        for parts in itertools.product(VERDICTS, repeat=n):
            assert combine(list(parts)) == _combine_oracle(list(parts)), parts
    assert combine([]) == INCONCLUSIVE
    assert combine([SUPPORTED, CONTRADICTED, INCONCLUSIVE]) == MIXED
    assert combine([SUPPORTED, NEGLIGIBLE]) == MIXED and combine([NEGLIGIBLE, NEGLIGIBLE]) == NEGLIGIBLE
    assert combine([SUPPORTED, NEGLIGIBLE, INCONCLUSIVE]) == INCONCLUSIVE


def test_negligible_decides_equal_arms_and_only_those():
    tight = [0.0004, -0.0006, 0.0002, -0.0001, 0.0003]  # interval about [-0.0006, 0.0006]
    assert paired_verdict(tight, "greater", smallest=0.003)["verdict"] == NEGLIGIBLE
    assert paired_verdict(tight, "greater")["verdict"] == INCONCLUSIVE  # no smallest effect named: no such verdict
    assert paired_verdict(tight, "greater", smallest=0.0005)["verdict"] == INCONCLUSIVE  # interval pokes out
    clear = [0.010, 0.012, 0.011, 0.009]
    assert paired_verdict(clear, "greater", smallest=0.3)["verdict"] == SUPPORTED  # decided verdicts stay


def test_holm_against_a_hand_checked_table():
    # p sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06 by monotonicity), 0.04 (x1, then 0.06)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, math.nan, 0.001]) == pytest.approx([0.5, math.nan, 0.002], nan_ok=True)
    assert holm([0.9, 0.8]) == [1.0, 1.0] and holm([]) == []  # 0.8 x 2 caps at 1


def test_holm_against_statsmodels_where_installed(fresh_seed):
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(fresh_seed).uniform(0, 0.2, size=25)
    expected = multitest.multipletests(p, alpha=0.05, method="holm")[1]
    assert holm(list(p)) == pytest.approx(list(expected)), fresh_seed


def test_decision_power_against_a_simulation(fresh_seed):
    """The chance to decide a part (detect the difference, or show it negligible) is the share of simulated
    studies the verdict rule decides, for a fresh draw of seeds, spread and mean inside the smallest effect; without
    a smallest effect it is the noncentral t's power; seeds_needed is the first seed count that reaches 80%."""
    rng = np.random.default_rng(fresh_seed)
    n, sd, smallest = int(rng.integers(4, 30)), float(rng.uniform(0.002, 0.01)), 0.005
    mean = float(rng.uniform(-0.8, 0.8)) * smallest
    for direction, null in (("greater", 0.0), ("noninferior", -0.004)):
        diffs = rng.normal(mean, sd, size=(20000, n))
        centre = diffs.mean(axis=1)
        half = stats.t.ppf(0.975, n - 1) * diffs.std(axis=1, ddof=1) / np.sqrt(n)
        rule = (np.abs(centre - null) > half) | (np.abs(centre) + half < smallest)  # the docstring's rule, at once
        for d, by_rule in zip(diffs[:100], rule[:100], strict=True):  # ... is paired_verdict's
            verdict = paired_verdict(list(d), direction, margin=-null, smallest=smallest)["verdict"]
            assert (verdict in DECIDED) == by_rule
        decided = rule.mean()
        expected = decision_power(n, sd, mean, smallest, null)
        assert decided == pytest.approx(expected, abs=0.015), (fresh_seed, n, sd, mean, direction, decided, expected)
        assert decision_power(n, sd, mean, None, null) == pytest.approx(detection_power(n, sd, mean - null), abs=1e-3)
        needed = power(n, sd, mean - null, smallest, null)["seeds_needed"]
        assert decision_power(needed, sd, mean, smallest, null) >= 0.8
        assert all(decision_power(m, sd, mean, smallest, null) < 0.8 for m in range(2, min(needed, 100)))
    # a small observed difference is shown negligible long before it is detected
    small = power(10, 0.009, -0.0009, smallest)
    assert small["decide_by_negligible"] and small["seeds_needed"] < power(10, 0.009, -0.0009)["seeds_needed"] / 10


def test_power_formula_against_a_simulation(fresh_seed):
    """The smallest detectable difference is the one that the verdict rule decides in 80% of simulated studies."""
    rng = np.random.default_rng(fresh_seed)
    n, sd = 5, 0.004
    mde = power(n, sd, 0.001)["detectable"]
    diffs = rng.normal(mde, sd, size=(4000, n))
    decided = np.mean([paired_verdict(list(d), "greater")["verdict"] != INCONCLUSIVE for d in diffs])
    assert decided == pytest.approx(0.8, abs=0.025), (fresh_seed, mde, decided)
    assert detection_power(n, sd, mde) == pytest.approx(0.8, abs=1e-6)
    needed = power(n, sd, mde / 2)["seeds_needed"]
    assert needed > n and detection_power(needed, sd, mde / 2) >= 0.8 > detection_power(needed - 1, sd, mde / 2)
    assert power(1, sd, 0.1) == {"detectable": None, "seeds_needed": None, "observed": 0.1}
    result = paired_verdict([0.001, -0.002, 0.003, 0.0, 0.001], "greater")
    assert result["verdict"] == INCONCLUSIVE and result["power"]["detectable"] > 0


def test_penalty_check_is_claim_4s_closed_form_evidence(fresh_seed):
    result = penalty_check()
    assert result["falls"] and 0 < result["error"] < 1e-3
    assert result["minima"]["l2"][0]["closed_form"] == pytest.approx(3.0)  # a w0 / (a + lam) = 4.5 / 1.5
    assert [m["closed_form"] for m in result["minima"]["l1"]] == pytest.approx([3.5, 2.0, 0.0, 0.0])
    # the minimum does not fall with lambda if lambda does not grow: the check says so
    assert penalty_check(lams=(2, 1))["error"] == math.inf
    rng = np.random.default_rng(fresh_seed)
    lo, hi, n = -12.0, 12.0, 240001
    for _ in range(10):
        a, w0, lam, alpha = rng.uniform(0.5, 2), rng.uniform(-6, 6), rng.uniform(0, 5), rng.uniform(0, 8)
        l2 = numeric_minimum(lambda w, a=a, w0=w0, lam=lam: a * (w - w0) ** 2 / 2 + lam * w**2 / 2, lo, hi, n)
        l1 = numeric_minimum(lambda w, a=a, w0=w0, al=alpha: a * (w - w0) ** 2 / 2 + al * np.abs(w), lo, hi, n)
        assert abs(l2 - l2_minimum(a, w0, lam)) <= (hi - lo) / (n - 1), (fresh_seed, a, w0, lam)
        assert abs(l1 - l1_minimum(a, w0, alpha)) <= (hi - lo) / (n - 1), (fresh_seed, a, w0, alpha)


TECHS = ["l2", "l1", "noise", "dropout", "bn"]
ARMS = [{"group": "headline", "arm": a, "technique": a, "batch_size": 32, "base": a}
        for a in ("none", *TECHS)] + [
    {"group": "extra", "arm": a, "technique": a.split("-")[0], "batch_size": 32, "base": a}
    for a in ("l2-bias", "l1-prox", "bn-post")] + [
    {"group": "batch", "arm": f"{k}-b8", "technique": k, "batch_size": 8, "base": k}
    for k in ("none", "bn")]


def _rows(arm_metrics: dict, rng, seeds=range(5), data="d", noise=0.0):
    rows = []
    for (group, arm), metrics in arm_metrics.items():
        for seed in seeds:
            row = {"data": data, "group": group, "arm": arm, "seed": seed, "status": "finished"}
            row.update({k: v + rng.normal(0, noise) if k != "probes" else v for k, v in metrics.items()})
            rows.append(row)
    return rows


def test_claims_follow_from_a_synthetic_table(fresh_seed):
    rng = np.random.default_rng(fresh_seed)
    cfg = {"data": ["d"], "batch_sizes": [8, 32], "batch_size": 32, "learn_target": 0.9}
    base = {"train_acc": 1.0, "test_acc": 0.90, "gap": 0.10, "weight_l2": 20.0}
    rows = _rows({
        ("headline", "none"): {**base, "probes": {"companion_prob_std_mean": 0.0}},
        ("headline", "dropout"): {"train_acc": 0.97, "test_acc": 0.93, "gap": 0.04, "weight_l2": 20.0,
                                  "probes": {"dropout_accuracy_drop": 0.05, "dropout_disagreement": 0.1}},
        ("headline", "noise"): {"train_acc": 1.0, "test_acc": 0.88, "gap": 0.12, "weight_l2": 20.0},
        ("headline", "bn"): {"test_acc": 0.90, "probes": {"companion_prob_std_mean": 0.01, "bn_z_mean_absmax": 2e-3,
                                                         "bn_z_std_eps_absdev_max": 1e-7}},
    }, rng, noise=0.002)
    lecture = schema.parse_claims(schema.lecture()["claims"], ARMS, cfg, TECHS)
    by_number = {v["number"]: v["data"]["d"] for v in evaluate_claims(cfg["data"], rows, lecture)}
    assert by_number[6]["verdict"] == SUPPORTED, fresh_seed  # dropout narrows the gap
    assert by_number[15]["verdict"] == CONTRADICTED, fresh_seed  # noise widened it in this table
    assert by_number[13]["verdict"] == CONTRADICTED, fresh_seed  # bn 0.90 < dropout 0.93
    assert by_number[3]["verdict"] == INCONCLUSIVE  # no runs for it: nothing to claim
    assert by_number[8]["verdict"] == SUPPORTED and by_number[8]["parts"][0]["n"] == 5  # read from probes
    assert by_number[10]["verdict"] == SUPPORTED  # BN minus none, per seed
    assert by_number[10]["parts"][0]["mean"] == pytest.approx(0.01)
    assert [p["verdict"] for p in by_number[9]["parts"]] == [CONTRADICTED, SUPPORTED]  # 2e-3 > tolerance 1e-3
    part = by_number[6]["parts"][0]
    assert part["n"] == 5 and part["mean"] == pytest.approx(-0.06, abs=0.01), fresh_seed


def test_equivalent_is_decided_by_the_interval_against_both_bounds(fresh_seed):
    """Supported inside +-margin, contradicted wholly outside, else inconclusive (with power); p is the TOST
    p-value at the bounds (statsmodels' ttost_paired where installed), below 0.05 exactly when supported."""
    rng = np.random.default_rng(fresh_seed)
    seen = set()
    for _ in range(300):
        n = int(rng.integers(2, 12))
        d = rng.normal(rng.normal(0, 0.03), rng.uniform(0.001, 0.03), size=n)
        margin = float(rng.uniform(0.002, 0.04))
        result = paired_verdict(list(d), "equivalent", margin, smallest=1.0)  # smallest plays no part here
        low, high, verdict = _oracle(d, "equivalent", margin)
        assert result["verdict"] == verdict, (fresh_seed, d, margin, result)
        assert result["ci_low"] == pytest.approx(low, rel=1e-9, abs=1e-12)
        tost = max(stats.ttest_1samp(d, -margin, alternative="greater").pvalue,
                   stats.ttest_1samp(d, margin, alternative="less").pvalue)
        assert result["p"] == pytest.approx(min(1.0, 2 * tost), rel=1e-6), (fresh_seed, d)
        assert (result["p"] < 0.05) == (verdict == SUPPORTED) or math.isclose(result["p"], 0.05, rel_tol=1e-6)
        assert ("power" in result) == (verdict == INCONCLUSIVE)
        seen.add(verdict)
    assert seen == {SUPPORTED, CONTRADICTED, INCONCLUSIVE}, (fresh_seed, seen)


def test_one_mean_std_convention(fresh_seed):
    values = np.random.default_rng(fresh_seed).normal(size=7)
    mean, sd = mean_std(list(values))
    assert mean == pytest.approx(values.mean()) and sd == pytest.approx(values.std(ddof=1))
    assert standard_error(list(values)) == pytest.approx(values.std(ddof=1) / math.sqrt(7))
    assert math.isnan(mean_std([1.0])[1]) and math.isnan(standard_error([1.0]))


def test_a_timed_part_compares_its_arms_round_by_round(fresh_seed):
    """The timing phase keeps every round's epochs; a timed part takes, per repetition, the median over rounds of
    A's epoch against B's epoch of the same round, so a drift of the machine's speed shared by a round cancels.
    Oracle: A's epoch is B's times a fixed factor in every round, under a random drift much larger than the
    factor: each repetition reads exactly factor - 1 (and the difference part the median of A - B)."""
    from sandbag.study.claims import Part, diffs, results_table

    rng = np.random.default_rng(fresh_seed)
    factor = 1 + float(rng.uniform(0.005, 0.03))
    rows, expected_diff = [], {}
    for seed in range(int(rng.integers(3, 8))):
        rounds = int(rng.integers(2, 15))
        drift = rng.uniform(0.8, 1.25, size=rounds)  # the machine's speed, round by round
        b = list(0.12 * drift * rng.uniform(0.99, 1.01, size=rounds))
        a = [x * factor for x in b]
        expected_diff[seed] = float(np.median(np.subtract(a, b)))
        for arm, epochs in (("dropout", a), ("none", b)):
            rows.append({"data": "d", "group": "headline", "arm": arm, "seed": seed, "status": "finished",
                         "seconds_per_epoch": float(np.median(epochs)), "epoch_seconds": epochs})
    table = results_table(rows)
    ratio = Part(kind="paired", label="", metric="timing.seconds_per_epoch", a=("headline", "dropout"),
                 b=("headline", "none"), direction="noninferior", margin=0.03, ratio=True)
    assert diffs(ratio, table, "d") == pytest.approx({s: factor - 1 for s in expected_diff}, abs=1e-12)
    difference = Part(kind="paired", label="", metric="timing.seconds_per_epoch", a=("headline", "dropout"),
                      b=("headline", "none"), direction="greater")
    assert diffs(difference, table, "d") == pytest.approx(expected_diff, abs=1e-15)
    # a timing.json from before the rounds were kept: the arms' own medians, as then
    old = results_table([{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows])
    medians = {(r["arm"], r["seed"]): r["seconds_per_epoch"] for r in rows}
    assert diffs(ratio, old, "d") == pytest.approx(
        {s: medians[("dropout", s)] / medians[("none", s)] - 1 for s in expected_diff}, abs=1e-12)


def test_a_timed_part_reads_chunk_rounds_only_where_both_arms_were_chunked_at_one_batch_size(fresh_seed):
    """Version 4 keeps each arm's epoch rounds and, where a part compares arms at one batch size, its chunk rounds
    (alternated together). Oracle: the chunks say `factor`, the epochs another factor; the part reads the chunks
    when both rows have them at the same batch size, else the epochs (batch sizes differ, or a row lacks chunks)."""
    from sandbag.study.claims import Part, diffs, results_table

    rng = np.random.default_rng(fresh_seed)
    by_chunks, by_epochs = 1 + float(rng.uniform(0.005, 0.03)), 1 + float(rng.uniform(0.05, 0.1))

    def rows(batch_a: int, chunks_b: bool) -> list[dict]:
        out = []
        for seed in range(3):
            n, m = int(rng.integers(2, 9)), int(rng.integers(9, 40))
            epochs_b, chunks = list(rng.uniform(0.1, 0.2, n)), list(rng.uniform(0.1, 0.2, m))
            a = {"batch_size": batch_a, "epoch_seconds": [x * by_epochs for x in epochs_b],
                 "chunk_seconds": [x * by_chunks for x in chunks]}
            b = {"batch_size": 32, "epoch_seconds": epochs_b, **({"chunk_seconds": chunks} if chunks_b else {})}
            for arm, row in (("dropout", a), ("none", b)):
                out.append({"data": "d", "group": "headline", "arm": arm, "seed": seed, "status": "finished",
                            "seconds_per_epoch": float(np.median(row["epoch_seconds"])), **row})
        return out

    part = Part(kind="paired", label="", metric="timing.seconds_per_epoch", a=("headline", "dropout"),
                b=("headline", "none"), direction="noninferior", margin=0.03, ratio=True)
    for batch_a, chunks_b, factor in ((32, True, by_chunks), (64, True, by_epochs), (32, False, by_epochs)):
        got = diffs(part, results_table(rows(batch_a, chunks_b)), "d")
        assert got == pytest.approx({s: factor - 1 for s in range(3)}, abs=1e-12)
