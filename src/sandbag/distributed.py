"""Data-parallel training with torch.distributed: process-group set-up, sharding, synced BN and the launcher.

One run on N processes (ranks) is DistributedDataParallel training: every rank holds the whole model and data set,
draws the same seeded permutation each epoch and takes its own slice of every global batch (``batch_size`` stays
the global batch); gradients are averaged across ranks, so the update equals single-process training on the same
global batch. Metrics are all-reduced, evaluation is split across ranks and rebuilt in single-process order, and
only rank 0 writes the run folder (the same format as a single-process run).

Batch normalization is a regularizer whose noise depends on the batch it normalizes over:

- ``bn`` (default): each rank normalizes over its local batch (ghost batch norm with batch ``batch_size / N``);
  rank 0's running statistics are the ones saved.
- ``bn:sync``: statistics over the global batch, as one process would compute them. On GPU this is torch's
  ``SyncBatchNorm``; on CPU (where ``SyncBatchNorm`` refuses to run) `AllReduceBatchNorm` all-reduces per-rank
  counts, means and squared deviations. Both keep BatchNorm's state-dict keys, so checkpoints load into the plain
  model.

Penalties are added to every rank's loss; DDP averages gradients, so a penalty acts once per step (not N times).
Proximal and decoupled steps run on every rank on identical (replicated) weights.

Start a job with ``sandbag train --nproc N ...`` (`launch` re-runs the same command under torchrun on this machine)
or with ``torchrun --nproc-per-node N -m sandbag train ...`` (any torchrun set-up, several nodes included).
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from inspect import signature
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from . import data as data_mod
from .errors import ConfigError, SandbagError
from .regularizers import Spec
from .runs import RunConfig
from .train import eval_sums, fit

TIMEOUT_ENV = "SANDBAG_DIST_TIMEOUT"  # seconds a rank waits for the others in a collective before giving up
DEFAULT_TIMEOUT = 600
LAUNCHED_ENV = "SANDBAG_LAUNCHED"  # set by `launch`: the launcher, not rank 0, reports the run


class DistributedError(SandbagError):
    """A data-parallel job that failed: a rank crashed, was killed or timed out."""


# ----------------------------------------------------------------------------------------------------------------
# The process group


def env_world_size() -> int | None:
    """The world size when this process is a rank started by torchrun (RANK and WORLD_SIZE set), else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    return None


def launched() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}")
    return value


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of a rank: its own GPU (cuda:LOCAL_RANK) for auto/cuda when torch sees GPUs, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ConfigError(f"device {name!r} with several processes: use --device cuda (each rank takes the GPU "
                          "numbered by its local rank) or --device cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"local rank {local_rank} has no GPU: torch sees {torch.cuda.device_count()}; start at "
                          "most one process per GPU")
    return torch.device("cuda", local_rank)


