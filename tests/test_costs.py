"""Where a study's time goes (sandbag.study.costs): the arithmetic on fresh numbers, and a real study's study.json."""

import json
import random

import pytest

from sandbag.study.costs import CATEGORIES, add_report_seconds, itemize, run_costs


def _summary(rng: random.Random) -> tuple[dict, float, float]:
    setup, train, evaluation, writes = (rng.uniform(0.01, 5) for _ in range(4))
    probe, start = rng.uniform(0, 2), rng.uniform(0, 3)
    total = setup + train + evaluation + writes
    summary = {"setup_seconds": setup, "train_seconds": train, "eval_seconds": evaluation, "total_seconds": total}
    return summary, total + probe + start, probe


def test_run_costs_split_a_runs_wall_time_exactly(fresh_seed):
    rng = random.Random(fresh_seed)
    summary, wall, probe = _summary(rng)
    parts = run_costs(summary, wall, probe)
    assert sum(parts.values()) == pytest.approx(wall)
    assert parts["training steps"] == summary["train_seconds"] and parts["probes"] == probe
    assert parts["run folder writes"] == pytest.approx(summary["total_seconds"] - summary["setup_seconds"]
                                                       - summary["train_seconds"] - summary["eval_seconds"])


def test_itemize_accounts_for_every_second_of_the_study(fresh_seed, tmp_path):
    rng = random.Random(fresh_seed)
    slots = rng.randint(1, 8)
    runs = [run_costs(*_summary(rng)) for _ in range(rng.randint(1, 30))]
    busy = sum(sum(r.values()) for r in runs) / slots
    run_phase, timing = busy * rng.uniform(1.0, 1.5), rng.uniform(0, 20)
    spent = itemize(runs, run_phase, slots, timing)
    assert set(spent["seconds"]) == set(CATEGORIES)
    assert spent["total_seconds"] == pytest.approx(run_phase + timing)
    assert spent["seconds"]["idle workers"] == pytest.approx(run_phase - busy)
    assert sum(spent["share"].values()) == pytest.approx(1.0)
    assert spent["seconds"]["training steps"] == pytest.approx(sum(r["training steps"] for r in runs) / slots)
    (tmp_path / "study.json").write_text(json.dumps({"time": spent}))
    report = rng.uniform(1, 10)
    again = add_report_seconds(tmp_path, report)
    assert again["total_seconds"] == pytest.approx(run_phase + timing + report)
    assert json.loads((tmp_path / "study.json").read_text())["time"] == again


def test_a_real_study_itemizes_its_wall_time(tiny_study):
    out, _ = tiny_study
    meta = json.loads((out / "study.json").read_text())
    spent = meta["time"]
    assert 0 < spent["total_seconds"] <= meta["wall_seconds"]  # the phases it itemizes lie within the wall time
    for category in ("training steps", "evaluation", "probes", "process start and data", "timing phase"):
        assert spent["seconds"][category] > 0, category
    summary = json.loads(next((out / "runs").rglob("summary.json")).read_text())
    assert summary["train_seconds"] == pytest.approx(summary["seconds_per_epoch"] * summary["epochs_done"])
    assert 0 < summary["setup_seconds"] < summary["total_seconds"]
