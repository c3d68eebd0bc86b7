"""How steady is each way of timing the study's arms? The standard preset's timing phase as `sandbag study` runs it
(`sandbag.study.timing.measure`), repeated, in two kinds of rounds, each read round by round
(`sandbag.study.claims.paired_rounds`: per repetition, the median over rounds of A against B in the same round):

- **epoch rounds**: every arm trains one whole epoch per round (timing.json version 3's rounds);
- **the study's rounds** (version 4, `sandbag.study.timing.passes`): arms a part compares at one batch size take
  turns every 4 training steps (chunks of an epoch, scaled to an epoch); arms at different batch sizes still take
  turns epoch by epoch.

Both reverse the arms' order every other round. The two alternate, run after run, in one process, so both see the
same machine. It prints, per timed part and run, each way's mean and its standard deviation across repetitions (what
sets a verdict's interval at a given number of repetitions) and their ratio. `--busy` keeps another core busy
throughout (a process spinning in a loop), the condition under which epoch rounds had flipped claim 7's timed part.

The first rule, fixed before this script first ran (2026-12-07), was for chunks of 128 images for every arm: they
replace epoch rounds if, beside a busy core, dropout/none's SD is lower with chunks in both runs and no timed part's
SD is above 1.25x its epoch-rounds SD in either run. Beside a busy core dropout/none's SD fell to 0.52x and 0.65x,
but batch 4 vs 32's rose to 2.23x and 1.71x, so chunks everywhere were rejected (RESULTS.md). The study's rounds
keep chunks for the same-batch parts only; that design was made after seeing those numbers, and its rule is the
first one's for dropout/none in a second pair of runs.

    python benchmarks/timing_estimators.py [--repeats 12] [--runs 2] [--busy] [--preset standard]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import _common as C

from sandbag.study import timing
from sandbag.study.claims import diffs, results_table
from sandbag.study.config import load_preset

# The standard preset's choices on mnist-5k in its replicate-0 run; the arms' cost barely depends on them
CHOSEN = {"l2": 1e-4, "l1": 1e-5, "noise": 0.5, "dropout": 0.8}
WAYS = {"epoch rounds": True, "study's rounds": False}  # name -> timing.measure's whole_epochs


def measure(cfg, repeats: int, seconds: float, whole_epochs: bool) -> list[dict]:
    """The study's own timing phase (`timing.measure`), `repeats` times, into a scratch folder; its rows."""
    cfg = replace(cfg, timing_repeats=repeats, timing_seconds=seconds)
    with tempfile.TemporaryDirectory() as scratch:
        rows = timing.measure(cfg, Path(scratch), 1, {cfg.cells[0]: CHOSEN}, whole_epochs=whole_epochs)["rows"]
    return [{**r, "status": "finished"} for r in rows]


def spread(cfg, rows: list[dict]) -> dict[str, tuple[float, float, bool]]:
    """Per timed part: (mean, SD across repetitions, whether it is a ratio) of its round-by-round reading."""
    table, data = results_table(rows), cfg.cells[0]
    out = {}
    for part in (p for claim in cfg.design.claims for p in claim.parts if p.timed):
        values = list(diffs(part, table, data).values())
        out[part.label] = (statistics.mean(values), statistics.stdev(values), part.ratio)
    return out


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--preset", default="standard")
    p.add_argument("--runs", type=int, default=2, help="runs of each way, alternated (default 2)")
    p.add_argument("--busy", action="store_true", help="keep another core busy throughout")
    args = C.finish_args(p.parse_args(), repeats=12)
    args.threads = 1  # as the study's runs train (one thread per worker)
    C.torch.set_num_threads(1)
    cfg = load_preset(args.preset)
    repeats = args.repeats = max(args.repeats, 2)  # a spread needs two
    args.warmup = 0  # each repetition warms its arms up itself (`timing.WARMUP_STEPS`), as the study does
    seconds = 0.1 if args.smoke else cfg.timing_seconds
    runs = 1 if args.smoke else args.runs
    if args.smoke:
        cfg = replace(cfg, train_size=256, val_size=64)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        found = [{way: spread(cfg, measure(cfg, repeats, seconds, whole)) for way, whole in WAYS.items()}
                 for _ in range(runs)]
    finally:
        if busy is not None:
            busy.kill()
    out = []
    for run, ways in enumerate(found, 1):
        for label in ways["epoch rounds"]:
            cells = []
            for way in WAYS:
                mean, sd, ratio = ways[way][label]
                scale, unit = (100, "%") if ratio else (1000, "ms")
                cells.append(f"{scale * mean:+.2f} {unit} ± {scale * sd:.2f}")
            old, new = ways["epoch rounds"][label][1], ways["study's rounds"][label][1]
            out.append([str(run), label, *cells, f"{new / old:.2f}" if old else "—"])
    load = "beside a busy core" if args.busy else "idle"
    print(C.heading(f"Timing phase: epoch rounds against the study's rounds ({args.preset} preset, {repeats} "
                    f"repetitions, {load})", args))
    print(C.table(["run", "timed part", "epoch rounds: mean ± SD", "study's rounds: mean ± SD",
                   "SD study's / epochs"], out))
    print(f"\nEach repetition: {len(timing.timed_arms(cfg.design.claims))} arms, at least {seconds:g} s and 2 epochs "
          "per arm, 1 thread. SD: across repetitions, which is what a verdict's interval grows with.")


if __name__ == "__main__":
    main()
