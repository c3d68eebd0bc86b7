"""The timing phase: seconds per epoch for the timing claims, measured alone, after every run has finished.

The runs of a study share the machine's cores with each other, so their own epoch times say as much about what ran
beside them as about the arm. The claims about compute (dropout does not cut it, larger batches make an epoch
faster) therefore read `timing.json`: for each arm a timing part compares, the epoch time of its configuration on
the study's training data, timed in this process while nothing else of the study runs, with the run's thread count,
after a few warm-up steps. The clock is the thread's CPU time (wall time is kept beside it): another process on
another core, a browser or a second study, hardly moves it, where it moved wall time by 20%. Repetition r uses the
replicate's seed r and pairs with that seed of the other arms.

The arms take turns in rounds, in one process, the order reversed every other round and rotated from one repetition
to the next, until each has two epochs' worth and `timing_seconds` of them (`passes`):
- arms a part compares at one batch size (dropout against none) take turns every `ROUND_STEPS` training steps: a
  chunk of an epoch, the same steps on the same images but for the technique, timed and scaled to an epoch;
- arms a part compares across batch sizes take turns epoch by epoch: their epochs hold the same images in
  different steps, so only whole epochs compare.
Every round is kept, and a timed part compares its two arms round by round: per repetition, the median over rounds
of A's time against B's of the same round (`claims.paired_rounds`). The machine's speed drifts while it times; the
arms of one round share that drift, so it cancels, and the shorter the round, the more of it cancels. On a 2-core
AMD EPYC beside a busy core (2026-12-07, `benchmarks/timing_estimators.py --busy`, 12 repetitions, twice), chunks of
4 steps put the spread of dropout/none - 1 across repetitions at 0.52 and 0.65 of epoch rounds' spread, but widened
batch 4 against 32 (1.71x, 2.23x): hence chunks only where the batch size is shared (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import data as data_mod
from .. import files
from ..runs import RunConfig
from ..train import denormals_flushed, load_data, min_batch, run_epoch, setup_run
from . import plan
from .claims import Claim
from .i18n import TIMING_METHOD, TIMING_METHOD_V3
from .layout import TIMING

WARMUP_STEPS = 5
ROUND_STEPS = 4  # training steps per round where a part's arms share a batch size (benchmarks/timing_estimators.py)
CPU, WALL = "thread CPU", "wall"  # the clocks
# timing.json: 3 keeps each round's epochs (``epoch_seconds``), which the timed parts compare; 4 adds chunk rounds
# (``chunk_seconds``) for arms compared at one batch size (`passes`), and reverses the order every other round
VERSION = 4


def timed_arms(claims: list[Claim]) -> list[tuple[str, str]]:
    """The (group, arm) pairs the timed parts of `claims` compare, in a fixed order."""
    return sorted({arm for claim in claims for part in claim.parts if part.timed for arm in part.arms()})


@denormals_flushed()  # as the runs train
def measure(cfg, study_dir: Path, threads: int, chosen: dict[str, dict[str, float]],
            whole_epochs: bool = False) -> dict:
    """Time every arm of the timing claims `cfg.timing_repeats` times on each data set (at the strengths `chosen`
    per data set), in the rounds `passes` gives each (`whole_epochs`: every arm epoch by epoch, as timing.json
    version 3 did; `benchmarks/timing_estimators.py` compares the two); write timing.json."""
    configs = _timed_configs(cfg, chosen)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows, clock = [], CPU
    try:
        for data in cfg.cells:
            batch = {arm: configs[(data, *arm)].batch_size for arm in timed_arms(cfg.design.claims)
                     if (data, *arm) in configs}
            groups = passes(cfg.design.claims, batch, whole_epochs)
            dataset = load_data(configs[(data, *groups[0][0][0])]) if groups else None
            for rep in range(cfg.timing_repeats):
                seed = cfg.first_seed + rep
                found: dict = {}
                for arms, steps in groups:
                    order = arms[rep % len(arms):] + arms[:rep % len(arms)]  # rotated each repetition
                    images = None if steps is None else steps * batch[arms[0]]
                    measured, clock = alternated([replace(configs[(data, *arm)], seed=seed) for arm in order],
                                                 dataset, cfg.timing_seconds, images)
                    for arm, m in zip(order, measured, strict=True):
                        found[arm] = _merged(found.get(arm, {}), m, chunks=steps is not None)
                rows += [{"data": data, "group": g, "arm": a, "seed": seed, "batch_size": batch[(g, a)],
                          "regs": configs[(data, g, a)].regs, **found[(g, a)]} for g, a in sorted(found)]
    finally:
        torch.set_num_threads(previous)
    fields = {"warmup": WARMUP_STEPS, "threads": threads, "min_seconds": cfg.timing_seconds, "steps": ROUND_STEPS}
    template = TIMING_METHOD_V3 if whole_epochs else TIMING_METHOD
    result = {"version": 3 if whole_epochs else VERSION, "clock": clock, "method": template.format(**fields),
              "method_fields": fields, "repeats": cfg.timing_repeats, "rows": rows}  # the report words the method
    files.write_json(Path(study_dir) / TIMING, result)
    return result


def passes(claims: list[Claim], batch: dict[tuple[str, str], int],
           whole_epochs: bool = False) -> list[tuple[list[tuple[str, str]], int | None]]:
    """How the timed arms (with their batch sizes, `batch`) are alternated: a list of (arms, steps per round).
    Arms that a timed part compares at one batch size take turns every `ROUND_STEPS` steps, one group per batch
    size: the same steps on the same images, but for the technique. Arms that a part compares across batch sizes
    take turns epoch by epoch (steps None), in one group: their epochs are the same images in different steps,
    and a chunk of one is not the same share of an epoch as a chunk of the other. An arm can be in both."""
    whole: set = set()
    chunked: dict[int, set] = {}
    for part in (p for claim in claims for p in claim.parts if p.timed):
        arms = part.arms() & set(batch)
        sizes = {batch[arm] for arm in arms}
        if whole_epochs or len(sizes) > 1:
            whole |= arms
        elif sizes:
            chunked.setdefault(sizes.pop(), set()).update(arms)
    groups = [(sorted(whole), None)] if whole else []
    return groups + [(sorted(arms), ROUND_STEPS) for _, arms in sorted(chunked.items())]


def _merged(row: dict, measured: dict, chunks: bool) -> dict:
    """An arm's timing row with one pass's measurement added: an epoch pass's under its own names
    (``epoch_seconds``...), a chunk pass's as ``chunk_seconds``... ; seconds per epoch from the epoch pass where
    the arm had one (its whole epochs), else from its chunks."""
    if not chunks:
        return {**row, **measured}
    out = {**row, "chunk_seconds": measured["epoch_seconds"], "wall_chunk_seconds": measured["wall_epoch_seconds"],
           "chunk_rounds": measured["rounds"], "chunk_images": measured["round_images"]}
    if "seconds_per_epoch" not in row:
        out.update({k: measured[k] for k in ("seconds_per_epoch", "wall_seconds_per_epoch", "epochs")})
    return out


def is_current(timing: dict | None, cfg, chosen: dict[str, dict[str, float]]) -> bool:
    """Whether a study folder's timing.json already measures what `cfg`'s timed claims compare, at the strengths
    `chosen` now (per data set), as this version measures it (then a resumed study keeps it; `sandbag study
    --retime` measures again). A resumed study can choose another strength (a wider grid, another rule): its arms'
    times are then of a setting no run has any more."""
    if not timing or timing.get("version") != VERSION or timing.get("repeats") != cfg.timing_repeats:
        return False
    if (timing.get("method_fields") or {}).get("min_seconds") != cfg.timing_seconds:
        return False
    have = {(r["data"], r["group"], r["arm"]): r.get("regs") for r in timing["rows"]}
    configs = _timed_configs(cfg, chosen)
    return all((d, *arm) in have and (d, *arm) in configs and have[(d, *arm)] == configs[(d, *arm)].regs
               for d in cfg.cells for arm in timed_arms(cfg.design.claims))


def _timed_configs(cfg, chosen: dict[str, dict[str, float]]) -> dict[tuple[str, str, str], RunConfig]:
    """{(data, group, arm): its first seed's run config at the strengths `chosen`}: what the timing phase trains."""
    return {(r.data, r.group, r.arm): r.config for d in cfg.cells for r in plan.runs_of(cfg, d, chosen[d])
            if r.seed == cfg.first_seed}


def alternated(configs: list[RunConfig], dataset, min_seconds: float = 1.0,
               round_images: int | None = None) -> tuple[list[dict], str]:
    """Seconds per training epoch of each config on `dataset` (each set up as `fit` sets it up, after warm-up
    steps), timed in rounds: a round trains each config on its next chunk of about `round_images` images (`None`:
    a whole epoch), in the given order in even rounds and the reverse in odd ones, so that a change in the
    machine's speed, or an arm's place in the round, falls on all alike. Rounds go on until each config has trained
    two epochs' worth of images and `min_seconds` (the study's ``timing_seconds``). A chunk is a run of the
    epoch's steps as `train_one_epoch` takes them (same shuffling, same batches; an epoch's last chunk may be
    shorter), and its seconds are scaled to an epoch (x the epoch's images / the chunk's).

    Each config gets the median over rounds of the thread's CPU seconds per epoch (``seconds_per_epoch``: what a
    process on another core hardly moves) and of wall seconds (``wall_seconds_per_epoch``), and every round's
    (``epoch_seconds``, ``wall_epoch_seconds``: all configs have the same number, entry k from round k); on a GPU,
    whose work the thread's clock does not see, the CPU figures are wall seconds too. Returns the measurements in
    order and the clock of seconds_per_epoch (`CPU` or `WALL`)."""
    states = [(_warm(replace(c, threads=None), dataset), c) for c in configs]
    cuda = any(s.device.type == "cuda" for s, _ in states)
    chunks = [epoch_chunks(s, c, round_images) for s, c in states]
    per_epoch = [_epoch_images(s, c) for s, c in states]
    cpu: list[list[float]] = [[] for _ in configs]
    wall: list[list[float]] = [[] for _ in configs]
    seen = [0] * len(configs)
    measured = [0.0] * len(configs)

    def enough(i: int) -> bool:
        return seen[i] >= 2 * per_epoch[i] and measured[i] >= min_seconds

    while not all(enough(i) for i in range(len(configs))):
        order = range(len(configs)) if len(wall[0]) % 2 == 0 else reversed(range(len(configs)))
        for i in order:
            (s, cfg), chunk = states[i], chunks[i]
            started, started_cpu = time.perf_counter(), time.thread_time()
            batches = [(xb, yb, 1.0) for xb, yb in next(chunk)]
            run_epoch(s.net, s.optimizer, s.regularizer, batches, len(batches), amp=cfg.amp)
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            seconds_cpu, seconds = time.thread_time() - started_cpu, time.perf_counter() - started
            images = sum(len(yb) for _, yb, _ in batches)
            scale = per_epoch[i] / images
            cpu[i].append(seconds_cpu * scale)
            wall[i].append(seconds * scale)
            seen[i] += images
            measured[i] += seconds if cuda else seconds_cpu
    out = [{"seconds_per_epoch": statistics.median(w if cuda else c), "wall_seconds_per_epoch": statistics.median(w),
            "epochs": round(n / e, 2), "rounds": len(w), **({"round_images": round_images} if round_images else {}),
            "epoch_seconds": w if cuda else c, "wall_epoch_seconds": w}
           for c, w, n, e in zip(cpu, wall, seen, per_epoch, strict=True)]
    return out, WALL if cuda else CPU


def _epoch_images(s, cfg: RunConfig) -> int:
    """The images one training epoch of the run takes (`data.batches` drops a trailing batch under the minimum)."""
    n = len(s.ds.x_train)
    return min(n, data_mod.num_batches(n, cfg.batch_size, min_batch(s.net)) * cfg.batch_size)


def epoch_chunks(s, cfg: RunConfig, images: int | None):
    """The run's training epochs, each shuffled and batched as `train_one_epoch` does it, cut into chunks of
    `images` // batch size steps (at least one; the whole epoch with None): an endless iterator of chunks, each
    an iterator of (x, y) batches."""
    x, y, batch, smallest = s.ds.x_train, s.ds.y_train, cfg.batch_size, min_batch(s.net)
    steps = data_mod.num_batches(len(x), batch, smallest)
    per = steps if images is None else max(1, images // batch)
    while True:
        epoch = data_mod.batches(x, y, batch, generator=s.generator, min_batch=smallest)
        for start in range(0, steps, per):
            yield itertools.islice(epoch, min(per, steps - start))


def _warm(cfg: RunConfig, dataset):
    """A run set up as `fit` sets it up, after `WARMUP_STEPS` training steps."""
    s = setup_run(cfg, dataset=dataset)
    x, y, batch = s.ds.x_train, s.ds.y_train, cfg.batch_size
    warm = [(x[i : i + batch], y[i : i + batch], 1.0) for i in range(0, min(len(x), WARMUP_STEPS * batch), batch)]
    run_epoch(s.net, s.optimizer, s.regularizer, warm, len(warm), amp=cfg.amp)
    return s
