"""Models built from an architecture plus a list of techniques, and their Keras-style summary.

The architecture never changes with the techniques: `build_model` inserts them where the textbook puts them.

- ``bn``: BatchNorm after each conv/dense layer except the output, before its activation (``bn:post``: after it).
- ``dropout``: after the hidden dense layer(s) (``:spatial``: channel dropout after each conv block instead).
- ``noise``: at the input (``:hidden``: after each hidden activation instead).

Layers are named the way Keras names them (``conv2d``, ``conv2d_1``, ``dense``, ...), so the state dict and the
summary read like the Keras model the reference was written in.

Your own model: a name ``package.module:function`` (`is_factory`) names a factory
``function(input_shape, num_classes, techniques) -> nn.Module``, imported the way uvicorn imports an app
(`resolve_factory`). `techniques` is the run's list of `sandbag.regularizers.Spec` (what `parse_specs` returns).
Only the factory knows where its hidden units are, so it places dropout, bn and ``noise=...:hidden`` itself;
sandbag checks that they are there (`Technique.missing_in`), puts what goes at the input (``noise=SIGMA``) in
front of the factory's module, and applies the penalties to any module. It changes nothing inside the factory's
module; what that module regularizes with on its own (built with no technique: `own_regularization`) is named for
a warning, or a study's refusal (`sandbag.study.own_model`).
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn.modules import module as _torch_module  # its global hook registries

from .errors import ModelError, SandbagError, one_line
from .regularizers import SITES, GaussianNoise, Spec, regularizing_layers

MODELS = {
    "ref-cnn": "Conv(32)-MaxPool-Conv(64)-AvgPool-Conv(128)-Dense(128)-Dense(classes): 241,546 params on 1x28x28",
    "mlp": "Dense(256)-Dense(128)-Dense(classes) on the flattened input",
}

# torch class -> (Keras layer type, Keras default name)
_KERAS_NAMES = {
    nn.Conv2d: ("Conv2D", "conv2d"),
    nn.Linear: ("Dense", "dense"),
    nn.MaxPool2d: ("MaxPooling2D", "max_pooling2d"),
    nn.AvgPool2d: ("AveragePooling2D", "average_pooling2d"),
    nn.Flatten: ("Flatten", "flatten"),
    nn.Dropout: ("Dropout", "dropout"),
    nn.Dropout2d: ("SpatialDropout2D", "spatial_dropout2d"),
    nn.BatchNorm1d: ("BatchNormalization", "batch_normalization"),
    nn.BatchNorm2d: ("BatchNormalization", "batch_normalization"),
    nn.ReLU: ("Activation", "activation"),
    GaussianNoise: ("GaussianNoise", "gaussian_noise"),
}


class _Builder:
    """Collects layers under Keras-style unique names and asks each technique for its layers at every site
    (`sandbag.regularizers.SITES`) around each hidden layer: the architecture never names a technique."""

    def __init__(self, specs: Sequence[Spec]):
        self.layers: dict[str, nn.Module] = {}
        self._counts: Counter[str] = Counter()
        self.specs = list(specs)

    def add(self, layer: nn.Module, name: str | None = None) -> None:
        base = name or _KERAS_NAMES.get(type(layer), (None, _snake(type(layer).__name__)))[1]
        n = self._counts[base]
        self._counts[base] += 1
        self.layers[base if n == 0 else f"{base}_{n}"] = layer

    def site(self, site: str, width: int = 0, conv: bool = False) -> None:
        for spec in self.specs:
            for layer in spec.technique.layers(spec, site, width, conv):
                self.add(layer)

    def input(self) -> None:
        self.site("input")

    def hidden(self, layer: nn.Conv2d | nn.Linear) -> None:
        """A hidden conv/dense layer with its activation and the techniques' layers around it."""
        conv = isinstance(layer, nn.Conv2d)
        width = layer.out_channels if conv else layer.out_features
        self.add(layer)
        self.site("before_activation", width, conv)
        self.add(nn.ReLU())
        for site in ("after_activation", "unit_output"):
            self.site(site, width, conv)

    def end_of_conv_block(self) -> None:
        self.site("end_of_conv_block")

    def after_hidden_dense(self) -> None:
        self.site("after_hidden_dense")

    def asks_for(self, site: str) -> bool:
        """Whether any technique puts a layer at `site` (for architectures that have no such site)."""
        return any(spec.technique.layers(spec, site, 1, True) for spec in self.specs)

    def build(self) -> nn.Sequential:
        return Sequential(OrderedDict(self.layers))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.lstrip("_")).lower()


