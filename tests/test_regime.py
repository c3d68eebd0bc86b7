"""The regime map: a study over training-set sizes, its claims across sizes, regime.json and the report's map."""

from __future__ import annotations

import json
import math
import random
import warnings

import pytest

from sandbag.errors import ConfigError
from sandbag.fonts import hangul_family
from sandbag.study import claims as claims_mod
from sandbag.study import i18n, plan, regime
from sandbag.study.config import StudyConfig, load_preset
from sandbag.study.layout import cell_key, cells, size_epochs, split_cell

ARMS = [{"name": "none"}, {"name": "{tech}", "for_each": "technique", "specs": ["{tech}"]}]
HELPS = {"id": "helps", "text": "dropout helps at each size", "parts": [
    {"for_each": "train_size", "metric": "test_acc", "a": "dropout@{n}", "b": "none@{n}", "direction": "greater",
     "label": "dropout at {n}"}]}
SHRINKS = {"id": "shrinks", "text": "gain smaller at {max_size} than at {min_size}", "parts": [
    {"kind": "diff_of_diffs", "metric": "test_acc", "first": ["dropout@min_size", "none@min_size"],
     "second": ["dropout@max_size", "none@max_size"], "direction": "greater"}]}


def sized(**over) -> StudyConfig:
    settings = dict(lecture=False, train_sizes=[400, 100, 200], size_steps=50, test="rest", val_size=500,
                    data_sampling="per-seed", batch_sizes=[32], timing_repeats=0, seeds=3, extra_seeds=2,
                    arms=ARMS, claims=[HELPS, SHRINKS])
    return StudyConfig(**{**settings, **over})


def test_cells_and_epochs_follow_the_sizes():
    cfg = sized()
    assert cfg.train_sizes == [100, 200, 400]
    assert cfg.cells == ["mnist-5k@100", "mnist-5k@200", "mnist-5k@400"]
    assert cells(cfg.to_dict()) == cfg.cells and split_cell("mnist-5k@200") == ("mnist-5k", 200)
    assert split_cell("my@data") == ("my@data", None) and cell_key("a", None) == "a"
    for cell, size in zip(cfg.cells, cfg.train_sizes, strict=True):
        runs = plan.independent_runs(cfg, cell) + plan.dependent_runs(cfg, cell, {t: 0.1 for t in cfg.design.swept})
        assert {r.config.train_size for r in runs} == {size}
        assert {r.config.data for r in runs} == {"mnist-5k"} and {r.data for r in runs} == {cell}
        assert {r.config.epochs for r in runs} == {round(50 * 32 / size)}  # the sweep too: the same steps
        by_seed = {}
        for r in runs:  # every arm of a seed trains on that seed's sample
            by_seed.setdefault(r.seed, set()).add(r.config.data_seed)
        assert all(len(v) == 1 for v in by_seed.values())
    folders = {r.folder("S") for c in cfg.cells for r in plan.independent_runs(cfg, c)}
    assert len(folders) == sum(len(plan.independent_runs(cfg, c)) for c in cfg.cells)
    assert size_epochs(None, 32, 100, 7) == 7 and size_epochs(10, 32, 10_000, 7) == 1
    assert size_epochs(10, 32, 10_000, 7, min_epochs=5) == 5 and size_epochs(100, 32, 100, 7, min_epochs=5) == 32
    assert [sized(size_min_epochs=20).epochs_at(c, 1) for c in cfg.cells] == [20, 20, 20]


def test_without_size_steps_every_size_trains_the_study_epochs():
    cfg = sized(size_steps=None, epochs=3, sweep_epochs=2)
    run = plan.independent_runs(cfg, cfg.cells[0])[0]
    assert run.group == "sweep" and run.config.epochs == 2
    assert {r.config.epochs for r in plan.dependent_runs(cfg, cfg.cells[2], {t: 0.1 for t in cfg.design.swept})} \
        == {3}


def test_claims_name_arms_at_a_size():
    cfg = sized()
    helps, shrinks = cfg.design.claims
    assert [p.a for p in helps.parts] == [("headline", f"dropout@{n}") for n in (100, 200, 400)]
    assert [p.label for p in helps.parts] == ["dropout at 100", "dropout at 200", "dropout at 400"]
    assert shrinks.text == "gain smaller at 400 than at 100"
    assert shrinks.parts[0].first == (("headline", "dropout@100"), ("headline", "none@100"))
    assert shrinks.parts[0].second == (("headline", "dropout@400"), ("headline", "none@400"))


