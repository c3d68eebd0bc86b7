"""A study on your own model (a factory, `sandbag.models.is_factory`), checked before its first run.

Runs build the model in their workers, so a factory that cannot place one arm's techniques would otherwise fail
only when that arm's runs start, after others have written their folders. `check_model` builds the factory's
model once per distinct arm on the CPU (specs at the textbook strengths, the sweep's at its grid values) for each
data set's input shape, and once with no technique: a model that regularizes on its own (the PyTorch MNIST
example's two dropout layers) gives the study no unregularized none arm, so the study refuses it unless its file
says ``model_own_regularization = "allow"``.
"""

from __future__ import annotations

from functools import cache

import torch

from ..errors import ConfigError, ModelError, SandbagError
from ..models import build_model, is_factory, own_regularization, own_regularization_note, resolve_factory
from ..regularizers import parse_specs

OWN_REGULARIZATION = ("refuse", "allow")  # what a study does when the factory's model regularizes on its own


def check_model(cfg) -> list[str]:
    """The regularizing layers a factory's model brings on its own (empty: none, or a built-in model), after
    checking that the factory imports, that the study allows those layers (else `ConfigError` naming them) and
    that every arm's techniques are placed (else `ModelError` naming the first arm that fails)."""
    if cfg.model_own_regularization not in OWN_REGULARIZATION:
        raise ConfigError(f"model_own_regularization must be one of {', '.join(OWN_REGULARIZATION)}, got "
                          f"{cfg.model_own_regularization!r}")
    if not is_factory(cfg.model):
        return []  # sandbag's own architectures hold exactly the layers the arm's techniques put in
    resolve_factory(cfg.model)  # a bad path: its own one-line error, before any data is loaded
    shapes = list(dict.fromkeys(input_of(data) for data in cfg.data))
    own = own_regularization(cfg.model, *shapes[0])
    if own and cfg.model_own_regularization == "refuse":
        raise ConfigError(f"{own_regularization_note(cfg.model, own)}; build the model from the techniques "
                          "argument alone, or set model_own_regularization = \"allow\" in the study file to study "
                          "it as it is")
    for shape in shapes:
        _check_arms(cfg, *shape)
    return own


def _check_arms(cfg, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Each distinct spec list of the study's arms built once; the arms the study file names come before the
    sweep's, so a technique the factory never places is reported under the arm the user wrote."""
    arms = sorted(cfg.design.arms, key=lambda arm: arm["group"] == "sweep")
    built: set[tuple[str, ...]] = set()
    with torch.random.fork_rng(devices=[]):
        for arm in arms:
            regs = tuple(spec.format(**cfg.textbook) for spec in arm["specs"])
            if regs in built:
                continue
            built.add(regs)
            try:
                build_model(cfg.model, input_shape, num_classes, parse_specs(regs))
            except SandbagError as exc:
                specs = ", ".join(regs) or "no technique"
                raise ModelError(f"arm {arm['arm']!r} ({specs}) cannot run on model {cfg.model}: {exc}") from None


@cache
def input_of(data: str) -> tuple[tuple[int, ...], int]:
    """A data set's input shape and class count (loaded once per process: a config may be made several times)."""
    from ..data import load

    ds = load(data)
    return tuple(ds.input_shape), ds.num_classes
