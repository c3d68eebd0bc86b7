"""Where a study's wall time goes: training steps, evaluation, probes, process start and data, the timing phase,
figures and report (study.json's ``time``; `benchmarks/study_time.py` prints it).

Runs execute in parallel workers, so a run's seconds are worker-seconds: the run phase's share of one category is
its worker-seconds over the workers that ran them (the run phase's wall-equivalent). What the workers did not spend
on a run (waiting for the sweep to finish before the headline runs start, a tail with fewer runs than workers) is
``idle workers``. The timing phase and the report run alone, so their seconds are wall seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from .. import files

CATEGORIES = ("training steps", "evaluation", "probes", "process start and data", "run folder writes",
              "idle workers", "timing phase", "figures and report")


def run_costs(summary: Mapping, wall: float, probe: float | None) -> dict[str, float]:
    """One run's worker-seconds per category, from its summary.json times and the scheduler's submission-to-result
    wall seconds (which also hold the worker's process start, imports and the hand-back)."""
    train = summary.get("train_seconds") or 0.0
    evaluation = summary.get("eval_seconds") or 0.0
    setup = summary.get("setup_seconds") or 0.0
    total = summary.get("total_seconds") or 0.0
    probe = probe or 0.0
    return {"training steps": train, "evaluation": evaluation, "probes": probe,
            "process start and data": setup + max(wall - total - probe, 0.0),
            "run folder writes": max(total - setup - train - evaluation, 0.0)}


def itemize(runs: Iterable[Mapping[str, float]], run_phase: float, slots: int, timing_phase: float = 0.0,
            report: float = 0.0) -> dict:
    """The study's time per category in wall-equivalent seconds and as a share of the total. `runs`: each run's
    `run_costs` (runs reused from an earlier study take no time here); `run_phase`: the scheduler's wall seconds;
    `slots`: runs in flight at once."""
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    for run in runs:
        for category, value in run.items():
            seconds[category] += value / max(slots, 1)
    busy = sum(seconds.values())
    seconds["idle workers"] = max(run_phase - busy, 0.0)
    seconds["timing phase"], seconds["figures and report"] = timing_phase, report
    return _with_shares(seconds)


def _with_shares(seconds: dict[str, float]) -> dict:
    total = sum(seconds.values())
    return {"seconds": seconds, "share": {k: (v / total if total else 0.0) for k, v in seconds.items()},
            "total_seconds": total, "outside_training_share": 1 - seconds["training steps"] / total if total else 0.0}


def add_report_seconds(study_dir: Path | str, seconds: float) -> dict | None:
    """Put the report's time into study.json's itemization (the report is built after the runs) and return it."""
    path = Path(study_dir) / "study.json"
    meta = files.read_json(path)
    if not meta or "time" not in meta:
        return None
    meta["time"] = _with_shares({**meta["time"]["seconds"], "figures and report": seconds})
    files.write_json(path, meta)
    return meta["time"]
