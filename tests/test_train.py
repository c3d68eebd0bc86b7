import json
import math

import pytest
import torch

from sandbag.errors import CheckpointError, ConfigError, SpecError
from sandbag.models import build_model
from sandbag.regularizers import penalized_parameters
from sandbag.runs import TIMING_FIELDS
from sandbag.train import RunConfig, evaluate_run, fit, load_checkpoint, load_data

SMALL = dict(data="mnist-5k", train_size=600, epochs=2, batch_size=32)


def _strip_timings(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def _read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_run_learns_and_writes_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    summary = fit(RunConfig(**SMALL, regs=["l2=1e-4", "dropout=0.2"]), run)
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert summary["test_loss"] < 0.5 * math.log(10), summary  # from ~2.30 at chance
    assert summary["test_acc"] > 0.7 and summary["params"] == 241_546
    assert summary["gap"] == pytest.approx(summary["train_acc"] - summary["test_acc"])
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json", "model.pt"}
    rows = _read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ["running_loss", "running_acc", "penalty", "train_loss", "train_acc", "test_loss", "test_acc", "gap",
                "weight_l2", "frac_small", "frac_zero", "epoch_seconds", "samples_per_sec"]:
        assert key in rows[-1], key
    config = json.loads((run / "config.json").read_text())
    assert config["versions"]["torch"] == torch.__version__
    assert RunConfig.from_dict({k: v for k, v in config.items() if k != "versions"}).key() == summary["config_key"]
    assert not list(run.glob("*.tmp"))

    ckpt = torch.load(run / "model.pt", weights_only=True)
    assert ckpt["config"]["regs"] == ["l2=0.0001", "dropout=0.2"]
    again = evaluate_run(run, device="cpu")
    assert again["test_acc"] == pytest.approx(summary["test_acc"], abs=1e-9)


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path):
    cfg = RunConfig(**{**SMALL, "epochs": 1}, regs=["noise=0.2", "dropout=0.3"])
    fit(cfg, tmp_path / "a")
    fit(cfg, tmp_path / "b")
    fit(RunConfig(**{**cfg.to_dict(), "seed": 1}), tmp_path / "c")
    a, b, c = (_strip_timings(_read_metrics(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c


def test_logged_penalty_is_the_penalty_of_the_weights():
    """With a step too small to move the weights, every step's penalty is the formula on the initial weights."""
    lam, alpha = 3e-3, 2e-4
    cfg = RunConfig(data="mnist-5k", train_size=200, epochs=1, batch_size=50, optimizer="sgd", lr=1e-30,
                    momentum=0.0, regs=[f"l2={lam}", f"l1={alpha}:bias"])
    summary = fit(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model("ref-cnn", specs=cfg.specs)
    weights = [p.detach().double() for _, p in penalized_parameters(model)]
    with_bias = [p.detach().double() for _, p in penalized_parameters(model, include_bias=True)]
    expected = 0.5 * lam * sum(w.square().sum() for w in weights) + alpha * sum(w.abs().sum() for w in with_bias)
    assert summary["penalty"] == pytest.approx(expected.item(), rel=1e-5)


BASE = dict(data="mnist-5k", train_size=400, epochs=2, batch_size=20)


@pytest.fixture(scope="module")
def unregularized():
    return fit(RunConfig(**BASE), on_epoch=None)


@pytest.mark.parametrize(
    "regs,trace",
    [(["l2=1e-2"], "penalty"), (["l2=0.5:decoupled"], "smaller"), (["l1=1e-4"], "penalty"),
     (["l1=1e-4:prox"], "zeros"), (["noise=0.3"], "layer"), (["keep=0.6"], "layer"), (["bn"], "layer"),
     (["bn:post", "dropout=0.2:spatial", "noise=0.1:hidden"], "layer")],
)
def test_every_technique_trains_and_leaves_its_trace(regs, trace, unregularized, tmp_path):
    """Each technique must change the run (a silently dropped technique would train exactly like none) and leave
    its own mark: a penalty in the loss, smaller weights, exact zeros, or its layers in the saved model."""
    rows = []
    summary = fit(RunConfig(**BASE, regs=regs), tmp_path / "run", on_epoch=rows.append)
    assert summary["status"] == "finished"
    assert rows[1]["running_loss"] < rows[0]["running_loss"] < math.log(10), (regs, rows)
    assert summary["train_loss"] != unregularized["train_loss"], regs
    if trace == "penalty":
        assert summary["penalty"] > 0 and unregularized["penalty"] == 0
    elif trace == "smaller":
        assert summary["weight_l2"] < 0.995 * unregularized["weight_l2"], (summary["weight_l2"],
                                                                           unregularized["weight_l2"])
    elif trace == "zeros":
        assert summary["frac_zero"] > 0.01 and unregularized["frac_zero"] == 0
    else:
        _, model, _ = load_checkpoint(tmp_path / "run")
        kinds = {type(m).__name__ for m in model.modules()}
        wanted = {"noise": "GaussianNoise", "dropout": "Dropout", "keep": "Dropout", "bn": "BatchNorm2d"}
        for spec in regs:
            name = spec.split("=")[0].split(":")[0]
            kind = "Dropout2d" if spec.endswith(":spatial") else wanted[name]
            assert kind in kinds, (spec, kinds)


def test_proximal_l1_gives_exact_zeros_in_training():
    small = dict(data="mnist-5k", train_size=300, epochs=1, batch_size=50)
    prox = fit(RunConfig(**small, regs=["l1=1e-3:prox"]))
    plain = fit(RunConfig(**small, regs=["l1=1e-3"]))
    assert prox["frac_zero"] > 0.3, prox["frac_zero"]
    assert plain["frac_zero"] < 0.01 < prox["frac_zero"], (plain["frac_zero"], prox["frac_zero"])


def test_validation_split_is_carved_from_training_data_and_measured(tmp_path):
    cfg = RunConfig(data="mnist-5k", train_size=500, val_fraction=0.2, epochs=1, batch_size=50)
    summary = fit(cfg, tmp_path / "run")
    ds = load_data(cfg)
    assert (len(ds.x_train), len(ds.x_val)) == (400, 100)
    assert torch.bincount(ds.y_val, minlength=10).tolist() == [10] * 10  # stratified
    _, model, _ = load_checkpoint(tmp_path / "run")
    with torch.no_grad():
        hits = (model.eval()(ds.x_val).argmax(1) == ds.y_val).sum().item()
    assert summary["val_acc"] == pytest.approx(hits / 100, abs=1e-12)


def test_divergence_stops_the_run_with_status_diverged(tmp_path):
    cfg = RunConfig(data="mnist-5k", train_size=200, epochs=3, batch_size=50, optimizer="sgd", lr=1e6)
    summary = fit(cfg, tmp_path / "run")
    assert summary["status"] == "diverged" and summary["epochs_done"] == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_bad_config_values_raise_clear_errors():
    with pytest.raises(SpecError):
        RunConfig(regs=["dropout=2"])
    with pytest.raises(ConfigError, match="optimizer"):
        RunConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="larger than the training set"):
        fit(RunConfig(data="mnist-5k", train_size=100, batch_size=500, epochs=1))
    with pytest.raises(ConfigError, match="unknown run config keys"):
        RunConfig.from_dict({"epoch": 3})


def test_checkpoint_loading_refuses_foreign_files(tmp_path):
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(not_ckpt)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a sandbag checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    fit(RunConfig(data="mnist-5k", train_size=200, epochs=1, batch_size=50, tensorboard=True), tmp_path / "run")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_eval_every_measures_every_kth_and_the_last_epoch_and_tracks_learning_each_epoch():
    """eval_every=2 over 5 epochs: clean figures at epochs 2, 4 and 5 only; track_size = every training image gives
    track_acc each epoch, equal to the clean train accuracy where both are measured, so learning speed (epochs to a
    target) is the same as with a full evaluation every epoch."""
    from sandbag.study.results import epochs_to_target

    small = dict(data="mnist-5k", train_size=200, epochs=5, batch_size=50)
    rows, full = [], []
    summary = fit(RunConfig(**small, eval_every=2, track_size=200), on_epoch=rows.append)
    fit(RunConfig(**small), on_epoch=full.append)
    assert [r["epoch"] for r in rows if "test_acc" in r] == [2, 4, 5]
    assert all("track_acc" in r for r in rows) and summary["test_acc"] == rows[-1]["test_acc"]
    for tracked, every in zip(rows, full, strict=True):
        assert tracked["track_acc"] == pytest.approx(every["train_acc"], abs=1e-12)  # same seed, same model
        if "train_acc" in tracked:
            assert tracked["train_acc"] == pytest.approx(tracked["track_acc"], abs=1e-12)
    for target in (0.5, 0.8, 0.95):
        assert epochs_to_target(rows, target, 0.1) == pytest.approx(epochs_to_target(full, target, 0.1))
    assert RunConfig(**small, eval_every=2).key() != RunConfig(**small).key()  # it changes what a run records


def test_training_flushes_denormals_and_leaves_the_callers_setting_as_it_was():
    """A fitted unregularized model's gradients decay into float32's denormal range, where x86 arithmetic is many
    times slower: fit trains with them flushed to zero, and a caller's process (hypothesis refuses to run with it
    set) gets its own setting back, whichever it was."""
    tiny = torch.finfo(torch.float32).tiny / 4  # a denormal
    flushed = []
    cfg = RunConfig(epochs=1, train_size=64, batch_size=32)
    for before in (False, True):
        torch.set_flush_denormal(before)
        try:
            fit(cfg, on_epoch=lambda row: flushed.append(bool(torch.tensor(tiny) * 1.0 == 0)))
            assert bool(torch.tensor(tiny) * 1.0 == 0) == before
        finally:
            torch.set_flush_denormal(False)
    assert flushed == [True, True]
