"""Power pilot: in which regime does regularization have something to regularize, and can a study tell the arms apart?

For each regime (training images x epochs, tested on every image not used for training: ``test="rest"``), trains
every arm on the same seeds and prints, per arm, the mean clean train and test accuracy, the train-test gap, and the
paired difference to the unregularized arm with its 95% interval (sandbag's own verdict rule), plus the spread of
the paired differences (what a study's power depends on) and the seconds per run. The standard preset's regime was
chosen from this table (benchmarks/RESULTS.md, "Power pilot"); rerun it to check the choice on another machine or
data set:

    python benchmarks/pilot.py --regimes 1000x30,500x40 --seeds 5
    python benchmarks/pilot.py --data fashion-mnist --test default --regimes 1000x30 --seeds 5

Runs go to a process pool, one single-threaded worker per core (as a study runs them); clean figures are measured
once, after the last epoch.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import _common as C

from sandbag.study.claims import paired_verdict
from sandbag.study.results import epochs_to_target
from sandbag.train import RunConfig, fit

ARMS = "none,bn,dropout=0.4,noise=0.3,l2=1e-3,l2=1e-3:decoupled,l1=1e-5"
LEARN_TARGET = 0.95  # clean training accuracy that counts as learned (the study's learn_target)


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run(cfg_dict: dict) -> dict:
    started = time.perf_counter()
    history: list[dict] = []
    summary = fit(RunConfig.from_dict(cfg_dict), on_epoch=history.append)
    return {**{k: summary.get(k) for k in ("status", "train_acc", "test_acc", "gap", "weight_l2")},
            "epochs_to_target": epochs_to_target(history, LEARN_TARGET, chance=0.1),
            "seconds": time.perf_counter() - started}


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--data", default="mnist-5k")
    p.add_argument("--test", default="rest", choices=("rest", "default"))
    p.add_argument("--regimes", default="1000x30,500x40", help="comma-separated TRAINxEPOCHS (default 1000x30,500x40)")
    p.add_argument("--arms", default=ARMS, help=f"comma-separated spec lists, '+' joins specs, '@B' sets the batch "
                   f"size (e.g. bn@4; default {ARMS})")
    p.add_argument("--eval-every", type=int, help="clean figures every k epochs (default: only after the last)")
    p.add_argument("--track-size", type=int, help="clean accuracy on this many training images each epoch")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=C.cores())
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", help="also write the rows as JSON here")
    args = C.finish_args(p.parse_args(), repeats=1)
    if args.smoke:
        args.regimes, args.seeds, args.arms = "100x2", 2, "none,dropout=0.4"
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    regimes = [tuple(int(v) for v in r.lower().split("x")) for r in args.regimes.split(",")]
    jobs = []
    for size, epochs in regimes:
        for arm in arms:
            specs, _, batch = arm.partition("@")
            regs = [] if specs == "none" else specs.split("+")
            for seed in range(args.seeds):
                cfg = RunConfig(data=args.data, train_size=size, test=args.test, epochs=epochs,
                                eval_every=args.eval_every or epochs, track_size=args.track_size,
                                batch_size=int(batch or args.batch_size), regs=regs, seed=seed, threads=1)
                jobs.append(((size, epochs), arm, seed, cfg.to_dict()))
    print(f"## Power pilot\n\n`python benchmarks/pilot.py {' '.join(sys.argv[1:])}`: {args.data}, "
          f"test={args.test}, {len(jobs)} runs on {args.workers} workers; {C.describe_machine()}", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init, initargs=(1,)) as pool:
        results = list(pool.map(_run, [j[3] for j in jobs]))
    rows = [{"regime": f"{r[0]}x{r[1]}", "arm": arm, "seed": seed, **res}
            for (r, arm, seed, _), res in zip(jobs, results, strict=True)]
    for size, epochs in regimes:
        _table(f"{size}x{epochs}", [r for r in rows if r["regime"] == f"{size}x{epochs}"], arms)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def _table(regime: str, rows: list[dict], arms: list[str]) -> None:
    def of(arm, key):
        return {r["seed"]: r[key] for r in rows if r["arm"] == arm and r["status"] == "finished"}

    print(f"\n### {regime} (training images x epochs)\n")
    print("| arm | train acc | test acc | gap | test - none, points [95% CI] | sd of paired diff | gap - none | "
          "epochs to target | s/run |")
    print("|---|---|---|---|---|---|---|---|---|")
    base_test, base_gap = of("none", "test_acc"), of("none", "gap")
    for arm in arms:
        test, gap, train = of(arm, "test_acc"), of(arm, "gap"), of(arm, "train_acc")
        secs = [r["seconds"] for r in rows if r["arm"] == arm]
        cells = [arm, _mean(train), _mean(test), _mean(gap, 100)]
        if arm == "none":
            cells += ["", "", ""]
        else:
            d = [100 * (test[s] - base_test[s]) for s in sorted(set(test) & set(base_test))]
            g = [100 * (gap[s] - base_gap[s]) for s in sorted(set(gap) & set(base_gap))]
            v, w = paired_verdict(d, "greater"), paired_verdict(g, "less")
            sd = statistics.stdev(d) if len(d) > 1 else math.nan
            cells += [f"{v['mean']:+.2f} [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}]", f"{sd:.2f}",
                      f"{w['mean']:+.2f} [{w['ci_low']:+.2f}, {w['ci_high']:+.2f}]"]
        cells.append(_mean(of(arm, "epochs_to_target")))
        cells.append(f"{statistics.median(secs):.1f}" if secs else "")
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def _mean(values: dict, scale: float = 1.0) -> str:
    v = list(values.values())
    return f"{scale * sum(v) / len(v):.4f}" if v else "n/a"


if __name__ == "__main__":
    main()
