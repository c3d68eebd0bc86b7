"""Several seeds of one run config trained at once, as one batched model.

A reference CNN is far too small to fill a large GPU: one run leaves most of it idle. `fit_seeds` stacks the
seeds' models into one set of parameters with a leading seed dimension (``torch.func.stack_module_state``) and
runs them with ``torch.func.vmap`` (``randomness="different"``: each seed draws its own dropout masks and noise).
Each seed keeps everything `sandbag.train.fit` gives it: its own initial weights (``torch.manual_seed(seed)``
before the model is built), its own batch order (a generator seeded with the seed) and its own optimizer state
(Adam, AdamW and SGD act element by element, so one optimizer over the stacked tensors is one per seed). Each
seed's loss is its own mean over its batch; the step minimizes their sum, whose gradient with respect to one seed's
weights is that seed's gradient alone.

Limits: models with batch norm are refused (running statistics under vmap would need per-seed buffers updated in
place; train BN models with `fit`), and so is data-parallel training (``nproc`` > 1). Results match `fit` per seed
up to float rounding where no randomness is involved; dropout and noise masks differ from `fit`'s.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from . import data as data_mod
from .errors import ConfigError
from .models import build_model, count_params
from .regularizers import penalized_parameters
from .train import (
    EVAL_BATCH,
    RunConfig,
    _RunFolder,
    _summary,
    autocast,
    has_batchnorm,
    load_data,
    make_optimizer,
    tune_allocator,
)
from .train import resolve_device as _resolve_device


class _Params:
    """What `make_optimizer` needs from a model: its parameters (here the stacked ones)."""

    def __init__(self, params: dict[str, torch.Tensor]):
        self._params = list(params.values())

    def parameters(self):
        return iter(self._params)


def _check(cfg: RunConfig, seeds: Sequence[int], model: nn.Module) -> list[int]:
    """The seeds as distinct ints, or a ConfigError for what multi-seed training cannot do."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("fit_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {seeds}")
    if cfg.nproc != 1:
        raise ConfigError("multi-seed training runs in one process: nproc must be 1")
    if has_batchnorm(model):
        raise ConfigError("multi-seed training does not support batch norm (per-seed running statistics under vmap); "
                          "train BN models one seed at a time with fit / sandbag train")
    return seeds


def _penalty_names(base: nn.Module, spec) -> list[str]:
    return [n for n, _ in penalized_parameters(base, include_bias=spec.has("bias"), include_norm=spec.has("bn"))]


def _per_seed_penalty(params: dict[str, torch.Tensor], base: nn.Module, specs, seeds: int) -> torch.Tensor:
    """Each seed's penalty term (shape (seeds,)): the same sums as `sandbag.regularizers.penalty`, per seed."""
    total = torch.zeros(seeds, device=next(iter(params.values())).device)
    for spec in specs:
        if spec.name == "l2" and not spec.has("decoupled") and spec.value:
            total = total + 0.5 * spec.value * sum(params[n].square().flatten(1).sum(1)
                                                   for n in _penalty_names(base, spec))
        elif spec.name == "l1" and not spec.has("prox") and spec.value:
            total = total + spec.value * sum(params[n].abs().flatten(1).sum(1) for n in _penalty_names(base, spec))
    return total


@torch.no_grad()
def _after_step(params, base, specs, optimizer) -> None:
    """Decoupled L2 and proximal L1 on the stacked weights (element-wise, so per seed)."""
    from .regularizers import soft_threshold_, step_size

    for spec in specs:
        if spec.name == "l2" and spec.has("decoupled") and spec.value:
            lr = optimizer.param_groups[0]["lr"]
            for n in _penalty_names(base, spec):
                params[n].mul_(1.0 - lr * spec.value)
        elif spec.name == "l1" and spec.has("prox") and spec.value:
            for n in _penalty_names(base, spec):
                soft_threshold_(params[n], step_size(optimizer, params[n]) * spec.value)


