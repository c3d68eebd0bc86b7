import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sandbag.cli import main
from sandbag.runs import RunConfig


def _sandbag(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "sandbag", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_summary_prints_the_keras_table(capsys):
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 241,546" in out and "conv2d_2 (Conv2D)" in out


def test_train_writes_the_run_folder_and_evaluate_reads_it(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--train-size", "300", "--epochs", "1", "--batch-size", "50", "--reg", "l2=1e-3",
                 "--reg", "keep=0.6", "--out", str(run), "--quiet"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == pytest.approx(summary["test_acc"])


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["train", "--reg", "l2=-1", "--epochs", "1"], "l2"),
        (["train", "--reg", "dropuot=0.5"], "unknown technique"),
        (["train", "--data", "npz:/nonexistent/file.npz"], "not found"),
        (["summary", "--model", "resnet"], "unknown model"),
        (["evaluate", "/nonexistent/run"], "no checkpoint"),
        (["train", "--epochs", "many"], "invalid int value"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_no_traceback(args, fragment, tmp_path):
    result = _sandbag(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sandbag: error:"), result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr


def test_unreadable_data_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = _sandbag("train", "--data", f"npz:{bad}", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


TINY_TRAIN = ["train", "--train-size", "100", "--epochs", "1", "--batch-size", "50", "--quiet"]


def test_train_refuses_to_replace_a_finished_run_unless_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY_TRAIN, "--seed", "1", "--out", str(run)]) == 0
    kept = {name: (run / name).read_bytes() for name in ("summary.json", "model.pt", "config.json")}
    capsys.readouterr()
    assert main([*TINY_TRAIN, "--seed", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sandbag: error:") and "--overwrite" in err[0], err
    assert {name: (run / name).read_bytes() for name in kept} == kept  # not a byte touched
    assert main([*TINY_TRAIN, "--seed", "2", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["seed"] == 2
    assert (run / "model.pt").read_bytes() != kept["model.pt"]


def test_train_uses_an_unfinished_or_empty_out_folder(tmp_path):
    empty, unfinished = tmp_path / "empty", tmp_path / "unfinished"
    empty.mkdir()
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")  # a run killed before its summary.json
    (unfinished / "summary.json").write_text('{"status": "running"')  # half a file: not a complete run
    for out in (empty, unfinished):
        assert main([*TINY_TRAIN, "--out", str(out)]) == 0
        assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def _prototype_npz(path, seed: int, n_train: int = 120, n_test: int = 60) -> None:
    """A learnable 4-class set of 10x10 images (noisy copies of one random prototype per class)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((4, 10, 10))

    def make(n):
        y = rng.permutation(np.arange(n) % 4)
        return np.clip(protos[y] + 0.2 * rng.standard_normal((n, 10, 10)), 0, 1).astype(np.float32), y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def test_a_run_on_a_relative_npz_path_evaluates_from_another_directory(tmp_path, monkeypatch, capsys, fresh_seed):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    _prototype_npz(work / "data" / "set.npz", fresh_seed)
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    args = ["train", "--data", "npz:data/set.npz", "--model", "mlp", "--epochs", "1", "--batch-size", "20", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert config["data"] == "npz:data/set.npz" and config["base_dir"] == str(work.resolve())
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["test_acc"] == pytest.approx(summary["test_acc"], abs=1e-9)
    made_here = RunConfig.from_dict({k: v for k, v in config.items() if k not in ("versions", "base_dir")})
    assert made_here.base_dir == str(elsewhere.resolve())
    assert made_here.key() == summary["config_key"]  # where it is made from is not part of what a run is


def test_a_relative_data_path_that_moved_says_where_it_was_read_from(tmp_path, monkeypatch, capsys, fresh_seed):
    work = tmp_path / "work"
    _prototype_npz(work / "set.npz", fresh_seed)
    monkeypatch.chdir(work)
    args = ["train", "--data", "npz:set.npz", "--model", "mlp", "--epochs", "1", "--batch-size", "20", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    (work / "set.npz").rename(tmp_path / "set.npz")
    monkeypatch.chdir(tmp_path)  # the file is here now: a path given now is read from here
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    base = work.resolve()
    assert err == [f"sandbag: error: npz:set.npz: {base / 'set.npz'} not found (the relative path is read from "
                   f"{base}, the directory the run was made in)"]
    assert main(["evaluate", str(tmp_path / "run"), "--data", "npz:set.npz", "--json", "--device", "cpu"]) == 0
