"""The five regularization techniques: one registry of technique objects, their spec strings, one parameter rule.

A technique is written as a spec string, used by the CLI and by study files alike::

    l2=1e-3            loss + 1/2 * lam * sum(w**2)      over conv/dense weights (biases, BN excluded)
    l2=1e-3:bias       ... biases of conv/dense layers included      (:bn includes BN scale/shift too)
    l2=1e-3:decoupled  no loss term; before each step  w <- w - lr * lam * w   (AdamW's decay, in AdamW's order)
    l1=1e-4            loss + alpha * sum(|w|)
    l1=1e-4:prox       no loss term; after each step  w <- sign(w) * max(|w| - step * alpha, 0)  (exact zeros;
                       step = lr for SGD, Adam's per-weight lr / (sqrt(v_hat) + eps))
    noise=0.3          x + N(0, sigma^2) at the input, training only     (:hidden after each hidden unit's output)
    dropout=0.4        inverted dropout after the hidden dense layer, drop rate p (Keras convention)
    keep=0.6           the same as dropout=0.4, written as the keep ratio       (:spatial channel dropout
                       after each conv block instead)
    bn                 batch norm after each conv/dense layer but the output, before its activation
    bn:post            ... after the activation instead
    bn:sync            with data-parallel training: statistics over the global batch, not each process's
                       local batch (the default; see sandbag.distributed); the same as bn in one process

Each technique is one object in `TECHNIQUES` (its class docstring holds its formula): how its spec is parsed, its
loss term (`penalty`), what it does to the weights around the optimizer step (`before_step`, `after_step`) and
where the model builder puts its layers (`layers`, at one of the builder's `SITES`) and which of them a user's own
model must hold (`missing_in`, checked when a model factory builds one). Adding a technique means one class and one
registry entry here; a study then sweeps its strength over its `grid` (and falls back to its `textbook` value)
without another edit.

Penalties are sums over elements, not means. Ours is 1/2 * lam * sum(w**2): Keras's ``L2(l2)`` has no 1/2, and
PyTorch's ``weight_decay=lam`` adds lam * w to the gradient, which is the gradient of ours.

The techniques also work on a user's own model::

    reg = Regularizer(model, parse_specs(["l2=1e-3", "l1=1e-5"]))
    loss = F.cross_entropy(model(x), y) + reg.penalty()
    opt.zero_grad(); loss.backward(); reg.step(opt)        # before_step, opt.step(), after_step
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import SpecError

# ----------------------------------------------------------------------------------------------------------------
# Specs: what the user asked for, as plain data (round-trips through a string and a dict)


@dataclass(frozen=True)
class Spec:
    """One technique: its name, strength (or None for `bn`) and options."""

    name: str  # a key of TECHNIQUES
    value: float | None = None
    options: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        text = self.name if self.value is None else f"{self.name}={self.value!r}"  # repr: exact round trip
        return ":".join([text, *self.options])

    def has(self, option: str) -> bool:
        return option in self.options

    @property
    def technique(self) -> Technique:
        return TECHNIQUES[self.name]

    @property
    def placement(self) -> str:
        """Where in the network the technique acts; two specs may share a name only at different places."""
        return next((o for o in self.options if o in self.technique.places), "default")

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "options": list(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> Spec:
        return cls(d["name"], d.get("value"), tuple(d.get("options", ())))


# ----------------------------------------------------------------------------------------------------------------
# Where the model builder puts layers, in the order it visits them around each hidden conv/dense layer

SITES = (
    "input",              # before the first layer
    "before_activation",  # right after a hidden conv/dense layer
    "after_activation",   # right after its ReLU
    "unit_output",        # after everything above: what the next layer sees
    "end_of_conv_block",  # after a conv block's pooling
    "after_hidden_dense",  # after a hidden dense unit's output
)

# What counts as a technique's layer in a user's own model: any of torch's dropout or batch-norm kinds (a model
# factory chooses which; sandbag's own models use nn.Dropout, nn.Dropout2d and nn.BatchNorm1d/2d)
DROPOUT_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
CHANNEL_DROPOUT_LAYERS = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.FeatureAlphaDropout)
BATCHNORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d,
                    nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)


# ----------------------------------------------------------------------------------------------------------------
# The techniques


class Technique:
    """Base class. A technique parses its spec's value, may add a loss term, may act on the weights around the
    optimizer step, and may put layers into the network. Hooks that do not apply return None / do nothing."""

    name = ""
    meaning: str | None = None  # what the value means ("lambda"); None: the spec takes no value
    metavar = ""  # the value's placeholder in help texts
    allowed = "no value"  # the allowed range, as text for error messages
    options: tuple[str, ...] = ()
    places: tuple[str, ...] = ()  # options that move the technique elsewhere in the network
    acts_on_weights = False  # True: bound to the penalized parameters (`penalized_parameters`) by `Regularizer`
    # A study's defaults for a technique with a strength (a study file overrides them under [sweep] / [textbook]):
    grid: tuple[float, ...] = ()  # the strengths its validation sweep tries
    textbook: float | None = None  # the strength used if every validation run diverges

    def valid(self, value: float) -> bool:
        return True

    @property
    def has_strength(self) -> bool:
        return self.meaning is not None

    def in_loss(self, spec: Spec) -> bool:
        """Whether this spec adds a term to the loss (then `penalty` gives it)."""
        return False

    def penalty(self, spec: Spec, weights: list[torch.Tensor], lead: int = 0) -> torch.Tensor:
        """The loss term over `weights` (summed over all but the first `lead` dims); called when `in_loss`."""
        raise NotImplementedError

    def before_step(self, spec: Spec, weights: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        """After backward, before ``optimizer.step()``."""

    def after_step(self, spec: Spec, weights: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        """After ``optimizer.step()``."""

    def layers(self, spec: Spec, site: str, width: int, conv: bool) -> list[nn.Module]:
        """Layers to insert at builder site `site` next to a hidden layer of `width` units (`conv`: channels)."""
        return []

    def missing_in(self, spec: Spec, model: nn.Module) -> str:
        """What a user's own model (built by a factory, which places the layers itself) lacks of this spec's
        layers, named for an error message; "" when nothing is missing (or the technique has no layers)."""
        return ""

    def acts_as_layer(self, module: nn.Module) -> bool:
        """Whether `module` is a layer of this technique that acts (a strength of 0 is the identity): how a user's
        model is searched for regularization it brings on its own (`regularizing_layers`)."""
        return False

    def layer_text(self, module: nn.Module) -> str:
        """One of this technique's layers as a message names it: its class and strength."""
        return type(module).__name__

    def help(self) -> str:
        value = f"={self.metavar}" if self.meaning else ""
        return self.name + value + "".join(f"[:{o}]" for o in self.options)


