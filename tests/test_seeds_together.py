"""A study whose arms train their seeds together (`--seeds-together`, the default on a CUDA GPU), checked on the CPU:
the scheduler hands each group of runs that differ only in their seed to one `multiseed.fit_seeds` task, and every
run still gets its own complete folder, probes and place in the report."""

import json
from collections import Counter
from pathlib import Path

import pytest

from sandbag.errors import ConfigError
from sandbag.multiseed import fit_seeds, trains_together
from sandbag.runs import RunConfig, read_summary
from sandbag.study import load_config, run_study
from sandbag.study.report import build_report

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


@pytest.fixture(scope="module")
def together(tmp_path_factory):
    out = tmp_path_factory.mktemp("together") / "tiny"
    rows = run_study(load_config(TINY), out, workers=2, threads=1, seeds_together=True)
    build_report(out)
    return out, rows


def test_every_run_gets_its_own_complete_folder(together):
    out, rows = together
    folders = sorted((out / "runs").glob("*/*"))
    assert len(rows) == len(folders) == 27
    for folder in folders:
        assert {"config.json", "summary.json", "model.pt", "probes.json"} <= {p.name for p in folder.iterdir()}
        assert read_summary(folder)["status"] == "finished"


def test_seeds_of_an_arm_train_together_and_batch_norm_arms_alone(together):
    out, _ = together
    runs = {}
    for folder in (out / "runs").glob("*/*"):
        written = json.loads((folder / "config.json").read_text())
        written.pop("versions")
        runs[folder] = RunConfig.from_dict(written)

    def seedless(folder):  # the folder name is <group>-<arm>-s<seed>-<config key>
        config = runs[folder].to_dict()
        config.pop("seed")
        return folder.name.rsplit("-s", 1)[0], json.dumps(config, sort_keys=True)

    together_counts = Counter(seedless(f) for f, cfg in runs.items() if trains_together(cfg))
    assert max(together_counts.values()) == 2  # tiny.toml: two seeds per arm (one per sweep strength)
    for folder, cfg in runs.items():
        summary = read_summary(folder)
        assert summary["config_key"] == cfg.key()
        if trains_together(cfg) and together_counts[seedless(folder)] > 1:
            assert summary["seeds_batched"] == together_counts[seedless(folder)] and summary["seed"] == cfg.seed
        else:
            assert "seeds_batched" not in summary, folder.name
            assert not trains_together(cfg) or together_counts[seedless(folder)] == 1
    assert any(spec.name == "bn" for cfg in runs.values() for spec in cfg.specs)  # BN arms ran, one at a time


def test_the_study_records_it_and_its_report_builds(together):
    out, _ = together
    meta = json.loads((out / "study.json").read_text())
    assert meta["hardware"]["seeds_together"] is True
    assert meta["time"]["seconds"]["training steps"] > 0
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts and (out / "report.html").is_file()


def test_a_cpu_study_trains_one_run_at_a_time_by_default(tiny_study):
    out, _ = tiny_study
    assert json.loads((out / "study.json").read_text())["hardware"]["seeds_together"] is False
    assert not any("seeds_batched" in read_summary(f) for f in (out / "runs").glob("*/*"))


def test_seeds_together_needs_the_local_executor(tmp_path):
    with pytest.raises(ConfigError, match="local executor"):
        run_study(load_config(TINY), tmp_path / "s", seeds_together=True, executor="ray")
    assert not (tmp_path / "s").exists()


def test_fit_seeds_writes_the_run_folders_it_is_given(tmp_path):
    cfg = RunConfig(data="mnist-5k", train_size=100, batch_size=50, epochs=1, model="mlp", device="cpu")
    folders = [tmp_path / "a", tmp_path / "b"]
    summaries = fit_seeds(cfg, [5, 6], run_dirs=folders)
    assert [read_summary(f)["seed"] for f in folders] == [5, 6] == [s["seed"] for s in summaries]
    with pytest.raises(ConfigError, match="2 run folders for 3 seeds"):
        fit_seeds(cfg, [1, 2, 3], run_dirs=folders)


def test_trains_together_only_what_one_vmapped_model_can_hold():
    assert trains_together(RunConfig(regs=["dropout=0.3", "l2=1e-4"]))
    assert not trains_together(RunConfig(regs=["bn"]))
    assert not trains_together(RunConfig(nproc=2))
    assert not trains_together(RunConfig(model="examples.tiny_resnet:tiny_resnet"))
