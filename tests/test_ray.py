"""Studies on Ray: the tiny study on a local Ray instance (2 CPUs) gives the local executor's results table, resumes
without resubmitting, and a run whose worker dies is retried. Skipped only where Ray is not installed; CI installs
it (``make dev`` installs ``.[dev,ray]``)."""

import csv
import json
import sys

import pytest
from conftest import TINY

from sandbag.errors import ConfigError
from sandbag.runs import SUMMARY_TIMES, RunConfig, read_summary
from sandbag.study import Progress, load_config, read_results, run_study
from sandbag.study.executors import make_executor

TIMING = SUMMARY_TIMES


def test_ray_missing_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'sandbag\[ray\]'"):
        make_executor("ray", workers=1, threads=1)
    with pytest.raises(ConfigError, match="--address applies to --executor ray only"):
        make_executor("local", workers=1, threads=1, address="10.0.0.1:6379")


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'sandbag[ray]' (CI installs it)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield ray
    ray.shutdown()


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith(TIMING)} for row in rows]


def test_tiny_study_on_ray_matches_the_local_executor(tiny_study, ray, tmp_path):
    local, _ = tiny_study
    out = tmp_path / "tiny"
    rows = run_study(load_config(TINY), out, threads=1, executor="ray",
                     command="sandbag study --config configs/tiny.toml --executor ray")
    assert len(rows) == 27
    assert _without_timing(read_results(out)) == _without_timing(read_results(local))
    for name in ("aggregate.csv",):
        ours, theirs = (list(csv.DictReader(open(d / name))) for d in (out, local))
        assert _without_timing(ours) == _without_timing(theirs)
    meta = json.loads((out / "study.json").read_text())
    assert meta["hardware"]["executor"] == "ray" and meta["hardware"]["cluster_cpus"] == 2
    run_dir = out / read_results(out)[0]["run_dir"]
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "metrics.jsonl", "summary.json", "model.pt",
                                                   "probes.json"}

    seen: list[Progress] = []
    run_study(load_config(TINY), out, threads=1, executor="ray", on_progress=seen.append)
    assert seen[-1].reused == seen[-1].done == 27  # resume: finished runs are not resubmitted


def test_a_run_lost_with_its_worker_is_retried(ray, tmp_path):
    from sandbag.study.executors import RayExecutor

    marker = tmp_path / "crashed-once"

    def crash_once(cfg_dict, threads, companion=True):  # pickled by value: the worker needs no test module
        import os
        from pathlib import Path

        from sandbag.study.executors import ray_run

        if not Path(marker).exists():
            Path(marker).touch()
            os._exit(1)  # the worker process dies mid-task
        return ray_run(cfg_dict, threads, companion)

    executor = RayExecutor(threads=1)
    executor.remote = ray.remote(crash_once)
    cfg = RunConfig(data="digits", model="mlp", train_size=100, epochs=1)
    summary = executor.submit(cfg.to_dict(), str(tmp_path / "run")).result(timeout=180)
    executor.shutdown()
    assert marker.exists() and summary["status"] == "finished"
    assert read_summary(tmp_path / "run") == {k: v for k, v in summary.items() if k != "probe_seconds"}