class Sequential(nn.Sequential):
    """nn.Sequential that runs each ReLU -> MaxPool2d pair as MaxPool2d -> ReLU.

    Max pooling commutes with any non-decreasing function, so relu(maxpool(x)) == maxpool(relu(x)) exactly, and so
    are the gradients (ties pick the same first maximum; a window with no positive value passes no gradient either
    way). Pooling first makes the ReLU and its backward touch 4x fewer values: +6-20% samples/s for ref-cnn at batch
    128 on 2 CPU threads, timed step by step against the textbook order. A pair with a hook on either layer runs in
    the textbook order, so hooks (torchinfo, analysis probes) see the usual tensors.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.ReLU) and isinstance(after, nn.MaxPool2d) and not _hooked(layer, after):
                x = layer(after(x))
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def _hooked(*modules: nn.Module) -> bool:
    m = _torch_module
    if (m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
            or m._global_backward_pre_hooks):
        return True
    return any(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks
               or mod._backward_pre_hooks for mod in modules)


def _ref_cnn(b: _Builder, input_shape: tuple[int, int, int], num_classes: int) -> None:
    channels = input_shape[0]
    b.input()
    b.hidden(nn.Conv2d(channels, 32, 3))
    b.add(nn.MaxPool2d(2))
    b.end_of_conv_block()
    b.hidden(nn.Conv2d(32, 64, 3))
    b.add(nn.AvgPool2d(2))
    b.end_of_conv_block()
    b.hidden(nn.Conv2d(64, 128, 3))
    b.end_of_conv_block()
    b.add(nn.Flatten())
    h, w = (_ref_cnn_side(side) for side in input_shape[1:])
    b.hidden(nn.Linear(128 * h * w, 128))
    b.after_hidden_dense()
    b.add(nn.Linear(128, num_classes))


def _ref_cnn_side(side: int) -> int:
    """Spatial size after conv3-maxpool2-conv3-avgpool2-conv3 (valid padding, floor pooling)."""
    return ((side - 2) // 2 - 2) // 2 - 2


REF_CNN_MIN_SIDE = 18  # smallest side for which _ref_cnn_side(side) >= 1


def _mlp(b: _Builder, input_shape: tuple[int, int, int], num_classes: int) -> None:
    if b.asks_for("end_of_conv_block"):
        raise ModelError("dropout:spatial needs conv blocks; the mlp has none (use dropout=RATE)")
    b.input()
    b.add(nn.Flatten())
    width = math.prod(input_shape)
    for hidden in (256, 128):
        b.hidden(nn.Linear(width, hidden))
        b.after_hidden_dense()
        width = hidden
    b.add(nn.Linear(width, num_classes))


_ARCHITECTURES = {"ref-cnn": _ref_cnn, "mlp": _mlp}


def build_model(
    name: str = "ref-cnn",
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    specs: Iterable[Spec] = (),
) -> nn.Module:
    """Build architecture `name` for inputs of shape (C, H, W) with the given techniques inserted; `name` may
    also be a model factory's ``package.module:function`` (see `factory_model`)."""
    check_model_name(name)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"input shape must be (channels, height, width) with positive sizes, got {shape}")
    if name == "ref-cnn" and min(shape[1:]) < REF_CNN_MIN_SIDE:
        raise ModelError(
            f"input {shape[1]}x{shape[2]} is too small for ref-cnn: its three 3x3 convolutions and two 2x2 "
            f"pools need height and width >= {REF_CNN_MIN_SIDE}"
        )
    if num_classes < 2:
        raise ModelError(f"need at least 2 classes, got {num_classes}")
    if is_factory(name):
        return factory_model(name, shape, num_classes, list(specs))
    builder = _Builder(list(specs))
    _ARCHITECTURES[name](builder, shape, num_classes)
    return builder.build()


# ----------------------------------------------------------------------------------------------------------------
# Your own model: a factory named by its import path


FACTORY_FORM = "package.module:function"


def is_factory(name: str) -> bool:
    """Whether a model name is a factory's import path rather than a built-in architecture."""
    return ":" in name


