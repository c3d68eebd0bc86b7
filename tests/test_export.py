import pytest
import torch
from torch import nn

from sandbag.cli import main
from sandbag.errors import CheckpointError
from sandbag.export import FOLDED_FORMAT, fold_batchnorm, load_folded
from sandbag.models import build_model
from sandbag.regularizers import parse_specs
from sandbag.train import RunConfig, fit, load_checkpoint

TINY = dict(data="mnist-5k", train_size=200, epochs=1, batch_size=32)


def _bn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.fixture(scope="module", params=[["bn"], ["bn:post", "dropout=0.2"]], ids=["bn", "bn-post"])
def trained_run(request, tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    fit(RunConfig(**TINY, regs=request.param), run)
    return run


def test_export_folds_every_bn_and_matches_the_unfolded_model(trained_run, capsys):
    assert main(["export", str(trained_run)]) == 0
    out = trained_run / "model-folded.pt"
    assert str(out) in capsys.readouterr().out
    ckpt = torch.load(out, weights_only=True)  # plain data and tensors only
    assert ckpt["format"] == FOLDED_FORMAT and not ckpt["folding"]["kept"]
    folded, _ = load_folded(out)
    _, model, _ = load_checkpoint(trained_run)
    assert len(_bn_layers(model)) == 4 and not _bn_layers(folded)
    assert not any(isinstance(m, nn.Dropout) for m in folded.modules())
    model.eval()
    x = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(123))  # fresh inputs, not the data
    with torch.inference_mode():
        expected, got = model(x), folded(x)
        got_cl = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_cl, expected, atol=1e-5, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_to_a_chosen_file(trained_run, tmp_path):
    target = tmp_path / "sub" / "folded.pt"
    assert main(["export", str(trained_run), "--out", str(target)]) == 0
    model, ckpt = load_folded(target)
    assert ckpt["input_shape"] == [1, 28, 28] and ckpt["num_classes"] == 10
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_post_activation_bn_before_max_pool_with_a_negative_scale_is_kept_and_still_exact():
    torch.manual_seed(0)
    model = build_model("ref-cnn", specs=parse_specs(["bn:post"]))
    for bn in _bn_layers(model):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(-1, 1)  # some negative scales
        bn.bias.data.uniform_(-1, 1)
    folded, report = fold_batchnorm(model.eval())
    assert list(report["kept"]) == ["batch_normalization"]  # the one before max_pooling2d
    assert "max_pooling2d" in report["kept"]["batch_normalization"]
    assert set(report["folded"]) == {"batch_normalization_1", "batch_normalization_2", "batch_normalization_3"}
    assert all(d["direction"] == "forward" for d in report["folded"].values())
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=0)
    assert len(_bn_layers(folded)) == 1


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    torch.save({"format": "something else"}, bogus)
    with pytest.raises(CheckpointError):
        load_folded(bogus)
    assert main(["export", str(tmp_path)]) == 2
    assert "sandbag: error:" in capsys.readouterr().err
