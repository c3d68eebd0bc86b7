"""The five regularization techniques, their spec strings, and the one rule that picks penalized parameters.

A technique is written as a spec string, used by the CLI and by study files alike::

    l2=1e-3            loss + 1/2 * lam * sum(w**2)      over conv/dense weights (biases, BN excluded)
    l2=1e-3:bias       ... biases of conv/dense layers included      (:bn includes BN scale/shift too)
    l2=1e-3:decoupled  no loss term; after each step  w <- w - lr * lam * w   (AdamW-style decay)
    l1=1e-4            loss + alpha * sum(|w|)
    l1=1e-4:prox       no loss term; after each step  w <- sign(w) * max(|w| - step * alpha, 0)  (exact zeros;
                       step = lr for SGD, Adam's per-weight lr / (sqrt(v_hat) + eps))
    noise=0.3          x + N(0, sigma^2) at the input, training only     (:hidden after each hidden activation)
    dropout=0.4        inverted dropout after the hidden dense layer, drop rate p (Keras convention)
    keep=0.6           the same as dropout=0.4, written as the keep ratio       (:spatial channel dropout
                       after each conv block instead)
    bn                 batch norm after each conv/dense layer but the output, before its activation
    bn:post            ... after the activation instead
    bn:sync            with data-parallel training: statistics over the global batch, not each process's
                       local batch (the default; see sandbag.distributed); the same as bn in one process

Penalties are sums over elements, not means. Ours is 1/2 * lam * sum(w**2): Keras's ``L2(l2)`` has no 1/2, and
PyTorch's ``weight_decay=lam`` adds lam * w to the gradient, which is the gradient of ours.

The techniques also work on a user's own model::

    specs = parse_specs(["l2=1e-3", "l1=1e-5"])
    loss = F.cross_entropy(model(x), y) + penalty(model, specs)
    loss.backward(); opt.step(); after_step(model, specs, opt)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import SpecError

# ----------------------------------------------------------------------------------------------------------------
# Specs: what the user asked for, as plain data (round-trips through a string and a dict)


@dataclass(frozen=True)
class Spec:
    """One technique: its name, strength (or None for `bn`) and options."""

    name: str  # "l2", "l1", "noise", "dropout", "bn"
    value: float | None = None
    options: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        text = self.name if self.value is None else f"{self.name}={self.value!r}"  # repr: exact round trip
        return ":".join([text, *self.options])

    def has(self, option: str) -> bool:
        return option in self.options

    @property
    def placement(self) -> str:
        """Where in the network the technique acts; two specs may share a name only at different places."""
        places = {"noise": ("hidden",), "dropout": ("spatial",), "bn": ("post",)}.get(self.name, ())
        return next((o for o in self.options if o in places), "default")

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "options": list(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> Spec:
        return cls(d["name"], d.get("value"), tuple(d.get("options", ())))


# name -> (what its value means, the allowed range as text, a check, the options it takes)
_TECHNIQUES = {
    "l2": ("lambda", "a number >= 0", lambda v: v >= 0, ("bias", "bn", "decoupled")),
    "l1": ("alpha", "a number >= 0", lambda v: v >= 0, ("bias", "bn", "prox")),
    "noise": ("sigma", "a number >= 0", lambda v: v >= 0, ("hidden",)),
    "dropout": ("drop rate", "a number in [0, 1)", lambda v: 0 <= v < 1, ("spatial",)),
    "keep": ("keep ratio", "a number in (0, 1]", lambda v: 0 < v <= 1, ("spatial",)),
    "bn": (None, "no value", None, ("post", "sync")),
}

SPEC_HELP = (
    "l2=LAMBDA[:bias][:bn][:decoupled], l1=ALPHA[:bias][:bn][:prox], noise=SIGMA[:hidden], "
    "dropout=RATE[:spatial] or keep=RATIO[:spatial], bn[:post][:sync]"
)


def parse_spec(text: str) -> Spec:
    """Parse one spec string such as ``l2=1e-3:bias``; raise `SpecError` saying what is allowed."""
    head, *options = [part.strip() for part in str(text).strip().split(":")]
    name, has_value, raw = (part.strip() for part in head.partition("="))
    name = name.lower()
    if name not in _TECHNIQUES:
        raise SpecError(f"unknown technique {name!r} in {text!r}; valid: {', '.join(_TECHNIQUES)} ({SPEC_HELP})")
    meaning, allowed, check, valid_options = _TECHNIQUES[name]
    for option in options:
        if option not in valid_options:
            valid = ", ".join(valid_options) or "none"
            raise SpecError(f"option {option!r} does not apply to {name} in {text!r}; valid options: {valid}")
    if len(set(options)) != len(options):
        raise SpecError(f"repeated option in {text!r}")
    if meaning is None:
        if has_value:
            raise SpecError(f"{name} takes no value, got {text!r}")
        return Spec(name, None, tuple(options))
    try:
        value = float(raw)
    except ValueError:
        raise SpecError(f"{name} needs {meaning} as {allowed}, e.g. {name}=0.1; got {text!r}") from None
    if not math.isfinite(value) or not check(value):
        raise SpecError(f"invalid {meaning} for {name}: expected {allowed}, received {name}={raw}")
    if name == "keep":  # one technique, two conventions: store the drop rate
        return Spec("dropout", round(1.0 - value, 12), tuple(options))
    return Spec(name, value, tuple(options))


def parse_specs(texts: Iterable[str | Spec]) -> list[Spec]:
    """Parse several specs and reject the same technique twice at the same place."""
    specs = [t if isinstance(t, Spec) else parse_spec(t) for t in texts]
    seen: dict[tuple[str, str], Spec] = {}
    for spec in specs:
        key = (spec.name, spec.placement)
        if key in seen:
            raise SpecError(f"{spec.name} given twice ({seen[key]} and {spec}); give each technique once")
        seen[key] = spec
    return specs


def find(specs: Iterable[Spec], name: str, placement: str | None = None) -> Spec | None:
    """The spec of a technique (at a placement), or None."""
    return next(
        (s for s in specs if s.name == name and (placement is None or s.placement == placement)), None
    )


# ----------------------------------------------------------------------------------------------------------------
# Which parameters a penalty acts on: the one rule


_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def penalized_parameters(
    model: nn.Module, *, include_bias: bool = False, include_norm: bool = False
) -> list[tuple[str, nn.Parameter]]:
    """Parameters a weight penalty acts on.

    Weights of conv/dense layers (tensors with 2+ dims) always; biases (1-dim tensors of other layers) only with
    `include_bias`; scale and shift of normalization layers only with `include_norm`. The rule is timm's
    (``ndim <= 1`` or a bias -> no decay), made explicit about normalization layers.
    """
    chosen = []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, _NORM_LAYERS):
                take = include_norm
            elif param.ndim >= 2:
                take = True
            else:
                take = include_bias
            if take:
                chosen.append((f"{module_name}.{name}" if module_name else name, param))
    return chosen


def _params_for(model: nn.Module, spec: Spec) -> list[nn.Parameter]:
    return [p for _, p in penalized_parameters(model, include_bias=spec.has("bias"), include_norm=spec.has("bn"))]


# ----------------------------------------------------------------------------------------------------------------
# The penalties (added to the loss) and the proximal/decoupled steps (applied after the optimizer step)


def l2_penalty(params: Iterable[torch.Tensor], lam: float) -> torch.Tensor:
    """P_L2 = 1/2 * lam * sum_i w_i**2 (a sum over all elements)."""
    return 0.5 * lam * _sum([p.square().sum() for p in params])


def l1_penalty(params: Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """P_L1 = alpha * sum_i |w_i|."""
    return alpha * _sum([p.abs().sum() for p in params])


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms).sum() if terms else torch.zeros(())


def penalty(model: nn.Module, specs: Iterable[Spec]) -> torch.Tensor:
    """The penalty term to add to the data loss for these specs (0 when none acts through the loss)."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for spec in specs:
        if spec.name == "l2" and not spec.has("decoupled") and spec.value:
            total = total + l2_penalty(_params_for(model, spec), spec.value)
        elif spec.name == "l1" and not spec.has("prox") and spec.value:
            total = total + l1_penalty(_params_for(model, spec), spec.value)
    return total


