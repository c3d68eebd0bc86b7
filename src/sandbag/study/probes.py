"""The probe step: after a study run trains, measure its model and write ``probes.json`` into its run folder.

The report never loads a model or a data set; everything it needs from a trained model is measured here, once per
run, in the worker that trained it (`sandbag.study.executors.execute`), or by the scheduler for runs reused from a
study folder that predates this step. What is measured follows from the run's own specs, not from its arm's name:

- every run: ``weights``, a histogram of the penalized weights on fixed bin edges (`WEIGHT_EDGES`, `LOG_EDGES`)
  with counts of exact zeros and of |w| < 1e-3 (a few kB, whatever the model's size);
- a BN run and a run without any technique (the baseline BN is compared with): ``companion_prob_std_mean``
  (`analysis.bn_companion_noise` with fixed settings), so the report can form BN minus none per seed; in a study
  only the runs of arms a claim reads it of (`companion=False` for the others). Other runs skip it: without BN it
  is 0 by construction and costs a second or more per run;
- a run with a dense dropout layer (``dropout=`` without ``:spatial``): ``dropout_accuracy_drop``,
  ``dropout_disagreement``, ``dropout_eval_acc``, ``dropout_on_acc`` (`analysis.dropout_left_on`, 5 passes,
  seeded with the run's seed) and ``dropout_masks`` (12 steps of the keep-mask, rows of "0"/"1");
- a BN run: ``bn_z_mean_absmax``, ``bn_z_std_absdev_max``, ``bn_z_std_eps_absdev_max`` (`analysis.bn_normalization`
  on a batch of 256 drawn with the run's seed) and ``bn_example`` (one feature before/after normalization as
  histograms with their mean and std);
- a run of a factory's own model (`sandbag.models.is_factory`) that lacks what a probe reads (the dropout masks
  need a dense ``nn.Dropout`` with a linear layer after it): that probe's fields are left out and ``skipped``
  says why, so the claims that need them are inconclusive for that run.

The test inputs are the first 1000 test samples of the run's own data (`train.load_data(cfg)`). The settings are
those the report used when it probed models itself, so the numbers are the same for the same models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import analysis, files
from ..models import is_factory
from ..regularizers import find
from ..runs import RunConfig, load_checkpoint, read_summary
from .layout import PROBES

FORMAT = "sandbag-probes/1"
PROBE_SAMPLES = 1000  # x_test[:1000]
DROPOUT_PASSES = 5
MASK_STEPS = 12
BN_BATCH = 256
COMPANION = {"n_samples": 16, "n_batches": 4, "batch_size": 32, "seed": 0}
SMALL = 1e-3  # |w| below this counts as near zero (metrics' frac_small)
WEIGHT_EDGES = np.linspace(-1.0, 1.0, 201)  # plus counts below -1 and above 1
LOG_EDGES = np.linspace(-12.0, 1.0, 131)  # log10 |w| of nonzero weights, plus counts outside
EXAMPLE_BINS = 60


def has_probes(folder: Path | str) -> bool:
    return (Path(folder) / PROBES).is_file()


def probe_run(folder: Path | str, companion: bool = True) -> dict | None:
    """Probe the trained model of a finished run folder and write its probes.json (atomically); return it.
    Runs that did not finish (diverged) are not probed: None. `companion`: measure the BN companion noise where
    the run's specs call for it (a study asks for it only on the arms its claims read it of: ~2 s a run)."""
    folder = Path(folder)
    summary = read_summary(folder)
    if summary is None or summary.get("status") != "finished":
        return None
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order in a worker and in the scheduler: the same bits
    try:
        out = _measure(folder, companion)
    finally:
        torch.set_num_threads(previous)
    files.write_json(folder / PROBES, out)
    return out


