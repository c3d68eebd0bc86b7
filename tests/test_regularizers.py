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
    before_step,
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


def test_soft_threshold_oracle(fresh_seed):
    w = torch.randn(1000, generator=torch.Generator().manual_seed(fresh_seed))
    expected = np.sign(w.numpy()) * np.maximum(np.abs(w.numpy()) - 0.3, 0)
    soft_threshold_(w, 0.3)
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-7)


def test_decoupled_l2_shrinks_each_weight_by_its_own_groups_lr_before_the_step():
    """Two parameter groups (lr 0.1 and 0.01): each weight shrinks by 1 - lr * lambda of its own group."""
    model = _randomized(build_model("mlp", input_shape=(1, 8, 8)), 5)
    first, second = model[1], model[3]  # the two hidden dense layers
    rest = [p for p in model.parameters() if all(p is not q for q in (first.weight, second.weight))]
    opt = torch.optim.SGD([{"params": [first.weight], "lr": 0.1}, {"params": [second.weight], "lr": 0.01},
                           {"params": rest, "lr": 0.1}], lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    before_step(model, parse_specs(["l2=0.01:decoupled"]), opt)
    torch.testing.assert_close(first.weight.detach(), before["dense.weight"] * (1 - 0.1 * 0.01), rtol=0, atol=1e-7)
    torch.testing.assert_close(second.weight.detach(), before["dense_1.weight"] * (1 - 0.01 * 0.01), rtol=0, atol=1e-7)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(p.detach(), before[name])
    assert penalty(model, parse_specs(["l2=0.5:decoupled", "l1=0.1:prox"])).item() == 0.0


def test_proximal_l1_thresholds_each_weight_by_its_own_groups_lr():
    model = _randomized(build_model("mlp", input_shape=(1, 8, 8)), 7)
    first, second = model[1], model[3]
    rest = [p for p in model.parameters() if all(p is not q for q in (first.weight, second.weight))]
    opt = torch.optim.SGD([{"params": [first.weight], "lr": 0.1}, {"params": [second.weight], "lr": 0.01},
                           {"params": rest, "lr": 1.0}], lr=1)
    w1, w2 = first.weight.detach().clone(), second.weight.detach().clone()
    after_step(model, parse_specs(["l1=3:prox"]), opt)
    torch.testing.assert_close(first.weight.detach(), w1.sign() * (w1.abs() - 0.3).clamp_min(0))
    torch.testing.assert_close(second.weight.detach(), w2.sign() * (w2.abs() - 0.03).clamp_min(0))


class _Tied(nn.Module):
    """An encoder and a decoder that share one weight matrix (tied weights)."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(6, 4, bias=False)
        self.decode = nn.Linear(4, 6, bias=False)
        self.decode.weight = self.encode.weight  # the same Parameter object, (4, 6) used as (6, 4)^T below

    def forward(self, x):
        return torch.nn.functional.linear(self.encode(x), self.decode.weight.t())


def test_a_shared_weight_is_penalized_and_decayed_once(fresh_seed):
    model = _Tied()
    with torch.no_grad():
        model.encode.weight.copy_(torch.randn(4, 6, generator=torch.Generator().manual_seed(fresh_seed)))
    w = model.encode.weight.detach().clone()
    assert [n for n, _ in penalized_parameters(model)] == ["encode.weight"]
    lam, alpha = 0.3, 0.02
    assert penalty(model, parse_specs([f"l2={lam}"])).item() == pytest.approx(0.5 * lam * w.square().sum().item())
    assert penalty(model, parse_specs([f"l1={alpha}"])).item() == pytest.approx(alpha * w.abs().sum().item())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before_step(model, parse_specs([f"l2={lam}:decoupled"]), opt)
    torch.testing.assert_close(model.encode.weight.detach(), w * (1 - 0.5 * lam))


def test_noise_layer_draws_sigma_std_in_training_and_is_identity_in_eval(fresh_seed):
    """sandbag's own GaussianNoise, as the builder places it at the input: std sigma, mean 0, eval is identity."""
    rng = np.random.default_rng(fresh_seed)
    sigma = float(rng.uniform(0.1, 2.0))
    torch.manual_seed(fresh_seed)
    model = build_model("ref-cnn", specs=parse_specs([f"noise={sigma}"]))
    layer = model[0]
    assert isinstance(layer, GaussianNoise) and layer.sigma == sigma
    x = torch.randn(200_000) * 3 + 7
    noise = layer.train()(x) - x
    assert abs(noise.mean().item()) < 0.02 * sigma + 0.005
    assert noise.std().item() == pytest.approx(sigma, rel=0.02)
    assert layer.eval()(x) is x


def _capture(model, layer_name, x):
    """Input and output of one named layer of `model` on x (in the model's current mode)."""
    seen = {}
    handle = getattr(model, layer_name).register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen["x"], seen["y"]


@pytest.mark.parametrize("spec", ["dropout=0.4", "keep=0.6"])
def test_dropout_acts_on_the_hidden_dense_output_in_training_only(spec, fresh_seed):
    """In a sandbag model the dropout layer sees the hidden dense layer's ReLU output (128 units): in training it
    zeroes a fraction p of them and scales the rest by 1/(1-p); in evaluation the model equals the model without it."""
    torch.manual_seed(fresh_seed)
    model = build_model("ref-cnn", specs=parse_specs([spec]))
    names = [n for n, _ in model.named_children()]
    assert names[names.index("dropout") - 2 : names.index("dropout") + 2] == ["dense", "activation_3", "dropout",
                                                                               "dense_1"]
    x = torch.rand(512, 1, 28, 28)
    seen_in, seen_out = _capture(model.train(), "dropout", x)
    assert seen_in.shape == (512, 128) and (seen_in >= 0).all()  # after the ReLU
    kept = seen_out != 0
    active = seen_in != 0
    torch.testing.assert_close(seen_out[kept], seen_in[kept] / 0.6)
    assert (~kept & active).sum().item() / active.sum().item() == pytest.approx(0.4, abs=0.02)
    plain = build_model("ref-cnn")
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=0, atol=0)


def test_batchnorm_normalizes_the_conv_output_before_the_relu(fresh_seed):
    """In a sandbag bn model, BN sees the conv output (not yet rectified) and, in training, gives each channel mean
    0 / std 1 before its learned scale and shift; in evaluation it uses the running statistics."""
    torch.manual_seed(fresh_seed)
    model = _randomized(build_model("ref-cnn", specs=parse_specs(["bn"])), fresh_seed)
    bn = model.batch_normalization
    with torch.no_grad():  # |gamma| >= 0.5: dividing by a gamma near 0 below would magnify float rounding
        bn.weight.copy_(torch.sign(bn.weight) * (0.5 + bn.weight.abs()))
    x = torch.rand(64, 1, 28, 28) * 4 - 1
    conv_in, conv_out = _capture(model.train(), "conv2d", x)
    bn_in, bn_out = _capture(model.train(), "batch_normalization", x)
    torch.testing.assert_close(bn_in, conv_out)
    assert (bn_in < 0).any()  # before the activation
    gamma, beta = bn.weight.detach()[None, :, None, None], bn.bias.detach()[None, :, None, None]
    z = (bn_out - beta) / gamma
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(32), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(32), atol=1e-3, rtol=0)
    _, eval_out = _capture(model.eval(), "batch_normalization", x)
    mean, var = bn.running_mean[None, :, None, None], bn.running_var[None, :, None, None]
    torch.testing.assert_close(eval_out, (conv_out - mean) / torch.sqrt(var + bn.eps) * gamma + beta,
                               rtol=1e-4, atol=1e-4)


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
