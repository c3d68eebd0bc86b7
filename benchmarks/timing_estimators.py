"""How steady is each way of reading the timing phase? The standard preset's timing phase as `sandbag study` runs it
(`sandbag.study.timing.alternated`: every timed arm, alternated epoch by epoch, at least two epochs and
`timing_seconds` each), repeated, and each timed part of the preset read per repetition two ways:

- **arms' medians**: each arm's median epoch, then A/B - 1 (or A - B): what timing.json version 2 decided on;
- **round by round**: the median over rounds of A's epoch against B's epoch of the same round (version 3,
  `sandbag.study.claims.paired_rounds`).

It prints, per part, each way's mean and its standard deviation across repetitions (what sets a verdict's interval
at a given number of repetitions) and their ratio, measured in the same run on the same epochs. The study's own
repetitions use seeds 0, 1, ...; so do these.

    python benchmarks/timing_estimators.py [--repeats 12] [--preset standard]
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import _common as C

from sandbag.study import timing
from sandbag.study.claims import diffs, results_table
from sandbag.study.config import load_preset

# The standard preset's choices on mnist-5k in its replicate-0 run; the arms' cost barely depends on them
CHOSEN = {"l2": 1e-4, "l1": 1e-5, "noise": 0.5, "dropout": 0.8}


def measure(cfg, repeats: int, seconds: float) -> list[dict]:
    """The study's own timing phase (`timing.measure`), `repeats` times, into a scratch folder; its rows."""
    cfg = replace(cfg, timing_repeats=repeats, timing_seconds=seconds)
    with tempfile.TemporaryDirectory() as scratch:
        rows = timing.measure(cfg, Path(scratch), 1, {cfg.cells[0]: CHOSEN})["rows"]
    return [{**r, "status": "finished"} for r in rows]


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--preset", default="standard")
    args = C.finish_args(p.parse_args(), repeats=12)
    args.threads = 1  # as the study's runs train (one thread per worker)
    C.torch.set_num_threads(1)
    cfg = load_preset(args.preset)
    repeats = args.repeats = max(args.repeats, 2)  # a spread needs two
    args.warmup = 0  # each repetition warms its arms up itself (`timing.WARMUP_STEPS`), as the study does
    seconds = 0.1 if args.smoke else cfg.timing_seconds
    if args.smoke:
        cfg = replace(cfg, train_size=256, val_size=64)
    rows = measure(cfg, repeats, seconds)
    rounds = results_table(rows)
    medians = results_table([{k: v for k, v in r.items() if not k.endswith("epoch_seconds")} for r in rows])
    data = cfg.cells[0]
    out = []
    for part in (p for claim in cfg.design.claims for p in claim.parts if p.timed):
        by = {"arms' medians": list(diffs(part, medians, data).values()),
              "round by round": list(diffs(part, rounds, data).values())}
        unit = "%" if part.ratio else "ms"
        scale = 100 if part.ratio else 1000
        sd = {k: statistics.stdev(v) for k, v in by.items()}
        old, new = sd["arms' medians"], sd["round by round"]
        out.append([part.label, *(f"{scale * statistics.mean(v):+.2f} {unit} ± {scale * sd[k]:.2f}"
                                  for k, v in by.items()), f"{new / old:.2f}" if old else "—"])
    print(C.heading(f"Timing phase: two ways to read it ({args.preset} preset, {repeats} repetitions)", args))
    print(C.table(["timed part", "arms' medians: mean ± SD", "round by round: mean ± SD",
                   "SD round by round / arms' medians"], out))
    epochs = sorted({r["epochs"] for r in rows})
    print(f"\nEach repetition: {len(timing.timed_arms(cfg.design.claims))} arms, {epochs[0]}-{epochs[-1]} rounds "
          f"(at least {seconds:g} s and 2 epochs per arm), 1 thread. SD: across repetitions, which is what a "
          "verdict's interval grows with.")


if __name__ == "__main__":
    main()