class L2(Technique):
    """L2 penalty (weight decay):  loss + 1/2 * lambda * sum_i w_i**2  over the penalized weights.

    Its gradient adds lambda * w to each weight's gradient (PyTorch's ``weight_decay=lambda``).
    ``:decoupled`` (AdamW): no loss term; after backward and before the optimizer step each weight is shrunk
    ``w <- w * (1 - lr * lambda)`` with the lr of its own parameter group, then the step runs on the gradient taken
    at the undecayed weight. That is AdamW's order, so Adam + ``l2=lambda:decoupled`` equals
    ``AdamW(weight_decay=lambda)`` on those weights."""

    name, meaning, allowed, options = "l2", "lambda", "a number >= 0", ("bias", "bn", "decoupled")
    metavar = "LAMBDA"
    grid, textbook = (1e-4, 1e-3, 1e-2), 1e-3
    acts_on_weights = True

    def valid(self, value):
        return value >= 0

    def in_loss(self, spec):
        return not spec.has("decoupled") and bool(spec.value)

    def penalty(self, spec, weights, lead=0):
        return 0.5 * spec.value * _sum([_total(w.square(), lead) for w in weights])

    @torch.no_grad()
    def before_step(self, spec, weights, optimizer):
        if spec.has("decoupled") and spec.value:
            for w in weights:
                w.mul_(1.0 - group_of(optimizer, w)["lr"] * spec.value)