@dataclass
class DistContext:
    """This rank's place in the job and the operations `fit` needs from it."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"

    # -- the model ---------------------------------------------------------------------------------------------

    def prepare(self, model: nn.Module, specs: Sequence[Spec], seed: int) -> tuple[nn.Module, nn.Module]:
        """(model, ddp): `model` with BN layers made global-batch for ``bn:sync``, and its DDP wrapper to train.

        The model must already be on this rank's device and in its final memory format. Every rank must have built
        it from the same seed; DDP also broadcasts rank 0's parameters. Afterwards the global RNG is reseeded per
        rank so that dropout and noise differ between ranks (rank 0 keeps the single-process stream)."""
        from torch.nn.parallel import DistributedDataParallel

        if any(s.name == "bn" and s.has("sync") for s in specs):
            model = convert_sync_batchnorm(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # no buffer sync in forward: without bn:sync each rank keeps its own (local-batch) running statistics;
        # `broadcast_buffers` copies rank 0's before each evaluation
        newer = "forward_sync_buffers" in signature(DistributedDataParallel).parameters  # torch >= 2.13
        no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        ddp = DistributedDataParallel(model, device_ids=ids, **no_sync)
        # a channels_last conv weight with one input channel has two equivalent stride patterns; DDP warns about it
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        if self.rank:
            torch.manual_seed(seed + 1_000_003 * self.rank)
        return model, ddp

    def check(self, batch_size: int, min_batch: int, nproc: int) -> None:
        if nproc != self.world_size:
            raise ConfigError(f"the run config says nproc {nproc}, but this job has {self.world_size} processes")
        if batch_size % self.world_size or batch_size // self.world_size < min_batch:
            need = "2 (batch norm needs two samples)" if min_batch > 1 else "1"
            raise ConfigError(f"batch size {batch_size} must split evenly among {self.world_size} processes, at "
                              f"least {need} each")

    # -- batches -----------------------------------------------------------------------------------------------

    def _stop(self, n: int, batch_size: int, min_batch: int) -> int:
        """End of the last batch: like `data.batches`, but a trailing batch needs `min_batch` samples per rank."""
        data_mod.num_batches(n, batch_size, min_batch)  # validates
        tail = n % batch_size
        return n if tail >= min_batch * self.world_size else n - tail

    def num_batches(self, n: int, batch_size: int, min_batch: int = 1) -> int:
        return -(-self._stop(n, batch_size, min_batch) // batch_size)

    def batches(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator, min_batch: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """This rank's share of each global batch, and the weight that makes the DDP-averaged gradient of the
        local mean loss equal the gradient of the global mean loss (1.0 when the global batch splits evenly).

        Every rank draws the same permutation from the same seeded generator, as a single process would."""
        n = len(x)
        stop = self._stop(n, batch_size, min_batch)
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
        for start in range(0, stop, batch_size):
            batch = order[start : min(start + batch_size, stop)]
            idx = batch.tensor_split(self.world_size)[self.rank]
            weight = len(idx) * self.world_size / len(batch)
            yield x.index_select(0, idx), y.index_select(0, idx.to(y.device)), weight

    # -- collectives -------------------------------------------------------------------------------------------

    def all_sum(self, value: torch.Tensor | float | int) -> torch.Tensor:
        """The sum over ranks (a new tensor on this rank's device)."""
        t = torch.as_tensor(value, device=self.device).clone()
        dist.all_reduce(t)
        return t

    @torch.no_grad()
    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics) to every rank: all evaluate and save the same model."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict:
        """`train.evaluate` split across ranks by chunks of `batch_size`; the per-chunk sums are gathered and added
        in chunk order, so the figures equal a single process's for the same model, bit for bit."""
        model.eval()
        starts = range(0, len(x), batch_size)
        losses = torch.zeros(len(starts), device=x.device)
        hits = torch.zeros(len(starts), device=x.device, dtype=torch.long)
        for i in range(self.rank, len(starts), self.world_size):
            losses[i], hits[i] = eval_sums(model(x[starts[i] : starts[i] + batch_size]),
                                           y[starts[i] : starts[i] + batch_size])
        dist.all_reduce(losses)
        dist.all_reduce(hits)
        loss_sum = torch.zeros((), device=x.device)
        for value in losses:  # the single-process order of float additions
            loss_sum += value
        return {"loss": (loss_sum / len(x)).item(), "acc": hits.sum().item() / len(x)}


