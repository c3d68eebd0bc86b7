"""Back-to-back two-process training sessions: does a rank ever abort at teardown? (issue 20)

CI once saw rank 1 of a two-rank gloo session die with SIGABRT ("terminate called without an active exception").
This runs N short `sandbag train --nproc 2` sessions one after the other, every second one beside a process keeping
a core busy, each rank with Python's faulthandler on, and counts the sessions that did not exit 0; the stderr of
each such session is kept under --keep for reading.

    python benchmarks/nproc_sessions.py [--sessions 100] [--keep /tmp/nproc-aborts] [--pytest]

`--pytest`: each session is instead the test suite's two-rank fixture (tests/test_distributed.py, ranks started by
torch.multiprocessing's spawn inside pytest), the path on which CI saw the abort.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = ["train", "--nproc", "2", "--data", "digits", "--train-size", "200", "--epochs", "1", "--batch-size", "50",
         "--device", "cpu", "--quiet"]


PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_distributed.py", "-k",
          "allreduce_batchnorm_and_only_rank_zero_writes"]


def session(out: Path, pytest: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    args = [*PYTEST, "--basetemp", str(out)] if pytest else ["-m", "sandbag", *TRAIN, "--out", str(out)]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])


def main(sessions: int, keep: Path, pytest: bool = False) -> None:
    failed: list[tuple[int, bool, int]] = []
    with tempfile.TemporaryDirectory(prefix="nproc-") as tmp:
        for i in range(sessions):
            busy = i % 2 == 1
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                done = session(Path(tmp) / f"run{i}", pytest)
            finally:
                if spinner:
                    spinner.kill()
                    spinner.wait()
            if done.returncode != 0:
                failed.append((i, busy, done.returncode))
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"session{i}.stderr").write_text(done.stdout + done.stderr)
            print(f"session {i + 1}/{sessions} ({'busy core' if busy else 'idle'}): exit {done.returncode}",
                  flush=True)
    beside = sum(1 for _, busy, _ in failed if busy)
    print(f"NPROC: {len(failed)} of {sessions} sessions did not exit 0 ({beside} of them beside a busy core)"
          + (f"; stderr kept in {keep}" if failed else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "nproc-aborts")
    parser.add_argument("--pytest", action="store_true", help="sessions of the test suite's two-rank fixture")
    args = parser.parse_args()
    main(args.sessions, args.keep, args.pytest)