def check_model_name(name: str) -> None:
    """A built-in architecture or something shaped like a factory path (checked without importing anything)."""
    if name not in _ARCHITECTURES and not is_factory(name):
        raise ModelError(f"unknown model {name!r}; valid: {', '.join(_ARCHITECTURES)}, or your own as {FACTORY_FORM}")


def resolve_factory(path: str) -> Callable[..., nn.Module]:
    """The function `path` (``package.module:function``, dots allowed after the colon) names, found the way uvicorn
    and gunicorn find an app: the current directory first on sys.path, ``importlib.import_module`` on the part
    before the colon, ``getattr`` for the rest. Resolved where the model is built, so study workers (spawned,
    or Ray tasks started in the same directory) find it too."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ModelError(f"model {path!r}: name a model factory as {FACTORY_FORM}")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error while importing it is theirs, told in one line
        raise ModelError(f"cannot import {module_name!r} for model {path!r} (run from {here}): "
                         f"{one_line(exc, named=True)}") from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelError(f"model {path!r}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(f"model {path!r} is not callable ({type(target).__name__}); a model factory is a function "
                         "(input_shape, num_classes, techniques) -> nn.Module")
    return target


def factory_model(path: str, input_shape: tuple[int, ...], num_classes: int, specs: list[Spec]) -> nn.Module:
    """The factory's model for these techniques, checked, with sandbag's input-site layers (input noise) in front.

    The factory gets `input_shape` (C, H, W), `num_classes` and `specs` (every technique of the run, as
    `sandbag.regularizers.Spec`); it must place dropout, bn and hidden noise itself (`check_placed`). A factory may
    refuse a technique by raising `sandbag.errors.ModelError` with its own message."""
    factory = resolve_factory(path)
    try:
        model = factory(input_shape, num_classes, list(specs))  # a copy: the factory cannot change the run's specs
    except SandbagError:
        raise
    except Exception as exc:
        raise ModelError(f"model factory {path} failed: {one_line(exc, named=True)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory {path} returned a {type(model).__name__}, not a torch.nn.Module")
    check_placed(path, model, specs)
    _check_logits(path, model, input_shape, num_classes)
    builder = _Builder(specs)
    builder.input()
    if not builder.layers:
        return model  # the factory's own module: its class and state-dict keys unchanged
    builder.add(model, "model")
    return builder.build()


def placed_by_factory(spec: Spec) -> bool:
    """Whether the technique puts layers anywhere but at the input: only a factory knows its hidden units."""
    return any(spec.technique.layers(spec, site, 1, conv)
               for site in SITES if site != "input" for conv in (False, True))


def check_placed(path: str, model: nn.Module, specs: Iterable[Spec]) -> None:
    """`ModelError` naming the first layer a technique asks for that the factory's model does not have, and the
    layers of that technique the model has instead (at other strengths). A strength of 0 is the identity, so its
    layer may be left out."""
    for spec in specs:
        if placed_by_factory(spec) and spec.value != 0:
            missing = spec.technique.missing_in(spec, model)
            if missing:
                raise ModelError(f"{spec} asks for a {missing}, and model {path} {_has_instead(model, spec)}: a "
                                 "model factory places dropout, bn and noise=...:hidden itself, from its techniques "
                                 "argument (as examples/tiny_resnet.py does)")


def _has_instead(model: nn.Module, spec: Spec) -> str:
    """"has none", or the technique's layers the model holds at other strengths (or places). sandbag leaves them
    as they are rather than setting their rate to the spec's: ``dropout=P`` means dropout after the hidden dense
    layer(s), and a factory's module tree does not say where a layer acts (the PyTorch MNIST example's first
    dropout acts on conv features), nor would rewriting them give the study's none arm a model without them."""
    found = regularizing_layers(model, spec.name)
    if not found:
        return "has none"
    kind = "batch-norm" if spec.name == "bn" else spec.name
    return (f"has none that fits (it has {len(found)} {kind} layer{'s' if len(found) > 1 else ''} of its own, "
            f"{', '.join(found)}, which sandbag leaves as they are)")


