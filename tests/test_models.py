from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sandbag.errors import ModelError
from sandbag.models import build_model, count_params, keras_summary, output_shapes
from sandbag.regularizers import parse_specs

REF_SHAPES = {
    "conv2d": (32, 26, 26),
    "max_pooling2d": (32, 13, 13),
    "conv2d_1": (64, 11, 11),
    "average_pooling2d": (64, 5, 5),
    "conv2d_2": (128, 3, 3),
    "flatten": (1152,),
    "dense": (128,),
    "dense_1": (10,),
}


def test_reference_cnn_has_exactly_241546_params_and_the_keras_shapes():
    model = build_model("ref-cnn", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 241_546
    assert count_params(model) == {"total": 241_546, "trainable": 241_546, "non_trainable": 0}
    shapes = output_shapes(model, (1, 28, 28))
    assert {k: v for k, v in shapes.items() if k in REF_SHAPES} == REF_SHAPES
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)


def test_keras_summary_table():
    text = keras_summary(build_model("ref-cnn"), (1, 28, 28))
    for row in ["conv2d (Conv2D)", "(None, 26, 26, 32)", "320", "average_pooling2d (AveragePooling2D)",
                "(None, 1152)", "147,584", "1,290", "Total params: 241,546", "Trainable params: 241,546",
                "Non-trainable params: 0"]:
        assert row in text, row
    assert "Activation" not in text  # ReLUs fold into their conv/dense layer, as activation='relu' does


def test_batchnorm_statistics_count_as_non_trainable_like_keras():
    model = build_model("ref-cnn", specs=parse_specs(["bn"]))
    bn_channels = 32 + 64 + 128 + 128
    assert count_params(model) == {
        "total": 241_546 + 4 * bn_channels,
        "trainable": 241_546 + 2 * bn_channels,
        "non_trainable": 2 * bn_channels,
    }
    assert f"Non-trainable params: {2 * bn_channels:,}" in keras_summary(model, (1, 28, 28))


def _kinds(model):
    return [type(m).__name__ for m in model.children()]


def test_bn_goes_before_the_activation_by_default_and_after_with_post():
    pre = _kinds(build_model("ref-cnn", specs=parse_specs(["bn"])))
    assert pre[:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    post = _kinds(build_model("ref-cnn", specs=parse_specs(["bn:post"])))
    assert post[:3] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert pre.count("BatchNorm2d") == 3 and pre.count("BatchNorm1d") == 1  # not after the output layer
    assert pre[-1] == "Linear"


def test_placement_of_dropout_and_noise():
    kinds = _kinds(build_model("ref-cnn", specs=parse_specs(["dropout=0.4", "noise=0.3"])))
    assert kinds[0] == "GaussianNoise"
    assert kinds[-3:] == ["ReLU", "Dropout", "Linear"]
    spatial = _kinds(build_model("ref-cnn", specs=parse_specs(["dropout=0.2:spatial"])))
    assert spatial.count("Dropout2d") == 3 and "Dropout" not in spatial
    hidden = _kinds(build_model("ref-cnn", specs=parse_specs(["noise=0.1:hidden"])))
    assert hidden.count("GaussianNoise") == 4 and hidden[0] == "Conv2d"


def test_mlp_and_other_input_shapes():
    mlp = build_model("mlp", (1, 28, 28))
    assert sum(p.numel() for p in mlp.parameters()) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    cifar = build_model("ref-cnn", (3, 32, 32), 10)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(cifar.conv2d, nn.Conv2d) and cifar.conv2d.in_channels == 3


def test_too_small_input_and_unknown_model_are_clear_errors():
    with pytest.raises(ModelError, match="too small for ref-cnn"):
        build_model("ref-cnn", (1, 8, 8))
    assert build_model("ref-cnn", (1, 18, 18))(torch.randn(1, 1, 18, 18)).shape == (1, 10)
    with pytest.raises(ModelError, match="unknown model"):
        build_model("resnet")


@pytest.mark.parametrize("specs", [[], ["bn"]])
def test_pooling_before_relu_gives_the_textbook_outputs_and_gradients(specs, fresh_seed):
    """Sequential runs ReLU -> MaxPool2d as MaxPool2d -> ReLU: outputs and every gradient must equal nn.Sequential's."""
    torch.manual_seed(fresh_seed)
    model = build_model("ref-cnn", (1, 28, 28), 10, parse_specs(specs)).double()
    textbook = nn.Sequential(OrderedDict(model.named_children()))  # same modules, plain order
    x = torch.randn(16, 1, 28, 28, dtype=torch.double)
    x[:4] = -x[:4].abs()  # whole windows of negatives: no gradient may pass in either order
    y = torch.randint(0, 10, (16,))
    results = []
    for net in (model, textbook):
        net.zero_grad()
        out = net(x)
        F.cross_entropy(out, y).backward()
        results.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.equal(out_a, out_b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(ga, gb, rtol=0, atol=1e-12)


def test_a_hook_on_the_relu_sees_the_unpooled_activation():
    model = build_model("ref-cnn", (1, 28, 28), 10)
    seen = []
    model.conv2d.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    relu = next(m for m in model if isinstance(m, nn.ReLU))
    relu.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(2, 1, 28, 28))
    assert seen == [(2, 32, 26, 26), (2, 32, 26, 26)]