def _measure(folder: Path, companion: bool = True) -> dict:
    from ..train import load_data  # the data set code is needed here only

    cfg, model, _ = load_checkpoint(folder, device="cpu")
    ds = load_data(cfg)
    x, y = ds.x_test[:PROBE_SAMPLES], ds.y_test[:PROBE_SAMPLES]
    out: dict = {"format": FORMAT, "seed": cfg.seed, "config_key": cfg.key(), "samples": len(x)}
    specs = cfg.specs
    dropout = find(specs, "dropout")
    if dropout is not None and not dropout.has("spatial"):
        _probe(out, "dropout", cfg, lambda: _dropout_probe(model, x, y, cfg.seed))
    if find(specs, "bn") is not None:
        _probe(out, "bn", cfg, lambda: _bn_probe(model, x, cfg.seed))
    if companion and (not specs or find(specs, "bn") is not None):
        companion = {**COMPANION, "batch_size": min(COMPANION["batch_size"], len(x))}
        noise = analysis.bn_companion_noise(model, x, **companion, check_eval=False)  # the BN-mode spread only
        out["companion_prob_std_mean"] = noise["prob_std_mean"]
    out["weights"] = weight_histogram(analysis.weight_values(model))
    return out


def _probe(out: dict, name: str, cfg: RunConfig, measure: Callable[[], dict]) -> None:
    """One group of probe fields into `out`. A factory's own model may lack the structure a probe reads (a dense
    nn.Dropout followed by a linear layer, say): that group is left out, its reason under ``skipped``, and the
    claims that need it are inconclusive for the run. On sandbag's own models a probe that fails is a bug."""
    try:
        out.update(measure())
    except ValueError as exc:
        if not is_factory(cfg.model):
            raise
        out.setdefault("skipped", {})[name] = str(exc)


def _dropout_probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
    masks = analysis.dropout_masks(model, steps=MASK_STEPS, seed=0)  # first: it needs a dense nn.Dropout
    result = analysis.dropout_left_on(model, x, y, passes=DROPOUT_PASSES, seed=seed)
    return dict(dropout_accuracy_drop=result["drop"], dropout_disagreement=result["disagreement"],
                dropout_eval_acc=result["eval_acc"], dropout_on_acc=result["on_acc_mean"],
                dropout_masks=["".join("1" if kept else "0" for kept in row) for row in masks])


def _bn_probe(model: nn.Module, x: torch.Tensor, seed: int) -> dict:
    norm = analysis.bn_normalization(model, x, batch_size=min(BN_BATCH, len(x)), seed=seed)
    example = norm["example"]
    return dict(bn_z_mean_absmax=norm["z_mean_absmax"], bn_z_std_absdev_max=norm["z_std_absdev_max"],
                bn_z_std_eps_absdev_max=norm["z_std_eps_absdev_max"],
                bn_example={"layer": example["layer"], "feature": example["feature"],
                            "before": value_histogram(example["before"]),
                            "after": value_histogram(example["after"])})


def weight_histogram(values: np.ndarray) -> dict:
    """Weights as counts on fixed edges (small, whatever the model's size): linear bins on [-1, 1] with counts
    below and above, log10 |w| bins for the nonzero ones, and the counts of exact zeros and of |w| < SMALL."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    nonzero = np.abs(v[v != 0])
    logs = np.log10(nonzero) if len(nonzero) else np.zeros(0)
    return {
        "n": int(len(v)), "zero": int(np.sum(v == 0)), "small": int(np.sum(np.abs(v) < SMALL)),
        "edges": [round(float(e), 10) for e in WEIGHT_EDGES], "counts": np.histogram(v, WEIGHT_EDGES)[0].tolist(),
        "below": int(np.sum(v < WEIGHT_EDGES[0])), "above": int(np.sum(v > WEIGHT_EDGES[-1])),
        "log_edges": [round(float(e), 10) for e in LOG_EDGES], "log_counts": np.histogram(logs, LOG_EDGES)[0].tolist(),
        "log_below": int(np.sum(logs < LOG_EDGES[0])), "log_above": int(np.sum(logs > LOG_EDGES[-1])),
    }


def value_histogram(values, bins: int = EXAMPLE_BINS) -> dict:
    """A sample of values as a histogram over their own range, with their count, mean and std."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0, "mean": None, "std": None, "edges": [], "counts": []}
    counts, edges = np.histogram(v, bins=min(bins, max(5, len(v) // 10)))
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std()), "edges": edges.tolist(),
            "counts": counts.tolist()}
