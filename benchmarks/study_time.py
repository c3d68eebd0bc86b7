"""Wall time of whole studies: `sandbag study --preset P --out <tmp>` as a user runs it (training, report, figures).

Each preset runs in a fresh folder (nothing reused), as a subprocess of this python; the table gives wall time,
the number of runs, and the run-seconds the workers spent (sum of the runs' own times, from study.json).

    python benchmarks/study_time.py                      # quick and standard (standard takes a while)
    python benchmarks/study_time.py --presets quick      # only some
    python benchmarks/study_time.py --workers 1 --threads 2
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TINY = C.ROOT / "configs" / "tiny.toml"


def run_study(args_: list[str], out: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "sandbag", "study", *args_, "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=C.ROOT)
    return time.perf_counter() - t0, json.loads((out / "study.json").read_text())


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--presets", default="quick,standard", help="comma-separated presets (default quick,standard)")
    p.add_argument("--workers", type=int, help="passed to sandbag study (default: its own choice)")
    p.add_argument("--study-threads", type=int, help="--threads passed to sandbag study (default: its own choice)")
    args = C.finish_args(p.parse_args(), repeats=1)
    extra = [*(["--workers", str(args.workers)] if args.workers else []),
             *(["--threads", str(args.study_threads)] if args.study_threads else [])]
    if args.smoke:  # the tiny test study on a 100-sample slice instead of the presets
        studies = [("tiny (smoke)", ["--config", str(TINY), "--train-size", "100"])]
    else:
        studies = [(name, ["--preset", name]) for name in args.presets.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, study_args in studies:
            walls, meta = [], {}
            for r in range(args.repeats):
                wall, meta = run_study([*study_args, *extra], Path(tmp) / f"{name.split()[0]}-{r}")
                walls.append(wall)
            hw = meta["hardware"]
            rows.append([name, f"{C.median(walls):,.1f} s", meta.get("runs"), f"{hw.get('workers')} x "
                         f"{hw.get('threads_per_worker')}", f"{meta.get('cpu_seconds_runs', 0):,.0f} s",
                         C.spread(walls)])
    print(C.heading("Study wall time", args))
    print("`sandbag study` end to end in a fresh folder (training, analysis, figures, report).\n")
    print(C.table(["study", "wall time", "runs", "workers x threads", "run-seconds", "spread"], rows))


if __name__ == "__main__":
    main()
