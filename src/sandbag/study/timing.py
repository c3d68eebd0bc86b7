"""The timing phase: seconds per epoch for the timing claims, measured alone, after every run has finished.

The runs of a study share the machine's cores with each other, so their own epoch times say as much about what ran
beside them as about the arm. The claims about compute (dropout does not cut it, larger batches make an epoch
faster) therefore read `timing.json`: for each arm a timing part compares, the epoch time of its configuration on
the study's training data, timed in this process while nothing else of the study runs, with the run's thread count,
after a few warm-up steps. The clock is the thread's CPU time (wall time is kept beside it): another process on
another core, a browser or a second study, hardly moves it, where it moved wall time by 20%. The arms alternate
epoch by epoch in one process, their order rotated from one repetition to the next, until each has at least two
epochs and a second of them; repetition r uses the replicate's seed r and pairs with that seed of the other arms.

Every epoch of a round (one epoch of each arm) is kept, and a timed part compares its two arms round by round: per
repetition, the median over rounds of A's epoch against B's of the same round (`claims.paired_rounds`). The
machine's speed drifts while it times; the arms' epochs of one round share that drift, so it cancels. On a 2-core
AMD EPYC (2026-12-07, `benchmarks/timing_estimators.py`, 12 repetitions, twice) this put the spread of
dropout/none - 1 across repetitions at 0.79 and 0.82 of the spread of the arms' own medians, and never wider on
the batch-size parts (0.53-1.00): a gain, not a cure, on a machine whose epochs vary by several percent.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import files
from ..runs import RunConfig
from ..train import denormals_flushed, load_data, run_epoch, setup_run, train_one_epoch
from . import plan
from .claims import Claim
from .i18n import TIMING_METHOD
from .layout import TIMING

WARMUP_STEPS = 5
CPU, WALL = "thread CPU", "wall"  # the clocks
VERSION = 3  # timing.json: 3 keeps each round's epochs (``epoch_seconds``), which the timed parts compare


def timed_arms(claims: list[Claim]) -> list[tuple[str, str]]:
    """The (group, arm) pairs the timed parts of `claims` compare, in a fixed order."""
    return sorted({arm for claim in claims for part in claim.parts if part.timed for arm in part.arms()})


@denormals_flushed()  # as the runs train
def measure(cfg, study_dir: Path, threads: int, chosen: dict[str, dict[str, float]]) -> dict:
    """Time every arm of the timing claims `cfg.timing_repeats` times on each data set (at the strengths `chosen`
    per data set); write timing.json."""
    wanted = timed_arms(cfg.design.claims)
    configs = {(r.data, r.group, r.arm): r.config for d in cfg.cells
               for r in plan.runs_of(cfg, d, chosen[d]) if r.seed == cfg.first_seed}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows, clock = [], CPU
    try:
        for data in cfg.cells:
            targets = [(g, a) for g, a in wanted if (data, g, a) in configs]
            dataset = load_data(configs[(data, *targets[0])]) if targets else None
            for rep in range(cfg.timing_repeats):
                shift = rep % len(targets) if targets else 0
                order = targets[shift:] + targets[:shift]
                seed = cfg.first_seed + rep
                measured, clock = alternated([replace(configs[(data, *arm)], seed=seed) for arm in order], dataset,
                                             cfg.timing_seconds)
                rows += [{"data": data, "group": g, "arm": a, "seed": seed, **m}
                         for (g, a), m in zip(order, measured, strict=True)]
    finally:
        torch.set_num_threads(previous)
    fields = {"warmup": WARMUP_STEPS, "threads": threads, "min_seconds": cfg.timing_seconds}
    result = {"version": VERSION, "clock": clock, "method": TIMING_METHOD.format(**fields), "method_fields": fields,
              "repeats": cfg.timing_repeats, "rows": rows}  # the report words the method per language
    files.write_json(Path(study_dir) / TIMING, result)
    return result


def is_current(timing: dict | None, cfg) -> bool:
    """Whether a study folder's timing.json already measures what `cfg`'s timed claims compare, as this version
    measures it (then a resumed study keeps it; `sandbag study --retime` measures again)."""
    if not timing or timing.get("version") != VERSION or timing.get("repeats") != cfg.timing_repeats:
        return False
    if (timing.get("method_fields") or {}).get("min_seconds") != cfg.timing_seconds:
        return False
    have = {(r["data"], r["group"], r["arm"]) for r in timing["rows"]}
    return all((d, *arm) in have for d in cfg.cells for arm in timed_arms(cfg.design.claims))


def alternated(configs: list[RunConfig], dataset, min_seconds: float = 1.0) -> tuple[list[dict], str]:
    """Seconds per training epoch of each config on `dataset` (each set up as `fit` sets it up, after warm-up
    steps), the configs alternated epoch by epoch in this process until each has at least two epochs and
    `min_seconds` of them (the study's ``timing_seconds``), so a change in the machine's speed falls on all alike.
    Each gets the median over its epochs of the thread's CPU seconds (``seconds_per_epoch``: what a process on
    another core hardly moves) and of wall seconds (``wall_seconds_per_epoch``), and every epoch in round order
    (``epoch_seconds``, ``wall_epoch_seconds``: all configs have the same number, epoch k of each from round k); on a
    GPU, whose work the thread's clock does not see, the CPU figures are wall seconds too. Returns the measurements
    in order and the clock of seconds_per_epoch (`CPU` or `WALL`)."""
    states = [(_warm(replace(c, threads=None), dataset), c) for c in configs]
    cuda = any(s.device.type == "cuda" for s, _ in states)
    cpu: list[list[float]] = [[] for _ in configs]
    wall: list[list[float]] = [[] for _ in configs]

    def enough(c: list[float], w: list[float]) -> bool:
        return len(w) >= 2 and sum(w if cuda else c) >= min_seconds

    while not all(enough(c, w) for c, w in zip(cpu, wall, strict=True)):
        for (s, cfg), c, w in zip(states, cpu, wall, strict=True):
            started, started_cpu = time.perf_counter(), time.thread_time()
            train_one_epoch(s.net, s.optimizer, s.regularizer, s.ds.x_train, s.ds.y_train, cfg.batch_size,
                            s.generator, amp=cfg.amp)
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            c.append(time.thread_time() - started_cpu)
            w.append(time.perf_counter() - started)
    out = [{"seconds_per_epoch": statistics.median(w if cuda else c), "wall_seconds_per_epoch": statistics.median(w),
            "epochs": len(w), "epoch_seconds": w if cuda else c, "wall_epoch_seconds": w}
           for c, w in zip(cpu, wall, strict=True)]
    return out, WALL if cuda else CPU


def _warm(cfg: RunConfig, dataset):
    """A run set up as `fit` sets it up, after `WARMUP_STEPS` training steps."""
    s = setup_run(cfg, dataset=dataset)
    x, y, batch = s.ds.x_train, s.ds.y_train, cfg.batch_size
    warm = [(x[i : i + batch], y[i : i + batch], 1.0) for i in range(0, min(len(x), WARMUP_STEPS * batch), batch)]
    run_epoch(s.net, s.optimizer, s.regularizer, warm, len(warm), amp=cfg.amp)
    return s
