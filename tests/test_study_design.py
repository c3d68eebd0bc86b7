"""The study design as data: the plan's runs and folder names (pinned, so a hash change is caught), reuse of existing
run folders, claims validated against the plan, and StudyConfig's field types checked from its annotations."""

import ast
import dataclasses
import datetime
import shutil
import typing
from pathlib import Path

import pytest
from conftest import TINY

from sandbag.errors import ConfigError
from sandbag.regularizers import TECHNIQUES, tunable
from sandbag.study import config, plan, schema
from sandbag.study.config import StudyConfig, load_config, load_preset

CHOSEN = {"l2": 0.001, "l1": 0.0001, "noise": 0.3, "dropout": 0.4}
STUDY_SRC = Path(__file__).resolve().parents[1] / "src" / "sandbag" / "study"


def test_folder_names_and_config_keys_are_the_ones_existing_study_folders_use():
    """Names made by the code before the study package (read off a tiny study it ran): runs/<data>/<group>-<arm>-
    s<seed>-<key>. A change of the config hash or of the naming would orphan every existing run folder."""
    runs = {(r.group, r.arm, r.seed): r for r in plan.runs_of(load_config(TINY), "mnist-5k", CHOSEN)}
    expected = {
        ("headline", "bn", 0): "headline-bn-s0-d95c6af9c115",
        ("extra", "l2-bias", 1): "extra-l2-bias-s1-8c17dcde37d6",
        ("sweep", "none", 0): "sweep-none-s0-3e6ed7b3948a",
        ("batch", "bn-b8", 1): "batch-bn-b8-s1-11cabe1abd25",
    }
    for key, name in expected.items():
        assert runs[key].folder(Path("study")) == Path("study/runs/mnist-5k") / name, key
    assert runs[("extra", "l2-bias", 1)].config.regs == ["l2=0.001:bias"]
    assert runs[("sweep", "none", 0)].config.val_fraction == 0.2 and runs[("sweep", "none", 0)].config.epochs == 1


BEFORE = Path(__file__).resolve().parent / "data" / "run_folders_before_restructure.json"


@pytest.mark.parametrize("name", ["tiny", "quick", "standard", "full"])
def test_every_run_folder_of_the_old_code_is_planned_again(name):
    """tests/data/run_folders_before_restructure.json: every run folder the code before the study package planned
    for these studies (written by that code, at its last commit, from the presets as they were then, kept in
    tests/data/presets_before_restructure/). The plan must name exactly the same folders, or a resumed study would
    retrain what it has."""
    import json

    before = json.loads(BEFORE.read_text())[name]
    cfg = load_config(TINY if name == "tiny" else BEFORE.parent / "presets_before_restructure" / f"{name}.toml")
    folders = [str(r.folder(Path("STUDY")).relative_to("STUDY"))
               for data in cfg.data for r in plan.runs_of(cfg, data, before["chosen"])]
    assert sorted(folders) == before["folders"]


@pytest.mark.parametrize("preset,count", [("quick", 41), ("standard", 144), ("fashion", 234)])
def test_presets_plan_the_documented_number_of_runs(preset, count):
    cfg = load_preset(preset)
    runs = plan.runs_of(cfg, "mnist-5k", CHOSEN)
    assert len(runs) == count
    assert len({r.folder(Path(".")) for r in runs}) == count  # no two runs share a folder


def test_the_arms_table_follows_the_technique_registry():
    arms = plan.planned_arms(StudyConfig())
    headline = [a["arm"] for a in arms if a["group"] == "headline"]
    assert headline == ["none", *tunable(), *[t for t in TECHNIQUES if t not in tunable()]]
    sweep = {a["technique"] for a in arms if a["group"] == "sweep"} - {"none"}
    assert sweep == set(tunable())
    assert [a["arm"] for a in arms if a["group"] == "batch"] == ["none-b4", "none-b128", "bn-b4", "bn-b128"]
    assert all(not a["dependent"] for a in arms if a["group"] in ("sweep", "batch"))
    assert "bn-sync" not in {a["arm"] for a in arms}
    assert "bn-sync" in {a["arm"] for a in plan.planned_arms(StudyConfig(nproc=2, batch_sizes=[4, 32, 128]))}


def test_a_claim_naming_an_arm_the_plan_does_not_run_is_a_config_error():
    StudyConfig(batch_sizes=[32])  # no small batch: claims 11 and 12 compare what there is, no error
    # without the lecture's l2-bias arm, the lecture's claim 3 names an arm the study does not run
    arms = [a for a in schema.lecture()["arms"]
            if a["name"] != "l2-bias"]
    claims = schema.lecture()["claims"]
    with pytest.raises(ConfigError, match=r"^claim 'l2-biases-out' part 1: unknown arm 'l2-bias'") as e:
        StudyConfig(lecture=False, arms=arms, claims=claims)
    assert "\n" not in str(e.value)


