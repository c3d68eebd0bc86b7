import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from sandbag import analysis as A
from sandbag import data
from sandbag.models import build_model
from sandbag.regularizers import parse_specs, penalized_parameters
from sandbag.train import RunConfig, fit, load_checkpoint

TINY = dict(data="mnist-5k", train_size=300, epochs=1, batch_size=50)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs: batch norm (with dropout and input noise, which the BN probes must keep out of
    the way), and dropout alone (no BN: the control)."""
    root = tmp_path_factory.mktemp("runs")
    regs = {"bn": ["bn", "dropout=0.3", "noise=0.2"], "dropout": ["dropout=0.5"]}
    for name, r in regs.items():
        fit(RunConfig(**TINY, regs=r, device="cpu"), root / name)
    return root


@pytest.fixture(scope="module")
def test_data():
    ds = data.load("mnist-5k")
    return ds.x_test[:200], ds.y_test[:200]


def _load(runs, name):
    return load_checkpoint(runs / name, device="cpu")[1]


def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(name, m.training, getattr(m, "momentum", None)) for name, m in model.named_modules()],
    )


def _assert_unchanged(model, snapshot):
    state, modes = snapshot
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(now[k], v), f"{k} changed"
    assert [(name, m.training, getattr(m, "momentum", None)) for name, m in model.named_modules()] == modes


# ---------------------------------------------------------------------------------------------------------------
# Dropout


def test_dropout_left_on_changes_predictions_and_eval_mode_does_not(runs, test_data):
    x, y = test_data
    model = _load(runs, "dropout")
    model.eval()
    snap = _snapshot(model)
    rng_state = torch.get_rng_state()
    r = A.dropout_left_on(model, x, y, passes=3, seed=3)
    _assert_unchanged(model, snap)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's random state is untouched

    assert r["eval_disagreement"] == 0.0
    assert r["disagreement"] > 0
    assert len(r["on_accs"]) == 3 and len(set(r["on_accs"])) > 1
    assert r["on_acc_mean"] == pytest.approx(np.mean(r["on_accs"]))
    assert r["drop"] == pytest.approx(r["eval_acc"] - r["on_acc_mean"])
    # eval_acc is the model's own evaluation-mode accuracy
    with torch.no_grad():
        assert r["eval_acc"] == pytest.approx((model(x).argmax(1) == y).double().mean().item())
    json.dumps(r)
    assert A.dropout_left_on(model, x, y, passes=3, seed=3) == r  # deterministic given the seed
    assert A.dropout_left_on(model, x, y, passes=3, seed=4)["on_accs"] != r["on_accs"]


@pytest.mark.parametrize("regs", [["dropout=0.5"], ["dropout=0.3", "dropout=0.4:spatial", "bn", "noise=0.2"]])
def test_dropout_left_on_equals_full_passes_of_the_whole_model(regs, fresh_seed):
    """The probe reruns only the layers from the first dropout on (their input computed once): the numbers are
    those of full passes through the whole model with only its dropout layers in training mode, bit for bit, on a
    fresh random model and fresh inputs (spatial dropout, BN and noise before the dense dropout included)."""
    torch.manual_seed(fresh_seed)
    model = build_model(specs=parse_specs(regs)).eval()
    for m in model.modules():  # BN statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3), m.running_var.uniform_(0.5, 2.0)
    x, y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    full = copy.deepcopy(model)
    for m in full.modules():
        if isinstance(m, nn.Dropout | nn.Dropout2d):
            m.train()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(fresh_seed + 1)
        passes = [full(x).argmax(1) for _ in range(3)]  # 300 inputs: one batch of the probe's
    r = A.dropout_left_on(model, x, y, passes=3, seed=fresh_seed + 1)
    assert r["on_accs"] == [(p == y).double().mean().item() for p in passes]
    with torch.no_grad():
        assert r["eval_acc"] == (model(x).argmax(1) == y).double().mean().item()


def test_dropout_left_on_leaves_bn_and_noise_in_eval_mode(runs, test_data):
    x, y = test_data
    model = _load(runs, "bn")
    snap = _snapshot(model)
    r = A.dropout_left_on(model, x, y, passes=3)
    _assert_unchanged(model, snap)
    assert r["eval_disagreement"] == 0.0 and r["disagreement"] > 0


def test_dropout_left_on_needs_dropout(runs, test_data):
    with pytest.raises(ValueError, match="no dropout"):
        A.dropout_left_on(build_model(specs=parse_specs(["bn"])), *test_data)


def test_dropout_masks_keep_one_minus_p_of_the_units(runs):
    model = _load(runs, "dropout")
    snap = _snapshot(model)
    masks = A.dropout_masks(model, steps=2000, seed=1)
    _assert_unchanged(model, snap)
    assert masks.dtype == np.bool_ and masks.shape == (2000, model.dense_1.in_features)
    assert abs(masks.mean() - 0.5) < 0.01  # sd of the mean is 0.001
    assert 0.3 < masks.mean(1).min() and masks.mean(1).max() < 0.7  # every step keeps about half
    assert np.array_equal(A.dropout_masks(model, steps=2000, seed=1), masks)
    assert not np.array_equal(A.dropout_masks(model, steps=12, seed=2), masks[:12])
    assert A.dropout_masks(model).shape == (12, 128)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_dropout_masks_on_the_mlp_with_other_rates(p):
    model = build_model("mlp", specs=parse_specs([f"dropout={p}"]))  # two Dropouts; the last feeds dense_2
    masks = A.dropout_masks(model, steps=1500, seed=0)
    assert masks.shape == (1500, 128)
    assert abs(masks.mean() - (1 - p)) < 0.01
    with pytest.raises(ValueError):
        A.dropout_masks(build_model("mlp"))


# ---------------------------------------------------------------------------------------------------------------
# Batch norm


def test_bn_normalization_gives_mean_0_std_1_of_unnormalized_inputs(runs, test_data):
    x, _ = test_data
    model = _load(runs, "bn")
    snap = _snapshot(model)
    r = A.bn_normalization(model, x, batch_size=128, seed=0)
    _assert_unchanged(model, snap)
    json.dumps(r)

    names = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert [layer["name"] for layer in r["layers"]] == names
    assert [layer["features"] for layer in r["layers"]] == [32, 64, 128, 128]
    assert r["z_mean_absmax"] < 1e-4
    assert r["z_std_eps_absdev_max"] < 1e-4
    for layer in r["layers"]:
        # BN divides by sqrt(var + eps), so std(z) = sqrt(var / (var + eps)) ~ 1 - eps / (2 var): below 1 by up to
        # eps / (2 * smallest input variance); that bound, not a fixed 1e-3, is what "normalized" means here
        min_var = layer["in_std_range"][0] ** 2
        assert layer["z_std_absdev_max"] <= layer["eps"] / (2 * min_var) + 1e-4, layer
    assert r["z_std_absdev_max"] < 1e-2
    # the inputs were not normalized to begin with
    assert any(
        layer["in_mean_absmax"] > 0.1 or layer["in_std_range"][0] < 0.5 or layer["in_std_range"][1] > 2
        for layer in r["layers"]
    )
    ex = r["example"]
    assert ex["layer"] == names[0] and 0 <= ex["feature"] < 32
    assert len(ex["before"]) == len(ex["after"]) == 2000
    before, after = np.array(ex["before"]), np.array(ex["after"])
    bn = model.get_submodule(names[0])
    # after = (before - batch mean) / sqrt(batch var + eps): an affine map with a positive slope
    slope, _ = np.polyfit(before, after, 1)
    assert np.allclose(after, slope * (before - before.mean()) + after.mean(), atol=1e-3)
    assert slope == pytest.approx(1 / np.sqrt(before.var() + bn.eps), rel=0.2)  # sample of the batch
    assert A.bn_normalization(model, x, batch_size=128, seed=0) == r


def test_bn_normalization_needs_bn(runs, test_data):
    with pytest.raises(ValueError, match="no batch-norm"):
        A.bn_normalization(_load(runs, "dropout"), test_data[0])


def test_bn_companion_noise_is_positive_with_bn_and_exactly_zero_without(runs, test_data):
    x, _ = test_data
    kw = dict(n_samples=10, n_batches=3, batch_size=10, seed=0)
    bn_model, plain = _load(runs, "bn"), _load(runs, "dropout")
    for model in (bn_model, plain):
        snap = _snapshot(model)
        rng_state = torch.get_rng_state()
        r = A.bn_companion_noise(model, x, **kw)
        _assert_unchanged(model, snap)
        assert torch.equal(torch.get_rng_state(), rng_state)
        json.dumps(r)
        assert r["eval_prob_std_mean"] == 0.0 and r["eval_flip_rate"] == 0.0
        if model is bn_model:
            assert r["has_bn"] and r["prob_std_mean"] > 1e-4
        else:
            assert not r["has_bn"] and r["prob_std_mean"] == 0.0 and r["flip_rate"] == 0.0
    with pytest.raises(ValueError):
        A.bn_companion_noise(bn_model, x[:8], batch_size=16)


def test_bn_companion_noise_is_deterministic_given_the_seed(runs, test_data):
    model = _load(runs, "bn")
    x = test_data[0][:40]
    kw = dict(n_samples=4, n_batches=2, batch_size=4)
    r = A.bn_companion_noise(model, x, **kw, seed=5)
    assert A.bn_companion_noise(model, x, **kw, seed=5) == r
    assert A.bn_companion_noise(model, x, **kw, seed=6) != r


def test_grouped_batch_norm_matches_torch_batch_norm_on_each_batch(runs, test_data):
    """The probe pushes many batches through at once; each must see exactly what BN in training mode does."""
    x = test_data[0][:48]
    model = _load(runs, "bn")
    reference = copy.deepcopy(model).eval()
    for m in reference.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.momentum = 0.0
    with torch.no_grad():
        expected = torch.cat([reference(x[i : i + 16]) for i in range(0, 48, 16)])
        got = A.with_group_bn(model, 16)(x)
    assert torch.allclose(got, expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Weights


def test_weight_values_are_the_penalized_weights(runs):
    for name in ("bn", "dropout"):
        model = _load(runs, name)
        values = A.weight_values(model)
        params = penalized_parameters(model)
        assert values.dtype == np.float64 and values.ndim == 1
        assert len(values) == sum(p.numel() for _, p in params) == 241_184  # conv/dense weights, no bias or BN
        expected = np.concatenate([p.detach().double().flatten().numpy() for _, p in params])
        assert np.array_equal(values, expected)
