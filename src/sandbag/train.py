"""The training engine: `setup_run`, `train_step`, `train_one_epoch`, `evaluate`, and `fit`, which writes a run folder.

There is one training step (`train_step`) and one epoch loop (`run_epoch`); `fit`, the data-parallel path
(`sandbag.distributed`), several seeds at once (`sandbag.multiseed`) and the benchmarks all go through them. What
a run is and how its folder is laid out lives in `sandbag.runs`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_mod
from .allocator import denormals_flushed, tune_allocator
from .errors import ConfigError
from .models import build_model, count_params
from .regularizers import Regularizer, Spec, penalized_parameters
from .runs import TIMING_FIELDS, RunConfig, RunFolder, load_checkpoint, versions

__all__ = [
    "RunConfig", "RunSetup", "setup_run", "train_step", "run_epoch", "train_one_epoch", "evaluate", "epoch_metrics",
    "weight_stats", "fit", "evaluate_run", "load_checkpoint", "load_data", "make_optimizer", "resolve_device",
    "versions", "tune_allocator", "denormals_flushed",
]

# Evaluation batch: on CPU with the allocator tuned, ref-cnn evaluated as fast or faster at 256 than at 64, 128 or 512
# with 1 and 2 threads, and ~1.4x slower at 1000 (activations outgrow the cache). Results do not depend on it beyond
# float rounding of the summed loss.
EVAL_BATCH = 256


# ----------------------------------------------------------------------------------------------------------------
# Set-up


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu")
    return device


def make_optimizer(cfg: RunConfig, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The run's optimizer over `params` (a model's parameters, or any tensors that require grad)."""
    params = list(params)
    # Fused kernels update every parameter in one pass (Adam's step took 0.32 ms instead of foreach's 0.65 ms for
    # ref-cnn on 2 CPU threads); torch has them for CPU and CUDA tensors only.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, fused=fused)
    # adamw without weight_decay here: decoupled decay is the l2=...:decoupled technique (see regularizers.L2)
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=0.0, fused=fused)


def load_data(cfg: RunConfig) -> data_mod.Dataset:
    """The run's data set with its own options (train subset, validation split, standardization)."""
    ds = data_mod.load(cfg.data, base=cfg.base_dir)
    return data_mod.prepare(
        ds, train_size=cfg.train_size, val_fraction=cfg.val_fraction, val_size=cfg.val_size, test=cfg.test,
        standardize=cfg.standardize, seed=cfg.data_seed,
    )


def channels_last(ds: data_mod.Dataset) -> data_mod.Dataset:
    """The data set's images in channels_last memory format (slices of them stay channels_last)."""
    def cl(x):
        return None if x is None else x.contiguous(memory_format=torch.channels_last)

    return replace(ds, x_train=cl(ds.x_train), x_val=cl(ds.x_val), x_test=cl(ds.x_test))


def uses_channels_last(cfg: RunConfig, input_shape) -> bool:
    """channels_last for image input: measured faster for these convs on CPU."""
    return cfg.channels_last and len(input_shape) == 3


def seeded_model(cfg: RunConfig, input_shape, num_classes: int, device: torch.device, seed: int) -> nn.Module:
    """The run's model with initial weights drawn from `seed`, on `device`, in the run's memory format."""
    torch.manual_seed(seed)
    model = build_model(cfg.model, input_shape, num_classes, cfg.specs).to(device)
    if uses_channels_last(cfg, input_shape):
        model = model.to(memory_format=torch.channels_last)
    return model


def autocast(amp: str | None, device: torch.device):
    """bfloat16 autocast for `amp` == "bf16" on `device`; a no-op context (the plain fp32 path) when off."""
    if amp is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def min_batch(model: nn.Module) -> int:
    """The smallest training batch `model` takes: BN cannot normalize a batch of one in training."""
    return 2 if has_batchnorm(model) else 1


@dataclass
class RunSetup:
    """What a run trains with: its device, data (on the device), model, the module to train (`net`: the model or
    its DDP wrapper), optimizer, bound regularizer and the generator of its batch order."""

    cfg: RunConfig
    device: torch.device
    ds: data_mod.Dataset
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    regularizer: Regularizer
    generator: torch.Generator


def prepare_data(cfg: RunConfig, device: torch.device, dataset: data_mod.Dataset | None = None) -> data_mod.Dataset:
    """The run's data on `device` (in channels_last for image input), checked against the batch size."""
    ds = (dataset or load_data(cfg)).to(device)
    if cfg.batch_size > len(ds.x_train):
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the training set ({len(ds.x_train)} samples)")
    return channels_last(ds) if uses_channels_last(cfg, ds.input_shape) else ds


