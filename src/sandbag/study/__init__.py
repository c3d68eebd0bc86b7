"""A study: every technique on the reference CNN, several seeds, the sub-experiments, and a report of verdicts.

Modules, in the order they depend on each other (each imports only those above it, never back):

- `claims`     the claims, the verdict rule, claim 4's closed-form check (no torch)
- `figures`    matplotlib figures from plain data (no torch)
- `results`    result rows, results.csv / aggregate.csv, `read_results` (no torch)
- `report`     study folder -> verdicts.json, analysis.json, figures, report.md / report.html (no torch, no model)
- `plan`       the study design as data: the arms table, `Run`, the runs of a study, `choose_strengths`
- `config`     `StudyConfig`, presets, TOML loading and validation (claims against the plan)
- `probes`     the probe step: measure a trained run's model, write probes.json into its folder
- `executors`  where runs execute (local pool, Ray) and the worker entry point `execute` (train, then probe)
- `runner`     the scheduler and `run_study`

The names below are imported on first use, so ``import sandbag.study.report`` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StudyConfig": "config", "load_preset": "config", "load_config": "config", "PRESETS": "config",
    "Arm": "plan", "ARMS": "plan", "Run": "plan", "independent_runs": "plan", "dependent_runs": "plan",
    "planned_arms": "plan", "choose_strengths": "plan",
    "run_study": "runner", "Progress": "runner", "StudyLock": "runner", "default_parallelism": "runner",
    "read_results": "results", "epochs_to_target": "results",
    "build_report": "report",
    "probe_run": "probes",
}
__all__ = [*_EXPORTS, "read_summary"]


def __getattr__(name: str):
    if name == "read_summary":  # where it lived before sandbag.runs
        from ..runs import read_summary

        return read_summary
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
