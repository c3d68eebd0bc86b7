"""A small residual network as a sandbag model factory: ``sandbag train --model examples.tiny_resnet:build``.

Run from the repository root (sandbag puts the current directory first on sys.path, so ``examples`` imports).

A model factory is a function ``(input_shape, num_classes, techniques) -> nn.Module``. sandbag applies the penalties
(``l2``, ``l1`` and their options) to any module and puts input noise (``noise=SIGMA``) in front of it; what sits
inside the network is the factory's to place, because only it knows where its hidden units are. Here:

- ``bn``: batch norm after each conv/dense layer but the classifier, before its ReLU (``bn:post``: after it);
- ``dropout=P``: dropout after the hidden dense layer (``dropout=P:spatial``: channel dropout after each stage);
- ``noise=SIGMA:hidden``: Gaussian noise after each ReLU.

sandbag checks after building that each layer asked for is there, with its strength, and stops with one line if
not. The network: a stride-2 3x3 conv (the stem halves the image, as ResNet's does, which makes everything after it
4x cheaper), then two stages of a residual block ``x + f(x)`` (``f``: two 3x3 conv units), the second entered by a
stride-2 conv; average pooling to 4x4, a hidden dense layer of 64 and the classifier. It takes any (C, H, W)
input: 61,418 parameters whatever the image size (without bn).
"""

from __future__ import annotations

from torch import nn

from sandbag.regularizers import GaussianNoise, Spec, find

WIDTHS = (16, 32)  # channels of the two stages
POOL = 4  # the last stage is average-pooled to POOL x POOL whatever the input size
HIDDEN = 64


class Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f = f

    def forward(self, x):
        return x + self.f(x)


class Placement:
    """Where this factory puts the techniques' layers, read once from the run's specs."""

    def __init__(self, techniques: list[Spec]):
        self.bn = find(techniques, "bn")
        self.dropout = find(techniques, "dropout")
        self.noise = find(techniques, "noise", "hidden")  # input noise is sandbag's: not placed here

    def unit(self, layer: nn.Conv2d | nn.Linear) -> nn.Sequential:
        """A conv or dense layer, its ReLU, and around the ReLU what the techniques ask for."""
        conv = isinstance(layer, nn.Conv2d)
        width = layer.out_channels if conv else layer.out_features
        bn = [nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)] if self.bn else []
        post = self.bn is not None and self.bn.has("post")
        layers = [layer, *([] if post else bn), nn.ReLU(), *(bn if post else [])]
        if self.noise:
            layers.append(GaussianNoise(self.noise.value))
        return nn.Sequential(*layers)

    def conv(self, c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
        return self.unit(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1))

    def dropout_layers(self, spatial: bool) -> list[nn.Module]:
        """Channel dropout after a stage (`spatial`) or dropout after the hidden dense layer, as asked."""
        if self.dropout is None or self.dropout.has("spatial") != spatial:
            return []
        return [(nn.Dropout2d if spatial else nn.Dropout)(self.dropout.value)]


def build(input_shape: tuple[int, int, int], num_classes: int, techniques: list[Spec]) -> nn.Module:
    """The factory: a tiny ResNet for inputs of `input_shape` (C, H, W) with `num_classes` outputs.

    `techniques` is the run's list of `sandbag.regularizers.Spec` (``spec.name``, ``spec.value``,
    ``spec.has("post")``); `sandbag.regularizers.find(techniques, "dropout")` picks one out, or None."""
    place = Placement(techniques)
    layers: list[nn.Module] = [place.conv(input_shape[0], WIDTHS[0], stride=2)]
    for i, width in enumerate(WIDTHS):
        if i:
            layers.append(place.conv(WIDTHS[i - 1], width, stride=2))
        layers += [Residual(nn.Sequential(place.conv(width, width), place.conv(width, width))),
                   *place.dropout_layers(spatial=True)]
    layers += [nn.AdaptiveAvgPool2d(POOL), nn.Flatten(), place.unit(nn.Linear(WIDTHS[-1] * POOL * POOL, HIDDEN)),
               *place.dropout_layers(spatial=False), nn.Linear(HIDDEN, num_classes)]
    return nn.Sequential(*layers)