def acts_through_loss(specs: Iterable[Spec]) -> bool:
    return any(
        (s.name == "l2" and not s.has("decoupled")) or (s.name == "l1" and not s.has("prox")) for s in specs
    )


@torch.no_grad()
def soft_threshold_(param: torch.Tensor, threshold: float) -> None:
    """Proximal step of alpha*|w|: w <- sign(w) * max(|w| - threshold, 0); small weights become exactly 0.

    `threshold` is lr * alpha, a number or a tensor of per-element thresholds."""
    param.copy_(param.sign() * (param.abs() - threshold).clamp_min(0))


@torch.no_grad()
def after_step(model: nn.Module, specs: Iterable[Spec], optimizer: torch.optim.Optimizer) -> None:
    """Apply the techniques that act on the weights after each optimizer step (decoupled L2, proximal L1).

    Both use the step size the optimizer just took for each weight: ``lr`` for SGD, and Adam's per-element
    ``lr / (sqrt(v_hat) + eps)``, so the proximal step solves the same preconditioned problem as the Adam update
    (a plain ``lr * alpha`` threshold would be ~1000x too weak under Adam, whose steps are ~lr in size).
    """
    for spec in specs:
        if spec.name == "l2" and spec.has("decoupled") and spec.value:
            lr = optimizer.param_groups[0]["lr"]  # AdamW's rule: w <- w - lr * lam * w, unscaled by v_hat
            for p in _params_for(model, spec):
                p.mul_(1.0 - lr * spec.value)
        elif spec.name == "l1" and spec.has("prox") and spec.value:
            for p in _params_for(model, spec):
                soft_threshold_(p, step_size(optimizer, p) * spec.value)


