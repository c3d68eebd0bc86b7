"""Bad input, faults and interrupted work: one clear error, nothing lost, nothing foreign executed."""

import errno
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbag import files
from sandbag.errors import CheckpointError, OutputError, SpecError
from sandbag.regularizers import Spec, parse_spec
from sandbag.train import RunConfig, fit, load_checkpoint

SMALL = dict(data="mnist-5k", train_size=100, epochs=1, batch_size=50)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability") / "run"
    fit(RunConfig(**SMALL), out)
    return out


class _RunsCode:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "sandbag-run/1", "payload": _RunsCode(str(marker))}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.save({"format": "sandbag-run/1", "payload": _RunsCode(str(marker))}, evil)  # torch's zip format too
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_checkpoint_of_another_architecture_and_truncated_files(run_dir, tmp_path):
    ckpt = torch.load(run_dir / "model.pt", weights_only=True)
    ckpt["config"]["model"] = "mlp"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        load_checkpoint(tmp_path / "other.pt")
    data = (run_dir / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.pt")


def test_truncated_checkpoints_and_text_files_say_what_they_are(run_dir, tmp_path, capsys):
    """model.pt cut at 100 places (torch itself answers some of them with "[Errno 22] Invalid argument"), an empty
    file and a text file: `load_checkpoint`, `load_folded` and `sandbag evaluate` each give one line naming the path
    and saying truncated/corrupt or not a torch file."""
    from sandbag.cli import main
    from sandbag.export import export_run, load_folded

    data = (run_dir / "model.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    raw = set()
    for n in sorted({0, *(len(data) * k // 100 for k in range(1, 100)), len(data) - 1}):
        cut.write_bytes(data[:n])
        try:
            torch.load(cut, weights_only=True)
        except Exception as exc:
            raw.add(type(exc).__name__)
        with pytest.raises(CheckpointError, match="truncated or corrupt checkpoint") as info:
            load_checkpoint(cut)
        assert str(info.value).startswith(f"{cut}: ") and "\n" not in str(info.value)
    assert {"OSError", "RuntimeError"} <= raw  # torch's own words ("[Errno 22] Invalid argument", ...) are covered
    text = tmp_path / "notes.pt"
    text.write_text("epoch 1: loss 0.3\n")
    with pytest.raises(CheckpointError, match=f"{text}: not a torch checkpoint file"):
        load_checkpoint(text)
    folded, _ = export_run(run_dir, tmp_path / "folded.pt")
    cut.write_bytes(folded.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{cut}: truncated or corrupt checkpoint"):
        load_folded(cut)
    with pytest.raises(CheckpointError, match="not a torch checkpoint file"):
        load_folded(text)
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / "model.pt").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert main(["evaluate", str(broken), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sandbag: error: {broken / 'model.pt'}: truncated or corrupt checkpoint "
                   f"({len(data) // 3:,} bytes; torch cannot read it)"]


def test_full_disk_raises_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    files.write_text(target, "old complete version\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError, match="No space left on device") as info:
        files.write_text(target, "new version\n")
    assert "\n" not in str(info.value)
    assert target.read_text() == "old complete version\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left behind


def test_unwritable_output_folder_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "sandbag", "train", "--train-size", "100", "--epochs", "1",
                             "--out", str(blocker / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sandbag", "--debug", "train", "--reg", "l2=-1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr and "SpecError" in result.stderr


def test_bn_never_sees_a_batch_of_one_in_training():
    # 101 samples at batch 50: the trailing batch of 1 is dropped rather than crash BN
    summary = fit(RunConfig(data="mnist-5k", train_size=101, epochs=1, batch_size=50, regs=["bn"]))
    assert summary["status"] == "finished"


def test_metrics_are_byte_identical_apart_from_timings(tmp_path):
    cfg = RunConfig(**SMALL, regs=["dropout=0.3", "noise=0.1"])
    fit(cfg, tmp_path / "a")
    fit(cfg, tmp_path / "b")

    def stripped(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return "".join(json.dumps({k: v for k, v in r.items() if k not in ("epoch_seconds", "eval_seconds",
                                                                            "samples_per_sec")}) + "\n" for r in rows)

    assert stripped(tmp_path / "a") == stripped(tmp_path / "b")


def test_spec_parser_fuzz(capsys):
    """Any text either parses into a Spec that round-trips or raises one-line SpecError.

    Hypothesis reports a failing text itself. The cases are counted here, in the test that makes them, so the count
    check gives the same answer run alone, with -k, or in any order.
    """
    cases = 0

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.text(max_size=40),
        st.from_regex(r"(l1|l2|noise|dropout|keep|bn|L2|x)(=[-+0-9.eE naif]{0,12})?(:[a-z]{0,10}){0,3}",
                      fullmatch=True),
    ))
    def one_case(text):
        nonlocal cases
        cases += 1
        try:
            spec = parse_spec(text)
        except SpecError as exc:
            assert "\n" not in str(exc)
            return
        assert isinstance(spec, Spec)
        assert parse_spec(str(spec)) == spec  # anything accepted round-trips

    one_case()
    with capsys.disabled():
        print(f"\n[fuzz] spec parser: {cases} cases tried")
    assert cases >= 1000
