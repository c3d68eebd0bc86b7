"""A study: every technique on the reference CNN, several seeds, the sub-experiments, and a report of verdicts.

Modules, in the order they depend on each other (each imports only those above it, never back):

- `layout`     the names of a study folder's files, figures and probe fields (no torch)
- `stats`      the verdict rule, Holm, power, one mean/std convention (no torch)
- `penalty`    claim 4's penalized one-weight problem, closed forms against a grid (no torch)
- `claims`     claims and their parts as values, and their evaluation into verdicts (no torch)
- `results`    result rows, results.csv / aggregate.csv, `read_results` (no torch)
- `schema`     [[claims]] tables (lecture.toml's and a study file's) checked and parsed; preregistration hashes
- `figures`    matplotlib figures from plain data (no torch)
- `report`     study folder -> verdicts.json, analysis.json, figures, report.md / report.html (no torch, no model)
- `plan`       [[arms]] tables expanded into arms and `Run`s, the validation sweep, `choose_strengths`
- `config`     `StudyConfig`, presets, TOML loading and validation (the design made once, checked)
- `probes`     the probe step: measure a trained run's model, write probes.json into its folder
- `executors`  where runs execute (local pool, Ray) and the worker entry point `execute` (train, then probe)
- `runner`     the scheduler and `run_study`

The names below are imported on first use, so ``import sandbag.study.report`` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StudyConfig": "config", "load_preset": "config", "load_config": "config", "PRESETS": "config",
    "Run": "plan", "independent_runs": "plan", "dependent_runs": "plan",
    "planned_arms": "plan", "choose_strengths": "plan",
    "run_study": "runner", "Progress": "runner", "StudyLock": "runner", "default_parallelism": "runner",
    "read_results": "results", "epochs_to_target": "results",
    "build_report": "report",
    "compare_config": "compare",
    "probe_run": "probes",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