class L1(Technique):
    """L1 penalty:  loss + alpha * sum_i |w_i|  over the penalized weights (drives weights to or near zero).

    ``:prox``: no loss term; after each optimizer step the proximal step of alpha * |w| (soft thresholding),
    ``w <- sign(w) * max(|w| - s * alpha, 0)``, with s the step the optimizer just took for that weight: its
    group's lr for SGD, Adam's per-element ``lr / (sqrt(v_hat) + eps)``. Weights become exactly zero."""

    name, meaning, allowed, options = "l1", "alpha", "a number >= 0", ("bias", "bn", "prox")
    metavar = "ALPHA"
    grid, textbook = (1e-5, 1e-4, 1e-3), 1e-4
    acts_on_weights = True

    def valid(self, value):
        return value >= 0

    def in_loss(self, spec):
        return not spec.has("prox") and bool(spec.value)

    def penalty(self, spec, weights, lead=0):
        return spec.value * _sum([_total(w.abs(), lead) for w in weights])

    @torch.no_grad()
    def after_step(self, spec, weights, optimizer):
        if spec.has("prox") and spec.value:
            for w in weights:
                soft_threshold_(w, step_size(optimizer, w) * spec.value)


class Noise(Technique):
    """Gaussian noise injection:  y = x + N(0, sigma**2)  element-wise in training, y = x in evaluation.

    At the input (default) or, with ``:hidden``, on each hidden unit's output (`GaussianNoise`)."""

    name, meaning, allowed, options, places = "noise", "sigma", "a number >= 0", ("hidden",), ("hidden",)
    metavar = "SIGMA"
    grid, textbook = (0.1, 0.3, 0.5), 0.3

    def valid(self, value):
        return value >= 0

    def layers(self, spec, site, width, conv):
        here = "unit_output" if spec.has("hidden") else "input"
        return [GaussianNoise(spec.value)] if site == here else []

    def missing_in(self, spec, model):
        if _holds(model, (GaussianNoise,), "sigma", spec.value):
            return ""
        return f"sandbag.regularizers.GaussianNoise({spec.value}) layer"

    def acts_as_layer(self, module):
        return isinstance(module, GaussianNoise) and module.sigma > 0

    def layer_text(self, module):
        return f"{type(module).__name__}(sigma={module.sigma:g})"


class Dropout(Technique):
    """Inverted dropout with drop rate p:  y = m * x / (1 - p),  m_i ~ Bernoulli(1 - p)  in training; y = x in
    evaluation (so the expected activation is the same in both). ``keep=r`` is the same with keep ratio r = 1 - p.

    After each hidden dense layer (`nn.Dropout`) or, with ``:spatial``, whole channels after each conv block
    (`nn.Dropout2d`)."""

    name, meaning, allowed, options, places = "dropout", "drop rate", "a number in [0, 1)", ("spatial",), ("spatial",)
    metavar = "RATE"
    grid, textbook = (0.2, 0.4, 0.6), 0.4

    def valid(self, value):
        return 0 <= value < 1

    def layers(self, spec, site, width, conv):
        if spec.has("spatial"):
            return [nn.Dropout2d(spec.value)] if site == "end_of_conv_block" else []
        return [nn.Dropout(spec.value)] if site == "after_hidden_dense" else []

    def missing_in(self, spec, model):
        spatial = spec.has("spatial")
        if _holds(model, CHANNEL_DROPOUT_LAYERS if spatial else DROPOUT_LAYERS, "p", spec.value):
            return ""
        kinds = "nn.Dropout1d/2d/3d or nn.FeatureAlphaDropout" if spatial else "nn.Dropout, nn.AlphaDropout, ..."
        return f"{'channel ' if spatial else ''}dropout layer with p={spec.value} ({kinds})"

    def acts_as_layer(self, module):
        return isinstance(module, DROPOUT_LAYERS) and module.p > 0

    def layer_text(self, module):
        return f"{type(module).__name__}(p={module.p:g})"