def setup_run(cfg: RunConfig, *, dataset: data_mod.Dataset | None = None, dist=None) -> RunSetup:
    """Seed, data, model, optimizer and regularizer of a run, the same for every way of training it.

    With `dist` (a `sandbag.distributed.DistContext`) the model is wrapped for data-parallel training."""
    tune_allocator()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device) if dist is None else dist.device
    if dist is None and cfg.nproc > 1:
        raise ConfigError(f"nproc {cfg.nproc} needs a process group: use sandbag train --nproc {cfg.nproc} or torchrun")
    ds = prepare_data(cfg, device, dataset)
    model = seeded_model(cfg, ds.input_shape, ds.num_classes, device, cfg.seed)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    net = model
    if dist is not None:
        dist.check(cfg.batch_size, min_batch(model), cfg.nproc)
        model, net = dist.prepare(model, cfg.specs, cfg.seed)
    optimizer = make_optimizer(cfg, model.parameters())
    return RunSetup(cfg, device, ds, model, net, optimizer, Regularizer(model, cfg.specs), generator)


# ----------------------------------------------------------------------------------------------------------------
# The step, the epoch, the evaluation


def data_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch: a scalar, or one per leading index of `y` (several seeds: (S, B))."""
    if y.ndim == 1:
        return F.cross_entropy(logits, y)
    per_sample = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none").float()
    return per_sample.view(y.shape).mean(-1)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, regularizer: Regularizer, xb: torch.Tensor,
               yb: torch.Tensor, *, weight: float = 1.0, amp: str | None = None):
    """One optimizer step on one batch with the techniques active; returns (data loss, penalty, logits), detached.

    loss = cross-entropy + the techniques' penalty; backward; then ``regularizer.step``: decoupled decay, the
    optimizer step, the proximal step. `weight` scales the data loss (data-parallel uneven last batch)."""
    with autocast(amp, xb.device):
        logits = net(xb)
        loss = data_loss(logits, yb)
    reg = regularizer.penalty() if regularizer.through_loss else regularizer.zero  # no per-step zeros() without one
    optimizer.zero_grad(set_to_none=True)
    total = (loss if weight == 1.0 else loss * weight) + reg
    (total if total.ndim == 0 else total.sum()).backward()  # seeds: the sum's gradient per seed is its own
    regularizer.step(optimizer)
    return loss.detach(), reg.detach(), logits.detach()


Batches = Iterable[tuple[torch.Tensor, torch.Tensor, float]]


def run_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, regularizer: Regularizer, batches: Batches,
              steps: int, *, on_step: Callable[[int, int], None] | None = None, amp: str | None = None) -> dict:
    """`train_step` over `batches` of (x, y, weight); sums of data loss x samples, penalty and hits, as tensors
    (scalars, or one per seed), and the sample count: metrics sync with the device once, at the end."""
    net.train()
    loss_sum = penalty_sum = correct = None
    seen = 0
    for step, (xb, yb, weight) in enumerate(batches):
        loss, reg, logits = train_step(net, optimizer, regularizer, xb, yb, weight=weight, amp=amp)
        n = yb.shape[-1]
        hits = (logits.argmax(-1) == yb).sum(-1)
        if loss_sum is None:
            loss_sum, penalty_sum, correct = torch.zeros_like(loss), torch.zeros_like(reg), torch.zeros_like(hits)
        loss_sum += loss * n
        penalty_sum += reg
        correct += hits
        seen += n
        if on_step:
            on_step(step + 1, steps)
    return {"loss_sum": loss_sum, "penalty_sum": penalty_sum, "correct": correct, "seen": seen, "steps": steps}


def epoch_row(sums: dict) -> dict:
    """running_loss, running_acc and mean penalty per step from `run_epoch`'s sums (floats, or lists per seed)."""
    return {
        "running_loss": (sums["loss_sum"] / sums["seen"]).tolist(),
        "running_acc": (sums["correct"].double() / sums["seen"]).tolist(),
        "penalty": (sums["penalty_sum"] / sums["steps"]).tolist(),
    }


def train_one_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    regularizer: Regularizer | Iterable[Spec],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    on_step: Callable[[int, int], None] | None = None,
    dist=None,
    amp: str | None = None,
) -> dict[str, float]:
    """One shuffled pass over (x, y) with the techniques active (`regularizer`, or specs bound to `net` here).

    With `dist` (a `sandbag.distributed.DistContext`, `net` wrapped in DDP) this rank trains on its share of each
    global batch of `batch_size`, and the metrics are summed over ranks."""
    if not isinstance(regularizer, Regularizer):
        regularizer = Regularizer(net, regularizer)
    smallest = min_batch(net)
    steps = (dist or data_mod).num_batches(len(x), batch_size, smallest)
    batches = (
        ((xb, yb, 1.0) for xb, yb in data_mod.batches(x, y, batch_size, generator=generator, min_batch=smallest))
        if dist is None else dist.batches(x, y, batch_size, generator, smallest)
    )
    sums = run_epoch(net, optimizer, regularizer, batches, steps, on_step=on_step, amp=amp)
    if dist is not None:  # the penalty is the same on every rank: not summed
        sums.update(loss_sum=dist.all_sum(sums["loss_sum"]), correct=dist.all_sum(sums["correct"]),
                    seen=dist.all_sum(sums["seen"]).item())
    return epoch_row(sums)


