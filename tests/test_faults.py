"""Faults a study survives: a run that raises is a failed run (the others go on, the command says so in one line),
and a lost worker costs one run, not the study (fresh workers, the run redone; lost three times, it fails).

The faults come from a user's factory model in the working directory, as a user's own code would bring them: its
forward raises, or kills its own worker process with SIGKILL (as the out-of-memory killer would), in one seed's
second epoch. Spawned workers import it from there, as they import any factory."""

import csv
import errno
import json
import os
import sys
import threading

import pytest

from sandbag.cli import main
from sandbag.runs import read_summary

FAULTY = '''
import math, os, signal
from pathlib import Path
import torch
from torch import nn

FAULTY_SEED = 1  # the seed whose runs meet the fault (each run seeds torch with its own seed before building)


class Faulty(nn.Module):
    def __init__(self, input_shape, num_classes, fault, placed):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        self.fault, self.placed, self.steps = fault, placed, 0
        self.seed = torch.initial_seed()

    def forward(self, x):
        if self.training:
            self.steps += 1
            if self.steps == 5 and self.seed == FAULTY_SEED:  # 4 steps an epoch: the second epoch's first
                self.fault(self.placed)
        return self.net(x)


def raise_error(placed):
    raise MemoryError("the user's model ran out of memory")


def kill_once(placed):
    marker = Path("kill-marker")
    if not marker.exists():
        marker.write_text("")
        os.kill(os.getpid(), signal.SIGKILL)


def kill_always_without_techniques(placed):
    if not placed:
        os.kill(os.getpid(), signal.SIGKILL)


def raises(input_shape, num_classes, techniques):
    return Faulty(input_shape, num_classes, raise_error, techniques)


def killed_once(input_shape, num_classes, techniques):
    return Faulty(input_shape, num_classes, kill_once, techniques)


def killed_always(input_shape, num_classes, techniques):
    return Faulty(input_shape, num_classes, kill_always_without_techniques, techniques)
'''

STUDY = """
name = "faults"
lecture = false
model = "faulty_models:{FACTORY}"
data = ["digits"]
train_size = 100
epochs = 2
batch_size = 25
batch_sizes = [25]
seeds = 3
extra_seeds = 3
timing_repeats = 0

[[arms]]
name = "none"

[[arms]]
name = "l2"
specs = ["l2=1e-3"]

[[claims]]
id = "l2-vs-none"
text = "L2 changes test accuracy."
  [[claims.parts]]
  metric = "test_acc"
  a = "l2"
  b = "none"
  direction = "greater"
"""


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    """`faulty_models.py` in the working directory; returns a function writing the study file of a factory."""
    (tmp_path / "faulty_models.py").write_text(FAULTY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "faulty_models", raising=False)

    def study(factory: str):
        path = tmp_path / f"{factory}.toml"
        path.write_text(STUDY.replace("{FACTORY}", factory))
        return path

    return study


def _study(config, out, capsys) -> tuple[int, str, str, list[dict]]:
    code = main(["study", "--config", str(config), "--out", str(out), "--workers", "2"])
    captured = capsys.readouterr()
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return code, captured.out, captured.err, rows


def test_a_run_that_raises_fails_alone_and_the_study_says_so(faulty, tmp_path, capsys):
    out = tmp_path / "raises"
    code, stdout, err, rows = _study(faulty("raises"), out, capsys)
    failed = [r for r in rows if r["status"] == "failed"]
    assert code == 1 and len(rows) == 6
    assert sorted((r["arm"], r["seed"]) for r in failed) == [("l2", "1"), ("none", "1")]
    assert all(r["reason"] == "MemoryError: the user's model ran out of memory" for r in failed)
    assert all(r["status"] == "finished" for r in rows if r["seed"] != "1")  # the other runs went on
    assert "Traceback" not in err and err.strip().splitlines() == [
        "sandbag: 2 of 6 runs failed: headline/l2 seed 1 (MemoryError: the user's model ran out of memory); "
        "headline/none seed 1 (MemoryError: the user's model ran out of memory)"]
    record = json.loads((out / failed[0]["run_dir"] / "failed.json").read_text())
    assert "MemoryError" in record["traceback"] and read_summary(out / failed[0]["run_dir"]) is None  # redone
    part = json.loads((out / "verdicts.json").read_text())[0]["data"]["digits"]["parts"][0]
    assert part["verdict"] == "inconclusive" and part["missing"] == ["headline/l2 seed 1", "headline/none seed 1"]
    html = (out / "report.md").read_text() if (out / "report.md").exists() else (out / "report.html").read_text()
    assert "2 run(s) failed" in html and "runs failed (headline/l2 seed 1, headline/none seed 1)" in html


def _pool_thread_reaps_every_worker(monkeypatch):
    """The race the pool's own thread may win (6 of 210 losses in a probe): it reaps a lost worker while the scheduler
    reads exit codes, so the scheduler finds the process gone (ECHILD) and, reading it as running, had blamed a run
    stopped with the pool. Here the scheduler's thread loses that race every time."""
    waitpid, scheduler = os.waitpid, threading.main_thread()

    def reaped_elsewhere(pid, options):
        if threading.current_thread() is scheduler and sys._getframe(1).f_globals["__name__"].startswith("multiproc"):
            raise ChildProcessError(errno.ECHILD, "reaped by the pool's thread")
        return waitpid(pid, options)

    monkeypatch.setattr(os, "waitpid", reaped_elsewhere)


def test_a_lost_worker_costs_a_redone_run_not_the_study(faulty, tmp_path, capsys, monkeypatch):
    _pool_thread_reaps_every_worker(monkeypatch)
    out = tmp_path / "killed-once"
    code, stdout, err, rows = _study(faulty("killed_once"), out, capsys)
    assert code == 0 and len(rows) == 6 and all(r["status"] == "finished" for r in rows), (stdout, err)
    lost = [line for line in stdout.splitlines() if "worker lost" in line]
    assert len(lost) == 1 and "seed 1: worker lost (killed by SIGKILL); run redone from the start" in lost[0]
    assert "Traceback" not in err + stdout and (out / "report.html").exists()


def test_a_run_whose_worker_is_lost_three_times_fails(faulty, tmp_path, capsys, monkeypatch):
    _pool_thread_reaps_every_worker(monkeypatch)
    out = tmp_path / "killed-always"
    code, stdout, err, rows = _study(faulty("killed_always"), out, capsys)
    failed = [r for r in rows if r["status"] == "failed"]
    assert code == 1 and [(r["arm"], r["seed"]) for r in failed] == [("none", "1")], (stdout, err)
    assert failed[0]["reason"] == "its worker was lost 3 times (last: killed by SIGKILL)"
    assert sum("worker lost" in line for line in stdout.splitlines()) == 3, stdout
    assert all(r["status"] == "finished" for r in rows if r is not failed[0])
    assert "Traceback" not in err + stdout
