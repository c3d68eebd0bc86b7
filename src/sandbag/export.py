"""Export a trained run for inference, with batch norm folded into the conv/dense weights.

In evaluation mode a BN layer is a fixed per-feature affine map ``z = s * x + t`` with ``s = gamma / sqrt(var + eps)``
and ``t = beta - mean * s``. Such a map can be merged into an adjacent linear layer, so the exported model computes
the same function (up to float rounding) with fewer layers and fewer passes over the activations:

- ``bn`` (BN right after a conv/dense layer, before its activation) folds into that layer:
  ``W' = s * W`` (per output feature), ``b' = s * (b - mean) + beta``. Always exact.
- ``bn:post`` (BN after the ReLU) cannot fold backwards through the ReLU; it folds forwards into the NEXT conv/dense
  layer: ``W'[:, c] = W[:, c] * s[c]``, ``b' = b + sum W[:, c] * t[c]``. Exact when everything in between commutes
  with a per-channel affine map: average pooling, flatten, the evaluation-time identities (dropout, noise), and max
  pooling only when every scale is >= 0 (max(s*x + t) = s*max(x) + t needs s >= 0); the next conv must be unpadded
  (zero padding of BN's output is not zero padding of its input). Otherwise that BN stays (as evaluation-mode BN)
  and the report says why.

Dropout and Gaussian noise are identities in evaluation mode and are dropped. Folding is computed in float64 and
stored in float32. The exported file holds the layer list, the state dict and the run config, and loads with
``torch.load(..., weights_only=True)``; `load_folded` rebuilds the model from it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ModelError
from .models import Sequential, is_factory
from .regularizers import GaussianNoise
from .runs import load_checkpoint, torch_load_tagged, torch_save

FOLDED_FORMAT = "sandbag-folded/1"
DEFAULT_NAME = "model-folded.pt"
# The self-check on export refuses a folded model whose outputs drift further than this from the original.
CHECK_TOLERANCE = 1e-4

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_EVAL_IDENTITY = (nn.Dropout, nn.Dropout2d, GaussianNoise, nn.Identity)


# ----------------------------------------------------------------------------------------------------------------
# Folding


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) with bn(x) == s * x + t per feature in evaluation mode (float64)."""
    if bn.running_mean is None or bn.running_var is None:
        raise CheckpointError("cannot fold a batch norm layer without running statistics")
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    return s, beta - mean * s


