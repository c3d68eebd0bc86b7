"""Study execution on this machine: worker processes x threads per worker, and glibc's allocator settings.

1. Pools: the same batch of study-like runs (seeds x batch sizes of the reference CNN, one epoch each) through the
   study's own process pool (`sandbag.study.executors.LocalExecutor`), as W workers x T threads for each W x T = cores
   (2 x 1 and 1 x 2 on a 2-core machine). Both pools are started and warmed first, then given the batch in
   alternating order; the table gives the median wall time.
2. Allocator: `sandbag train` at batch 256 as a fresh process, with glibc's defaults (``SANDBAG_TUNE_MALLOC=0``)
   and with sandbag's settings (`sandbag.allocator.tune_allocator`, on by default), alternating; samples/s is the median
   over the run's epochs after the first, and the minor page faults are the process's own count.

    python benchmarks/parallelism.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path

import _common as C

from sandbag.study.executors import LocalExecutor
from sandbag.study.runner import default_parallelism
from sandbag.train import RunConfig


def study_batch(smoke: bool) -> list[dict]:
    """Study-like runs: the study's default batch 32 on several seeds, plus batch 128 (its batch-size arms)."""
    size, seeds = (64, 2) if smoke else (2000, 4)
    runs = [RunConfig(train_size=size, epochs=1, batch_size=32, seed=s, device="cpu") for s in range(seeds)]
    runs += [RunConfig(train_size=size, epochs=1, batch_size=min(128, size), seed=s, device="cpu")
             for s in range(seeds // 2)]
    return [r.to_dict() for r in runs]


def pool_timer(pool: LocalExecutor, runs: list[dict], tmp: Path):
    counter = iter(range(10**9))

    def go() -> float:
        out = tmp / f"{pool.workers}x{pool.threads}-{next(counter)}"
        t0 = time.perf_counter()
        futures = [pool.submit(cfg, str(out / str(i))) for i, cfg in enumerate(runs)]
        wait(futures)
        for f in futures:
            f.result()
        return time.perf_counter() - t0

    return go


def train_timer(batch: int, epochs: int, size: int, threads: int, malloc: bool, tmp: Path, faults: list[int]):
    counter = iter(range(10**9))
    env = {**os.environ, "SANDBAG_TUNE_MALLOC": "1" if malloc else "0"}

    def go() -> float:
        out = tmp / f"train-{malloc}-{next(counter)}"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        subprocess.run([sys.executable, "-m", "sandbag", "train", "--batch-size", str(batch), "--epochs", str(epochs),
                        "--train-size", str(size), "--threads", str(threads), "--device", "cpu", "--quiet",
                        "--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL, cwd=C.ROOT)
        faults.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before)
        rates = [json.loads(line)["samples_per_sec"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        return size / C.median(rates[1:] or rates)  # seconds per epoch, so interleave's medians apply

    return go


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    args = C.finish_args(p.parse_args(), repeats=5)
    cores = C.cores()
    shapes = sorted({(cores // t, t) for t in range(1, cores + 1) if cores % t == 0}, reverse=True)
    if args.smoke:  # one pool (the default) is enough to check the script; each pool costs a spawn per worker
        shapes = [default_parallelism()]
    runs = study_batch(args.smoke)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pools = {f"{w} x {t}": LocalExecutor(w, t) for w, t in shapes}
        try:
            for pool in pools.values():  # start every worker (spawn + imports) before timing
                wait([pool.submit(runs[0], str(tmp / f"warm-{pool.workers}-{i}")) for i in range(pool.workers)])
            times = C.interleave({name: pool_timer(pool, runs, tmp) for name, pool in pools.items()},
                                 args.warmup, args.repeats)
        finally:
            for pool in pools.values():
                pool.shutdown()
        best = min(C.median(t) for t in times.values())
        default = "{} x {}".format(*default_parallelism())
        for name, t in times.items():
            rows.append([name + (" (default)" if name == default else ""), f"{C.median(t):.2f} s",
                         f"{C.median(t) / best:.2f}", C.spread(t)])
        batch, epochs, size = (32, 2, 64) if args.smoke else (256, 4, 4000)
        faults: dict[bool, list[int]] = {False: [], True: []}
        alloc = C.interleave({malloc: train_timer(batch, epochs, size, args.threads, malloc, tmp, faults[malloc])
                              for malloc in (False, True)}, 0, args.repeats)
        alloc_rows = [["glibc defaults" if not m else "sandbag (tune_allocator)", size / C.median(t),
                       f"{C.median(alloc[False]) / C.median(t):.2f}", C.spread(t), f"{C.median(faults[m]):,.0f}"]
                      for m, t in alloc.items()]
    print(C.heading("Parallelism and allocator", args))
    batches = " and ".join(str(b) for b in sorted({r["batch_size"] for r in runs}))
    print(f"Pools: {len(runs)} runs of one epoch (ref-cnn, {runs[0]['train_size']} samples, batches {batches}) "
          f"through sandbag.study.executors.LocalExecutor; {cores} cores.\n")
    print(C.table(["workers x threads", "wall time", "vs best", "spread"], rows))
    print(f"\nAllocator: `sandbag train --batch-size {batch} --threads {args.threads}` ({size} samples, {epochs} "
          f"epochs; samples/s = median epoch after the first), a fresh process each time:\n")
    print(C.table(["allocator", "samples/s", "vs glibc defaults", "spread", "minor page faults per run"], alloc_rows))


if __name__ == "__main__":
    main()
