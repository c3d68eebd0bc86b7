"""Post-hoc probes of trained models: what dropout, batch norm and the weight penalties actually do.

Every probe works on a deep copy of the model, so the caller's model keeps its training mode, weights and BN
running statistics. Results are plain dicts of floats and lists (JSON-serializable) and are deterministic given
`seed`: random draws happen inside ``torch.random.fork_rng`` so the caller's random state is untouched too.

- `dropout_left_on`: accuracy in evaluation mode vs with only the dropout layers (wrongly) left in training mode.
- `bn_normalization`: does BN really give each feature mean 0 and std 1 (before its scale and shift)?
- `bn_companion_noise`: how much a sample's prediction depends on the other samples in its training batch.
- `weight_values`, `dropout_masks`: raw material for the weight histograms and the dropout-mask picture.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .regularizers import DROPOUT_LAYERS, penalized_parameters

_DROPOUT = DROPOUT_LAYERS  # every torch dropout kind: a factory's model may use any of them
_BATCHNORM = nn.modules.batchnorm._BatchNorm
_EVAL_BATCH = 1000
_EXAMPLE_VALUES = 2000


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _device(model: nn.Module) -> torch.device:
    p = next(itertools.chain(model.parameters(), model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Global torch RNG seeded with `seed` inside, the caller's RNG state restored outside."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = _EVAL_BATCH) -> torch.Tensor:
    """Predicted classes for x, in batches, with the model in whatever modes its modules are in."""
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]).cpu()


def _disagreement(preds: list[torch.Tensor]) -> float:
    """Mean over pairs of passes of the fraction of samples whose predicted class differs."""
    pairs = list(itertools.combinations(preds, 2))
    if not pairs:
        return 0.0
    return float(np.mean([(a != b).double().mean().item() for a, b in pairs]))


def _bn_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _BATCHNORM)]


# ----------------------------------------------------------------------------------------------------------------
# Dropout


def dropout_left_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int = 5, seed: int = 0) -> dict:
    """Accuracy in evaluation mode vs with only the Dropout layers in training mode (everything else eval).

    Returns ``eval_acc``, ``on_accs`` (one per pass), ``on_acc_mean``, ``drop`` (= eval_acc - on_acc_mean),
    ``disagreement`` (mean over pairs of passes of the fraction of samples predicted differently) and
    ``eval_disagreement`` (the same for two evaluation-mode passes: 0, evaluation is deterministic).
    """
    if not any(isinstance(m, _DROPOUT) for m in model.modules()):
        raise ValueError("the model has no dropout layer; dropout_left_on needs a model trained with dropout")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    device = _device(model)
    probe = copy.deepcopy(model).eval()
    x, y = x.to(device), y.cpu()
    probe, x = _after_first_dropout(probe, x)

    eval_preds = [_predict(probe, x) for _ in range(2)]
    eval_acc = (eval_preds[0] == y).double().mean().item()

    for m in probe.modules():
        if isinstance(m, _DROPOUT):
            m.train()
    with _seeded(seed, device):
        on_preds = [_predict(probe, x) for _ in range(passes)]
    on_accs = [(p == y).double().mean().item() for p in on_preds]
    on_acc_mean = float(np.mean(on_accs))
    return {
        "n": len(y),
        "passes": passes,
        "eval_acc": eval_acc,
        "on_accs": on_accs,
        "on_acc_mean": on_acc_mean,
        "drop": eval_acc - on_acc_mean,
        "disagreement": _disagreement(on_preds),
        "eval_disagreement": _disagreement(eval_preds),
    }


def _after_first_dropout(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """A flat nn.Sequential (sandbag's own models) split at its first dropout layer: the layers after it and their
    input, computed once in evaluation mode, in the batches `_predict` uses. The passes then rerun only the
    layers from the dropout on: the same predictions and masks (nothing before it draws random numbers in
    evaluation mode) for ~1/7 of the cost of 7 full passes. Any other model: itself and `x`."""
    first = next((i for i, m in enumerate(model) if isinstance(m, _DROPOUT)), None) if isinstance(
        model, nn.Sequential) else None
    if not first:
        return model, x
    with torch.no_grad():
        h = torch.cat([model[:first](x[i : i + _EVAL_BATCH]) for i in range(0, len(x), _EVAL_BATCH)])
    return model[first:], h


def dropout_masks(model: nn.Module, steps: int = 12, seed: int = 0) -> np.ndarray:
    """The keep-masks (steps, units) that the hidden dense Dropout layer (the model's last nn.Dropout) draws for
    one sample over `steps` training steps; True = unit kept. `units` is the width the layer sees: the
    in_features of the dense layer after it. Layers are searched in registration order at any depth, so nested
    modules (a factory's own model) work as a flat sequence does."""
    layers = list(model.modules())
    index = max((i for i, m in enumerate(layers) if type(m) is nn.Dropout), default=None)
    if index is None:
        raise ValueError("the model has no (dense) nn.Dropout layer; dropout_masks needs dropout=RATE")
    layer = layers[index]
    units = next((m.in_features for m in layers[index + 1 :] if isinstance(m, nn.Linear)), None)
    if units is None:  # dropout last: fall back on the width of the dense layer before it
        units = next((m.out_features for m in reversed(layers[:index]) if isinstance(m, nn.Linear)), None)
    if units is None:
        raise ValueError("cannot tell how many units the last Dropout layer sees (no dense layer next to it)")
    probe = copy.deepcopy(layer).cpu().train()
    with _seeded(seed, torch.device("cpu")), torch.no_grad():
        out = probe(torch.ones(steps, units))
    return (out != 0).numpy()


# ----------------------------------------------------------------------------------------------------------------
# Batch normalization


def _feature_stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (dim 1) mean and biased std over all other dims, in float64."""
    t = t.double().transpose(0, 1).reshape(t.shape[1], -1)
    return t.mean(1), t.std(1, correction=0)


def bn_normalization(model: nn.Module, x: torch.Tensor, batch_size: int = 256, seed: int = 0) -> dict:
    """What each BN layer does to a training batch: its input's per-feature statistics and those of the
    normalized value z = (output - beta) / gamma (BN before its scale and shift), which should be mean 0, std 1.

    Runs a deep copy in training mode (BN on batch statistics) on `batch_size` samples of x drawn with `seed`.
    Returns per-layer ``layers`` rows, the overall ``z_mean_absmax`` and ``z_std_absdev_max`` (max |std - 1|),
    ``z_std_eps_absdev_max`` (max |std - sqrt(var / (var + eps))|: BN divides by sqrt(var + eps), so a feature
    whose input variance is small next to eps comes out with std a little below 1, about 1 - eps / (2 var); this
    field measures the normalization exactly), and an ``example``: up to 2000 values of one feature (first BN
    layer, the feature with the largest |input mean|) before BN and after normalization, for a histogram.
    """
    probe = copy.deepcopy(model)
    layers = _bn_layers(probe)
    if not layers:
        raise ValueError("the model has no batch-norm layer; bn_normalization needs a model trained with bn")
    device = _device(probe)
    n = min(batch_size, len(x))
    if n < 2:
        raise ValueError(f"batch norm needs a batch of at least 2 samples, got {n}")
    gen = torch.Generator().manual_seed(seed)
    batch = x[torch.randperm(len(x), generator=gen)[:n]].to(device)

    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name):
        def fn(module, inputs, output):
            captured[name] = (inputs[0].detach(), output.detach())

        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in layers]
    try:
        probe.train()
        with _seeded(seed, device), torch.no_grad():
            probe(batch)
    finally:
        for h in handles:
            h.remove()

    rows, example = [], None
    for name, m in layers:
        inp, out = captured[name]
        z = out.double()
        if m.affine:
            shape = [1, -1] + [1] * (out.dim() - 2)
            z = (z - m.bias.detach().double().view(shape)) / m.weight.detach().double().view(shape)
        in_mean, in_std = _feature_stats(inp)
        z_mean, z_std = _feature_stats(z)
        exact_std = in_std / torch.sqrt(in_std.square() + m.eps)  # what BN gives: x_hat = (x - mu) / sqrt(var + eps)
        rows.append({
            "name": name,
            "features": int(inp.shape[1]),
            "eps": float(m.eps),
            "in_mean_absmax": in_mean.abs().max().item(),
            "in_std_range": [in_std.min().item(), in_std.max().item()],
            "z_mean_absmax": z_mean.abs().max().item(),
            "z_std_absdev_max": (z_std - 1).abs().max().item(),
            "z_std_eps_absdev_max": (z_std - exact_std).abs().max().item(),
        })
        if example is None:
            feature = int(in_mean.abs().argmax())
            before = inp.double().transpose(0, 1)[feature].flatten().cpu()
            after = z.transpose(0, 1)[feature].flatten().cpu()
            if len(before) > _EXAMPLE_VALUES:
                keep = torch.randperm(len(before), generator=gen)[:_EXAMPLE_VALUES]
                before, after = before[keep], after[keep]
            example = {"layer": name, "feature": feature, "before": before.tolist(), "after": after.tolist()}
    return {
        "batch_size": n,
        "layers": rows,
        "z_mean_absmax": max(r["z_mean_absmax"] for r in rows),
        "z_std_absdev_max": max(r["z_std_absdev_max"] for r in rows),
        "z_std_eps_absdev_max": max(r["z_std_eps_absdev_max"] for r in rows),
        "example": example,
    }


class GroupBatchNorm(nn.Module):
    """A BN layer in training mode applied to consecutive groups of `group` samples independently, as if each group
    were its own training batch: per-group batch statistics (biased variance, as BN normalizes with), BN's eps and
    affine scale/shift. The running statistics are neither used nor updated (as with BN momentum 0)."""

    def __init__(self, bn: nn.Module, group: int):
        super().__init__()
        self.bn, self.group = bn, group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.reshape(x.shape[0] // self.group, self.group, *x.shape[1:])
        dims = [1, *range(3, g.dim())]  # batch and spatial dims of each group
        var, mean = torch.var_mean(g, dims, keepdim=True, correction=0)
        z = ((g - mean) / torch.sqrt(var + self.bn.eps)).reshape(x.shape)
        if self.bn.affine:
            shape = [1, -1] + [1] * (x.dim() - 2)
            z = z * self.bn.weight.view(shape) + self.bn.bias.view(shape)
        return z


def with_group_bn(model: nn.Module, group: int) -> nn.Module:
    """A deep copy of `model` in evaluation mode whose BN layers act in training mode on groups of `group`."""
    probe = copy.deepcopy(model).eval()
    for parent in list(probe.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BATCHNORM):
                setattr(parent, name, GroupBatchNorm(child, group))
    return probe


def bn_companion_noise(
    model: nn.Module, x: torch.Tensor, n_samples: int = 64, n_batches: int = 8, batch_size: int = 32, seed: int = 0,
    check_eval: bool = True,
) -> dict:
    """How much a sample's output depends on the other samples in its training batch (BN's batch statistics).

    Each of `n_samples` targets is run in `n_batches` random batches with `batch_size - 1` companions, BN layers
    in training mode (batch statistics; the running statistics are neither used nor changed, as with momentum 0),
    every other layer (dropout, noise) in evaluation mode, so only the batch statistics vary. Returns
    ``prob_std_mean`` (std across batches of the target's softmax probabilities, mean over classes and targets),
    ``flip_rate`` (fraction of targets whose predicted class is not the same in every batch) and
    ``eval_prob_std_mean`` / ``eval_flip_rate`` (the same batches with the model fully in evaluation mode: exactly
    0; `check_eval=False` skips that second pass, a third of the cost, and leaves them None). A model without BN
    gives all zeros.

    Many batches go through the model in one call (each BN normalizing every batch on its own statistics); a
    target always sits at the same row of a call of the same shape, so equal outputs are bit-for-bit equal.
    """
    if batch_size < 2 or n_batches < 1 or n_samples < 1:
        raise ValueError(
            f"need batch_size >= 2, n_batches >= 1, n_samples >= 1; got {batch_size}, {n_batches}, {n_samples}"
        )
    if len(x) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} samples, got {len(x)}")
    device = _device(model)
    rng = np.random.default_rng(seed)
    targets = rng.choice(len(x), size=min(n_samples, len(x)), replace=False)
    index = np.empty((len(targets), n_batches, batch_size), dtype=np.int64)
    for i, t in enumerate(targets):
        for k in range(n_batches):
            others = rng.choice(len(x) - 1, size=batch_size - 1, replace=False)
            index[i, k] = np.concatenate([[t], others + (others >= t)])  # companions skip the target itself

    x = x.to(device)
    has_bn = bool(_bn_layers(model))
    train_bn = _companion_probs(with_group_bn(model, batch_size), x, index)
    prob_std, flip_rate = _spread(train_bn)
    eval_std = eval_flip = None
    if check_eval:
        eval_std, eval_flip = _spread(_companion_probs(copy.deepcopy(model).eval(), x, index))
    return {
        "n_samples": len(targets),
        "n_batches": n_batches,
        "batch_size": batch_size,
        "has_bn": has_bn,
        "prob_std_mean": prob_std,
        "flip_rate": flip_rate,
        "eval_prob_std_mean": eval_std,
        "eval_flip_rate": eval_flip,
    }


_COMPANION_ROWS = 1024  # samples per forward call


@torch.no_grad()
def _companion_probs(probe: nn.Module, x: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """Softmax probabilities (float64) of each target (row 0 of its batches): (targets, batches, classes).

    One call per (chunk of targets, batch number): the same shapes every time, a target always at the same row."""
    n_targets, n_batches, batch_size = index.shape
    chunk = max(1, _COMPANION_ROWS // batch_size)
    out = torch.empty(0)
    for start in range(0, n_targets, chunk):
        rows = []
        for k in range(n_batches):
            idx = torch.as_tensor(index[start : start + chunk, k].reshape(-1), device=x.device)
            logits = probe(x[idx])[::batch_size]
            rows.append(logits.double().softmax(1).cpu())
        part = torch.stack(rows, 1)
        out = part if start == 0 else torch.cat([out, part])
    return out


def _spread(probs: torch.Tensor) -> tuple[float, float]:
    """Mean std across batches of the probabilities, and the fraction of targets whose argmax changes.

    In float64 the mean of identical values is exact, so identical outputs give a std of exactly 0."""
    std = probs.std(1, correction=0).mean(1)
    preds = probs.argmax(2)
    flips = (preds != preds[:, :1]).any(1).double()
    return std.mean().item(), flips.mean().item()


# ----------------------------------------------------------------------------------------------------------------
# Weights


def weight_values(model: nn.Module) -> np.ndarray:
    """All weights a penalty acts on (`regularizers.penalized_parameters`), flattened, as float64."""
    params = [p.detach().cpu().double().flatten() for _, p in penalized_parameters(model)]
    if not params:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(params).numpy()
