import math

import pytest

from sandbag.errors import ConfigError
from sandbag.multiseed import fit_seeds
from sandbag.train import RunConfig, evaluate_run, fit

TINY = dict(data="mnist-5k", train_size=200, batch_size=32, device="cpu")


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiseed")
    epochs = []
    summaries = fit_seeds(RunConfig(**TINY, epochs=2, regs=["dropout=0.3", "l2=1e-4"]), [3, 7], out,
                          on_epoch=epochs.append)
    return summaries, epochs, out


def test_every_seed_learns_and_the_seeds_differ(two_seeds):
    summaries, epochs, _ = two_seeds
    assert [s["seed"] for s in summaries] == [3, 7]
    assert all(s["status"] == "finished" and s["epochs_done"] == 2 and s["seeds_batched"] == 2 for s in summaries)
    assert len(epochs) == 2 and all(len(rows) == 2 for rows in epochs)
    for i in range(2):
        assert epochs[1][i]["running_loss"] < epochs[0][i]["running_loss"]  # training lowers the loss per seed
        assert summaries[i]["test_loss"] < math.log(10) and summaries[i]["penalty"] > 0
    a, b = summaries
    assert a["weight_l2"] != b["weight_l2"] and a["running_loss"] != b["running_loss"]
    assert a["config_key"] != b["config_key"]


def test_each_seed_writes_a_run_folder_that_reloads(two_seeds):
    summaries, _, out = two_seeds
    for s in summaries:
        run = out / f"seed-{s['seed']}"
        assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json", "model.pt"}
        result = evaluate_run(run, device="cpu")
        assert result["test_acc"] == pytest.approx(s["test_acc"], abs=1e-9)
        assert result["test_loss"] == pytest.approx(s["test_loss"], rel=1e-4)


def test_without_randomness_each_seed_matches_fit():
    cfg = RunConfig(**TINY, model="mlp", epochs=1, regs=["l2=1e-3"])
    batched = fit_seeds(cfg, [0, 1])
    for summary in batched:
        alone = fit(RunConfig.from_dict({**cfg.to_dict(), "seed": summary["seed"]}))
        for key in ("running_loss", "train_loss", "test_loss", "penalty", "weight_l2"):
            assert summary[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
        assert summary["config_key"] == alone["config_key"]


def test_refuses_batch_norm_and_bad_seed_lists():
    with pytest.raises(ConfigError, match="batch norm"):
        fit_seeds(RunConfig(**TINY, epochs=1, regs=["bn"]), [0, 1])
    with pytest.raises(ConfigError, match="distinct"):
        fit_seeds(RunConfig(**TINY, model="mlp", epochs=1), [1, 1])
    with pytest.raises(ConfigError, match="at least one"):
        fit_seeds(RunConfig(**TINY, model="mlp", epochs=1), [])