class BatchNorm(Technique):
    """Batch normalization (torch's BatchNorm, momentum 0.1, eps 1e-5), per feature (channel) over the batch:
    ``x_hat = (x - mean_B) / sqrt(var_B + eps)``, ``y = gamma * x_hat + beta`` with learned gamma and beta.
    Training uses the mini-batch's mean and biased variance; evaluation the running estimates.

    After each hidden conv/dense layer, before its activation (``:post``: after it). ``:sync``: statistics over
    the global batch in data-parallel training (see `sandbag.distributed`)."""

    name, options, places = "bn", ("post", "sync"), ("post",)

    def layers(self, spec, site, width, conv):
        here = "after_activation" if spec.has("post") else "before_activation"
        if site != here:
            return []
        return [nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)]

    def missing_in(self, spec, model):
        if _holds(model, BATCHNORM_LAYERS):
            return ""
        return "batch-norm layer (nn.BatchNorm1d/2d/3d)"

    def acts_as_layer(self, module):
        return isinstance(module, BATCHNORM_LAYERS)

    def layer_text(self, module):
        return f"{type(module).__name__}({module.num_features})"


def _holds(model: nn.Module, kinds: tuple[type, ...], attribute: str = "", value: float | None = None) -> bool:
    """Whether `model` has a layer of one of `kinds` (whose `attribute` equals `value`, when given)."""
    return any(isinstance(m, kinds) and (not attribute or math.isclose(getattr(m, attribute), value))
               for m in model.modules())


TECHNIQUES: dict[str, Technique] = {t.name: t for t in (L2(), L1(), Noise(), Dropout(), BatchNorm())}


def regularizing_layers(model: nn.Module, technique: str | None = None) -> list[str]:
    """The layers of `model` that regularize by themselves, in module order, as "Dropout(p=0.25) at dropout1"; only
    `technique`'s with one given.

    What counts: dropout of every torch kind (p > 0), batch norm of every kind (its batch statistics add noise to
    training, and it is one of the techniques studied here) and `GaussianNoise` (sigma > 0): each technique's own
    `acts_as_layer`. Not counted: GroupNorm, LayerNorm and InstanceNorm, which normalize each sample on its own (no
    batch statistics, so no noise from the batch) and are part of an architecture rather than a technique studied
    here; the penalties, which live in the loss and the step, never in a module; and functional dropout
    (``F.dropout`` in a forward method), which leaves no module to find."""
    found = []
    for path, module in model.named_modules():
        for name, tech in TECHNIQUES.items():
            if (technique is None or name == technique) and tech.acts_as_layer(module):
                found.append(f"{tech.layer_text(module)} at {path or 'the model itself'}")
    return found

# Another way to write a technique: name -> (technique, what the value means, allowed range, check, conversion)
ALIASES: dict[str, tuple[str, str, str, Callable[[float], bool], Callable[[float], float]]] = {
    "keep": ("dropout", "keep ratio", "a number in (0, 1]", lambda v: 0 < v <= 1, lambda v: round(1.0 - v, 12)),
}


def tunable() -> list[str]:
    """Techniques with a strength to choose (all but the value-less ones such as bn), in registry order."""
    return [name for name, t in TECHNIQUES.items() if t.has_strength]


SPEC_HELP = ", ".join(
    [t.help() for t in TECHNIQUES.values() if t.name != "bn"]
    + [f"{alias}=RATIO" + "".join(f"[:{o}]" for o in TECHNIQUES[a[0]].options) for alias, a in ALIASES.items()]
    + [TECHNIQUES["bn"].help()]
)


# ----------------------------------------------------------------------------------------------------------------
# Parsing


def parse_spec(text: str) -> Spec:
    """Parse one spec string such as ``l2=1e-3:bias``; raise `SpecError` saying what is allowed."""
    head, *options = [part.strip() for part in str(text).strip().split(":")]
    name, has_value, raw = (part.strip() for part in head.partition("="))
    name = name.lower()
    if name not in TECHNIQUES and name not in ALIASES:
        valid = ", ".join([*TECHNIQUES, *ALIASES])
        raise SpecError(f"unknown technique {name!r} in {text!r}; valid: {valid} ({SPEC_HELP})")
    if name in ALIASES:
        target, meaning, allowed, check, convert = ALIASES[name]
    else:
        target, convert = name, None
        t = TECHNIQUES[name]
        meaning, allowed, check = t.meaning, t.allowed, t.valid
    valid_options = TECHNIQUES[target].options
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
    return Spec(target, convert(value) if convert else value, tuple(options))


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
    """Parameters a weight penalty acts on, each once (a weight shared by two layers is listed under its first name).

    Weights of conv/dense layers (tensors with 2+ dims) always; biases (1-dim tensors of other layers) only with
    `include_bias`; scale and shift of normalization layers only with `include_norm`. The rule is timm's
    (``ndim <= 1`` or a bias -> no decay), made explicit about normalization layers.
    """
    chosen, seen = [], set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, _NORM_LAYERS):
                take = include_norm
            elif param.ndim >= 2:
                take = True
            else:
                take = include_bias
            if take:
                chosen.append((f"{module_name}.{name}" if module_name else name, param))
    return chosen


