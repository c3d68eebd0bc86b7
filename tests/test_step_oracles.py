"""One training step against torch's own optimizers: the techniques must equal what torch computes for them.

- ``l2=lambda`` (a loss term) under SGD with momentum equals ``SGD(weight_decay=lambda)`` applied to conv/dense
  weights only (biases in a group without decay), to float rounding.
- ``l2=lambda:decoupled`` under Adam equals ``AdamW(weight_decay=lambda)`` on the same weights: the decay runs after
  backward and before the optimizer step, as AdamW does it.
"""

import pytest
import torch
from torch import nn

from sandbag import regularizers
from sandbag.models import build_model
from sandbag.regularizers import Regularizer, Technique, parse_spec, parse_specs, penalized_parameters, tunable
from sandbag.train import train_step


def _pair(fresh_seed, specs=()):
    torch.manual_seed(fresh_seed)
    ours = build_model("ref-cnn", specs=parse_specs(specs))
    theirs = build_model("ref-cnn", specs=parse_specs(specs))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _groups(model, lam):
    decayed = {id(p) for _, p in penalized_parameters(model)}
    weights = [p for p in model.parameters() if id(p) in decayed]
    rest = [p for p in model.parameters() if id(p) not in decayed]
    return [{"params": weights, "weight_decay": lam}, {"params": rest, "weight_decay": 0.0}]


def _batches(fresh_seed, steps=4):
    g = torch.Generator().manual_seed(fresh_seed + 1)
    return [(torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(steps)]


def _torch_step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _assert_same(ours, theirs):
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_l2_under_sgd_equals_torch_sgd_weight_decay_on_weights_only(fresh_seed):
    lam, lr = 0.05, 0.1
    ours, theirs = _pair(fresh_seed)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=lr, momentum=0.9)
    opt_theirs = torch.optim.SGD(_groups(theirs, lam), lr=lr, momentum=0.9)
    reg = Regularizer(ours, parse_specs([f"l2={lam}"]))
    for x, y in _batches(fresh_seed):
        train_step(ours, opt_ours, reg, x, y)
        _torch_step(theirs, opt_theirs, x, y)
    _assert_same(ours, theirs)
    before = dict(_pair(fresh_seed)[0].named_parameters())
    assert not torch.equal(ours.dense.weight, before["dense.weight"])


def test_decoupled_l2_under_adam_equals_torch_adamw(fresh_seed):
    lam, lr = 0.1, 0.01
    ours, theirs = _pair(fresh_seed)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=lr)
    opt_theirs = torch.optim.AdamW(_groups(theirs, lam), lr=lr)
    reg = Regularizer(ours, parse_specs([f"l2={lam}:decoupled"]))
    for x, y in _batches(fresh_seed):
        train_step(ours, opt_ours, reg, x, y)
        _torch_step(theirs, opt_theirs, x, y)
    _assert_same(ours, theirs)


def test_decoupled_decay_runs_before_the_step_not_after(fresh_seed):
    """The other order (decay after the step) differs from AdamW by lr * lambda * update: big enough to see."""
    lam, lr = 0.5, 0.1
    ours, theirs = _pair(fresh_seed)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=lr)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=lr)
    (x, y), = _batches(fresh_seed, steps=1)
    train_step(ours, opt_ours, Regularizer(ours, parse_specs([f"l2={lam}:decoupled"])), x, y)
    _torch_step(theirs, opt_theirs, x, y)  # step, then decay: the wrong order
    with torch.no_grad():
        theirs.dense.weight.mul_(1 - lr * lam)
    assert not torch.allclose(ours.dense.weight, theirs.dense.weight, rtol=1e-5, atol=1e-6)


class Quartic(Technique):
    """A throwaway sixth technique: loss + beta * sum(w**4), and a scaling layer at the input."""

    name, meaning, metavar, allowed, options = "quartic", "beta", "BETA", "a number >= 0", ()
    acts_on_weights = True

    def valid(self, value):
        return value >= 0

    def in_loss(self, spec):
        return True

    def penalty(self, spec, weights, lead=0):
        return spec.value * torch.stack([w.pow(4).sum() for w in weights]).sum()

    def layers(self, spec, site, width, conv):
        return [_Scale()] if site == "input" else []


class _Scale(nn.Module):
    def forward(self, x):
        return 0.5 * x


def test_a_sixth_technique_is_one_registry_entry(monkeypatch, fresh_seed):
    monkeypatch.setitem(regularizers.TECHNIQUES, "quartic", Quartic())
    spec = parse_spec("quartic=0.01")
    assert "quartic" in tunable()
    torch.manual_seed(fresh_seed)
    model = build_model("ref-cnn", specs=[spec])
    assert isinstance(model[0], _Scale) and list(model.named_children())[0][0] == "scale"
    expected = 0.01 * sum(p.detach().double().pow(4).sum().item() for _, p in penalized_parameters(model))
    reg = Regularizer(model, [spec])
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-5)
    (x, y), = _batches(fresh_seed, steps=1)
    loss, penalty, logits = train_step(model, torch.optim.SGD(model.parameters(), lr=0.01), reg, x, y)
    assert penalty.item() == pytest.approx(expected, rel=1e-5) and logits.shape == (16, 10)
