"""A user's own question: arms and claims as data in a study file, checked before any run; `sandbag compare`;
preregistration; the lecture's claims as data giving the old code's verdicts; a sixth technique in a study."""

import json
import shutil
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_step_oracles import Quartic

from sandbag import regularizers
from sandbag.cli import main
from sandbag.errors import ConfigError, SandbagError
from sandbag.study import runner, schema
from sandbag.study.compare import compare_config
from sandbag.study.config import StudyConfig, load_config
from sandbag.study.executors import Executor, execute
from sandbag.study.report import build_report

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_study"
VERDICT_WORDS = {"supported", "contradicted", "negligible", "inconclusive", "mixed"}

# A small study of one question: 2 arms x 3 seeds, three epochs on 200 images of mnist-5k
OWN = """
name = "own"
lecture = false
data = ["mnist-5k"]
train_size = 200
epochs = 3
sweep_epochs = 1
batch_size = 32
batch_sizes = [32]
seeds = 3
extra_seeds = 3
timing_repeats = 0

[[arms]]
name = "none"

[[arms]]
name = "drop5"
specs = ["dropout=0.5"]

[[claims]]
id = "dropout-helps"
text = "Dropout 0.5 raises test accuracy."
text_ko = "드롭아웃 0.5는 테스트 정확도를 높인다."
  [[claims.parts]]
  metric = "test_acc"
  a = "drop5"
  b = "{B}"
  direction = "greater"

[[claims]]
id = "about-the-same"
text = "Dropout 0.5 leaves test accuracy within 50 points of none's."
  [[claims.parts]]
  metric = "test_acc"
  a = "drop5"
  b = "none"
  direction = "equivalent"
  margin = {MARGIN}
"""


def _own(tmp_path: Path, b: str = "none", margin: float = 0.5) -> Path:
    path = tmp_path / "own.toml"
    path.write_text(OWN.replace("{B}", b).replace("{MARGIN}", repr(margin)))
    return path