@pytest.mark.parametrize(("over", "message"), [
    ({"train_size": 500}, "train_size or train_sizes, not both"),
    ({"train_sizes": [100, 100]}, "distinct sizes"),
    ({"train_sizes": [5]}, "distinct sizes of 10 images or more"),
    ({"train_sizes": [], "size_steps": 10, "train_size": 500, "claims": []}, "size_steps must be >= 1 and goes with"),
    ({"lecture": True}, "lecture = false"),
    ({"claims": [{**HELPS, "parts": [{**HELPS["parts"][0], "a": "dropout"}]}]}, "name 'dropout' at one"),
    ({"claims": [{**HELPS, "parts": [{**HELPS["parts"][0], "a": "dropout@300"}]}]}, "not one of the study's"),
    ({"claims": [{"id": "t", "text": "t", "parts": [{"metric": "timing.seconds_per_epoch", "a": "dropout@100",
                                                      "b": "none@100", "direction": "greater"}]}]},
     "timing claims are not available"),
])
def test_bad_sized_designs_are_one_line_errors(over, message):
    with pytest.raises(ConfigError, match=message):
        sized(**over)


def test_a_study_without_sizes_refuses_sized_names():
    sized_ref = {"id": "x", "text": "x", "parts": [{"metric": "test_acc", "a": "dropout@100", "b": "none",
                                                     "direction": "greater"}]}
    with pytest.raises(ConfigError, match="no train_sizes"):
        StudyConfig(lecture=False, arms=ARMS, claims=[sized_ref])
    with pytest.raises(ConfigError, match="needs the study's train_sizes"):
        StudyConfig(lecture=False, arms=ARMS, claims=[HELPS])


def _rows(cfg, effects: dict, rng: random.Random) -> list[dict]:
    """Result rows of every headline arm of `cfg` at each cell, test_acc = base + effect(arm, size) + noise."""
    rows = []
    for cell in cfg.cells:
        size = split_cell(cell)[1]
        for seed in range(cfg.seeds):
            base = rng.uniform(0.7, 0.9)  # per seed: the pairing removes it
            for arm in ("none", "l2", "l1", "noise", "dropout", "bn"):
                acc = base + effects.get((arm, size), 0.0) + rng.gauss(0, 0.002)
                rows.append({"data": cell, "group": "headline", "arm": arm, "technique": arm, "seed": seed,
                             "status": "finished", "test_acc": acc, "gap": 1 - acc,
                             "epochs_to_target": rng.uniform(1, 5)})
    return rows


def test_claims_across_sizes_read_each_cell(fresh_seed):
    rng = random.Random(fresh_seed)
    cfg = sized(seeds=6)
    effects = {("dropout", 100): rng.uniform(0.02, 0.05), ("dropout", 200): rng.uniform(0.01, 0.02),
               ("dropout", 400): rng.uniform(-0.002, 0.002)}
    rows = _rows(cfg, effects, rng)
    helps, shrinks = claims_mod.evaluate_claims(["mnist-5k"], rows, cfg.design.claims)
    parts = helps["data"]["mnist-5k"]["parts"]
    for part, size in zip(parts, (100, 200, 400), strict=True):
        by = {(r["arm"], r["seed"]): r["test_acc"] for r in rows if r["data"] == f"mnist-5k@{size}"}
        expected = sum(by[("dropout", s)] - by[("none", s)] for s in range(6)) / 6
        assert math.isclose(part["mean"], expected, rel_tol=1e-12)
        assert "p_holm" in part  # Holm runs over the map's parts
    assert [p["verdict"] for p in parts[:2]] == ["supported", "supported"]
    gain = shrinks["data"]["mnist-5k"]["parts"][0]
    assert gain["verdict"] == "supported" and gain["mean"] == pytest.approx(effects[("dropout", 100)] -
                                                                           effects[("dropout", 400)], abs=0.005)