def own_regularization(path: str, input_shape: Sequence[int], num_classes: int, specs: Sequence[Spec] = ()
                       ) -> list[str]:
    """The regularizing layers (`sandbag.regularizers.regularizing_layers`) of factory `path`'s model built with no
    technique: what every run of it keeps whatever its techniques, a study's none arm too. `specs`: a run's
    techniques, built first, so a technique the factory cannot place raises its error before anything is said
    about the model's own layers. Built with torch's global random state left as it was (a check changes no
    later draw)."""
    with torch.random.fork_rng(devices=[]):
        if specs:
            build_model(path, input_shape, num_classes, specs)
        model = build_model(path, input_shape, num_classes, [])
    return regularizing_layers(model)


def own_regularization_note(path: str, layers: Sequence[str]) -> str:
    """One line that names the regularization a factory's model brings on its own."""
    return (f"model {path} brings regularization of its own, kept in every run whatever its techniques (a study's "
            f"none arm too): {', '.join(layers)}")


def _check_logits(path: str, model: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
    """One forward pass on zeros in evaluation mode (nothing random, no statistics updated): the output must be
    (batch, num_classes) logits. It also initializes lazy layers before an optimizer is built over the parameters."""
    was_training = model.training
    device = next(itertools.chain(model.parameters(), model.buffers()), torch.zeros(())).device
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, device=device))
    except Exception as exc:
        shape = (2, *input_shape)
        raise ModelError(f"model {path} fails on a batch of shape {shape}: {one_line(exc, named=True)}") from exc
    finally:
        model.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (2, num_classes):
        raise ModelError(f"model {path} must return logits of shape (batch, {num_classes}); on a batch of 2 it "
                         f"returned {got}")


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameter counts the Keras way: BN's running mean and variance are non-trainable parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    frozen += sum(_bn_stat_count(m) for m in model.modules())
    return {"total": trainable + frozen, "trainable": trainable, "non_trainable": frozen}


def _bn_stat_count(module: nn.Module) -> int:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
        return module.running_mean.numel() + module.running_var.numel()
    return 0


def keras_summary(model: nn.Module, input_shape: Sequence[int], title: str = "sequential") -> str:
    """The model summary as Keras prints it: Layer (type) | Output Shape (channels last) | Param #, then totals.

    Output shapes come from torchinfo; BN's running statistics are added to the param counts as Keras does.
    ReLUs right after a conv/dense layer are folded into it, as Keras's ``activation='relu'`` argument would.
    """
    import torchinfo

    stats = torchinfo.summary(model, input_size=(1, *input_shape), verbose=0, device="cpu", depth=1)
    names = {id(module): name for name, module in model.named_children()}
    rows, previous = [], None
    for info in stats.summary_list:
        module = info.module
        if id(module) not in names:
            continue
        folded = isinstance(module, nn.ReLU) and isinstance(previous, nn.Conv2d | nn.Linear)
        previous = module
        if folded:
            continue
        kind = _KERAS_NAMES.get(type(module), (type(module).__name__,))[0]
        params = sum(p.numel() for p in module.parameters()) + sum(_bn_stat_count(m) for m in module.modules())
        rows.append((f"{names[id(module)]} ({kind})", _keras_shape(info.output_size), f"{params:,}"))
    counts = count_params(model)
    widths = (max(29, max(len(r[0]) for r in rows) + 2), 26, 10)
    line = "_" * sum(widths)

    def fmt(cells):
        return " " + "".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f'Model: "{title}"', line, fmt(("Layer (type)", "Output Shape", "Param #")), "=" * sum(widths)]
    for i, row in enumerate(rows):
        out += [fmt(row), "=" * sum(widths) if i == len(rows) - 1 else ""]
    out += [
        f"Total params: {counts['total']:,}",
        f"Trainable params: {counts['trainable']:,}",
        f"Non-trainable params: {counts['non_trainable']:,}",
        line,
    ]
    return "\n".join(out)


def _keras_shape(size: Sequence[int]) -> str:
    """torch (1, C, H, W) -> Keras '(None, H, W, C)'; (1, F) -> '(None, F)'."""
    dims = list(size)[1:]
    if len(dims) == 3:
        dims = [dims[1], dims[2], dims[0]]
    return "(" + ", ".join(["None", *map(str, dims)]) + ")"


def output_shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Each named layer's output shape (without the batch dimension) for one input of `input_shape`, in call order.

    Read by hooks during one forward pass, so any module works, not only a sequence of layers: a child called
    twice shows its last call, one never called (or returning no tensor) is left out."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, args, out):
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])
        return hook

    handles = [child.register_forward_hook(record(name)) for name, child in model.named_children()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return shapes
