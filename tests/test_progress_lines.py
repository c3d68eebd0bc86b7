"""Progress in logs: without a terminal, `sandbag train` prints a line per epoch and `sandbag study` a line per
finished run, on stdout, each flushed at once; --quiet prints none; the line format and the ETA arithmetic."""

import math
import os
import random
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import TINY

from sandbag.progress import StudyProgress, epoch_line, eta, run_line
from sandbag.study.runner import Progress, RunDone

NUMBER = r"[-+]?\d+\.\d{4}"
EPOCH_LINE = re.compile(rf"epoch (\d+)/(\d+): ((?:[a-z_]+ {NUMBER}, )+)(\d+\.\d) s")
RUN_LINE = re.compile(r"\[(\d+)/(\d+)\] ([a-z]+)/(\S+) seed (\d+): (test 0\.\d{4}|failed|diverged), (\d+) s; "
                      r"ETA (<1|\d+) min")
REUSED_LINE = re.compile(r"\[(\d+)/(\d+)\] reused (\d+) finished run\(s\)")


def _env():
    """A child's environment with nothing that makes rich treat a pipe as a terminal, and stdout left buffered."""
    drop = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PYTHONUNBUFFERED")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _sandbag(*args, cwd):
    """`sandbag ...` with stdout and stderr pipes (not terminals): (first stdout line, the clock time it arrived (to
    compare with the files the command wrote after it), the whole stdout, stderr, exit code)."""
    proc = subprocess.Popen([sys.executable, "-m", "sandbag", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env=_env())
    first = proc.stdout.readline()
    arrived = time.time()
    rest, err = proc.communicate(timeout=300)
    return first, arrived, first + rest, err, proc.returncode


def _clean(out: str) -> None:
    assert "\r" not in out and "\x1b" not in out, repr(out[:500])  # no carriage returns, no terminal codes


# ----------------------------------------------------------------------------------------------------------------
# sandbag train


TRAIN = ("train", "--train-size", "100", "--batch-size", "32", "--val-size", "50", "--track-size", "40")


def test_train_prints_one_line_per_epoch_as_it_goes(tmp_path):
    first, arrived, out, err, code = _sandbag(*TRAIN, "--epochs", "3", "--eval-every", "2", "--out", "run",
                                            cwd=tmp_path)
    assert code == 0, err[-2000:]
    _clean(out)
    assert EPOCH_LINE.fullmatch(first.rstrip("\n")), first
    assert arrived < (tmp_path / "run" / "model.pt").stat().st_mtime  # flushed at once, not at exit
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [EPOCH_LINE.fullmatch(line).group(1, 2) for line in lines] == [("1", "3"), ("2", "3"), ("3", "3")], out
    assert out.splitlines()[:3] == lines  # nothing before or between them; the metrics table comes after
    # epoch 1 has no clean figures (eval_every 2): its training-mode accuracy; epochs 2 and 3 have them all
    assert "test_acc" not in lines[0] and "running_acc" in lines[0] and "track_acc" in lines[0]
    for line in lines[1:]:
        names = re.findall(r"([a-z_]+) [-+]?\d", line.split(": ", 1)[1])
        assert names == ["train_acc", "val_acc", "test_acc", "gap", "track_acc"], line
    assert "(finished)" in out


def test_train_quiet_prints_only_the_run_folder(tmp_path):
    _, _, out, err, code = _sandbag(*TRAIN, "--epochs", "1", "--out", "run", "--quiet", cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert out == "run\n"
    assert "epoch" not in err


def test_on_a_terminal_with_stdout_to_a_file_the_bar_and_the_lines_both_show(tmp_path):
    """`sandbag train > log.txt` on a terminal: the rich bar on the terminal (stderr), the lines in the file, even
    though rich redirects sys.stdout while its display runs."""
    import pty
    import threading

    master, slave = pty.openpty()
    screen = bytearray()

    def drain():  # read the terminal, so that the display never blocks on a full one
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with open(tmp_path / "log.txt", "w") as log:
        code = subprocess.run([sys.executable, "-m", "sandbag", *TRAIN, "--epochs", "2", "--out", "run"], stdout=log,
                              stderr=slave, cwd=tmp_path, env={**_env(), "TERM": "xterm"}, timeout=300).returncode
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    out = (tmp_path / "log.txt").read_text()
    assert code == 0, screen.decode(errors="replace")[-2000:]
    _clean(out)
    assert [line for line in out.splitlines() if EPOCH_LINE.fullmatch(line)] == out.splitlines()[:2], out
    terminal = screen.decode(errors="replace")
    assert "━" in terminal and "epoch 1/2:" not in terminal  # the bar there, the lines not twice

# ----------------------------------------------------------------------------------------------------------------
# sandbag study


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """The tiny study made smaller (one batch size, 100 samples, no timing phase: 23 runs), run by the CLI with its
    output in a pipe: (folder, config, first line, whether the study was still running then, stdout, seconds)."""
    root = tmp_path_factory.mktemp("progress")
    text = TINY.read_text()
    for old, new in (("train_size = 200", "train_size = 100"), ("batch_sizes = [8, 32]", "batch_sizes = [32]"),
                     ("timing_repeats = 2", "timing_repeats = 0")):
        assert old in text, old
        text = text.replace(old, new)
    config = root / "small.toml"
    config.write_text(text)
    started = time.perf_counter()
    first, arrived, out, err, code = _sandbag("study", "--config", str(config), "--out", "study", "--workers", "2",
                                            "--threads", "1", cwd=root)
    assert code == 0, err[-3000:]
    return root / "study", config, first, arrived, out, time.perf_counter() - started


def _run_lines(out: str) -> list[re.Match]:
    return [RUN_LINE.fullmatch(line) for line in out.splitlines() if RUN_LINE.fullmatch(line)]


def test_study_prints_one_line_per_finished_run_in_order(small_study):
    folder, _, first, arrived, out, _ = small_study
    _clean(out)
    assert RUN_LINE.fullmatch(first.rstrip("\n")), first
    last_run = max(p.stat().st_mtime for p in folder.glob("runs/*/*/summary.json"))
    assert arrived < last_run  # flushed at once, not at exit
    lines = out.splitlines()
    matches = _run_lines(out)
    total = int(matches[0].group(2))
    assert lines[:total] == [m.group(0) for m in matches]  # the first lines, nothing in between
    assert [int(m.group(1)) for m in matches] == list(range(1, total + 1))
    assert {int(m.group(2)) for m in matches} == {total}
    folders = sorted(p.name for p in (folder / "runs" / "mnist-5k").iterdir())
    assert len(folders) == total  # one line per run, none twice
    named = sorted(f"{m.group(3)}-{m.group(4)}-s{m.group(5)}" for m in matches)
    assert named == sorted(name.rsplit("-", 1)[0] for name in folders)
    assert all(m.group(6).startswith("test ") for m in matches)
    assert "reused" not in out
    assert "study wall time" in out  # the summary still follows


def _resume(study, config, tmp_path, redo: int, *options):
    """A copy of the finished study with the folders of its first `redo` headline runs deleted, rerun by the CLI:
    (the names of the runs redone, total runs, stdout)."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    runs = sorted(p.name for p in (copy / "runs" / "mnist-5k").iterdir())
    redone = [name for name in runs if name.startswith("headline-")][:redo]
    for name in redone:
        shutil.rmtree(copy / "runs" / "mnist-5k" / name)
    _, _, out, err, code = _sandbag("study", "--config", str(config), "--out", str(copy), "--workers", "2",
                                    "--threads", "1", *options, cwd=tmp_path)
    assert code == 0, err[-3000:]
    _clean(out)
    return [name.rsplit("-", 1)[0] for name in redone], len(runs), out


def test_a_resumed_study_counts_the_reused_runs(small_study, tmp_path):
    folder, config, *_ = small_study
    redone, total, out = _resume(folder, config, tmp_path, 2)
    lines = out.splitlines()
    reused = REUSED_LINE.fullmatch(lines[0])
    assert reused and reused.group(1, 2, 3) == (str(total - 2), str(total), str(total - 2)), lines[0]
    matches = [RUN_LINE.fullmatch(line) for line in lines[1:3]]
    assert all(matches), lines[:3]
    assert [m.group(1, 2) for m in matches] == [(str(total - 1), str(total)), (str(total), str(total))]
    assert sorted(f"{m.group(3)}-{m.group(4)}-s{m.group(5)}" for m in matches) == sorted(redone)
    assert len(_run_lines(out)) == 2


def test_study_quiet_prints_no_progress(small_study, tmp_path):
    folder, config, *_ = small_study
    _, _, out = _resume(folder, config, tmp_path, 1, "--quiet")
    assert not _run_lines(out) and "reused" not in out and "ETA" not in out, out
    assert "study wall time" in out  # --quiet keeps the two closing lines (wall time, report path)


# ----------------------------------------------------------------------------------------------------------------
# The lines and the ETA, without training


def test_eta_is_runs_left_times_mean_seconds_over_parallel_runs(fresh_seed):
    rng = random.Random(fresh_seed)
    for _ in range(500):
        seconds = [rng.uniform(0.1, 600) for _ in range(rng.randint(1, 40))]
        remaining, slots = rng.randint(0, 500), rng.randint(1, 64)
        left = remaining * (sum(seconds) / len(seconds)) / slots
        text = eta(remaining, seconds, slots)
        if left < 60:
            assert text == "ETA <1 min", (left, text)
        else:
            minutes = int(re.fullmatch(r"ETA (\d+) min", text).group(1))
            assert minutes >= 1 and abs(minutes - left / 60) <= 0.5 + 1e-9, (left, text)
    assert eta(10, [30.0] * 4, 2) == "ETA 2 min"  # 10 runs x 30 s / 2 at a time = 150 s
    assert eta(0, [300.0], 4) == "ETA <1 min"
    assert eta(3, [], 2) == "ETA ?"


def test_run_lines_from_the_progress_object(fresh_seed, capsys):
    rng = random.Random(fresh_seed)
    total, reused, slots = rng.randint(10, 80), rng.randint(1, 5), rng.randint(1, 8)
    p = Progress(total=total, done=reused, reused=reused, slots=slots)
    display = StudyProgress(console=_quiet_console(), enabled=True)
    assert display.lines and not display.enabled  # captured stdout: no terminal, lines only
    display.update(p)
    display.update(p)  # nothing new: nothing printed twice
    finished = []
    for _call in range(3):  # several runs may finish between two calls
        for _ in range(rng.randint(1, 3)):
            failed = rng.random() < 0.2
            status = "failed" if failed else rng.choice(["finished", "finished", "diverged"])
            p.failed += failed
            p.done += not failed
            acc = None if failed else rng.random()
            run = RunDone("mnist-5k", "headline", rng.choice(["l2", "none", "bn-b8", "l2=0.001"]), rng.randint(0, 9),
                          status, acc, rng.uniform(0.5, 900), p.done + p.failed)
            p.finished.append(run)
            finished.append(run)
        display.update(p)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"[{reused}/{total}] reused {reused} finished run(s)"
    assert len(lines) == 1 + len(finished)
    for i, (line, run) in enumerate(zip(lines[1:], finished, strict=True)):
        m = RUN_LINE.fullmatch(line)
        assert m, line
        assert m.group(1, 2, 4, 5) == (str(reused + i + 1), str(total), run.arm, str(run.seed))
        assert m.group(6) == (f"test {run.test_acc:.4f}" if run.status == "finished" else run.status)
        assert m.group(7) == f"{run.seconds:.0f}"
        left = (total - run.number) * sum(r.seconds for r in finished[: i + 1]) / (i + 1) / slots
        assert line.endswith(eta(total - run.number, [r.seconds for r in finished[: i + 1]], slots))
        assert (m.group(8) == "<1") == (left < 60)
    assert run_line(finished[0], total, "ETA 3 min", show_data=True).startswith(
        f"[{finished[0].number}/{total}] mnist-5k headline/")


def _quiet_console():
    from rich.console import Console

    return Console(stderr=True, force_terminal=False)


def test_epoch_line_shows_what_the_row_has(fresh_seed):
    rng = random.Random(fresh_seed)
    clean = {k: rng.random() for k in ("train_acc", "val_acc", "test_acc")}
    row = {"epoch": 4, "running_loss": rng.uniform(0, 3), "running_acc": rng.random(), **clean,
           "gap": clean["train_acc"] - clean["test_acc"], "epoch_seconds": 3.0, "eval_seconds": 1.14}
    line = epoch_line(row, 15)
    assert line == (f"epoch 4/15: train_acc {clean['train_acc']:.4f}, val_acc {clean['val_acc']:.4f}, test_acc "
                    f"{clean['test_acc']:.4f}, gap {row['gap']:+.4f}, 4.1 s")
    bare = {"epoch": 1, "running_loss": 2.0, "running_acc": 0.25, "track_acc": 0.5, "epoch_seconds": 0.25,
            "eval_seconds": 0.0}
    assert epoch_line(bare, 15) == "epoch 1/15: track_acc 0.5000, running_acc 0.2500, 0.2 s"
    diverged = {**row, "running_loss": math.nan}
    assert epoch_line(diverged, 15).endswith("loss nan (diverged), 4.1 s")