def test_regime_rows_are_paired_effects_per_technique_size_and_metric(fresh_seed):
    rng = random.Random(fresh_seed)
    cfg = sized(seeds=5)
    effects = {("bn", 100): 0.05, ("bn", 200): 0.03, ("noise", 400): -0.03}
    rows = _rows(cfg, effects, rng)
    chosen = {c: {"l2": 1e-4, "l1": 1e-5, "noise": 0.3, "dropout": 0.5} for c in cfg.cells}
    out = regime.regime_rows(cfg.to_dict(), rows, cfg.design.arms, chosen)
    assert len(out) == 5 * 3 * len(regime.METRICS)
    row = next(r for r in out if r["technique"] == "bn" and r["train_size"] == 100 and r["metric"] == "test_acc")
    by = {(r["arm"], r["seed"]): r for r in rows if r["data"] == "mnist-5k@100"}
    diffs = [by[("bn", s)]["test_acc"] - by[("none", s)]["test_acc"] for s in range(5)]
    assert math.isclose(row["mean"], sum(diffs) / 5, rel_tol=1e-12) and row["n"] == 5
    assert row["verdict"] == "supported" and row["strength"] is None and row["ci_low"] > 0
    gap = next(r for r in out if r["technique"] == "bn" and r["train_size"] == 100 and r["metric"] == "gap")
    assert gap["verdict"] == "supported" and gap["mean"] == pytest.approx(-row["mean"])  # gap = 1 - acc here
    noise = next(r for r in out if r["technique"] == "noise" and r["train_size"] == 400 and r["metric"] == "test_acc")
    assert noise["verdict"] == "contradicted" and noise["strength"] == {"noise": 0.3}
    assert all(r["p_holm"] >= r["p"] - 1e-15 for r in out if "p_holm" in r)
    summary = {s["technique"]: s for s in regime.summary(out, "mnist-5k")}
    for tech, entry in summary.items():  # the summary restates the rows' verdicts, size by size
        mine = [r for r in out if r["technique"] == tech and r["metric"] == "test_acc"]
        assert entry["pays"] == [r["train_size"] for r in mine if r["verdict"] == "supported"]
        assert entry["costs"] == [r["train_size"] for r in mine if r["verdict"] == "contradicted"]
    assert summary["bn"]["first_pays"] == 100 and summary["bn"]["pays"][:2] == [100, 200]
    assert 400 in summary["noise"]["costs"] and 400 not in summary["noise"]["pays"]
    levels = regime.accuracy_rows(cfg.to_dict(), rows, cfg.design.arms)
    assert {(r["arm"], r["train_size"]) for r in levels} == {(a, n) for a in ("none", "l2", "l1", "noise", "dropout",
                                                                                "bn") for n in (100, 200, 400)}


@pytest.mark.parametrize("preset", ["regime", "regime-fashion"])
def test_the_regime_presets_are_maps(preset):
    cfg = load_preset(preset)
    assert len(cfg.train_sizes) >= 5 and not cfg.lecture and cfg.data_sampling == "per-seed"
    assert [cfg.epochs_at(c, cfg.epochs) for c in cfg.cells][-1] >= 20  # the largest size trains long enough
    arms = {a["arm"] for a in cfg.design.arms if a["group"] == "headline"}
    assert {"none", "l2", "l1", "noise", "dropout", "bn"} <= arms
    ids = {c.id for c in cfg.design.claims}
    for tech in ("l2", "l1", "noise", "dropout", "bn"):
        assert {f"{tech}-helps-by-size", f"{tech}-benefit-shrinks"} <= ids


def test_a_tiny_regime_study_writes_its_map_and_resumes(tmp_path):
    from conftest import ROOT

    from sandbag.study import load_config, run_study
    from sandbag.study.report import build_report

    cfg = load_config(ROOT / "configs" / "tiny-regime.toml")
    out = tmp_path / "regime"
    rows = run_study(cfg, out, workers=2, threads=1)
    assert {r["data"] for r in rows} == {"mnist-5k@60", "mnist-5k@120"}
    assert all(r["status"] == "finished" for r in rows)
    build_report(out)
    found = json.loads((out / "regime.json").read_text())
    assert found["sizes"] == [60, 120]
    assert len(found["rows"]) == 2 * 2 * len(regime.METRICS)  # dropout and bn, at two sizes
    assert {r["strength"]["dropout"] for r in found["rows"] if r["technique"] == "dropout"} == {0.5}
    assert all(math.isfinite(r["ci_low"]) and math.isfinite(r["ci_high"]) for r in found["rows"]
               if r["metric"] != "epochs_to_target")
    assert (out / "figures" / "mnist-5k" / "regime.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "Regime map (mnist-5k)" in report and "figures/mnist-5k/regime.png" in report
    meta = json.loads((out / "study.json").read_text())
    assert set(meta["chosen"]) == {"mnist-5k@60", "mnist-5k@120"}
    seen = []
    run_study(cfg, out, workers=2, threads=1, on_progress=seen.append)
    assert seen[-1].reused == seen[-1].total == len(rows)  # a rerun reuses every finished run
    if hangul_family() is not None:  # the Korean map: every sentence in the catalog, no missing glyph
        i18n.MISSING.clear()
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=r"Glyph .* missing from font")
            build_report(out, lang="ko")
        assert not i18n.MISSING, sorted(i18n.MISSING)
        assert "구간 지도 (mnist-5k)" in (out / "report.md").read_text()