def _wrong_value(annotation):
    """A value of the wrong type for an annotation (never None: None is valid for the optional fields)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType):  # wrong for every member
        return next(v for v in (1, "1", 0.5, [1.5], {"l2": []}) if not config.matches(v, annotation))
    origin = typing.get_origin(annotation)
    if origin is dict and args[1] is typing.Any:  # a table: anything but a table is wrong
        return 1
    if origin is list:
        return [_wrong_value(args[0])]
    if origin is dict:
        return {"l2": _wrong_value(args[1])}
    return {str: 1, int: "1", float: "0.5", bool: 1}[annotation]


def test_every_field_is_type_checked_from_its_annotation():
    hints = typing.get_type_hints(StudyConfig)
    for f in dataclasses.fields(StudyConfig):
        bad = _wrong_value(hints[f.name])
        with pytest.raises(ConfigError, match=rf"^x: {f.name} must be .*, got ") as e:
            StudyConfig.from_dict({f.name: bad}, source="x")
        assert "\n" not in str(e.value), f.name
    assert config.type_name(hints["sweep"]) == "dict[str, list[float]]"
    assert config.type_name(hints["train_size"]) == "int"
    with pytest.raises(ConfigError, match="batch_sizes must be list\\[int\\], got \\[32, True\\]"):
        StudyConfig.from_dict({"batch_sizes": [32, True]})
    with pytest.raises(ConfigError, match="epochs must be int, got datetime.date"):  # a TOML date
        StudyConfig.from_dict({"epochs": datetime.date(2026, 1, 1)})
    with pytest.raises(ConfigError, match="train_size must be int"):
        StudyConfig(train_size=2.5)  # checked on construction too, not only from files
    with pytest.raises(TypeError, match="no type check for annotation"):
        config.matches({1}, set[int])
    assert StudyConfig.from_dict({"lr": 1}).lr == 1  # TOML writes 1 for 1.0
    assert StudyConfig.from_dict(StudyConfig().to_dict()) == StudyConfig()


def test_cli_study_defaults_come_from_the_config():
    from sandbag.cli import build_parser

    args = build_parser().parse_args(["study"])
    assert args.preset is None and args.train_size is None and args.nproc is None and args.executor is None
    assert config.defaults()["name"] == "standard"


def test_modules_import_one_way_and_no_private_names():
    """No `from .x import _name` across modules; executors never import the runner, config or report."""
    for path in STUDY_SRC.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (path.name, node.module, private)
                if path.name == "executors.py":
                    assert node.module not in ("runner", "config", "report", "plan"), node.module


def test_a_second_study_reuses_every_run_folder(tiny_study, tmp_path):
    from sandbag.study import Progress, read_results, run_study

    copy = tmp_path / "tiny"
    shutil.copytree(tiny_study[0], copy)
    seen: list[Progress] = []
    rows = run_study(load_config(TINY), copy, workers=2, threads=1, on_progress=seen.append)
    assert seen[-1].reused == seen[-1].done == seen[-1].total == len(rows) == 27
    assert seen[-1].probed == 0  # every run folder already has its probes.json
    assert read_results(copy) == read_results(tiny_study[0])


EXTRA_SPEED = """
name = "speed"
lecture = false
data = ["mnist-5k"]
train_size = 200
epochs = 3
track_size = 100
timing_repeats = 0

[[arms]]
name = "none"

[[arms]]
name = "drop5"
group = "extra"
specs = ["dropout=0.5"]

[[arms]]
name = "drop3"
group = "extra"
specs = ["dropout=0.3"]

[[claims]]
id = "dropout-slows"
text = "Dropout 0.5 takes more epochs to learn."
  [[claims.parts]]
  metric = "epochs_to_target"
  a = "drop5"
  b = "none"
  direction = "greater"
"""


def test_only_arms_whose_learning_speed_is_read_evaluate_the_tracked_subset_every_epoch(tmp_path):
    """The tracked subset's clean accuracy every epoch costs ~15% of an epoch on 500 images: the headline arms
    (their learning curves), the sweep (whose runs at the chosen strength are the headline's) and the arms a claim
    reads epochs_to_target of measure it; the others do not, and their
    results rows have no epochs_to_target rather than one read off the last epoch alone."""
    standard = load_preset("standard")
    runs = plan.runs_of(standard, "mnist-5k", CHOSEN)
    assert {r.group for r in runs if r.config.track_size == standard.track_size} == {"headline", "sweep"}
    assert {r.group for r in runs if r.config.track_size is None} == {"extra", "batch"}

    path = tmp_path / "speed.toml"
    path.write_text(EXTRA_SPEED)
    own = load_config(path)
    tracked = {r.arm: r.config.track_size for r in plan.runs_of(own, "mnist-5k", {})}
    assert tracked == {"none": 100, "drop5": 100, "drop3": None}
