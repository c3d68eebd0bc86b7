"""The training engine: a run config, `train_one_epoch`, `evaluate`, and `fit`, which writes a run folder.

A run folder holds

- ``config.json``   everything needed to rerun it (plus the sandbag and torch versions),
- ``metrics.jsonl`` one JSON object per epoch,
- ``summary.json``  the final epoch's figures, total time, parameter counts and ``status``,
- ``model.pt``      ``{"state_dict", "config", ...}``, loadable with ``torch.load(..., weights_only=True)``.

Every file is written atomically (write, then rename). Timings live in their own fields (``*_seconds``,
``samples_per_sec``); every other figure is reproducible: same seed, data and machine give the same numbers.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_mod
from . import files
from .errors import CheckpointError, ConfigError
from .models import build_model, count_params
from .regularizers import Spec, acts_through_loss, after_step, parse_specs, penalized_parameters, penalty

OPTIMIZERS = ("adam", "adamw", "sgd")
TIMING_FIELDS = ("epoch_seconds", "eval_seconds", "samples_per_sec")
CHECKPOINT_FORMAT = "sandbag-run/1"
AMP_MODES = (None, "bf16")
# Evaluation batch: on CPU with the allocator tuned, ref-cnn evaluated as fast or faster at 256 than at 64, 128 or 512
# with 1 and 2 threads, and ~1.4x slower at 1000 (activations outgrow the cache). Results do not depend on it beyond
# float rounding of the summed loss.
EVAL_BATCH = 256


@dataclass
class RunConfig:
    """Everything that defines a training run. Defaults follow Keras: Adam, lr 1e-3, batch 32."""

    data: str = "mnist-5k"
    model: str = "ref-cnn"
    regs: list[str] = field(default_factory=list)
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    seed: int = 0
    data_seed: int = 0  # fixes the validation split and the train subset, independent of `seed`
    train_size: int | None = None
    val_fraction: float = 0.0
    standardize: bool = False
    nproc: int = 1  # data-parallel processes (DDP); batch_size is the global batch, split among them
    amp: str | None = None  # "bf16": bfloat16 autocast for forward and loss (changes the numbers, so it is hashed)
    # How to run, not what: excluded from the config hash.
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    tensorboard: bool = False

    EXECUTION = ("device", "threads", "channels_last", "tensorboard")

    def __post_init__(self) -> None:
        self.regs = [str(s) for s in parse_specs(self.regs)]  # validate early, store canonically
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate must be a number > 0, got {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"),
            (0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (self.train_size is None or self.train_size > 0, f"train size must be > 0, got {self.train_size}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.nproc >= 1, f"nproc must be >= 1, got {self.nproc}"),
            (self.amp in AMP_MODES, f"unknown amp mode {self.amp!r}; valid: bf16 (or leave it off)"),
            (self.batch_size % max(self.nproc, 1) == 0,
             f"batch size {self.batch_size} is the global batch and must split evenly among {self.nproc} processes"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def specs(self) -> list[Spec]:
        return parse_specs(self.regs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown run config keys: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def key(self) -> str:
        """A short hash of what determines the results (not how they are computed)."""
        what = {k: v for k, v in self.to_dict().items() if k not in self.EXECUTION}
        if what["nproc"] == 1:
            del what["nproc"]  # single-process runs keep the keys they had before data-parallel training existed
        if what.get("amp") is None:
            what.pop("amp", None)  # likewise for full-precision runs and the amp field
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------------------------
# Set-up


def tune_allocator() -> bool:
    """Keep freed activation buffers in glibc's heap instead of handing them back to the OS after every step.

    With glibc's defaults each large activation at batch 128-256 is a fresh mmap (or is trimmed off the heap top when
    freed), so it is page-faulted in again on every step: ~300,000 minor faults per mnist-5k epoch at batch 256. A fixed
    mmap threshold above ref-cnn's largest activation (22 MB at batch 256), a top pad, and a trim threshold above
    what one step frees bring that to zero (measured 1.3-1.5x samples/s; benchmarks/throughput.py runs the plain loop
    with glibc's defaults and sandbag with this, each in its own process). The peak memory is unchanged: freed
    memory is kept for the next step instead of being returned. Called by `fit` and the CLI; once per process.
    ``SANDBAG_TUNE_MALLOC=0`` in the environment turns it off. Returns whether the settings are in effect."""
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = os.environ.get("SANDBAG_TUNE_MALLOC", "1") != "0" and _mallopt(GLIBC_MALLOC_SETTINGS)
    return _allocator_tuned


# mallopt parameter (malloc.h) -> value. glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit machines.
GLIBC_MALLOC_SETTINGS = {-3: 32 * 2**20, -2: 64 * 2**20, -1: 2**30}  # mmap threshold, top pad, trim threshold
_allocator_tuned: bool | None = None


def _mallopt(settings: dict[int, int]) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    return all([bool(libc.mallopt(param, value)) for param, value in settings.items()])


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


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # Fused kernels update every parameter in one pass (Adam's step took 0.32 ms instead of foreach's 0.65 ms for
    # ref-cnn on 2 CPU threads); torch has them for CPU and CUDA tensors only.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, fused=fused)
    # adamw without weight_decay here: decoupled decay is the l2=...:decoupled technique, applied in after_step
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=0.0, fused=fused)


def load_data(cfg: RunConfig) -> data_mod.Dataset:
    ds = data_mod.load(cfg.data)
    return data_mod.prepare(
        ds, train_size=cfg.train_size, val_fraction=cfg.val_fraction, standardize=cfg.standardize,
        seed=cfg.data_seed,
    )


def _channels_last(ds: data_mod.Dataset) -> data_mod.Dataset:
    def cl(x):
        return None if x is None else x.contiguous(memory_format=torch.channels_last)

    return replace(ds, x_train=cl(ds.x_train), x_val=cl(ds.x_val), x_test=cl(ds.x_test))


def autocast(amp: str | None, device: torch.device):
    """bfloat16 autocast for `amp` == "bf16" on `device`; a no-op context (the plain fp32 path) when off."""
    if amp is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# ----------------------------------------------------------------------------------------------------------------
# The engine


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    specs: list[Spec],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    on_step: Callable[[int, int], None] | None = None,
    dist=None,
    amp: str | None = None,
) -> dict[str, float]:
    """One pass over (x, y) with the techniques active. Metrics accumulate as tensors and sync once at the end.

    With `dist` (a `sandbag.distributed.DistContext`, `model` wrapped in DDP) this rank trains on its share of each
    global batch of `batch_size`, and the metrics are summed over ranks."""
    model.train()
    min_batch = 2 if has_batchnorm(model) else 1  # BN cannot normalize a batch of one in training
    steps = (dist or data_mod).num_batches(len(x), batch_size, min_batch)
    loader = (
        ((xb, yb, 1.0) for xb, yb in data_mod.batches(x, y, batch_size, generator=generator, min_batch=min_batch))
        if dist is None else dist.batches(x, y, batch_size, generator, min_batch)
    )
    loss_sum = torch.zeros((), device=x.device)
    penalty_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    seen = 0
    through_loss, no_penalty = acts_through_loss(specs), torch.zeros((), device=x.device)
    for step, (xb, yb, weight) in enumerate(loader):
        with autocast(amp, xb.device):
            logits = model(xb)
            data_loss = F.cross_entropy(logits, yb)
        reg = penalty(model, specs) if through_loss else no_penalty  # skips a per-step zeros() without penalties
        optimizer.zero_grad(set_to_none=True)
        ((data_loss if weight == 1.0 else data_loss * weight) + reg).backward()
        optimizer.step()
        after_step(model, specs, optimizer)
        n = len(yb)
        loss_sum += data_loss.detach() * n
        penalty_sum += reg.detach()
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += n
        if on_step:
            on_step(step + 1, steps)
    if dist is not None:  # the penalty is the same on every rank: not summed
        loss_sum, correct, seen = dist.all_sum(loss_sum), dist.all_sum(correct), dist.all_sum(seen).item()
    return {
        "running_loss": (loss_sum / seen).item(),
        "running_acc": correct.item() / seen,
        "penalty": (penalty_sum / steps).item(),
    }


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy in evaluation mode (dropout and noise off, BN on running statistics)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return {"loss": (loss_sum / len(x)).item(), "acc": correct.item() / len(x)}


@torch.no_grad()
def weight_stats(model: nn.Module, small: float = 1e-3) -> dict[str, float]:
    """Global L2 norm of the conv/dense weights, and the fraction of them near zero and exactly zero."""
    weights = torch.cat([p.detach().flatten() for _, p in penalized_parameters(model)])
    return {
        "weight_l2": weights.norm().item(),
        "frac_small": (weights.abs() < small).float().mean().item(),
        "frac_zero": (weights == 0).float().mean().item(),
    }


def epoch_metrics(model: nn.Module, ds: data_mod.Dataset, eval_batch: int, dist=None) -> dict[str, float]:
    """Clean (evaluation-mode) figures on train, validation and test data (with `dist`: split across ranks)."""
    out = {}
    splits = [("train", ds.x_train, ds.y_train), ("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test)]
    for split, x, y in splits:
        if x is not None:
            result = evaluate(model, x, y, eval_batch) if dist is None else dist.evaluate(model, x, y, eval_batch)
            out[f"{split}_loss"], out[f"{split}_acc"] = result["loss"], result["acc"]
    out["gap"] = out["train_acc"] - out["test_acc"]
    return out


# ----------------------------------------------------------------------------------------------------------------
# A whole run


def versions() -> dict[str, str]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"sandbag": version("sandbag"), "torch": torch.__version__}


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
    tune_allocator()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device) if dist is None else dist.device
    if dist is None and cfg.nproc > 1:
        raise ConfigError(f"nproc {cfg.nproc} needs a process group: use sandbag train --nproc {cfg.nproc} or torchrun")
    specs = cfg.specs
    ds = (dataset or load_data(cfg)).to(device)
    if cfg.batch_size > len(ds.x_train):
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the training set ({len(ds.x_train)} samples)")

    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    model = build_model(cfg.model, ds.input_shape, ds.num_classes, specs).to(device)
    if cfg.channels_last and len(ds.input_shape) == 3:
        # measured faster for these convs on CPU; slices of channels_last data stay channels_last
        model = model.to(memory_format=torch.channels_last)
        ds = _channels_last(ds)
    net = model
    if dist is not None:
        dist.check(cfg.batch_size, 2 if has_batchnorm(model) else 1, cfg.nproc)
        model, net = dist.prepare(model, specs, cfg.seed)
    optimizer = make_optimizer(cfg, model)
    counts = count_params(model)
    writer = dist is None or dist.is_main

    run = _RunFolder(Path(out_dir)) if out_dir is not None and writer else None
    if run:
        run.start(cfg)
    board = _tensorboard(run.path if run else None) if cfg.tensorboard and writer else None
    history: list[dict] = []
    status = "running"
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            row = {"epoch": epoch, **train_one_epoch(
                net, optimizer, specs, ds.x_train, ds.y_train, cfg.batch_size, generator,
                on_step=on_step, dist=dist, amp=cfg.amp,
            )}
            train_seconds = time.perf_counter() - t0
            if not math.isfinite(row["running_loss"]):
                status = "diverged"
            t1 = time.perf_counter()
            if dist is not None:
                dist.broadcast_buffers(model)
            row.update(epoch_metrics(model, ds, eval_batch=EVAL_BATCH, dist=dist))
            row.update(weight_stats(model))
            row.update(
                epoch_seconds=train_seconds,
                eval_seconds=time.perf_counter() - t1,
                samples_per_sec=len(ds.x_train) / train_seconds,
            )
            history.append(row)
            if run:
                run.write_metrics(history)
            if board:
                _log_tensorboard(board, model, row)
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
        summary = _summary(cfg, history, status, counts, time.perf_counter() - started, device)
        if dist is not None:
            summary["world_size"] = dist.world_size
        if run:
            run.finish(model, cfg, summary, ds)
        if board:
            board.close()
    return summary


def _summary(cfg, history, status, counts, seconds, device) -> dict:
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
        "device": str(device),
    }


class _RunFolder:
    """Writes config.json, metrics.jsonl, summary.json and model.pt, each atomically."""

    def __init__(self, path: Path):
        self.path = path

    def start(self, cfg: RunConfig) -> None:
        files.make_dir(self.path)
        (self.path / "summary.json").unlink(missing_ok=True)  # a rerun is unfinished until it finishes
        files.write_json(self.path / "config.json", {**cfg.to_dict(), "versions": versions()})

    def write_metrics(self, history: list[dict]) -> None:
        files.write_jsonl(self.path / "metrics.jsonl", history)

    def finish(self, model: nn.Module, cfg: RunConfig, summary: dict, ds: data_mod.Dataset) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        files.torch_save(self.path / "model.pt", {
            "format": CHECKPOINT_FORMAT,
            "config": cfg.to_dict(),
            "input_shape": list(ds.input_shape),
            "num_classes": ds.num_classes,
            "state_dict": state,
        })
        files.write_json(self.path / "summary.json", summary)  # last: its presence marks a complete folder


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
# Reloading a run


def load_checkpoint(path: Path | str, device: str = "cpu") -> tuple[RunConfig, nn.Module, dict]:
    """Rebuild a trained model from a run folder or a model.pt, refusing anything that is not ours.

    Loading uses ``weights_only=True``: a file that would run code when unpickled is rejected.
    """
    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"no checkpoint at {file}: expected a run folder with model.pt")
    ckpt = files.torch_load_tagged(file, CHECKPOINT_FORMAT, "a sandbag checkpoint", device)
    try:
        cfg = RunConfig.from_dict(ckpt["config"])
        model = build_model(cfg.model, tuple(ckpt["input_shape"]), int(ckpt["num_classes"]), cfg.specs)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{file} does not match its architecture: {reason[:200]}") from None
    return cfg, model.to(device), ckpt


def evaluate_run(run_dir: Path | str, data: str | None = None, device: str = "auto") -> dict:
    """Reload a run and measure it on its own data (or on `data`, which must have the same input shape)."""
    dev = resolve_device(device)
    cfg, model, ckpt = load_checkpoint(run_dir, device=str(dev))
    if data:
        cfg = RunConfig.from_dict({**cfg.to_dict(), "data": data})
    ds = load_data(cfg)
    if list(ds.input_shape) != list(ckpt["input_shape"]):
        raise ConfigError(f"data {cfg.data} has input shape {ds.input_shape}, the model takes {ckpt['input_shape']}")
    ds = ds.to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        ds = _channels_last(ds)
    return {"data": cfg.data, **epoch_metrics(model, ds, eval_batch=EVAL_BATCH), **weight_stats(model)}
