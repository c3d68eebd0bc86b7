"""Numerical oracles for the five techniques: closed forms in NumPy, fresh random inputs, explicit tolerances."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sandbag.errors import SpecError
from sandbag.models import build_model
from sandbag.regularizers import (
    GaussianNoise,
    Spec,
    after_step,
    parse_spec,
    parse_specs,
    penalized_parameters,
    penalty,
    soft_threshold_,
)


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    """Give every parameter (BN's too) fresh random values so no term of a penalty is trivially 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def _numpy_params(model, *, weights=True, biases=False, norm=False):
    out = []
    for module in model.modules():
        is_norm = isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
        for name, p in module.named_parameters(recurse=False):
            a = p.detach().double().numpy()
            if (is_norm and norm) or (not is_norm and name == "weight" and weights) or (
                not is_norm and name == "bias" and biases
            ):
                out.append(a)
    return out


@pytest.mark.parametrize("options,biases,norm", [("", False, False), (":bias", True, False), (":bias:bn", True, True)])
@pytest.mark.parametrize("seed", [1, 2])
def test_l2_and_l1_equal_numpy_closed_form(options, biases, norm, seed):
    model = _randomized(build_model("ref-cnn", specs=parse_specs(["bn"])), seed)
    lam, alpha = (float(v) for v in 10 ** np.random.default_rng(seed).uniform(-5, -1, size=2))
    arrays = _numpy_params(model, biases=biases, norm=norm)
    expected_l2 = 0.5 * lam * sum((a**2).sum() for a in arrays)
    expected_l1 = alpha * sum(np.abs(a).sum() for a in arrays)
    got_l2 = penalty(model, parse_specs([f"l2={lam!r}{options}"])).item()
    got_l1 = penalty(model, parse_specs([f"l1={alpha!r}{options}"])).item()
    assert got_l2 == pytest.approx(expected_l2, rel=1e-5), (got_l2, expected_l2)
    assert got_l1 == pytest.approx(expected_l1, rel=1e-5), (got_l1, expected_l1)
    both = penalty(model, parse_specs([f"l2={lam!r}{options}", f"l1={alpha!r}{options}"])).item()
    assert both == pytest.approx(expected_l2 + expected_l1, rel=1e-5)


def test_default_rule_penalizes_conv_and_dense_weights_only():
    model = build_model("ref-cnn", specs=parse_specs(["bn"]))
    names = [n for n, _ in penalized_parameters(model)]
    assert names == ["conv2d.weight", "conv2d_1.weight", "conv2d_2.weight", "dense.weight", "dense_1.weight"]
    with_bias = [n for n, _ in penalized_parameters(model, include_bias=True)]
    assert "dense.bias" in with_bias and not any(n.startswith("batch_normalization") for n in with_bias)
    with_norm = [n for n, _ in penalized_parameters(model, include_norm=True)]
    assert "batch_normalization.weight" in with_norm and "batch_normalization.bias" in with_norm
    assert "dense.bias" not in with_norm


def test_l2_gradient_is_lambda_w_like_torch_weight_decay():
    model = _randomized(build_model("mlp", input_shape=(1, 8, 8)), 3)
    lam = 0.37
    penalty(model, parse_specs([f"l2={lam}"])).backward()
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            torch.testing.assert_close(p.grad, lam * p.detach())
        else:
            assert p.grad is None  # biases are not in the penalty's graph at all


def test_proximal_l1_makes_exact_zeros_and_matches_soft_threshold():
    model = _randomized(build_model("mlp", input_shape=(1, 8, 8)), 4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, alpha = 0.1, 5.0  # threshold 0.5 on standard-normal weights
    after_step(model, parse_specs([f"l1={alpha}:prox"]), torch.optim.SGD(model.parameters(), lr=lr))
    for name, p in model.named_parameters():
        w = before[name].numpy()
        if name.endswith("weight"):
            expected = np.sign(w) * np.maximum(np.abs(w) - lr * alpha, 0)
            np.testing.assert_allclose(p.detach().numpy(), expected, atol=1e-7)
            frac_zero = (p == 0).float().mean().item()
            assert frac_zero == pytest.approx(math.erf(0.5 / math.sqrt(2)), abs=0.02), frac_zero
        else:
            assert torch.equal(p.detach(), before[name])  # biases untouched by default


def test_soft_threshold_oracle():
    w = torch.randn(1000)
    expected = np.sign(w.numpy()) * np.maximum(np.abs(w.numpy()) - 0.3, 0)
    soft_threshold_(w, 0.3)
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-7)


def test_decoupled_l2_shrinks_weights_by_lr_lambda():
    model = _randomized(build_model("mlp", input_shape=(1, 8, 8)), 5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    after_step(model, parse_specs(["l2=0.5:decoupled"]), torch.optim.Adam(model.parameters(), lr=0.1))
    for name, p in model.named_parameters():
        factor = 0.95 if name.endswith("weight") else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor)
    assert penalty(model, parse_specs(["l2=0.5:decoupled", "l1=0.1:prox"])).item() == 0.0


def test_noise_training_std_is_sigma_and_eval_is_identity():
    sigma = float(np.random.default_rng().uniform(0.1, 2.0))
    x = torch.randn(200_000) * 3 + 7
    layer = GaussianNoise(sigma)
    noise = layer.train()(x) - x
    assert abs(noise.mean().item()) < 0.02 * sigma + 0.005
    assert noise.std().item() == pytest.approx(sigma, rel=0.02)
    assert layer.eval()(x) is x


@pytest.mark.parametrize("spec", ["dropout=0.4", "keep=0.6"])
def test_dropout_preserves_mean_scales_by_one_over_keep_and_eval_is_identity(spec):
    model = build_model("ref-cnn", specs=parse_specs([spec]))
    layer = model.dropout
    assert isinstance(layer, nn.Dropout) and layer.p == pytest.approx(0.4)
    x = torch.ones(1000, 128)
    y = layer.train()(x)
    assert y.max().item() == pytest.approx(1 / 0.6)
    assert torch.isclose(y, torch.zeros(())).logical_or(torch.isclose(y, torch.tensor(1 / 0.6))).all()
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)
    assert (y == 0).float().mean().item() == pytest.approx(0.4, abs=0.01)
    assert torch.equal(layer.eval()(x), x)