@contextmanager
def process_group(device: str = "auto", timeout: float | None = None) -> Iterator[DistContext]:
    """Join the job torchrun started (env:// rendezvous): gloo on CPU, nccl on GPU, a timeout on every collective
    so that a stuck or lost rank ends the job instead of hanging it."""
    world = env_world_size()
    if world is None:
        raise ConfigError("not started by torchrun: RANK and WORLD_SIZE are not set (use sandbag train --nproc N)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    ctx = DistContext(rank, world, local_rank, rank_device(device, local_rank))
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    # A rank that dies of a signal (SIGABRT from C++, SIGSEGV) prints every thread's Python stack to stderr: the
    # teardown abort CI saw twice (below) left only "terminate called without an active exception" behind.
    faulthandler.enable(all_threads=True)
    dist.init_process_group(ctx.backend, timeout=timedelta(seconds=timeout or timeout_seconds()))
    yield ctx  # on an exception the group is left as is: the process is about to exit and torchrun cleans up
    # Leave together: a rank that tears gloo down while its peer is still writing the run folder (rank 0) was seen
    # to abort in C++ ("terminate called without an active exception") on a loaded CI machine.
    dist.barrier()
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------------
# Batch norm over the global batch on CPU


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of each rank's input is the sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the global batch of all ranks (torch's ``SyncBatchNorm`` runs on
    GPU only). Each rank's count, per-channel mean and sum of squared deviations are all-reduced and combined
    (Chan's parallel variance), with gradients flowing across ranks; the result is single-process BN over the
    concatenated batch: biased variance to normalize, unbiased for the running estimate, momentum as in torch.

    In evaluation, or with one process, it is plain BatchNorm. Parameters, buffers and state-dict keys are
    BatchNorm's. Takes (N, C) or (N, C, ...) input."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        world = dist.get_world_size(self.process_group) if dist.is_available() and dist.is_initialized() else 1
        if not self.training or world == 1:
            return super().forward(x)
        rank = dist.get_rank(self.process_group)
        c = x.size(1)
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        count = x.numel() // c
        mean = x.mean(dims)
        m2 = (x - mean.view(shape)).square().sum(dims)
        local = torch.cat([mean.new_full((1,), float(count)), mean, m2])
        table = torch.stack([local if r == rank else torch.zeros_like(local) for r in range(world)])
        table = _AllReduceSum.apply(table, self.process_group)
        counts, means, m2s = table[:, :1], table[:, 1 : 1 + c], table[:, 1 + c :]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_m2 = m2s.sum(0) + (counts * (means - g_mean).square()).sum(0)
        var = g_m2 / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - factor).add_(g_mean.detach() * factor)
                unbiased = g_m2.detach() / max(total.item() - 1, 1.0)
                self.running_var.mul_(1 - factor).add_(unbiased * factor)
        out = (x - g_mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Every BatchNorm in `module` normalizing over the global batch: ``SyncBatchNorm`` for a model on GPU,
    `AllReduceBatchNorm` otherwise. Parameters and buffers are kept (same tensors), as are state-dict keys."""
    param = next(module.parameters(), None)
    if param is not None and param.is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        new = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, process_group)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module


# ----------------------------------------------------------------------------------------------------------------
# Launching a job on this machine


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_resources(nproc: int, device: str) -> None:
    """Refuse a job this machine cannot run before starting any process."""
    if nproc < 1:
        raise ConfigError(f"nproc must be >= 1, got {nproc}")
    if device in ("auto", "cuda") and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ConfigError(f"{nproc} processes need {nproc} GPUs (one each), torch sees {torch.cuda.device_count()}; "
                          "use fewer or --device cpu")
    if device not in ("auto", "cuda", "cpu"):
        rank_device(device, 0)  # raises the one-line error for cuda:N


def launch(nproc: int, entry: Sequence[str], *, threads: int | None = None) -> None:
    """Run `entry` (``["-m", module, *args]`` or ``[script, *args]``) as `nproc` ranks under torchrun on this
    machine: static rendezvous on 127.0.0.1 at a free port. If a rank fails, torchrun stops the others and this
    raises `DistributedError` with one line saying which rank failed and why."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    entry = list(entry)
    module = entry[0] == "-m"
    target, script_args = (entry[1], entry[2:]) if module else (entry[0], entry[1:])
    args = get_args_parser().parse_args([
        "--nnodes", "1", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), "--max-restarts", "0", *(["--module"] if module else []), target,
    ])
    args.training_script_args = script_args  # not parsed by torchrun's parser, which would take --nproc as its own
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = {LAUNCHED_ENV: "1", "OMP_NUM_THREADS": str(threads or max(1, cores // nproc))}
    if Path("/sys/class/net/lo").exists() and "GLOO_SOCKET_IFNAME" not in os.environ:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # all ranks are on this machine: loopback only
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # its failure lines repeat what DistributedError says
    try:
        with _environ(env):
            run(args)
    except ChildFailedError as exc:
        raise DistributedError(f"data-parallel job failed: {describe_failure(exc, nproc)}") from None
    except SignalException as exc:  # torchrun turns Ctrl-C / SIGTERM into this after stopping the ranks
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise DistributedError(f"data-parallel job stopped by signal {exc.sigval.name}") from None
    finally:
        elastic.setLevel(level)


def describe_failure(exc, nproc: int) -> str:
    """One line from torchrun's ChildFailedError: which rank failed and how (its traceback, if any, is above).

    A rank killed from outside (kill -9, the OOM killer) makes its peers' collectives fail, and torchrun then stops
    the rest with SIGTERM; so the order of blame is: killed by a signal other than SIGTERM, exited with an error,
    stopped by SIGTERM, each earliest first."""

    def blame(item):
        rank, failure = item
        kind = 0 if failure.exitcode < 0 and failure.exitcode != -signal.SIGTERM else 1 if failure.exitcode > 0 else 2
        return kind, failure.timestamp, rank

    rank, failure = min(exc.failures.items(), key=blame)
    if failure.exitcode < 0:
        how = f"rank {rank} of {nproc} was killed by signal {failure.signal_name()}"
    else:
        how = f"rank {rank} of {nproc} exited with code {failure.exitcode} (its error is above)"
    return how + "; the other ranks were stopped"


@contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def launch_run(cfg, out_dir: Path | str) -> dict:
    """Train `cfg` (a `RunConfig` with ``nproc > 1``) data-parallel on this machine into `out_dir`; return its
    summary. This is how a study runs a multi-process run."""
    check_resources(cfg.nproc, cfg.device)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="sandbag-launch-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(cfg.to_dict()))
        launch(cfg.nproc, ["-m", "sandbag.distributed", "run", str(config), str(out_dir)], threads=cfg.threads)
    return json.loads((out_dir / "summary.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Rank entry point for `launch_run`: ``python -m sandbag.distributed run CONFIG_JSON OUT_DIR``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "run":
        print("usage: torchrun ... -m sandbag.distributed run CONFIG_JSON OUT_DIR", file=sys.stderr)
        return 2
    cfg = RunConfig.from_dict(json.loads(Path(argv[1]).read_text()))
    with process_group(cfg.device) as ctx:
        fit(cfg, argv[2], dist=ctx)
    return 0


if __name__ == "__main__":
    from sandbag.distributed import main as _main

    sys.exit(_main())