def fit_seeds(
    cfg: RunConfig,
    seeds: Sequence[int],
    out_dir: Path | str | None = None,
    *,
    dataset: data_mod.Dataset | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Train `cfg` once per seed in `seeds`, all at once; return one summary dict per seed (as `fit` returns).

    `cfg.seed` is ignored (each seed replaces it). With `out_dir`, each seed's run folder is written to
    ``out_dir/seed-N`` (config.json, metrics.jsonl, summary.json, model.pt, as `fit` writes them).
    `on_epoch` gets the list of the seeds' metric rows after each epoch. Timing fields are those of the batch
    of seeds: ``samples_per_sec`` counts every seed's samples."""
    started = time.perf_counter()
    tune_allocator()  # as fit does
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _resolve_device(cfg.device)
    specs = cfg.specs
    ds = (dataset or load_data(cfg)).to(device)
    if cfg.batch_size > len(ds.x_train):
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the training set ({len(ds.x_train)} samples)")

    seeds = _check(cfg, seeds, build_model(cfg.model, ds.input_shape, ds.num_classes, specs))
    models, cfgs = [], []
    for seed in seeds:
        torch.manual_seed(int(seed))  # as fit: the same initial weights as `fit` with this seed
        models.append(build_model(cfg.model, ds.input_shape, ds.num_classes, specs).to(device))
        cfgs.append(replace(cfg, seed=int(seed)))
    count = len(seeds)
    counts = count_params(models[0])
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    del models

    def call(p, b, x):
        return functional_call(base, (p, b), (x,))

    train_call = vmap(call, in_dims=(0, 0, 0), randomness="different")
    eval_call = vmap(call, in_dims=(0, 0, None), randomness="different")
    optimizer = make_optimizer(cfg, _Params(params))
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    folders = [_RunFolder(Path(out_dir) / f"seed-{s}") for s in seeds] if out_dir is not None else []
    for folder, c in zip(folders, cfgs, strict=False):  # no folders without out_dir
        folder.start(c)

    histories: list[list[dict]] = [[] for _ in seeds]
    status = ["running"] * count
    x_train, y_train, n = ds.x_train, ds.y_train, len(ds.x_train)
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            base.train()
            order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
            loss_sum = torch.zeros(count, device=device)
            penalty_sum = torch.zeros(count, device=device)
            correct = torch.zeros(count, device=device, dtype=torch.long)
            steps = 0
            for start in range(0, n, cfg.batch_size):
                idx = order[:, start : start + cfg.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                with autocast(cfg.amp, device):
                    logits = train_call(params, buffers, xb)
                    losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
                losses = losses.float().view(count, -1).mean(1)
                reg = _per_seed_penalty(params, base, specs, count)
                optimizer.zero_grad(set_to_none=True)
                (losses.sum() + reg.sum()).backward()
                optimizer.step()
                _after_step(params, base, specs, optimizer)
                loss_sum += losses.detach() * idx.shape[1]
                penalty_sum += reg.detach()
                correct += (logits.detach().argmax(-1) == yb).sum(1)
                steps += 1
            running_loss = (loss_sum / n).tolist()
            running_acc = (correct.double() / n).tolist()
            penalties = (penalty_sum / steps).tolist()
            train_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            base.eval()
            metrics = _epoch_metrics(eval_call, params, buffers, ds, count)
            stats = _weight_stats(params, base)
            eval_seconds = time.perf_counter() - t1
            rows = []
            for i in range(count):
                if status[i] != "running":
                    continue
                row = {"epoch": epoch, "running_loss": running_loss[i], "running_acc": running_acc[i],
                       "penalty": penalties[i], **metrics[i], **stats[i], "epoch_seconds": train_seconds,
                       "eval_seconds": eval_seconds, "samples_per_sec": count * n / train_seconds}
                histories[i].append(row)
                rows.append(row)
                if not math.isfinite(row["running_loss"]):
                    status[i] = "diverged"
                if folders:
                    folders[i].write_metrics(histories[i])
            if on_epoch:
                on_epoch(rows)
            if "running" not in status:
                break
        status = ["finished" if s == "running" else s for s in status]
    except KeyboardInterrupt:
        status = ["interrupted" if s == "running" else s for s in status]
        raise
    finally:
        seconds = time.perf_counter() - started
        summaries = []
        for i, c in enumerate(cfgs):
            summary = _summary(c, histories[i], status[i], counts, seconds, device)
            summary.update(seed=seeds[i], seeds_batched=count)
            summaries.append(summary)
            if folders:
                model = build_model(cfg.model, ds.input_shape, ds.num_classes, specs)
                model.load_state_dict({k: v[i].detach().cpu() for k, v in {**params, **buffers}.items()})
                folders[i].finish(model, c, summary, ds)
    return summaries


@torch.inference_mode()
def _evaluate(eval_call, params, buffers, x, y, count) -> tuple[list[float], list[float]]:
    loss_sum = torch.zeros(count, device=x.device)
    correct = torch.zeros(count, device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        logits = eval_call(params, buffers, x[start : start + EVAL_BATCH])
        yb = y[start : start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits.flatten(0, 1), yb.repeat(count), reduction="none").view(count, -1).sum(1)
        correct += (logits.argmax(-1) == yb).sum(1)
    return (loss_sum / len(x)).tolist(), (correct.double() / len(x)).tolist()


def _epoch_metrics(eval_call, params, buffers, ds: data_mod.Dataset, count: int) -> list[dict]:
    out = [{} for _ in range(count)]
    for split, x, y in (("train", ds.x_train, ds.y_train), ("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test)):
        if x is None:
            continue
        losses, accs = _evaluate(eval_call, params, buffers, x, y, count)
        for i in range(count):
            out[i][f"{split}_loss"], out[i][f"{split}_acc"] = losses[i], accs[i]
    for row in out:
        row["gap"] = row["train_acc"] - row["test_acc"]
    return out


@torch.no_grad()
def _weight_stats(params, base, small: float = 1e-3) -> list[dict]:
    """`sandbag.train.weight_stats` per seed."""
    names = [n for n, _ in penalized_parameters(base)]
    weights = torch.cat([params[n].detach().flatten(1) for n in names], dim=1)
    l2 = weights.norm(dim=1).tolist()
    frac_small = (weights.abs() < small).float().mean(1).tolist()
    frac_zero = (weights == 0).float().mean(1).tolist()
    return [{"weight_l2": a, "frac_small": b, "frac_zero": c}
            for a, b, c in zip(l2, frac_small, frac_zero, strict=True)]
