"""Smoke checks of the benchmark scripts: each runs in --smoke mode (tiny sizes, one repeat) and prints its table.

These time nothing: the numbers are benchmarks/RESULTS.md's business (`make bench`)."""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, *args: str, env: dict | None = None) -> str:
    import os

    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture
def bench_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))

    def load(name):
        return importlib.import_module(name)

    return load


def test_throughput_prints_its_table_with_every_variant():
    out = _run("throughput.py", "--threads", "1", "--baseline", "HEAD")
    assert "| batch | variant | samples/s | vs best plain | spread | % of peak |" in out
    for variant in ("plain NCHW", "plain channels_last", "plain channels_last, tuned malloc", "| sandbag |",
                    "| sandbag @ HEAD |"):
        assert variant in out
    assert "MFLOP" in out and "GFLOP/s" in out
    assert re.search(r"batch 32: sandbag / sandbag @ HEAD = \d+\.\d\dx samples/s", out)


def test_plain_training_program_trains_the_reference_model():
    """The baseline of train_process.py, both ways of loading, for one epoch on a small batch count."""
    for extra in ([], ["--fast-load"]):
        proc = subprocess.run([sys.executable, str(BENCH / "_plain_train.py"), "--epochs", "1", "--batch-size", "500",
                               *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        acc = float(re.search(r"test loss [\d.]+ acc ([\d.]+)", proc.stdout).group(1))
        assert 0.3 < acc <= 1.0  # 8 Adam steps lift the reference CNN well above chance (0.1)


def test_train_process_times_whole_processes_and_itemizes_sandbag(bench_module, monkeypatch, capsys):
    train_process = bench_module("train_process")
    walls = {"plain": 10.0, "fast": 8.0, "sandbag": 6.0}
    calls = []

    def fake_process(cmd, env=None):  # a real round takes ~25 s; the scripts themselves are tested above
        calls.append(cmd)
        if "sandbag" in cmd:
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True)
            (out / "summary.json").write_text(json.dumps({"setup_seconds": 1.0, "train_seconds": 3.0,
                                                          "eval_seconds": 0.5}))
            return walls["sandbag"]
        return walls["fast" if "--fast-load" in cmd else "plain"]

    monkeypatch.setattr(train_process, "timed_process", fake_process)
    monkeypatch.setattr(sys, "argv", ["train_process.py", "--repeats", "2", "--warmup", "0"])
    train_process.main()
    out = capsys.readouterr().out
    sandbag = [cmd for cmd in calls if "sandbag" in cmd]
    assert len(calls) == 6 and len(sandbag) == 2
    assert all(cmd[4:10] == ["--epochs", "3", "--batch-size", "32", "--threads", "1"] for cmd in sandbag)
    assert "| plain, fast loading | 8.00 s | 0% | 1.00 |" in out and "| sandbag train | 6.00 s | 0% | 0.75 |" in out
    assert "sandbag train / best plain program: 0.75 (target <= 0.75: met)" in out
    assert "| sandbag train | 1.00 s (17%) | 3.00 s (50%) | 0.50 s (8%) | 1.50 s (25%) |" in out


def test_power_pilot_prints_each_arm_against_none():
    out = _run("pilot.py")
    assert out.startswith("## Power pilot") and "### 100x2 (training images x epochs)" in out
    assert "| arm | train acc | test acc | gap | test - none, points [95% CI] |" in out
    assert "| none |" in out and "| dropout=0.4 |" in out


def test_inference_checks_the_folded_model_and_prints_its_table():
    out = _run("inference.py")
    assert "| batch | model | samples/s | vs unfolded | spread |" in out
    assert "bn, folded (sandbag export)" in out and "4 BN layers folded" in out


def test_keras_peer_skips_cleanly_without_its_venv(tmp_path):
    out = _run("keras_peer.py", env={"SANDBAG_KERAS_VENV": str(tmp_path / "absent")})
    assert "skipped" in out and "--setup" in out


def test_parallelism_prints_both_tables():
    out = _run("parallelism.py")
    assert "| workers x threads | wall time | vs best | spread |" in out
    assert "| allocator | samples/s | vs glibc defaults | spread | minor page faults per run |" in out
    assert "sandbag (tune_allocator)" in out


def _run_study_time(study_time, monkeypatch, capsys, argv, wall) -> tuple[list, str]:
    """study_time.main with the study stubbed (a real one takes minutes; test_study covers it): returns the calls
    (args, whether src held the sandbag package then, or None without src) and the printed output. `wall(src)` gives
    the stub's wall time."""
    calls = []

    def fake_study(args, out, src=None):
        calls.append((args, src and (src / "sandbag" / "__init__.py").is_file()))
        return wall(src), {"runs": 27, "hardware": {"workers": 2, "threads_per_worker": 1}, "cpu_seconds_runs": 2.0}

    monkeypatch.setattr(study_time, "run_study", fake_study)
    monkeypatch.setattr(sys, "argv", ["study_time.py", *argv])
    study_time.main()
    return calls, capsys.readouterr().out


def test_study_time_prints_its_table(bench_module, monkeypatch, capsys):
    calls, out = _run_study_time(bench_module("study_time"), monkeypatch, capsys,
                                 ["--presets", "quick", "--workers", "2"], lambda src: 1.5)
    calls = [args for args, _ in calls]
    assert calls == [["--preset", "quick", "--workers", "2"]]
    assert "| study | wall time | runs | workers x threads | run-seconds | spread | vs current |" in out
    assert "| quick | 1.5 s | 27 | 2 x 1 |" in out


def test_study_time_itemizes_where_the_time_went(bench_module, monkeypatch, capsys):
    from sandbag.study.costs import itemize

    study_time = bench_module("study_time")
    spent = itemize([{"training steps": 6.0, "evaluation": 1.0, "probes": 1.0}], 8.0, 1, timing_phase=2.0)

    def fake_study(args, out, src=None):
        return 10.0, {"runs": 3, "hardware": {"workers": 1, "threads_per_worker": 1}, "cpu_seconds_runs": 8.0,
                      "time": spent}

    monkeypatch.setattr(study_time, "run_study", fake_study)
    monkeypatch.setattr(sys, "argv", ["study_time.py", "--presets", "quick"])
    study_time.main()
    out = capsys.readouterr().out
    assert "| training steps | 6.0 s (60.0%) |" in out
    assert "| evaluation <= 15%? | yes (10.0%) |" in out
    assert "| outside training steps <= 25%? | no (40.0%) |" in out


def test_study_time_alternates_with_a_baseline_revision(bench_module, monkeypatch, capsys):
    calls, out = _run_study_time(bench_module("study_time"), monkeypatch, capsys,
                                 ["--presets", "quick", "--baseline", "HEAD", "--repeats", "2"],
                                 lambda src: 2.0 if src else 1.0)
    sources = [has_package for _, has_package in calls]
    assert sources == [True, None, None, True]  # A B, then B A; the baseline's src/ holds the package
    assert "| quick @ HEAD | 2.0 s | 27 |" in out
    assert "| quick | 1.0 s | 27 | 2 x 1 | 2 s | 0% | 1.00 |" in out and "| 0% | 2.00 |" in out


def test_run_all_rewrites_results_and_keeps_the_gpu_section(bench_module, tmp_path, monkeypatch):
    run_all = bench_module("run_all")
    previous = "# Benchmarks\n\nold numbers\n\n## GPU check\n\n| real | data |\n"
    text = run_all.compose({"a": "## A\n\n| x |\n"}, previous, "Measured now.\n")
    assert "old numbers" not in text and "## A" in text and text.rstrip().endswith("| real | data |")
    assert run_all.gpu_section("no gpu here") == ""

    target = tmp_path / "RESULTS.md"
    target.write_text(previous)
    monkeypatch.setattr(run_all, "SCRIPTS", {"keras_peer": []})
    monkeypatch.setenv("SANDBAG_KERAS_VENV", str(tmp_path / "absent"))
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--smoke", "--out", str(target)])
    assert run_all.main() == 0
    text = target.read_text()
    assert "keras_peer: skipped" in text and "## GPU check" in text and "| real | data |" in text
    assert not list(tmp_path.glob(".RESULTS.md.*"))


def test_gpu_check_script_parses_and_results_has_its_sections():
    subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], check=True)
    results = (BENCH / "RESULTS.md").read_text()
    assert "## GPU check" in results


def test_timing_estimators_reads_every_timed_part_both_ways():
    out = _run("timing_estimators.py")
    assert ("| run | timed part | epoch rounds: mean ± SD | study's rounds: mean ± SD "
            "| SD study's / epochs |") in out
    for label in ("dropout / none - 1", "epoch at batch 4 slower than at 32", "epoch at batch 32 slower than at 128"):
        assert label in out, out