def test_batchnorm_normalizes_per_channel_in_training_and_uses_running_stats_in_eval():
    model = build_model("ref-cnn", specs=parse_specs(["bn"]))
    bn = model.batch_normalization
    assert isinstance(bn, nn.BatchNorm2d) and bn.weight.eq(1).all() and bn.bias.eq(0).all()
    x = torch.randn(64, 32, 6, 6) * 10 + 5
    y = bn.train()(x)
    mean, std = y.mean(dim=(0, 2, 3)), y.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(32), atol=1e-3, rtol=0)
    # running statistics: momentum 0.1 from (0, 1), with the UNBIASED batch variance
    batch_mean = x.mean(dim=(0, 2, 3))
    batch_var = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, 0.1 * batch_mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * batch_var, rtol=1e-4, atol=1e-4)
    z = bn.eval()(x)
    expected = (x - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
    torch.testing.assert_close(z, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("l2=1e-3", Spec("l2", 1e-3)),
        ("L2 = 0.01 : bias", Spec("l2", 0.01, ("bias",))),
        ("l1=1e-4:prox", Spec("l1", 1e-4, ("prox",))),
        ("noise=0.3:hidden", Spec("noise", 0.3, ("hidden",))),
        ("keep=0.6", Spec("dropout", 0.4)),
        ("dropout=0.4:spatial", Spec("dropout", 0.4, ("spatial",))),
        ("bn:post", Spec("bn", None, ("post",))),
    ],
)
def test_spec_parsing_and_round_trip(text, expected):
    spec = parse_spec(text)
    assert spec == expected
    assert parse_spec(str(spec)) == spec
    assert Spec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("l3=1", "unknown technique"),
        ("l2", "needs lambda"),
        ("l2=abc", "needs lambda"),
        ("l2=-1", "expected a number >= 0"),
        ("dropout=1", "[0, 1)"),
        ("keep=0", "(0, 1]"),
        ("noise=nan", "noise"),
        ("bn=3", "takes no value"),
        ("l2=1e-3:prox", "does not apply"),
        ("l2=1e-3:bias:bias", "repeated option"),
    ],
)
def test_bad_specs_raise_one_line_errors(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_duplicate_technique_is_rejected_but_two_placements_are_not():
    with pytest.raises(SpecError, match="given twice"):
        parse_specs(["dropout=0.4", "keep=0.5"])
    assert len(parse_specs(["noise=0.3", "noise=0.1:hidden"])) == 2


def test_proximal_l1_under_adam_thresholds_by_adams_own_step_size():
    model = _randomized(build_model("mlp", input_shape=(1, 8, 8)), 6)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, eps=1e-8)
    model(torch.randn(16, 1, 8, 8)).square().mean().backward()
    opt.step()
    w = model[1].weight  # the first dense layer
    v_hat = opt.state[w]["exp_avg_sq"] / (1 - 0.999)
    before = w.detach().clone()
    after_step(model, parse_specs(["l1=0.5:prox"]), opt)
    threshold = 0.01 * 0.5 / (v_hat.sqrt() + 1e-8)
    expected = before.sign() * (before.abs() - threshold).clamp_min(0)
    torch.testing.assert_close(w.detach(), expected)
