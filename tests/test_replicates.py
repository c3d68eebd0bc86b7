"""Answers that hold when asked again: samples per seed, replicates on their own seeds, the strength rule and the
grid extended beyond its edge, P(A > B), agreement between two studies, and the timing phase's clock."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from scipy import stats

from sandbag.cli import main
from sandbag.study import plan
from sandbag.study.config import StudyConfig, load_preset
from sandbag.study.report import agreement
from sandbag.study.stats import probability_of_improvement

CHOSEN = {"l2": 1e-3, "l1": 1e-4, "noise": 0.3, "dropout": 0.4}


def test_per_seed_sampling_pairs_arms_and_replicates_use_seeds_and_samples_of_their_own():
    cfg = load_preset("standard")
    assert cfg.data_sampling == "per-seed"
    runs = plan.runs_of(cfg, "mnist-5k", CHOSEN)
    assert all(r.config.data_seed == r.seed for r in runs)  # seed s: sample s, for every arm (paired)
    again = StudyConfig.from_dict({**cfg.to_dict(), "replicate": 2})
    seeds = {r.seed for r in plan.runs_of(again, "mnist-5k", CHOSEN)}
    assert min(seeds) == 2000 and max(seeds) < 3000
    assert not seeds & {r.seed for r in runs}
    fixed = StudyConfig.from_dict({**cfg.to_dict(), "data_sampling": "fixed", "replicate": 1})
    assert {r.config.data_seed for r in plan.runs_of(fixed, "mnist-5k", CHOSEN)} == {1000}  # one new sample
    with pytest.raises(Exception, match="data_sampling must be one of fixed, per-seed"):
        StudyConfig(data_sampling="random")


def test_probability_of_improvement_is_the_share_of_seeds_with_its_wilson_interval(fresh_seed):
    rng = np.random.default_rng(fresh_seed)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        d = rng.normal(rng.normal(0, 1), 1, size=n)
        got = probability_of_improvement(list(d))
        k = int((d > 0).sum())
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert got["p"] == pytest.approx(k / n) and got["n"] == n, fresh_seed
        assert (got["low"], got["high"]) == pytest.approx((ci.low, ci.high), abs=1e-9), (fresh_seed, d)
    assert probability_of_improvement([0.0, 0.0, 1.0, -1.0])["p"] == 0.5  # ties count half
    assert math.isnan(probability_of_improvement([])["p"])


def _scores(table):
    return {v: [(acc, 0.0, seed) for seed, acc in enumerate(accs)] for v, accs in table.items()}


def test_the_one_standard_error_rule_picks_the_weakest_strength_within_noise_of_the_best():
    scores = _scores({1e-6: [0.894, 0.895], 1e-5: [0.892, 0.894], 1e-4: [0.897, 0.898], 1e-3: [0.85, 0.86]})
    assert plan.best_by_mean(scores) == 1e-4
    assert plan.one_standard_error(scores) == 1e-4  # the others lie more than one standard error below
    close = _scores({1e-6: [0.896, 0.897], 1e-5: [0.893, 0.894], 1e-4: [0.895, 0.899], 1e-3: [0.85, 0.86]})
    assert plan.one_standard_error(close) == 1e-6  # within 0.002 of 0.897: the weakest
    assert plan.one_standard_error(_scores({0.1: [0.9], 0.3: [0.91]})) == 0.3  # one seed: the best mean
    chosen, fell_back = plan.choose_strengths(
        [{"technique": "l2", "strength": v, "status": "finished", "val_acc": a, "val_loss": 0.0, "seed": s}
         for v, runs in close.items() for a, _, s in runs], {"l2": 1e-3, "l1": 1e-4}, ["l2", "l1"])
    assert chosen == {"l2": 1e-4, "l1": 1e-4} and fell_back == ["l1"]  # the study's rule: the best mean
    chosen, _ = plan.choose_strengths(
        [{"technique": "l2", "strength": v, "status": "finished", "val_acc": a, "val_loss": 0.0, "seed": s}
         for v, runs in close.items() for a, _, s in runs], {"l2": 1e-3}, ["l2"], rule="one-standard-error")
    assert chosen == {"l2": 1e-6}


def test_the_paired_difference_error_is_the_two_way_residual_standard_error(fresh_seed):
    """Oracle: least squares of accuracy on strength and seed dummies (numpy), residual variance over its degrees
    of freedom, times 2 / seeds. A seed effect shared by every strength adds nothing to it."""
    rng = np.random.default_rng(fresh_seed)
    strengths, seeds = int(rng.integers(2, 7)), int(rng.integers(2, 5))
    acc = rng.normal(0.9, 0.01, size=(strengths, seeds))
    values = {float(10.0 ** -k): [(float(acc[k, s]), 0.0, s) for s in range(seeds)] for k in range(strengths)}
    design = np.zeros((strengths * seeds, strengths + seeds - 1))
    for k in range(strengths):
        for s in range(seeds):
            design[k * seeds + s, k] = 1
            if s:
                design[k * seeds + s, strengths + s - 1] = 1
    _, residual, *_ = np.linalg.lstsq(design, acc.reshape(-1), rcond=None)
    variance = residual[0] / ((strengths - 1) * (seeds - 1)) if len(residual) else 0.0
    oracle = math.sqrt(2 * variance / seeds)
    assert plan.paired_difference_error(values) == pytest.approx(oracle, rel=1e-6, abs=1e-12), fresh_seed
    shifted = {v: [(a + 0.05 * s, loss, s) for a, loss, s in runs] for v, runs in values.items()}
    assert plan.paired_difference_error(shifted) == pytest.approx(oracle, rel=1e-6, abs=1e-12)
    assert math.isnan(plan.paired_difference_error({0.1: [(0.9, 0.0, 0)], 0.3: [(0.8, 0.0, 0)]}))


def test_the_plateau_centre_takes_the_middle_of_what_the_sweep_cannot_tell_apart(fresh_seed):
    """A flat curve gives its middle whatever the noise lifts; a clear peak gives the peak; of two middle ones
    the better mean; one seed: the best by mean."""
    rng = np.random.default_rng(fresh_seed)
    grid = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    seed_effect = rng.normal(0, 0.02, size=2)  # the sample: shared by every strength
    noise = rng.uniform(0.005, 0.01, size=len(grid)) * rng.choice([-1, 1], size=len(grid))  # +-, seed by seed
    lift = rng.uniform(-0.001, 0.001, size=len(grid))  # what the noise does to the means: far under its error
    flat = {v: [(0.89 + lift[k] + seed_effect[s] + (noise[k] if s else -noise[k]), 0.0, s) for s in range(2)]
            for k, v in enumerate(grid)}
    assert 2 * 0.001 < plan.paired_difference_error(flat), fresh_seed  # so every strength is tied with the best
    assert plan.plateau_centre(flat) == 1e-4 and plan.best_by_mean(flat) == grid[int(np.argmax(lift))]
    peak = _scores({0.4: [0.80, 0.81], 0.6: [0.85, 0.86], 0.8: [0.90, 0.91], 0.9: [0.86, 0.85]})
    assert plan.plateau_centre(peak) == 0.8
    two = _scores({0.1: [0.900, 0.910], 0.3: [0.905, 0.911], 0.5: [0.800, 0.800]})  # 0.1 and 0.3 tied
    assert plan.paired_difference_error(two) > 0.003 and plan.plateau_centre(two) == 0.3  # the better mean
    exact = _scores({1e-5: [0.9, 0.8], 1e-4: [0.9, 0.8], 1e-3: [0.9, 0.8], 1e-2: [0.7, 0.6]})  # no residual
    assert plan.plateau_centre(exact) == 1e-4  # three tied exactly: the middle
    assert plan.plateau_centre(_scores({0.1: [0.9], 0.3: [0.91], 0.5: [0.905]})) == 0.3
    # all four within one paired error (0.0067) of the best: the two middle ones split by `tie`
    flat = {1e-5: [0.90, 0.80], 1e-4: [0.89, 0.81], 1e-3: [0.905, 0.805], 1e-2: [0.90, 0.805]}
    assert [plan.plateau_centre(_scores(flat), tie) for tie in ("better", "weaker", "stronger")] == [1e-3, 1e-4, 1e-3]
    flat[1e-4], flat[1e-3] = flat[1e-3], flat[1e-4]
    assert [plan.plateau_centre(_scores(flat), tie) for tie in ("better", "weaker", "stronger")] == [1e-4, 1e-4, 1e-3]


def test_a_best_strength_at_an_edge_extends_the_grid_one_step_within_the_valid_range():
    top = _scores({0.4: [0.8], 0.6: [0.85], 0.8: [0.86], 0.9: [0.87]})
    assert plan.beyond_edge([0.4, 0.6, 0.8, 0.9], top, "dropout") == 0.95  # 1.0 is no drop rate: halfway there
    low = _scores({1e-5: [0.9], 1e-4: [0.8], 1e-3: [0.7]})
    assert plan.beyond_edge([1e-5, 1e-4, 1e-3], low, "l2") == pytest.approx(1e-6)  # the grid's own ratio
    assert plan.beyond_edge([0.1, 0.3, 0.5], _scores({0.1: [0.9], 0.3: [0.8], 0.5: [0.7]}), "noise") == 0.05
    inside = _scores({1e-5: [0.8], 1e-4: [0.9], 1e-3: [0.7]})
    assert plan.beyond_edge([1e-5, 1e-4, 1e-3], inside, "l2") is None


def test_agreement_counts_parts_with_the_same_verdict_timed_apart():
    def verdicts(*words, timed=(False, False, True)):
        parts = [{"label": f"p{i}", "verdict": w, "mean": 0.1, "timed": t}
                 for i, (w, t) in enumerate(zip(words, timed, strict=True))]
        return [{"number": 1, "id": "c", "data": {"d": {"parts": parts}}}]

    out = agreement(verdicts("supported", "negligible", "inconclusive"), verdicts("supported", "contradicted",
                                                                                  "supported"))
    assert (out["same"], out["total"], out["same_untimed"], out["total_untimed"]) == (1, 3, 1, 2)


def test_agreement_sets_apart_the_parts_whose_arms_ran_at_other_strengths():
    """A part rests on the chosen strengths of its arms' placeholders; parts whose strengths differ between two
    studies are counted apart, and the report names each strength that moved (here -> there)."""
    from sandbag.study.i18n import translator
    from sandbag.study.report import agreement_section, part_strengths

    def meta(l2, noise):
        arms = [{"group": "headline", "arm": "none", "specs": []},
                {"group": "headline", "arm": "l2", "specs": ["l2={l2}"]},
                {"group": "headline", "arm": "noise", "specs": ["noise={noise}"]},
                {"group": "headline", "arm": "bn", "specs": ["bn"]}]
        parts = [{"kind": "paired", "a": ["headline", arm], "b": ["headline", "none"]} for arm in ("l2", "noise", "bn")]
        return {"arms": arms, "chosen": {"d": {"l2": l2, "noise": noise}},
                "claims": [{"number": 1, "id": "c", "parts": parts}]}

    here, there = meta(1e-4, 0.5), meta(1e-3, 0.5)
    assert part_strengths(here) == {("c", "d", 0): {"l2": 1e-4}, ("c", "d", 1): {"noise": 0.5}, ("c", "d", 2): {}}

    def verdicts(*words):
        parts = [{"label": f"p{i}", "verdict": w, "mean": 0.1, "timed": False} for i, w in enumerate(words)]
        return [{"number": 1, "id": "c", "data": {"d": {"parts": parts}}}]

    out = agreement(verdicts("negligible", "supported", "supported"), verdicts("inconclusive", "supported",
                                                                                "supported"),
                    part_strengths(here), part_strengths(there))
    assert (out["same"], out["total"]) == (2, 3)
    assert (out["same_at_same_strengths"], out["total_at_same_strengths"]) == (2, 2)
    assert [x["same_strengths"] for x in out["pairs"]] == [False, True, True]
    text = " ".join(str(b[1]) for b in agreement_section(out, "other", verdicts("x", "y", "z"), translator("en")))
    assert "Of the 2 parts whose arms ran at the same chosen strengths in both studies, 2 reach the same" in text
    assert "l2 0.0001 → 0.001" in text and "noise" not in text
    assert "total_at_same_strengths" not in agreement(verdicts("supported"), verdicts("supported"))


def test_a_replicate_shows_its_original_and_retime_measures_only_the_timing(tiny_study, tmp_path, capsys):
    """A replicate of the tiny study runs on its own seeds into <folder>-r1 and its report sets its verdicts
    beside the original's; --retime on a finished study reuses every run and measures the timing phase again."""
    from conftest import TINY

    original = tmp_path / "tiny"
    shutil.copytree(tiny_study[0], original)
    before = sorted(p.name for p in (original / "runs" / "mnist-5k").iterdir())
    assert main(["study", "--config", str(TINY), "--out", str(original), "--retime", "--quiet"]) == 0
    assert sorted(p.name for p in (original / "runs" / "mnist-5k").iterdir()) == before
    timing = json.loads((original / "timing.json").read_text())
    assert timing["version"] == 4 and timing["clock"] == "thread CPU"
    assert all(r["seconds_per_epoch"] > 0 and r["wall_seconds_per_epoch"] > 0 and r["epochs"] >= 2
               for r in timing["rows"])
    for seed in {r["seed"] for r in timing["rows"]}:  # each pass's rounds kept, as many for each of its arms
        rows = {r["arm"]: r for r in timing["rows"] if r["seed"] == seed}
        whole, chunked = [rows["none"], rows["none-b8"]], [rows["none"], rows["dropout"]]
        assert {len(r["epoch_seconds"]) for r in whole} == {whole[0]["rounds"]}
        assert "epoch_seconds" not in rows["dropout"]
        assert {len(r["chunk_seconds"]) for r in chunked} == {chunked[0]["chunk_rounds"]}
        assert all(r["chunk_images"] == 4 * 32 for r in chunked) and "chunk_seconds" not in rows["none-b8"]
    replicate = tmp_path / "tiny-r1"
    assert main(["study", "--config", str(TINY), "--replicate", "1", "--out", str(replicate), "--quiet"]) == 0
    folders = (replicate / "runs" / "mnist-5k").iterdir()
    seeds = {json.loads(p.joinpath("config.json").read_text())["seed"] for p in folders}
    assert seeds == {1000, 1001}
    agreed = json.loads((replicate / "agreement.json").read_text())
    assert agreed["against"] == str(original) and agreed["total"] > 20
    assert 0 < agreed["total_at_same_strengths"] <= agreed["total"]
    report = (replicate / "report.md").read_text()
    assert f"of {agreed['total']} parts reach the same verdict as" in report
    assert "Replicate 1, seeds 1000-1001" in report


