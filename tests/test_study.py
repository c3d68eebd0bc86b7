"""A tiny study end to end, resume after a kill, the lock, and study config files."""

import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

import pytest
from conftest import TINY

from sandbag.errors import ConfigError, SpecError
from sandbag.runs import SUMMARY_TIMES
from sandbag.study import StudyConfig, StudyLock, load_config, load_preset, read_results, run_study
from sandbag.study.report import build_report


def test_tiny_study_writes_every_output(tiny_study):
    out, rows = tiny_study
    for name in ["study.json", "results.csv", "aggregate.csv", "analysis.json", "verdicts.json", "report.md",
                 "report.html"]:
        assert (out / name).stat().st_size > 0, name
    figures = {p.name for p in (out / "figures" / "mnist-5k").iterdir()}
    assert figures == {"penalty.png", "learning_curves.png", "weight_histograms.png", "dropout.png", "bn.png",
                       "batch_size.png", "headline.png", "validation_curves.png"}
    results = read_results(out)
    assert len(results) == len(rows) == 27
    assert len({r["run_dir"] for r in results}) == len(results)
    assert all(r["status"] == "finished" for r in results)
    aggregate = list(csv.DictReader(open(out / "aggregate.csv")))
    none = next(a for a in aggregate if a["group"] == "headline" and a["arm"] == "none")
    assert int(none["n"]) == 2


