"""Shared helpers of the benchmark scripts: interleaved timing, matmul peak, FLOP count, markdown tables.

Every benchmark measures its baseline and sandbag in the same run, interleaved (A B B A A B ..., after a warm-up),
and reports medians, so that a busy machine slows both sides alike and the ratios stay meaningful.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing (e.g. on the GPU machine)
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

# The load when the script started: what else was running (read at the end, the script's own work would show)
START_LOAD = os.getloadavg() if hasattr(os, "getloadavg") else None


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one repeat: checks that the script runs")
    p.add_argument("--repeats", type=int, help="timed repeats per variant (default 7; smoke 1)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 1; smoke 0)")
    p.add_argument("--threads", type=int, help="torch threads (default: the cores this process may use)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return p


def finish_args(args: argparse.Namespace, repeats: int = 7) -> argparse.Namespace:
    if args.repeats is None:
        args.repeats = 1 if args.smoke else repeats
    if args.warmup is None:
        args.warmup = 0 if args.smoke else 1
    args.threads = args.threads or cores()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmark: --device cuda but torch sees no CUDA GPU")
    return args


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str | torch.device = "cpu") -> float:
    """Seconds that fn takes (the device synchronized before and after)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleave(variants: dict[str, Callable[[], float]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Run each variant (a callable returning its own measured seconds) in alternating order: after `warmup`
    untimed rounds, `repeats` rounds in the order A B C, then C B A, ... Returns the measured seconds per variant."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(variants[name]())
    return times


class Subprocess:
    """A benchmark variant living in its own spawned process, timed one round per call.

    `factory(*args)` runs in the child and returns a callable that times one round there (seconds). A separate
    process gives each variant its own allocator state and settings, as separate programs would have; only one
    variant computes at a time, because the parent waits for each answer."""

    def __init__(self, factory: Callable[..., Callable[[], float]], *args):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, factory, args), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False  # variants load in parallel; the first call waits for this one's "ready"

    def _answer(self):
        try:
            return self.conn.recv()
        except EOFError:
            raise SystemExit(f"benchmark: a variant's process exited (code {self.proc.join(5) or self.proc.exitcode})"
                             "; see its error above") from None

    def __call__(self) -> float:
        if not self.ready:
            self.ready = self._answer() == "ready"
        self.conn.send(True)
        return self._answer()

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(False)
            self.proc.join(60)


def _serve(conn, factory, args) -> None:
    run = factory(*args)
    conn.send("ready")
    while conn.recv():
        conn.send(run())


def export_src(rev: str, dest: Path) -> Path:
    """git revision `rev`'s src/ folder, written under `dest` (to run an older sandbag beside this one)."""
    import subprocess

    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """(max - min) / median, in percent: how noisy the measurement was."""
    if len(values) < 2:
        return "-"
    return f"{100 * (max(values) - min(values)) / statistics.median(values):.0f}%"


def matmul_peak(device: str = "cpu", n: int = 2048, reps: int = 10, dtype=torch.float32) -> float:
    """Measured GFLOP/s of an n x n x n matrix product (median of `reps`, after one warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)
    times = [timed(lambda: torch.mm(a, b, out=out), device) for _ in range(reps)]
    return 2 * n**3 / median(times) / 1e9


def forward_macs(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the conv and dense layers for one input (by forward hooks)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        per_out = module.in_features if isinstance(module, torch.nn.Linear) else (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1])
        total += output[0].numel() * per_out

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros((1, *input_shape), device=p.device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def train_flops_per_sample(model: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """Training FLOPs per sample: 2 FLOPs per MAC, forward plus a backward of about twice the forward (x3)."""
    return 3 * 2 * forward_macs(model, input_shape)


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str = "cpu") -> str:
    load = ", ".join(f"{x:.2f}" for x in START_LOAD) if START_LOAD else "?"
    text = (f"{cpu_model()}, {cores()} cores usable, load average at start {load}; "
            f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"sandbag {version('sandbag')}")
    if torch.device(device).type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name()}"
    return text


def heading(title: str, args: argparse.Namespace) -> str:
    argv = " ".join(sys.argv[1:])
    return (f"## {title}\n\n`python benchmarks/{Path(sys.argv[0]).name}{' ' + argv if argv else ''}` "
            f"({time.strftime('%Y-%m-%d %H:%M')}; {describe_machine(args.device)}; "
            f"{args.warmup} warm-up round(s), median of {args.repeats})\n")
