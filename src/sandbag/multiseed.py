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
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from . import data as data_mod
from .errors import ConfigError
from .models import build_model, count_params, is_factory
from .regularizers import Regularizer
from .runs import RunConfig, RunFolder
from .train import (
    EVAL_BATCH,
    batches_of,
    denormals_flushed,
    epoch_metrics,
    epoch_row,
    evaluates,
    has_batchnorm,
    make_optimizer,
    prepare_data,
    resolve_device,
    run_epoch,
    run_summary,
    seeded_model,
    tune_allocator,
    weight_stats,
)


class SeedStack(nn.Module):
    """Several copies of one architecture as one module: parameters stacked along a leading seed dimension.

    ``forward(x)`` takes one batch per seed, shape (seeds, batch, ...), or one batch shared by all seeds, shape
    (batch, ...), and returns logits of shape (seeds, batch, classes). Dropout and noise draw independently per
    seed (``vmap(randomness="different")``)."""

    def __init__(self, models: list[nn.Module], input_dims: int):
        super().__init__()
        params, buffers = stack_module_state(models)
        self.stacked = {**params}  # name -> (seeds, ...) leaf tensors, what the optimizer steps
        self.buffers_ = buffers
        self.input_dims = input_dims  # dims of one sample
        self._base = [copy.deepcopy(models[0]).to("meta")]  # a list: not a submodule, its meta params stay hidden
        self.seeds = len(models)

    @property
    def base(self) -> nn.Module:
        """The architecture (on the meta device): which names are weights, biases, norm layers."""
        return self._base[0]

    def train(self, mode: bool = True):
        self.base.train(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def call(p, b, xb):
            return functional_call(self.base, (p, b), (xb,))

        shared = x.dim() == self.input_dims + 1
        return vmap(call, in_dims=(0, 0, None if shared else 0), randomness="different")(
            self.stacked, self.buffers_, x)

    def model(self, i: int, template: nn.Module) -> nn.Module:
        """Seed `i`'s weights loaded into `template` (a freshly built model of the same architecture)."""
        template.load_state_dict({k: v[i].detach().cpu() for k, v in {**self.stacked, **self.buffers_}.items()})
        return template


def trains_together(cfg: RunConfig) -> bool:
    """Whether `fit_seeds` can train this config's seeds as one model: one process, no batch norm, and a built-in
    architecture (a factory's model may hold layers vmap cannot batch)."""
    return cfg.nproc == 1 and not is_factory(cfg.model) and not any(spec.name == "bn" for spec in cfg.specs)


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


def _per_seed(values: dict, count: int) -> list[dict]:
    """{key: [v_seed0, v_seed1, ...]} -> [{key: v_seed0}, {key: v_seed1}, ...]."""
    return [{k: v[i] for k, v in values.items()} for i in range(count)]


@denormals_flushed()
def fit_seeds(
    cfg: RunConfig,
    seeds: Sequence[int],
    out_dir: Path | str | None = None,
    *,
    dataset: data_mod.Dataset | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    run_dirs: Sequence[Path | str] | None = None,
) -> list[dict]:
    """Train `cfg` once per seed in `seeds`, all at once; return one summary dict per seed (as `fit` returns).

    `cfg.seed` is ignored (each seed replaces it). With `out_dir`, each seed's run folder is written to
    ``out_dir/seed-N`` (config.json, metrics.jsonl, summary.json, model.pt, as `fit` writes them); `run_dirs`
    names each seed's folder instead (a study's run folders).
    `on_epoch` gets the list of the seeds' metric rows after each epoch. Timing fields are those of the batch
    of seeds: ``samples_per_sec`` counts every seed's samples."""
    started = time.perf_counter()
    tune_allocator()  # as fit does
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    layout = replace(cfg, channels_last=False)  # the vmapped model and its data keep the default layout
    ds = prepare_data(layout, device, dataset)
    seeds = _check(cfg, seeds, build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.specs))
    models = [seeded_model(layout, ds.input_shape, ds.num_classes, device, s) for s in seeds]  # fit's initial weights
    count, counts = len(seeds), count_params(models[0])
    net = SeedStack(models, input_dims=len(ds.input_shape))
    del models
    optimizer = make_optimizer(cfg, net.stacked.values())
    regularizer = Regularizer(net.base, cfg.specs, params=net.stacked, lead=1)
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    cfgs = [replace(cfg, seed=s) for s in seeds]
    if run_dirs is not None and len(run_dirs) != len(seeds):
        raise ConfigError(f"{len(run_dirs)} run folders for {len(seeds)} seeds")
    if run_dirs is None and out_dir is not None:
        run_dirs = [Path(out_dir) / f"seed-{s}" for s in seeds]
    folders = [RunFolder(d) for d in run_dirs] if run_dirs is not None else []
    for folder, c in zip(folders, cfgs, strict=False):  # no folders without out_dir
        folder.start(c)

    histories: list[list[dict]] = [[] for _ in seeds]
    status = ["running"] * count
    n = len(ds.x_train)
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
            sums = run_epoch(net, optimizer, regularizer, batches_of(ds.x_train, ds.y_train, order, cfg.batch_size),
                             -(-n // cfg.batch_size), amp=cfg.amp)
            train_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            clean = epoch_metrics(net, ds, EVAL_BATCH) if evaluates(cfg, epoch) else {}
            per_seed = _per_seed({**epoch_row(sums), **clean,
                                  **weight_stats(net.base, params=net.stacked, lead=1)}, count)
            timing = {"epoch_seconds": train_seconds, "eval_seconds": time.perf_counter() - t1,
                      "samples_per_sec": count * n / train_seconds}
            rows = []
            for i in range(count):
                if status[i] != "running":
                    continue
                row = {"epoch": epoch, **per_seed[i], **timing}
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
            summary = run_summary(c, histories[i], status[i], counts, seconds, device)
            summary.update(seed=seeds[i], seeds_batched=count)
            summaries.append(summary)
            if folders:
                template = build_model(cfg.model, ds.input_shape, ds.num_classes, cfg.specs)
                folders[i].finish(net.model(i, template), c, summary, ds.input_shape, ds.num_classes)
    return summaries