def test_report_verdicts_follow_from_the_numbers(tiny_study):
    """Each paired part's numbers are recomputed from results.csv (and probes.json) here, independently of the
    report: its n, mean and interval, and the verdict the rule gives for that interval."""
    out, _ = tiny_study
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert [v["number"] for v in verdicts] == list(range(1, 16))
    results = {(r["group"], r["arm"], r["seed"]): r for r in read_results(out) if r["status"] == "finished"}
    six = next(v for v in verdicts if v["number"] == 6)["data"]["mnist-5k"]["parts"][0]  # gap: dropout - none
    diffs = [results[("headline", "dropout", s)]["gap"] - results[("headline", "none", s)]["gap"] for s in (0, 1)]
    assert six["n"] == 2 and six["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-12)
    assert [six["diffs"][str(s)] for s in (0, 1)] == pytest.approx(diffs, abs=1e-12)
    low, high = six["ci_low"], six["ci_high"]
    expected = "supported" if high < 0 else "contradicted" if low > 0 else "inconclusive"
    assert six["verdict"] == expected, six
    report = (out / "report.md").read_text()
    for v in verdicts:
        result = v["data"]["mnist-5k"]
        for part in result["parts"]:
            if part["kind"] == "paired" and part["n"] >= 2:
                low, high, margin = part["ci_low"], part["ci_high"], part["margin"]
                zero = -margin if part["direction"] == "noninferior" else 0.0
                above, below = low > zero, high < zero
                if part["direction"] == "less":
                    want = "supported" if below else "contradicted" if above else "inconclusive"
                else:
                    want = "supported" if above else "contradicted" if below else "inconclusive"
                small = part["smallest_effect"]
                if want == "inconclusive" and small and -small < low and high < small:
                    want = "negligible"
                assert part["verdict"] == want, (v["number"], part)
                assert part["holm"] == (want != "inconclusive" and part["p_holm"] < 0.05), part
                assert (part.get("power") is not None) == (want == "inconclusive"), part
        assert result["decided"] == all(p["verdict"] in ("supported", "contradicted", "negligible")
                                        for p in result["parts"])
        assert v["text"] in report
    meta = json.loads((out / "study.json").read_text())
    assert meta["command"] in report and "Verdict rule" in report and "Quick preset" in report
    assert set(meta["chosen"]["mnist-5k"]) == {"l2", "l1", "noise", "dropout"}


def test_report_has_the_decision_sections_and_the_timing_phase(tiny_study):
    """Decided count, Holm, smallest effects, power for inconclusive parts, and the timing method: in the report,
    Markdown and HTML alike; the timing claims read timing.json (measured alone, every arm each repetition)."""
    out, _ = tiny_study
    verdicts = json.loads((out / "verdicts.json").read_text())
    decided = sum(1 for v in verdicts if v["data"]["mnist-5k"]["decided"])
    paired = [p for v in verdicts for p in v["data"]["mnist-5k"]["parts"] if p["kind"] == "paired"]
    survive = sum(1 for p in paired if p["holm"])
    timing = json.loads((out / "timing.json").read_text())
    arms = {(r["group"], r["arm"]) for r in timing["rows"]}
    assert arms == {("headline", "none"), ("headline", "dropout"), ("batch", "none-b8")}
    assert sorted(r["seed"] for r in timing["rows"] if r["arm"] == "dropout") == [0, 1]  # timing_repeats = 2
    twelve = next(v for v in verdicts if v["number"] == 12)["data"]["mnist-5k"]["parts"][0]
    rounds = {(r["arm"], r["seed"]): r.get("epoch_seconds") for r in timing["rows"]}  # compared round by round
    assert twelve["diffs"]["0"] == pytest.approx(
        statistics.median(a - b for a, b in zip(rounds[("none-b8", 0)], rounds[("none", 0)], strict=True)))
    seven = next(v for v in verdicts if v["number"] == 7)["data"]["mnist-5k"]["parts"][1]
    chunks = {(r["arm"], r["seed"]): r.get("chunk_seconds") for r in timing["rows"]}  # one batch size: chunks
    assert seven["diffs"]["1"] == pytest.approx(
        statistics.median(a / b - 1 for a, b in zip(chunks[("dropout", 1)], chunks[("none", 1)], strict=True)))
    inconclusive = [p for p in paired if p["verdict"] == "inconclusive"]
    with_power = [p for p in inconclusive if p["power"]["detectable"] is not None]  # none without spread
    for page in ((out / "report.md").read_text(), (out / "report.html").read_text()):
        assert f"{decided} of 15 claims decided" in page
        assert f"{survive} of {len(paired)} paired parts survive Holm" in page
        assert "Smallest effects of interest: test_acc 0.003" in page
        assert "thread CPU seconds per epoch (wall seconds kept beside them) per arm and repetition" in page
        assert ("could still move claims" in page) == bool(inconclusive)
        for part in with_power:
            assert f"Power ({part['label']})" in page or f"Power ({part['label'].replace('<', '&lt;')})" in page


def test_report_rebuilds_without_training_self_contained_and_escaped(tiny_study, tmp_path):
    out, _ = tiny_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    meta = json.loads((copy / "study.json").read_text())
    meta["config"]["name"] = "<script>alert(1)</script>"
    meta["command"] = "sandbag study --out '<img src=x onerror=alert(1)>'"
    (copy / "study.json").write_text(json.dumps(meta))
    before = {p: p.stat().st_mtime_ns for p in (copy / "runs").rglob("*") if p.is_file()}
    build_report(copy)
    after = {p: p.stat().st_mtime_ns for p in (copy / "runs").rglob("*") if p.is_file()}
    assert before == after  # nothing in the run folders was touched: no training
    page = (copy / "report.html").read_text()
    assert page.count("<img") == page.count('src="data:image/png;base64,') >= 8
    assert 'src="figures' not in page  # no links to files beside it
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


TIMINGS = SUMMARY_TIMES


def _comparable(rows):
    return sorted(({k: v for k, v in r.items() if k not in TIMINGS} for r in rows), key=lambda r: r["run_dir"])


def test_kill_at_random_points_then_resume_equals_an_uninterrupted_study(tiny_study, tmp_path, fresh_seed):
    """Killed twice at points drawn from `fresh_seed` (printed on failure: SANDBAG_TEST_SEED replays them), each
    after a drawn number of finished runs, then resumed: the same results as the study never interrupted."""
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "sandbag", "study", "--config", str(TINY), "--out", str(out), "--quiet",
           "--workers", "2", "--threads", "1"]
    rng = random.Random(fresh_seed)
    finished_before: dict[str, int] = {}
    for target in sorted(rng.sample(range(3, 24), 2)):
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and len(list(out.glob("runs/*/*/summary.json"))) < target:
            time.sleep(0.05)  # no deadline: a slow machine only waits longer
        time.sleep(rng.uniform(0, 0.5))  # somewhere inside the next runs' epochs or writes
        assert proc.poll() is None, "the study ended before its kill point"
        os.killpg(proc.pid, signal.SIGKILL)  # the whole study, workers included
        proc.wait()
        for name in ("results.csv", "aggregate.csv", "study.json"):
            if (out / name).exists():  # each file is a complete version, never half-written
                text = (out / name).read_text()
                assert text.endswith("\n") if name.endswith(".csv") else json.loads(text)
        finished_before.update({p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/*/summary.json")})
    assert 3 <= len(finished_before) < 27
    rows = run_study(load_config(TINY), out, workers=2, threads=1)
    assert len(rows) == 27
    results = read_results(out)
    assert len(results) == 27 and len({r["run_dir"] for r in results}) == 27  # no duplicate rows
    for p in out.glob("runs/*/*/summary.json"):
        if p.parent.name in finished_before:
            assert p.stat().st_mtime_ns == finished_before[p.parent.name], f"{p.parent.name} was redone"
    assert _comparable(results) == _comparable(read_results(tiny_study[0]))
    # same seeds, same verdicts: verdicts.json byte for byte but for the parts that read machine timings
    build_report(out)
    assert _untimed((out / "verdicts.json").read_text()) == _untimed((tiny_study[0] / "verdicts.json").read_text())


def _untimed(text: str) -> str:
    """verdicts.json without the parts that read machine timings (and the verdicts of the claims they belong to)."""
    verdicts = json.loads(text)
    for v in verdicts:
        for result in v["data"].values():
            timed = [p for p in result["parts"] if p.get("timed")]
            result["parts"] = [p for p in result["parts"] if not p.get("timed")]
            if timed:
                del result["verdict"], result["decided"]
    return json.dumps(verdicts, sort_keys=True)


def test_a_study_whose_runs_diverge_carries_on_and_says_so(tmp_path):
    cfg = load_config(TINY)
    cfg = StudyConfig.from_dict({**cfg.to_dict(), "optimizer": "sgd", "lr": 1e6, "train_size": 100,
                                 "batch_sizes": [32], "sweep": {t: v[:1] for t, v in cfg.sweep.items()}})
    rows = run_study(cfg, tmp_path / "study", workers=2, threads=1)
    assert rows and all(r["status"] == "diverged" for r in rows)
    build_report(tmp_path / "study")
    report = (tmp_path / "study" / "report.md").read_text()
    assert "did not finish" in report and "textbook strength was used" in report
    verdicts = json.loads((tmp_path / "study" / "verdicts.json").read_text())
    assert all(v["data"]["mnist-5k"]["verdict"] == "inconclusive" for v in verdicts if v["number"] != 4)


def test_a_second_study_on_the_same_folder_refuses(tmp_path):
    with StudyLock(tmp_path):
        with pytest.raises(ConfigError, match="in use by another sandbag study"):
            run_study(load_config(TINY), tmp_path)


def test_presets_load_and_bad_configs_are_clear(tmp_path):
    for name in ("quick", "standard", "full", "fashion"):
        assert load_preset(name).name == name
    assert load_preset("standard").seeds >= 5
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nepochs = = 3\nseeds = 5\n')
    with pytest.raises(ConfigError, match="invalid TOML.*line"):
        load_config(bad)
    bad.write_text('name = "x"\nepoch = 3\n')
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(bad)
    bad.write_text('name = "x"\nepochs = "three"\n')
    with pytest.raises(ConfigError, match="epochs must be int"):
        load_config(bad)
    bad.write_text('[sweep]\nl2 = [-1.0]\nl1 = [1e-4]\nnoise = [0.1]\ndropout = [0.2]\n')
    with pytest.raises(SpecError, match=r"invalid lambda for l2: expected .*, received l2=-1.0"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("huge")
    assert StudyConfig.from_dict(StudyConfig().to_dict()) == StudyConfig()


def test_a_study_file_can_start_from_a_preset(tmp_path, monkeypatch):
    """`preset = "NAME"`: the file's keys replace the preset's, its tables merge into the preset's key by key, its
    lists replace the preset's whole; a preset that is not one, and presets naming each other, are one-line errors."""
    from sandbag.study import config as config_mod

    own = tmp_path / "own.toml"
    own.write_text('preset = "standard"\nname = "mine"\nseeds = 6\nextra_seeds = 5\nbatch_sizes = [32]\n'
                   '[smallest_effect]\ntest_acc = 0.01\n[sweep]\nl2 = [1e-4, 1e-3]\n')
    cfg, standard = load_config(own), load_preset("standard")
    assert (cfg.name, cfg.seeds, cfg.extra_seeds, cfg.batch_sizes) == ("mine", 6, 5, [32])
    assert cfg.smallest_effect == {**standard.smallest_effect, "test_acc": 0.01}
    assert cfg.sweep == {**standard.sweep, "l2": [1e-4, 1e-3]}
    same = {k for k, v in cfg.to_dict().items() if v == standard.to_dict()[k]}
    assert same == set(standard.to_dict()) - {"name", "seeds", "extra_seeds", "batch_sizes", "smallest_effect",
                                              "sweep"}
    # the regime-fashion preset is the regime preset's design at other sizes, on other data
    fashion, regime = load_preset("regime-fashion"), load_preset("regime")
    assert fashion.claims == regime.claims and fashion.arms == regime.arms and fashion.data == ["fashion-mnist"]
    for text, message in (('preset = "huge"\n', "unknown preset 'huge'"), ("preset = 3\n", "must be a preset's name")):
        own.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(own)
    files = {"quick.toml": 'preset = "standard"\n', "standard.toml": 'preset = "quick"\n'}

    class Package:
        def joinpath(self, name):
            return type("File", (), {"read_text": lambda _self: files[name]})()

    monkeypatch.setattr(config_mod.resources, "files", lambda _package: Package())
    with pytest.raises(ConfigError, match="in a circle: quick -> standard -> quick"):
        load_preset("quick")


def test_more_seeds_reuse_the_runs_already_done(tiny_study, tmp_path):
    """`sandbag study --seeds 3 --extra-seeds 3` on a finished 2-seed study adds the third seed's runs only."""
    out, _ = tiny_study
    copy = tmp_path / "more"
    shutil.copytree(out, copy)
    before = {p.name for p in (copy / "runs" / "mnist-5k").iterdir()}
    cmd = [sys.executable, "-m", "sandbag", "study", "--config", str(TINY), "--out", str(copy), "--quiet",
           "--seeds", "3", "--extra-seeds", "3", "--workers", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    after = {p.name for p in (copy / "runs" / "mnist-5k").iterdir()}
    assert before < after
    assert {name.rsplit("-", 1)[0].rsplit("-s", 1)[1] for name in after - before} == {"2"}  # only seed 2 is new
    for name in before:  # the old runs were reused, not retrained
        src, dst = out / "runs" / "mnist-5k" / name / "summary.json", copy / "runs" / "mnist-5k" / name / "summary.json"
        assert src.read_text() == dst.read_text(), name
    meta = json.loads((copy / "study.json").read_text())
    assert meta["config"]["seeds"] == 3 and meta["config"]["extra_seeds"] == 3
    verdicts = json.loads((copy / "verdicts.json").read_text())
    assert next(v for v in verdicts if v["number"] == 6)["data"]["mnist-5k"]["parts"][0]["n"] == 3
    assert "study wall time" in result.stdout


TWINS = """
name = "twins"
lecture = false
data = ["mnist-5k"]
train_size = 100
test = "rest"
val_size = 100
epochs = 1
sweep_epochs = 1
batch_size = 32
batch_sizes = [32]
track_size = 50
seeds = 2
extra_seeds = 2
sweep_seeds = 2
timing_repeats = 0

[sweep]
dropout = [0.5]  # one strength: no grid edge to extend

[[arms]]
name = "none"

[[arms]]
name = "dropout"
specs = ["dropout={dropout}"]

[[arms]]
name = "drop9"
group = "extra"
specs = ["dropout=0.9"]

[[claims]]
id = "dropout-helps"
text = "Dropout raises test accuracy."
  [[claims.parts]]
  metric = "test_acc"
  a = "dropout"
  b = "none"
  direction = "greater"
"""


def test_a_run_the_sweep_already_trained_is_copied_not_trained_again(tmp_path):
    """With val_size and the sweep at the study's epochs, the sweep's none and chosen-strength runs are the
    headline's runs of the same seeds: 10 planned, 6 trained (the copies hold no worker.json), each copy the same
    bytes as its twin; a run whose learning speed nothing reads (the extra arm) tracks nothing and has no
    epochs_to_target; a rerun reuses all 10."""
    path = tmp_path / "twins.toml"
    path.write_text(TWINS)
    cfg, out = load_config(path), tmp_path / "study"
    seen = []
    rows = run_study(cfg, out, workers=2, threads=1, on_progress=seen.append)
    assert len(rows) == 10 and all(r["status"] == "finished" for r in rows)
    assert seen[-1].reused == 4 and seen[-1].done == 10
    folders = {(r["group"], r["arm"], r["seed"]): out / r["run_dir"] for r in rows}
    trained = [f for f in folders.values() if (f / "worker.json").exists()]
    assert len(trained) == 6
    chosen = json.loads((out / "study.json").read_text())["chosen"]["mnist-5k"]["dropout"]
    for seed in (0, 1):
        for sweep_arm, arm in (("none", "none"), (f"dropout={chosen}", "dropout")):
            twin, copy = folders[("sweep", sweep_arm, seed)], folders[("headline", arm, seed)]
            assert not (copy / "worker.json").exists()
            for name in ("model.pt", "metrics.jsonl", "summary.json", "config.json"):
                assert (copy / name).read_bytes() == (twin / name).read_bytes(), (arm, seed, name)
    speed = {(r["group"], r["arm"]): r["epochs_to_target"] is not None for r in rows}
    assert speed[("extra", "drop9")] is False and speed[("headline", "none")] is True
    assert all("track_acc" not in row for row in
               map(json.loads, (folders[("extra", "drop9", 0)] / "metrics.jsonl").read_text().splitlines()))
    again = []
    run_study(cfg, out, workers=2, threads=1, on_progress=again.append)
    assert again[-1].reused == again[-1].total == 10