def eval_sums(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and hit count of one evaluation batch (one of each per seed for stacked logits)."""
    if logits.ndim == 2:
        return F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()
    per_sample = F.cross_entropy(logits.flatten(0, -2), y.expand(logits.shape[:-1]).flatten(), reduction="none")
    return per_sample.view(logits.shape[:-1]).sum(-1), (logits.argmax(-1) == y).sum(-1)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict:
    """Loss and accuracy in evaluation mode (dropout and noise off, BN on running statistics); floats, or lists
    with one value per seed for a model that returns stacked logits (`sandbag.multiseed`)."""
    model.eval()
    loss_sum = correct = None
    for start in range(0, len(x), batch_size):
        loss, hits = eval_sums(model(x[start : start + batch_size]), y[start : start + batch_size])
        loss_sum = loss if loss_sum is None else loss_sum + loss
        correct = hits if correct is None else correct + hits
    return {"loss": (loss_sum / len(x)).tolist(), "acc": (correct.double() / len(x)).tolist()}


@torch.no_grad()
def weight_stats(model: nn.Module, small: float = 1e-3, *, params: dict[str, torch.Tensor] | None = None,
                 lead: int = 0) -> dict:
    """Global L2 norm of the conv/dense weights, and the fraction of them near zero and exactly zero.

    `params` and `lead` as in `sandbag.regularizers.Regularizer`: stacked per-seed tensors give one value per seed."""
    named = penalized_parameters(model)
    weights = torch.cat([(params[n] if params is not None else p).detach().flatten(lead) for n, p in named], dim=-1)
    return {
        "weight_l2": weights.norm(dim=-1).tolist(),
        "frac_small": (weights.abs() < small).float().mean(-1).tolist(),
        "frac_zero": (weights == 0).float().mean(-1).tolist(),
    }


def epoch_metrics(model: nn.Module, ds: data_mod.Dataset, eval_batch: int, dist=None) -> dict:
    """Clean (evaluation-mode) figures on train, validation and test data (with `dist`: split across ranks)."""
    out = {}
    splits = [("train", ds.x_train, ds.y_train), ("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test)]
    for split, x, y in splits:
        if x is not None:
            result = evaluate(model, x, y, eval_batch) if dist is None else dist.evaluate(model, x, y, eval_batch)
            out[f"{split}_loss"], out[f"{split}_acc"] = result["loss"], result["acc"]
    train, test = out["train_acc"], out["test_acc"]
    out["gap"] = [a - b for a, b in zip(train, test, strict=True)] if isinstance(train, list) else train - test
    return out


# ----------------------------------------------------------------------------------------------------------------
# A whole run


@denormals_flushed()
def fit(
    cfg: RunConfig,
    out_dir: Path | str | None = None,
    *,
    dataset: data_mod.Dataset | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    dist=None,
) -> dict:
    """Train one run; write its folder to `out_dir` (if given) and return its summary dict.

    A NaN/inf loss stops the run with status ``diverged``; Ctrl-C writes status ``interrupted`` and re-raises.
    With `dist` (a `sandbag.distributed.DistContext`, one per rank) the run is data-parallel over its ranks and
    only rank 0 writes the folder; see `sandbag.distributed`.
    """
    started = time.perf_counter()
    s = setup_run(cfg, dataset=dataset, dist=dist)
    counts = count_params(s.model)
    writer = dist is None or dist.is_main
    run = RunFolder(out_dir) if out_dir is not None and writer else None
    if run:
        run.start(cfg)
    setup_seconds = time.perf_counter() - started  # data, model, optimizer, run folder
    board = _tensorboard(run.path if run else None) if cfg.tensorboard and writer else None
    track = tracked_subset(cfg, s.ds)
    history: list[dict] = []
    status = "running"
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            row = {"epoch": epoch, **train_one_epoch(
                s.net, s.optimizer, s.regularizer, s.ds.x_train, s.ds.y_train, cfg.batch_size, s.generator,
                on_step=on_step, dist=dist, amp=cfg.amp,
            )}
            train_seconds = time.perf_counter() - t0
            if not math.isfinite(row["running_loss"]):
                status = "diverged"
            t1 = time.perf_counter()
            if track is not None:
                row["track_acc"] = (evaluate(s.model, *track, EVAL_BATCH) if dist is None
                                    else dist.evaluate(s.model, *track, EVAL_BATCH))["acc"]
            if evaluates(cfg, epoch) or status == "diverged":
                if dist is not None:
                    dist.broadcast_buffers(s.model)
                row.update(epoch_metrics(s.model, s.ds, eval_batch=EVAL_BATCH, dist=dist))
            row.update(weight_stats(s.model))
            row.update(epoch_seconds=train_seconds, eval_seconds=time.perf_counter() - t1,
                       samples_per_sec=len(s.ds.x_train) / train_seconds)
            history.append(row)
            if run:
                run.write_metrics(history)
            if board:
                _log_tensorboard(board, s.model, row)
            if on_epoch:
                on_epoch(row)
            if status == "diverged":
                break
        else:
            status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = run_summary(cfg, history, status, counts, time.perf_counter() - started, s.device)
        summary["setup_seconds"] = setup_seconds
        if dist is not None:
            summary["world_size"] = dist.world_size
        if run:
            run.finish(s.model, cfg, summary, s.ds.input_shape, s.ds.num_classes)
        if board:
            board.close()
    return summary


def tracked_subset(cfg: RunConfig, ds: data_mod.Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fixed stratified subset of the training images whose clean accuracy (``track_acc``) is measured every
    epoch with `track_size`: learning speed without evaluating everything every epoch."""
    if cfg.track_size is None:
        return None
    if cfg.track_size >= len(ds.x_train):
        return ds.x_train, ds.y_train
    _, _, x, y = data_mod.stratified_split(ds.x_train, ds.y_train, cfg.track_size, cfg.data_seed)
    return x, y


def evaluates(cfg: RunConfig, epoch: int) -> bool:
    """Whether epoch `epoch` gets the clean train/val/test figures: every `eval_every` epochs and the last one."""
    return epoch % cfg.eval_every == 0 or epoch == cfg.epochs


def run_summary(cfg: RunConfig, history: list[dict], status: str, counts: dict, seconds: float, device) -> dict:
    """summary.json: the last epoch's figures (no timings), status, parameter counts, config key and times."""
    final = {k: v for k, v in (history[-1] if history else {}).items() if k not in TIMING_FIELDS}
    epoch_times = [row["epoch_seconds"] for row in history]
    return {
        "status": status,
        "epochs_done": len(history),
        **{k: v for k, v in final.items() if k != "epoch"},
        "params": counts["total"],
        "trainable_params": counts["trainable"],
        "config_key": cfg.key(),
        "total_seconds": seconds,
        "seconds_per_epoch": sum(epoch_times) / len(epoch_times) if epoch_times else None,
        "train_seconds": sum(epoch_times),  # the training steps of every epoch
        "eval_seconds": sum(row["eval_seconds"] for row in history),  # clean figures, track_acc, weight stats
        "device": str(device),
    }


def _tensorboard(path: Path | None):
    if path is None:
        raise ConfigError("--tensorboard needs an output folder (--out)")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'sandbag[tensorboard]'") from None
    return SummaryWriter(log_dir=str(path / "tensorboard"))


def _log_tensorboard(board, model: nn.Module, row: dict) -> None:
    step = row["epoch"]
    for key, value in row.items():
        if key != "epoch":
            board.add_scalar(key, value, step)
    for name, param in penalized_parameters(model):
        board.add_histogram(f"weights/{name}", param.detach().cpu(), step)
    board.flush()


# ----------------------------------------------------------------------------------------------------------------
# Measuring a finished run again


def evaluate_run(run_dir: Path | str, data: str | None = None, device: str = "auto") -> dict:
    """Reload a run and measure it on its own data (or on `data`, which must have the same input shape)."""
    dev = resolve_device(device)
    cfg, model, ckpt = load_checkpoint(run_dir, device=str(dev))
    if data:  # a path given now is relative to the directory it is given in, not to the run's
        cfg = RunConfig.from_dict({**cfg.to_dict(), "data": data, "base_dir": None})
    ds = load_data(cfg)
    if list(ds.input_shape) != list(ckpt["input_shape"]):
        raise ConfigError(f"data {cfg.data} has input shape {ds.input_shape}, the model takes {ckpt['input_shape']}")
    ds = ds.to(dev)
    if uses_channels_last(cfg, ds.input_shape):
        model = model.to(memory_format=torch.channels_last)
        ds = channels_last(ds)
    return {"data": cfg.data, **epoch_metrics(model, ds, eval_batch=EVAL_BATCH), **weight_stats(model)}


def batches_of(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, batch_size: int) -> Iterator:
    """(x[i], y[i], 1.0) for consecutive chunks i of `index` along its last dim (an (S, n) index: one row a seed)."""
    for start in range(0, index.shape[-1], batch_size):
        idx = index[..., start : start + batch_size]
        yield x[idx], y[idx], 1.0