def test_the_spread_splits_into_sample_and_initialization_only_across_sampling_modes(fresh_seed):
    from sandbag.study.report import variance_split

    rng = np.random.default_rng(fresh_seed)

    def rows(sd):
        return [{"data": "d", "group": "headline", "arm": "none", "seed": s, "status": "finished",
                 "test_acc": 0.9 + rng.normal(0, sd), "gap": 0.1 + rng.normal(0, sd)} for s in range(40)]

    per_seed, fixed = rows(0.02), rows(0.01)
    cfg = {"data": ["d"], "data_sampling": "per-seed"}
    split = variance_split(cfg, per_seed, {"data_sampling": "fixed"}, fixed)
    for x in split:
        total, init = np.var([r[x["metric"]] for r in per_seed], ddof=1), np.var([r[x["metric"]] for r in fixed],
                                                                                 ddof=1)
        assert x["sample_share"] == pytest.approx(max(0.0, total - init) / total), fresh_seed
    assert {x["metric"] for x in split} == {"test_acc", "gap"}
    assert variance_split(cfg, per_seed, {"data_sampling": "per-seed"}, fixed) == []  # nothing separates them


def test_the_strength_rule_benchmark_counts_replicates_that_choose_alike(tiny_study, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "strength_rules.py"
    spec = importlib.util.spec_from_file_location("strength_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([tiny_study[0]] * 3)  # a study against itself: every rule agrees, in each of the 3 pairs
    out = capsys.readouterr().out
    for rule in plan.RULES:
        assert f"{rule}: 12 of 12 pairs of replicates chose alike (same strength or a grid neighbour), 12 the " in out


def test_timing_is_measured_again_when_a_timed_arm_runs_at_another_strength(tiny_study):
    """timing.json records each arm's regularizers as timed; a resumed study whose chosen strength moved (a wider
    grid, another rule) no longer reads it as current, and a row without them (older timing.json) is not either."""
    from sandbag.study import load_config, timing

    cfg = load_config(TINY)
    meta = json.loads((Path(tiny_study[0]) / "study.json").read_text())
    measured = json.loads((Path(tiny_study[0]) / "timing.json").read_text())
    chosen = meta["chosen"]
    assert timing.is_current(measured, cfg, chosen)
    timed = {tuple(arm) for arm in timing.timed_arms(cfg.design.claims)}
    rested = {r["arm"]: r["regs"] for r in measured["rows"] if (r["group"], r["arm"]) in timed}
    assert any("{" not in reg and "=" in reg for regs in rested.values() for reg in regs), rested
    for data, strengths in chosen.items():
        for tech in strengths:
            moved = {**chosen, data: {**strengths, tech: strengths[tech] / 2}}
            # moved matters exactly when a timed arm rests on the technique
            rests = any(reg.startswith(f"{tech}=") for regs in rested.values() for reg in regs)
            assert timing.is_current(measured, cfg, moved) is not rests, (tech, rested)
    stale = {**measured, "rows": [{k: v for k, v in r.items() if k != "regs"} for r in measured["rows"]]}
    assert not timing.is_current(stale, cfg, chosen)


def test_a_replicate_refuses_a_folder_that_holds_another_replicate(tiny_study, tmp_path, capsys):
    """`--replicate 1 --out FOLDER_OF_REPLICATE_0` would overwrite its results, verdicts and report: one line,
    exit 2, the folder as it was."""
    study = tmp_path / "study"
    shutil.copytree(tiny_study[0], study)
    before = (study / "results.csv").read_text()
    code = main(["study", "--config", str(TINY), "--replicate", "1", "--out", str(study), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds replicate 0" in err[0] and "--out study-r1" in err[0], err
    assert (study / "results.csv").read_text() == before