@pytest.fixture(scope="module")
def own_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    config = _own(folder)
    out = folder / "study"
    assert main(["study", "--config", str(config), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    return config, out


def test_a_users_study_file_runs_its_arms_and_decides_its_claims(own_study):
    _, out = own_study
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert [v["id"] for v in verdicts] == ["dropout-helps", "about-the-same"]  # no lecture claim
    parts = [v["data"]["mnist-5k"]["parts"][0] for v in verdicts]
    assert all(p["verdict"] in VERDICT_WORDS and p["n"] == 3 for p in parts)
    assert parts[0]["label"] == "test_acc: drop5 minus none"  # a label made for a part that gives none
    assert parts[1]["direction"] == "equivalent" and parts[1]["verdict"] == "supported", parts[1]  # +-0.5: wide
    runs = sorted(p.name.split("-s")[0] for p in (out / "runs" / "mnist-5k").iterdir())
    assert runs == ["headline-drop5"] * 3 + ["headline-none"] * 3  # no sweep: nothing left to choose
    report = (out / "report.md").read_text()
    assert "Dropout 0.5 raises test accuracy." in report and "Chosen strengths" not in report
    meta = json.loads((out / "study.json").read_text())
    assert meta["preregistered"]["design"] == meta["design"]["design"]


def test_a_claim_naming_a_missing_arm_exits_2_in_one_line_before_any_run(tmp_path):
    config = _own(tmp_path, b="nnone")
    out = tmp_path / "study"
    result = subprocess.run([sys.executable, "-m", "sandbag", "study", "--config", str(config), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result
    assert result.stderr.strip() == ("sandbag: error: claim 'dropout-helps' part 1: unknown arm 'nnone'; did you "
                                     "mean 'none'? (the arms this study runs)")
    assert not out.exists()


def _claims(**part):
    base = {"metric": "test_acc", "a": "drop5", "b": "none", "direction": "greater"}
    return [{"id": "c", "text": "t", "parts": [{k: v for k, v in {**base, **part}.items() if v is not None}]}]


@pytest.mark.parametrize("claims,message", [
    (_claims(a="drop6"), "claim 'c' part 1: unknown arm 'drop6'; did you mean 'drop5'?"),
    (_claims(metric="tst_acc"), "unknown metric 'tst_acc'; did you mean 'test_acc'?"),
    (_claims(metric="probe.dropout_disagrement"), "unknown probe field 'dropout_disagrement'; did you mean "
                                                  "'dropout_disagreement'?"),
    (_claims(metric="timing.wall"), "unknown timing quantity 'wall'"),
    (_claims(direction="grater"), "direction must be one of greater, less, noninferior, equivalent, got 'grater'; "
                                  "did you mean 'greater'?"),
    (_claims(direction="equivalent"), "direction 'equivalent' needs a margin"),
    (_claims(margin=0.1), "a margin goes with noninferior or equivalent, not 'greater'"),
    (_claims(b=None), "compares two arms: give b"),
    (_claims(a="none@min_bach"), "unknown arm selector 'min_bach'"),
    (_claims(kind="check"), "'b' does not go with kind 'check'"),
    (_claims(kind="builtin", check="nope", metric=None, a=None, b=None, direction=None), "unknown built-in check"),
    (_claims(label="{teck}: x"), "unknown placeholder {teck}"),
    (_claims(tolerance=1), "'tolerance' does not go with kind 'paired'"),
    (_claims(smallest_effect=-1), "smallest_effect must be a number > 0"),
    (_claims() * 2, "claim 'c': duplicate id"),
    ([{"id": "c", "text": "t", "parts": []}], "needs [[claims.parts]], at least one"),
    ([{"id": "c", "text": "t", "parts": ["test_acc"]}], "claim 'c' part 1: expected a table"),
    ([{"id": "c", "text": "t", "figure": "learning_curve", "parts": [{}]}], "unknown figure 'learning_curve'; "
                                                                          "did you mean 'learning_curves'?"),
    ([{"id": "c", "txt": "t", "parts": [{}]}], "unknown key 'txt'; did you mean 'text'?"),
])
def test_every_mistake_in_a_claim_is_one_line(claims, message):
    arms = [{"name": "none"}, {"name": "drop5", "specs": ["dropout=0.5"]}]
    with pytest.raises(ConfigError) as e:
        StudyConfig(lecture=False, arms=arms, claims=claims, batch_sizes=[32])
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("arms,message", [
    ([{"name": "none"}, {"name": "none", "specs": ["bn"]}], "arm 'none' is declared twice"),
    ([{"name": "a", "specs": ["dropuot=0.5"]}], "arm 'a': unknown technique 'dropuot'"),
    ([{"name": "a", "specs": ["dropout={drop}"]}], "unknown placeholder {drop}"),
    ([{"name": "a", "spec": ["bn"]}], "unknown key 'spec'; did you mean 'specs'?"),
    ([{"name": "a b"}], "name 'a b' must be letters"),
    ([{"name": "a", "group": "sweep"}], "group must be a simple name other than 'sweep'"),
    ([{"name": "a", "seeds": 1}], "seeds must be a whole number >= 2"),
    ([{"name": "a", "epochs": "{epoks}"}], "unknown study setting '{epoks}'"),
    ([{"name": "a", "for_each": "seed"}], "for_each must be 'technique' or 'batch_size'"),
    ([{"name": "a", "batch_size": 0}], "arm 'a': batch size must be >= 1"),
])
def test_every_mistake_in_an_arm_is_one_line(arms, message):
    with pytest.raises(ConfigError) as e:
        StudyConfig(lecture=False, arms=arms, batch_sizes=[32])
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


_WORDS = st.sampled_from(["none", "drop5", "test_acc", "gap", "probe.dropout_disagreement", "timing.seconds_per_epoch",
                          "greater", "less", "equivalent", "noninferior", "paired", "check", "builtin",
                          "diff_of_diffs", "penalty_minimum", "none@min_batch", "{tech}", "{b}", "technique", "x"])
_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-1, 1), _WORDS),
                       lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_KEYS = st.sampled_from([*schema.PART_KEYS, *schema.CLAIM_KEYS, "name", "specs", "group", "seeds", "for_each", "oops"])
_TABLES = st.dictionaries(_KEYS, _VALUES, max_size=7)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(_TABLES, max_size=3), claim=_TABLES, arm=_TABLES)
def test_the_loader_never_fails_but_with_one_config_error_line(parts, claim, arm):
    """Random claim and arm tables, near the real vocabulary: a config, or one ConfigError line; nothing else."""
    claims = [{"id": "c", "text": "t", **claim, "parts": parts if "parts" not in claim else claim["parts"]}]
    arms = [{"name": "none"}, {"name": "drop5", "specs": ["dropout=0.5"]}, arm]
    for kwargs in ({"claims": claims}, {"arms": arms}):
        try:
            StudyConfig(lecture=False, batch_sizes=[32], **{"arms": arms[:2], **kwargs})
        except SandbagError as exc:
            assert "\n" not in str(exc)


def test_a_changed_claim_is_exploratory_and_the_hashes_are_shown(own_study, tmp_path):
    """Preregistration: the design hash of the first run stays in study.json; a claim changed afterwards (its
    margin, here) is marked exploratory, adjusted in a family of its own, and the report shows both hashes."""
    config, first = own_study
    out = tmp_path / "study"
    shutil.copytree(first, out)
    before = json.loads((out / "study.json").read_text())
    changed = _own(tmp_path, margin=0.4)
    assert main(["study", "--config", str(changed), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    meta = json.loads((out / "study.json").read_text())
    assert meta["preregistered"] == before["preregistered"] and meta["design"]["design"] != before["design"]["design"]
    verdicts = {v["id"]: v for v in json.loads((out / "verdicts.json").read_text())}
    assert verdicts["about-the-same"].get("exploratory") and not verdicts["dropout-helps"].get("exploratory")
    part = verdicts["about-the-same"]["data"]["mnist-5k"]["parts"][0]
    assert part["p_holm"] == part["p"]  # alone in its family
    report = (out / "report.md").read_text()
    assert before["design"]["design"] in report and meta["design"]["design"] in report
    assert "2. Dropout 0.5 leaves test accuracy within 50 points of none's. (exploratory)" in report
    # the runs were reused: the claims changed, not the arms
    assert sorted(p.name for p in (out / "runs" / "mnist-5k").iterdir()) == \
        sorted(p.name for p in (first / "runs" / "mnist-5k").iterdir())


def test_compare_prints_a_verdict_per_part_and_writes_a_study_folder(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "dropout=0.5", "none", "--seeds", "2", "--epochs", "1", "--train-size", "200",
                 "--test", "default", "--out", str(out), "--quiet", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    for claim in ("dropout=0.5 gives higher test accuracy than none.", "narrower train-test gap",
                  "fewer epochs"):
        assert claim in printed
    assert printed.count("95% CI [") == 3 and "n = 2 seeds" in printed
    for line in printed.splitlines():  # each inconclusive part says what would decide it, negligible counted
        if line.endswith("-> inconclusive"):
            following = printed.split(line, 1)[1].splitlines()[1]
            assert "would decide it" in following, following
    meta = json.loads((out / "study.json").read_text())
    assert [a["arm"] for a in meta["arms"]] == ["dropout=0.5", "none"] and meta["config"]["lecture"] is False
    english = (out / "verdicts.json").read_text()
    assert main(["report", str(out)]) == 0  # an ordinary study folder
    assert (out / "verdicts.json").read_text() == english


def test_compare_refuses_two_equal_sides_and_empty_ones():
    for a, b, message in (("none", "none", "both sides are 'none'"), (",", "none", "is empty")):
        with pytest.raises(ConfigError, match=message):
            compare_config(a, b)


# Lecture claims reworded since the reference study (2026-12-03, issue 21): their sentences now say what their parts
# test; claim 1 gained clean-training-loss parts (training fit where accuracy saturates)
REWORDED = {1: "fit-for-generalization", 5: "l1-sparsity", 11: "bn-small-batches"}


def test_the_lecture_as_data_gives_the_old_codes_verdicts_on_its_study(tmp_path):
    """tests/data/reference_study: a quick study run by the code before claims were data (its study.json has no
    claims; model.pt left out). Rebuilt now, every part it had keeps its verdict, mean and interval, except a part
    whose metric sat at its bound in both arms, which now reads not testable; claim 1's added parts are new.
    (Holm's p moved with the families: claim 1's loss parts joined them, the untestable parts left.)"""
    copy = tmp_path / "reference"
    shutil.copytree(REFERENCE, copy)
    old = json.loads((REFERENCE / "verdicts.json").read_text())
    build_report(copy)
    new = json.loads((copy / "verdicts.json").read_text())
    assert len(old) == len(new) == 15
    assert [v["text"] for v in new if v["number"] not in REWORDED] == \
        [v["text"] for v in old if v["number"] not in REWORDED]
    for before, after in zip(old, new, strict=True):
        for data, result in before["data"].items():
            parts = {q["label"]: q for q in after["data"][data]["parts"]}
            for p in result["parts"]:
                q = parts.pop(p["label"])
                if q["verdict"] == "not testable":
                    assert p["mean"] == p["ci_low"] == p["ci_high"] == 0, (before["number"], p["label"])
                    continue
                for key in ("verdict", "n", "mean", "ci_low", "ci_high"):
                    assert q.get(key) == p.get(key), (before["number"], p["label"], key)
            assert all("clean train loss" in label for label in parts), parts  # the only parts added
            if before["number"] not in REWORDED:
                assert after["data"][data]["verdict"] == result["verdict"], before["number"]


def test_the_lecture_file_has_korean_for_every_claim_and_part_with_the_same_fields():
    import re

    fields = re.compile(r"{(\w*)}")
    for claim in schema.lecture()["claims"]:
        assert claim["text_ko"] and sorted(fields.findall(claim["text"])) == sorted(fields.findall(claim["text_ko"]))
        for part in claim["parts"]:
            assert part["label_ko"], (claim["id"], part["label"])
            assert sorted(fields.findall(part["label"])) == sorted(fields.findall(part["label_ko"])), part["label"]


# ----------------------------------------------------------------------------------------------------------------
# A sixth technique


class _Quartic(Quartic):
    """test_step_oracles' throwaway technique, with the two study defaults a technique with a strength declares."""

    grid, textbook = (1e-4,), 1e-4


class _Inline(Executor):
    """Runs each run here, at once (spawned workers would not see a technique registered by a test)."""

    name = "inline"

    def capacity(self, nproc=1):
        return 1

    def submit(self, cfg_dict, folder, companion=True):
        future = Future()
        future.set_result(execute(cfg_dict, folder, companion=companion))
        return future


def test_a_sixth_technique_joins_a_study_with_one_class_and_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(regularizers.TECHNIQUES, "quartic", _Quartic())
    lecture = StudyConfig()  # the lecture's design picks it up: a headline arm, a sweep, claim 1's parts
    assert "quartic" in {a["arm"] for a in lecture.design.arms if a["group"] == "headline"}
    assert lecture.sweep["quartic"] == [1e-4] and lecture.textbook["quartic"] == 1e-4
    assert any("quartic" in p.label for p in lecture.design.claims[0].parts)
    path = tmp_path / "q.toml"
    small = OWN.replace("seeds = 3\nextra_seeds = 3", "seeds = 2\nextra_seeds = 2")
    small = small.replace("epochs = 3\n", "epochs = 1\n")
    path.write_text(small.replace('specs = ["dropout=0.5"]', 'specs = ["quartic={quartic}"]').replace("{B}", "none")
                    .replace("{MARGIN}", "0.5"))
    cfg = load_config(path)
    monkeypatch.setattr(runner, "make_executor", lambda *a, **k: _Inline())
    runner.run_study(cfg, tmp_path / "study")
    build_report(tmp_path / "study")
    meta = json.loads((tmp_path / "study" / "study.json").read_text())
    assert meta["chosen"]["mnist-5k"] == {"quartic": 1e-4}
    verdicts = json.loads((tmp_path / "study" / "verdicts.json").read_text())
    assert verdicts[0]["data"]["mnist-5k"]["parts"][0]["n"] == 2