def step_size(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float | torch.Tensor:
    """The effective per-element step size of the last update: lr (SGD) or lr / (sqrt(v_hat) + eps) (Adam)."""
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    state = optimizer.state.get(param, {})
    if "exp_avg_sq" not in state:
        return group["lr"]
    step = float(state["step"])
    v_hat = state["exp_avg_sq"] / (1 - group["betas"][1] ** step)
    return group["lr"] / (v_hat.sqrt() + group["eps"])


# ----------------------------------------------------------------------------------------------------------------
# Noise injection as a function + module pair (dropout and batch norm are torch's own nn.Dropout, nn.BatchNorm)


def gaussian_noise(x: torch.Tensor, sigma: float, training: bool) -> torch.Tensor:
    """x + N(0, sigma**2) element-wise in training; x itself (the same tensor) in evaluation or when sigma == 0."""
    if not training or sigma == 0:
        return x
    return x + sigma * torch.randn_like(x)


class GaussianNoise(nn.Module):
    """Additive Gaussian noise, active only in training mode (Keras ``GaussianNoise``).

    .. math:: y = x + \\epsilon,\\quad \\epsilon \\sim \\mathcal{N}(0, \\sigma^2)\\ \\text{(training)};\\qquad y = x
        \\ \\text{(evaluation)}

    Args:
        sigma: standard deviation of the noise, >= 0.

    Shape: any; the output has the input's shape.

    Example::

        >>> layer = GaussianNoise(0.3)
        >>> layer.eval()(torch.ones(2)).tolist()
        [1.0, 1.0]
    """

    def __init__(self, sigma: float):
        super().__init__()
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise SpecError(f"invalid value for sigma: expected a number >= 0, received sigma={sigma}")
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(x, self.sigma, self.training)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"
