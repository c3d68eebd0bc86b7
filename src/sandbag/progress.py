"""Progress of `sandbag train` and `sandbag study`: a rich display on a terminal, plain lines in logs.

On a terminal the display goes to stderr. When stdout is not a terminal (`make run > log.txt`, CI, nohup, a cluster
job), one plain line per epoch (train) or per finished run (study) goes to stdout instead, flushed at once, so a log
shows where a long study stands. `--quiet` turns both off.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from rich.console import Console


def lines_wanted(enabled: bool, display: bool) -> bool:
    """Plain progress lines on stdout (for logs: a file, a pipe, CI) unless disabled or stdout is the terminal that
    the rich display (on stderr) already shows. They go to the stdout of before the display starts: rich redirects
    sys.stdout to its console (stderr) while it runs."""
    return enabled and not (display and sys.stdout.isatty())


def epoch_line(row: dict, epochs: int) -> str:
    """`sandbag train`'s line for one epoch: the clean figures the epoch has (every eval_every epochs and the last),
    track_acc, the training-mode running_acc when it has no clean ones, and its wall seconds (training + eval)."""
    parts = [f"{key} {row[key]:.4f}" for key in ("train_acc", "val_acc", "test_acc") if row.get(key) is not None]
    if row.get("gap") is not None:
        parts.append(f"gap {row['gap']:+.4f}")
    if row.get("track_acc") is not None:
        parts.append(f"track_acc {row['track_acc']:.4f}")
    if row.get("test_acc") is None:
        parts.append(f"running_acc {row['running_acc']:.4f}")
    if not math.isfinite(row["running_loss"]):
        parts.append(f"loss {row['running_loss']} (diverged)")
    seconds = (row.get("epoch_seconds") or 0.0) + (row.get("eval_seconds") or 0.0)
    return f"epoch {row['epoch']}/{epochs}: {', '.join(parts)}, {seconds:.1f} s"


def eta(remaining: int, seconds: Sequence[float], slots: int) -> str:
    """Time left for `remaining` runs: their number x the mean wall seconds of the runs finished here (reused runs
    take none) / the runs in parallel; whole minutes, or "<1 min"."""
    if remaining > 0 and not seconds:
        return "ETA ?"
    left = remaining * sum(seconds) / max(len(seconds), 1) / max(slots, 1)
    return "ETA <1 min" if left < 60 else f"ETA {round(left / 60)} min"


def run_line(run, total: int, eta: str, show_data: bool = False) -> str:
    """`sandbag study`'s line for one finished run (a `study.runner.RunDone`): `[k/N] group/arm seed s: test 0.xxxx,
    n s; ETA m min`; the status instead of the test figure when it did not finish (failed, diverged)."""
    name = f"{run.data} {run.group}/{run.arm}" if show_data else f"{run.group}/{run.arm}"
    ok = run.status == "finished" and run.test_acc is not None
    result = f"test {run.test_acc:.4f}" if ok else run.status
    return f"[{run.number}/{total}] {name} seed {run.seed}: {result}, {run.seconds:.0f} s; {eta}"


class TrainProgress:
    """A rich progress bar over epochs and steps on a terminal (stderr); a plain line per epoch on stdout when that
    is not a terminal (see `lines_wanted`); silent when disabled."""

    def __init__(self, console: Console, epochs: int, enabled: bool):
        self.console, self.epochs = console, epochs
        self.enabled = enabled and console.is_terminal
        self.lines, self.out = lines_wanted(enabled, self.enabled), sys.stdout
        self.bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console)
            self.bar.start()
            self.task = self.bar.add_task(f"epoch 1/{self.epochs}", total=None, info="")
        return self

    def step(self, step: int, steps: int) -> None:
        if self.bar:
            self.bar.update(self.task, completed=step, total=steps)

    def epoch_done(self, row: dict) -> None:
        if self.bar:
            shown = {"info": f"test_acc {row['test_acc']:.4f}  gap {row['gap']:+.4f}"} if "test_acc" in row else {}
            nxt = min(row["epoch"] + 1, self.epochs)
            self.bar.update(self.task, description=f"epoch {nxt}/{self.epochs}", completed=0, **shown)
        if self.lines:
            print(epoch_line(row, self.epochs), file=self.out, flush=True)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False


class StudyProgress:
    """Runs done / running / left with an ETA on a terminal (stderr); a plain line per finished run on stdout when
    that is not a terminal (see `lines_wanted`); silent when disabled."""

    def __init__(self, console: Console, enabled: bool, show_data: bool = False):
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.lines, self.out = lines_wanted(enabled, self.enabled), sys.stdout
        self.show_data = show_data  # name the data set in each line (a study of several)
        self.shown = self.reused = 0  # runs finished here and reused runs already printed
        self.noted = 0  # the progress's notes already printed (a lost worker: one line each)
        self.bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                       TextColumn("ETA"), TimeRemainingColumn()]
            self.bar = Progress(*columns, console=self.console)
            self.bar.start()
            self.task = self.bar.add_task("runs", total=None, info="")
        return self

    def update(self, p) -> None:
        for note in p.notes[self.noted:]:
            if self.bar:
                self.bar.console.print(note, markup=False, highlight=False)
            elif self.lines:
                print(note, file=self.out, flush=True)
            self.noted += 1
        if self.bar:
            left = p.total - p.done - p.running
            info = f"{p.running} running, {left} left" + (f", {p.reused} reused" if p.reused else "")
            self.bar.update(self.task, completed=p.done, total=p.total, info=info)
        if self.lines:
            self.print_lines(p)

    def print_lines(self, p) -> None:
        """A line for the runs reused since the last call, then one per run finished here since then."""
        new = p.finished[self.shown:]
        if p.reused > self.reused:
            print(f"[{p.done + p.failed - len(new)}/{p.total}] reused {p.reused - self.reused} finished run(s)",
                  file=self.out, flush=True)
            self.reused = p.reused
        for run in new:
            seconds = [r.seconds for r in p.finished[: self.shown + 1]]
            line = run_line(run, p.total, eta(p.total - run.number, seconds, p.slots), self.show_data)
            print(line, file=self.out, flush=True)
            self.shown += 1

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False