def _with_weights(layer: nn.Conv2d | nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A copy of `layer` (with a bias, whether or not it had one) holding these float64 weights."""
    new = copy.deepcopy(layer)
    if new.bias is None:
        new.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=torch.float64))
    with torch.no_grad():
        new.weight = nn.Parameter(weight.clone())
        new.bias = nn.Parameter(bias.clone())
    return new


def _fold_backward(layer: nn.Conv2d | nn.Linear, bn) -> nn.Module:
    """layer followed by bn -> one layer (BN before the activation)."""
    s, t = _bn_affine(bn)
    w = layer.weight.detach().double()
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(s)
    shape = (-1,) + (1,) * (w.dim() - 1)
    return _with_weights(layer, w * s.view(shape), b * s + t)


def _fold_forward(s: torch.Tensor, t: torch.Tensor, layer: nn.Conv2d | nn.Linear) -> nn.Module:
    """z = s * x + t (per input channel / feature) followed by layer -> one layer."""
    w = layer.weight.detach().double()
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if isinstance(layer, nn.Conv2d):
        return _with_weights(layer, w * s.view(1, -1, 1, 1), b + w.sum(dim=(2, 3)) @ t)
    return _with_weights(layer, w * s.view(1, -1), b + w @ t)


def _forward_target(layers: list[tuple[str, nn.Module]], i: int, s: torch.Tensor) -> tuple[int | None, str]:
    """Index of the conv/dense layer after position i that the affine map at i can fold into, or (None, reason)."""
    for j in range(i + 1, len(layers)):
        name, layer = layers[j]
        if isinstance(layer, nn.Linear):
            return j, ""
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.padding == "same" or any(p != 0 for p in _pair(layer.padding)):
                return None, f"the next conv ({name}) pads or groups its input"
            return j, ""
        if isinstance(layer, nn.AvgPool2d):
            if any(p != 0 for p in _pair(layer.padding)):
                return None, f"{name} pads its input"
            continue
        if isinstance(layer, nn.MaxPool2d):
            if (s < 0).any():
                return None, f"{name} does not commute with a negative BN scale (max(s*x) != s*max(x) for s < 0)"
            if any(p != 0 for p in _pair(layer.padding)):
                return None, f"{name} pads its input"
            continue
        if isinstance(layer, nn.Flatten):
            continue
        return None, f"{name} ({type(layer).__name__}) lies between it and the next conv/dense layer"
    return None, "no conv/dense layer follows it"


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v, v)


def fold_batchnorm(model: nn.Sequential) -> tuple[nn.Sequential, dict]:
    """An evaluation-only copy of `model` with its BN layers folded into conv/dense weights, and a report.

    The report: ``folded`` (BN name -> the layer it went into, and ``before``/``after`` for the direction),
    ``kept`` (BN name -> why it could not be folded exactly), ``dropped`` (evaluation-time identities removed).
    The input model is left untouched; the copy is float32 on the CPU, in evaluation mode.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError("fold_batchnorm takes an nn.Sequential (as sandbag.models.build_model makes)")
    src = copy.deepcopy(model).cpu().double().eval()
    report: dict = {"folded": {}, "kept": {}, "dropped": []}
    layers: list[tuple[str, nn.Module]] = []
    for name, layer in src.named_children():
        if isinstance(layer, _EVAL_IDENTITY):
            report["dropped"].append(name)
        else:
            layers.append((name, layer))

    out: list[tuple[str, nn.Module]] = []
    pending: dict[int, list[tuple[str, torch.Tensor, torch.Tensor]]] = {}  # layer index -> affine maps to absorb
    for i, (name, layer) in enumerate(layers):
        if i in pending:  # post-activation BNs that fold forwards into this layer, in order
            for bn_name, s, t in reversed(pending.pop(i)):  # the one nearest this layer folds first
                layer = _fold_forward(_expand(s, layer), _expand(t, layer), layer)
                report["folded"][bn_name] = {"into": name, "direction": "forward"}
        if isinstance(layer, _BN):
            if out and isinstance(out[-1][1], nn.Conv2d | nn.Linear):
                prev_name, prev = out[-1]
                out[-1] = (prev_name, _fold_backward(prev, layer))
                report["folded"][name] = {"into": prev_name, "direction": "backward"}
                continue
            s, t = _bn_affine(layer)
            j, reason = _forward_target(layers, i, s)
            if j is None:
                report["kept"][name] = reason
                out.append((name, layer))
            else:
                pending.setdefault(j, []).append((name, s, t))
            continue
        out.append((name, layer))
    folded = Sequential(OrderedDict(out)).float().eval()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded, report


def _expand(v: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Per-channel values -> per input feature of a dense layer after a flatten (channel-major, as Flatten orders)."""
    if isinstance(layer, nn.Linear) and layer.in_features != v.numel():
        if layer.in_features % v.numel():
            raise CheckpointError(f"cannot map {v.numel()} BN features onto {layer.in_features} dense inputs")
        return v.repeat_interleave(layer.in_features // v.numel())
    return v


# ----------------------------------------------------------------------------------------------------------------
# The exported file


def describe(layer: nn.Module) -> dict:
    """A plain-data description of a layer (what `build_layer` rebuilds it from)."""
    if isinstance(layer, nn.Conv2d):
        return {"type": "conv2d", "in": layer.in_channels, "out": layer.out_channels,
                "kernel": list(layer.kernel_size), "stride": list(layer.stride),
                "padding": layer.padding if isinstance(layer.padding, str) else list(layer.padding),
                "dilation": list(layer.dilation), "groups": layer.groups, "bias": layer.bias is not None}
    if isinstance(layer, nn.Linear):
        return {"type": "linear", "in": layer.in_features, "out": layer.out_features, "bias": layer.bias is not None}
    if isinstance(layer, nn.ReLU):
        return {"type": "relu"}
    if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
        d = {"type": "maxpool2d" if isinstance(layer, nn.MaxPool2d) else "avgpool2d",
             "kernel": list(_pair(layer.kernel_size)), "stride": list(_pair(layer.stride)),
             "padding": list(_pair(layer.padding)), "ceil_mode": bool(layer.ceil_mode)}
        if isinstance(layer, nn.AvgPool2d):
            d["count_include_pad"] = bool(layer.count_include_pad)
        return d
    if isinstance(layer, nn.Flatten):
        return {"type": "flatten", "start_dim": layer.start_dim, "end_dim": layer.end_dim}
    if isinstance(layer, _BN):
        return {"type": "batchnorm1d" if isinstance(layer, nn.BatchNorm1d) else "batchnorm2d",
                "features": layer.num_features, "eps": float(layer.eps)}
    raise CheckpointError(f"cannot export a {type(layer).__name__} layer")


def build_layer(d: dict) -> nn.Module:
    kind = d.get("type")
    if kind == "conv2d":
        padding = d["padding"] if isinstance(d["padding"], str) else tuple(d["padding"])
        return nn.Conv2d(d["in"], d["out"], tuple(d["kernel"]), stride=tuple(d["stride"]), padding=padding,
                         dilation=tuple(d["dilation"]), groups=d["groups"], bias=d["bias"])
    if kind == "linear":
        return nn.Linear(d["in"], d["out"], bias=d["bias"])
    if kind == "relu":
        return nn.ReLU()
    if kind == "maxpool2d":
        return nn.MaxPool2d(tuple(d["kernel"]), tuple(d["stride"]), tuple(d["padding"]), ceil_mode=d["ceil_mode"])
    if kind == "avgpool2d":
        return nn.AvgPool2d(tuple(d["kernel"]), tuple(d["stride"]), tuple(d["padding"]), ceil_mode=d["ceil_mode"],
                            count_include_pad=d["count_include_pad"])
    if kind == "flatten":
        return nn.Flatten(d["start_dim"], d["end_dim"])
    if kind in ("batchnorm1d", "batchnorm2d"):
        norm = nn.BatchNorm1d if kind == "batchnorm1d" else nn.BatchNorm2d
        return norm(d["features"], eps=d["eps"])
    raise CheckpointError(f"unknown layer type {kind!r} in a folded model")


def export_run(run_dir: Path | str, out: Path | str | None = None, *, check_batch: int = 64) -> tuple[Path, dict]:
    """Fold a run's model and write it to `out` (default RUN_DIR/model-folded.pt); return (path, report).

    Before writing, the folded model is checked against the original on `check_batch` random inputs; the
    report's ``max_abs_diff`` is the largest difference of their outputs (refused above `CHECK_TOLERANCE`)."""
    run_dir = Path(run_dir)
    cfg, model, ckpt = load_checkpoint(run_dir, device="cpu")
    if is_factory(cfg.model):  # folding reads a flat layer list; a factory's module can be anything
        raise ModelError(f"{run_dir} holds a model factory's model ({cfg.model}): export folds batch norm in "
                         "sandbag's ref-cnn and mlp only; use torch.export or the state dict in model.pt")
    folded, report = fold_batchnorm(model)
    shape = tuple(int(s) for s in ckpt["input_shape"])
    x = torch.rand((check_batch, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (folded(x) - model.eval()(x)).abs().max().item()
    report["max_abs_diff"] = diff
    if not diff <= CHECK_TOLERANCE:
        raise CheckpointError(
            f"folded model differs from the original by {diff:.3g} (> {CHECK_TOLERANCE}); not written")
    path = Path(out) if out is not None else (run_dir if run_dir.is_dir() else run_dir.parent) / DEFAULT_NAME
    torch_save(path, {
        "format": FOLDED_FORMAT,
        "config": cfg.to_dict(),
        "input_shape": list(shape),
        "num_classes": int(ckpt["num_classes"]),
        "layers": [{"name": name, **describe(layer)} for name, layer in folded.named_children()],
        "state_dict": {k: v.detach().contiguous() for k, v in folded.state_dict().items()},
        "folding": report,
    })
    return path, report


def load_folded(path: Path | str, device: str = "cpu") -> tuple[nn.Sequential, dict]:
    """Rebuild an exported (folded) model, in evaluation mode; loads with ``weights_only=True``."""
    path = Path(path)
    ckpt = torch_load_tagged(path, FOLDED_FORMAT, "a folded sandbag model", device)
    try:
        layers = {d["name"]: build_layer(d) for d in ckpt["layers"]}
        model = Sequential(OrderedDict(layers))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not match its layer list: {reason[:200]}") from None
    return model.to(device).eval(), ckpt
