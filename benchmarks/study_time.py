"""Wall time of whole studies: `sandbag study --preset P --out <tmp>` as a user runs it (training, report, figures).

Each preset runs in a fresh folder (nothing reused), as a subprocess of this python; the table gives wall time,
the number of runs, and the run-seconds the workers spent (sum of the runs' own times, from study.json). A second
table itemizes where the current code's wall time went (study.json's ``time``, `sandbag.study.costs`): training
steps, evaluation, probes, process start and data, run folder writes, idle workers, the timing phase, figures and
report, against the targets (evaluation <= 15%, everything but training steps <= 25%).
``--baseline REV`` also times the sandbag of git revision REV (its ``src/`` exported to a temporary folder, run with
this environment's packages), alternating with the current code, preset by preset, so the two are compared in one
run on the same machine.

    python benchmarks/study_time.py                      # quick and standard (standard takes a while)
    python benchmarks/study_time.py --presets quick      # only some
    python benchmarks/study_time.py --workers 1 --threads 2
    python benchmarks/study_time.py --baseline 1ff013b   # before and after the performance work
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TINY = C.ROOT / "configs" / "tiny.toml"


def run_study(args_: list[str], out: Path, src: Path | None = None) -> tuple[float, dict]:
    """Run one study; `src`: another sandbag source folder to run instead of the installed one."""
    cmd = [sys.executable, "-m", "sandbag", "study", *args_, "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(src)} if src else None
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=C.ROOT, env=env)
    return time.perf_counter() - t0, json.loads((out / "study.json").read_text())


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--presets", default="quick,standard", help="comma-separated presets (default quick,standard)")
    p.add_argument("--workers", type=int, help="passed to sandbag study (default: its own choice)")
    p.add_argument("--study-threads", type=int, help="--threads passed to sandbag study (default: its own choice)")
    p.add_argument("--baseline", metavar="REV", help="also time git revision REV's sandbag, alternating with this one")
    args = C.finish_args(p.parse_args(), repeats=1)
    extra = [*(["--workers", str(args.workers)] if args.workers else []),
             *(["--threads", str(args.study_threads)] if args.study_threads else [])]
    if args.smoke:  # the tiny test study on a 100-sample slice instead of the presets
        studies = [("tiny (smoke)", ["--config", str(TINY), "--train-size", "100"])]
    else:
        studies = [(name, ["--preset", name]) for name in args.presets.split(",")]
    rows, itemized = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"": None}
        if args.baseline:
            sources = {f" @ {args.baseline}": C.export_src(args.baseline, Path(tmp) / "baseline"), "": None}
        for name, study_args in studies:
            walls: dict[str, list[float]] = {label: [] for label in sources}
            meta: dict[str, dict] = {}
            for r in range(args.repeats):
                order = list(sources) if r % 2 == 0 else list(sources)[::-1]
                for label in order:
                    folder = Path(tmp) / f"{name.split()[0]}{label.replace(' @ ', '-')}-{r}"
                    wall, meta[label] = run_study([*study_args, *extra], folder, sources[label])
                    walls[label].append(wall)
            current = C.median(walls[""])
            itemized[name] = meta[""].get("time")
            for label in sources:
                hw = meta[label]["hardware"]
                rows.append([name + label, f"{C.median(walls[label]):,.1f} s", meta[label].get("runs"),
                             f"{hw.get('workers')} x {hw.get('threads_per_worker')}",
                             f"{meta[label].get('cpu_seconds_runs', 0):,.0f} s", C.spread(walls[label]),
                             f"{C.median(walls[label]) / current:.2f}"])
    print(C.heading("Study wall time", args))
    print("`sandbag study` end to end in a fresh folder (training, analysis, figures, report).\n")
    print(C.table(["study", "wall time", "runs", "workers x threads", "run-seconds", "spread", "vs current"], rows))
    print_itemization({name: spent for name, spent in itemized.items() if spent})


EVAL_TARGET, OUTSIDE_TARGET = 0.15, 0.25


def print_itemization(itemized: dict[str, dict]) -> None:
    """Seconds and share of the wall time per category, one column per study (the last repetition of each)."""
    if not itemized:
        return
    from sandbag.study.costs import CATEGORIES

    print("\n### Where a study's time goes\n")
    print("Wall-equivalent seconds (a category's worker-seconds over the workers) and share of the study's wall time, "
          "from study.json's `time`.\n")
    body = [[category, *[f"{spent['seconds'][category]:,.1f} s ({spent['share'][category]:.1%})"
                         for spent in itemized.values()]] for category in CATEGORIES]
    body.append(["evaluation <= 15%?", *[_verdict(s["share"]["evaluation"], EVAL_TARGET) for s in itemized.values()]])
    body.append(["outside training steps <= 25%?",
                 *[_verdict(s["outside_training_share"], OUTSIDE_TARGET) for s in itemized.values()]])
    print(C.table(["", *itemized], body))


def _verdict(share: float, target: float) -> str:
    return f"{'yes' if share <= target else 'no'} ({share:.1%})"


if __name__ == "__main__":
    main()
