"""Run every benchmark and rewrite benchmarks/RESULTS.md with their tables (what `make bench` runs).

The file is replaced atomically (written beside it, then renamed). Its "## GPU check" section, recorded separately
by benchmarks/gpu_check.sh on a GPU machine, is carried over unchanged.

    python benchmarks/run_all.py                          # everything (the standard study takes a while)
    python benchmarks/run_all.py --only throughput,inference
    python benchmarks/run_all.py --smoke --out /tmp/R.md  # check that everything runs
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
GPU_HEADING = "## GPU check"
# The last commit before the performance work (issue 4): study_time times it beside the current code
BASELINE_REV = "1ff013b"
# name -> extra arguments for the full measurement
SCRIPTS = {
    "throughput": ["--compile"],
    "train_process": [],
    "keras_peer": [],
    "inference": [],
    "parallelism": [],
    "study_time": ["--presets", "quick,standard", "--baseline", BASELINE_REV],
    "timing_estimators": [],
    "pilot": ["--regimes", "1000x30,500x40", "--seeds", "6", "--track-size", "500", "--eval-every", "10"],
}

INTRO = """# Benchmarks

Each script measures its baseline and sandbag in the same run, interleaved (A B, B A, ... after a warm-up), and
reports medians and their spread, so that ratios stay meaningful on a shared machine. Run them on an idle machine:
the load average at the start of each script is printed with it.

Reproduce: `make bench` (all of them, rewrites this file; the GPU check section is kept), or one script:
`python benchmarks/throughput.py`, `keras_peer.py` (`--setup` once: creates benchmarks/.keras-venv with
tensorflow-cpu), `inference.py`, `parallelism.py`, `study_time.py [--presets quick] [--baseline REV]`, `pilot.py`
(the power pilot behind the standard preset's regime), `timing_estimators.py` (how steadily the timing phase's two
readings decide); `--smoke` for a quick check that a script runs. On a GPU
machine: `bash benchmarks/gpu_check.sh` (its output goes under "GPU check" by hand).
"""


def gpu_section(text: str) -> str:
    """The GPU check section of an existing RESULTS.md (from its heading to the end), or ''."""
    start = text.find("\n" + GPU_HEADING)
    if text.startswith(GPU_HEADING):
        start = 0
    return text[start:].strip() + "\n" if start >= 0 else ""


def compose(outputs: dict[str, str], previous: str, header: str) -> str:
    parts = [INTRO, header]
    parts += [out.strip() + "\n" for out in outputs.values()]
    gpu = gpu_section(previous)
    if gpu:
        parts.append(gpu)
    return "\n".join(parts)


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    p.add_argument("--smoke", action="store_true", help="pass --smoke to every script")
    p.add_argument("--out", type=Path, default=RESULTS, help="the file to rewrite (default benchmarks/RESULTS.md)")
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(SCRIPTS)}")
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    outputs, failed = {}, []
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(["--smoke"] if args.smoke else SCRIPTS[name])]
        print(f"run_all: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=C.ROOT)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            failed.append(name)
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            outputs[name] = f"## {name}\n\nFAILED (exit code {proc.returncode}):\n\n```\n{tail}\n```"
        else:
            outputs[name] = proc.stdout.strip() + f"\n\n({name}.py took {seconds:,.0f} s)"
        print(outputs[name], flush=True)
    header = (f"Measured {started} by `python benchmarks/run_all.py{' --smoke' if args.smoke else ''}`"
              f"{' (smoke: not a measurement)' if args.smoke else ''}. Machine: {C.cpu_model()}, {C.cores()} cores, "
              f"{platform.platform()}. Versions: python {platform.python_version()}, torch {C.torch.__version__}, "
              f"sandbag {C.version('sandbag')}, numpy {C.version('numpy')}.\n")
    previous = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    write_atomically(args.out, compose(outputs, previous, header))
    print(f"run_all: wrote {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
