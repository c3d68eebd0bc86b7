"""The timing phase: seconds per epoch for the timing claims, measured alone, after every run has finished.

The runs of a study share the machine's cores with each other, so their own epoch times say as much about what ran
beside them as about the arm. The claims about compute (dropout does not cut it, larger batches make an epoch
faster) therefore read `timing.json`: for each arm a timing part compares, the epoch time of its configuration on
the study's training data, timed in this process while nothing else of the study runs, with the run's thread count,
after a few warm-up steps (the median of as many epochs as fill a second, at least two). The arms are interleaved
and their order rotates from one repetition to the next, so a drift of the machine's speed falls on all of them
alike; repetition r uses seed r and pairs with seed r of the other arms.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import files
from ..runs import RunConfig
from ..train import load_data, run_epoch, setup_run, train_one_epoch
from . import plan
from .claims import Claim
from .i18n import TIMING_METHOD
from .layout import TIMING

WARMUP_STEPS = 5
MIN_SECONDS = 1.0  # each arm's measurement lasts at least this long (and at least two epochs)


def timed_arms(claims: list[Claim]) -> list[tuple[str, str]]:
    """The (group, arm) pairs the timed parts of `claims` compare, in a fixed order."""
    return sorted({arm for claim in claims for part in claim.parts if part.timed for arm in part.arms()})


def measure(cfg, study_dir: Path, threads: int, chosen: dict[str, dict[str, float]]) -> dict:
    """Time every arm of the timing claims `cfg.timing_repeats` times on each data set (at the strengths `chosen`
    per data set); write timing.json."""
    wanted = timed_arms(cfg.design.claims)
    configs = {(r.data, r.group, r.arm): r.config for d in cfg.data
               for r in plan.runs_of(cfg, d, chosen[d]) if r.seed == 0}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for data in cfg.data:
            targets = [(g, a) for g, a in wanted if (data, g, a) in configs]
            dataset = load_data(configs[(data, *targets[0])]) if targets else None
            for rep in range(cfg.timing_repeats):
                shift = rep % len(targets) if targets else 0
                for group, arm in targets[shift:] + targets[:shift]:
                    seconds = epoch_seconds(replace(configs[(data, group, arm)], seed=rep), dataset)
                    rows.append({"data": data, "group": group, "arm": arm, "seed": rep, "seconds_per_epoch": seconds})
    finally:
        torch.set_num_threads(previous)
    fields = {"warmup": WARMUP_STEPS, "threads": threads, "min_seconds": MIN_SECONDS}
    result = {"method": TIMING_METHOD.format(**fields), "method_fields": fields,  # the report words it per language
              "repeats": cfg.timing_repeats,
              "rows": rows}
    files.write_json(Path(study_dir) / TIMING, result)
    return result


def epoch_seconds(cfg: RunConfig, dataset) -> float:
    """Wall seconds of one training epoch of `cfg` on `dataset` (set up as `fit` sets it up): after warm-up steps,
    the median of at least two epochs, as many as fill `MIN_SECONDS` (a short epoch alone is mostly noise)."""
    s = setup_run(replace(cfg, threads=None), dataset=dataset)
    x, y, batch = s.ds.x_train, s.ds.y_train, cfg.batch_size
    warm = [(x[i : i + batch], y[i : i + batch], 1.0) for i in range(0, min(len(x), WARMUP_STEPS * batch), batch)]
    run_epoch(s.net, s.optimizer, s.regularizer, warm, len(warm), amp=cfg.amp)
    times: list[float] = []
    while len(times) < 2 or sum(times) < MIN_SECONDS:
        started = time.perf_counter()
        train_one_epoch(s.net, s.optimizer, s.regularizer, x, y, batch, s.generator, amp=cfg.amp)
        if s.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