# ----------------------------------------------------------------------------------------------------------------
# The specs bound to a model: what a training step calls


class Regularizer:
    """The specs bound to a model's parameters, resolved once: `penalty()` for the loss and `step(optimizer)` around
    the optimizer step (`before_step`, ``optimizer.step()``, `after_step`).

    `params` replaces the model's tensors by name: `sandbag.multiseed` passes its stacked per-seed tensors (with
    `lead` = 1, so `penalty()` returns one value per seed) while `model` still decides which names are penalized.
    """

    def __init__(self, model: nn.Module, specs: Iterable[Spec], *, params: Mapping[str, torch.Tensor] | None = None,
                 lead: int = 0):
        self.specs = list(specs)
        self.lead = lead
        self.bound: list[tuple[Spec, list[torch.Tensor]]] = []
        for spec in self.specs:
            if not spec.technique.acts_on_weights:
                continue
            names = penalized_parameters(model, include_bias=spec.has("bias"), include_norm=spec.has("bn"))
            self.bound.append((spec, [params[n] if params is not None else p for n, p in names]))
        self.through_loss = acts_through_loss(self.specs)
        first = next(iter(params.values())) if params else next(model.parameters(), torch.zeros(()))
        self.zero = torch.zeros(first.shape[:lead], device=first.device)

    def penalty(self) -> torch.Tensor:
        """The sum of the techniques' loss terms (a zero tensor when none acts through the loss)."""
        total = self.zero
        for spec, weights in self.bound:
            if spec.technique.in_loss(spec):
                total = total + spec.technique.penalty(spec, weights, self.lead)
        return total

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        for spec, weights in self.bound:
            spec.technique.before_step(spec, weights, optimizer)

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        for spec, weights in self.bound:
            spec.technique.after_step(spec, weights, optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.before_step(optimizer)
        optimizer.step()
        self.after_step(optimizer)


def penalty(model: nn.Module, specs: Iterable[Spec]) -> torch.Tensor:
    """The penalty term to add to the data loss for these specs (0 when none acts through the loss)."""
    return Regularizer(model, specs).penalty()


def acts_through_loss(specs: Iterable[Spec]) -> bool:
    return any(s.technique.in_loss(s) for s in specs)


def before_step(model: nn.Module, specs: Iterable[Spec], optimizer: torch.optim.Optimizer) -> None:
    """What acts on the weights after backward and before ``optimizer.step()`` (decoupled L2)."""
    Regularizer(model, specs).before_step(optimizer)


def after_step(model: nn.Module, specs: Iterable[Spec], optimizer: torch.optim.Optimizer) -> None:
    """What acts on the weights after ``optimizer.step()`` (proximal L1)."""
    Regularizer(model, specs).after_step(optimizer)


# ----------------------------------------------------------------------------------------------------------------
# Helpers of the formulas


def _total(t: torch.Tensor, lead: int) -> torch.Tensor:
    return t.sum() if lead == 0 else t.flatten(lead).sum(-1)


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms).sum(0) if terms else torch.zeros(())


def group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    """The optimizer's parameter group that holds `param` (its own lr, betas, eps)."""
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    raise ValueError("the optimizer does not hold this parameter: build it over the model's parameters")


@torch.no_grad()
def soft_threshold_(param: torch.Tensor, threshold: float | torch.Tensor) -> None:
    """Proximal step of alpha*|w|: w <- sign(w) * max(|w| - threshold, 0); small weights become exactly 0.

    `threshold` is lr * alpha, a number or a tensor of per-element thresholds."""
    param.copy_(param.sign() * (param.abs() - threshold).clamp_min(0))


def step_size(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float | torch.Tensor:
    """The effective per-element step size of the last update: lr (SGD) or lr / (sqrt(v_hat) + eps) (Adam), from
    the parameter's own group."""
    group = group_of(optimizer, param)
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
