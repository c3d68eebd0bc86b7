"""Your own model: a factory named ``package.module:function`` for train, summary, evaluate and a study.

The example factory (examples/tiny_resnet.py) is imported from the repository root, as a user runs it; the broken
factories live in a module written beside the test's working directory, as a user's own module would.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sandbag.cli import main
from sandbag.errors import ModelError
from sandbag.models import build_model, output_shapes, resolve_factory
from sandbag.regularizers import Regularizer, parse_specs, penalty
from sandbag.runs import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples.tiny_resnet:build"
BN = (nn.BatchNorm1d, nn.BatchNorm2d)
TINY_TRAIN = ["--data", "digits", "--train-size", "100", "--epochs", "1", "--batch-size", "25", "--device", "cpu",
              "--quiet"]

FACTORIES = '''
import math
from torch import nn

def plain(input_shape, num_classes, techniques):
    """Places nothing: fine for penalties and input noise, missing for dropout, bn and hidden noise."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

def alpha(input_shape, num_classes, techniques):
    """Dropout as nn.AlphaDropout: it counts as dropout, but the dropout-mask probe reads nn.Dropout only."""
    p = next(s.value for s in techniques if s.name == "dropout")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.SELU(), nn.AlphaDropout(p),
                         nn.Linear(32, num_classes))

def raises(input_shape, num_classes, techniques):
    raise RuntimeError("this factory needs a GPU\\nsecond line of the message")

def not_a_module(input_shape, num_classes, techniques):
    return "a string"

def wrong_logits(input_shape, num_classes, techniques):
    return nn.Flatten()

NOT_CALLABLE = 3
'''


@pytest.fixture
def in_repo(monkeypatch):
    """Work from the repository root, where `examples` imports; sys.path restored afterwards."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """A user's module `my_factories.py` in the working directory (not on sys.path until sandbag puts it there)."""
    (tmp_path / "my_factories.py").write_text(FACTORIES)
    (tmp_path / "broken_factories.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("my_factories", "broken_factories"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def _one_error_line(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("sandbag: error:"), err
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------------------------------
# Resolving the path


def test_the_factory_is_found_from_the_working_directory(own_module):
    assert str(own_module) not in sys.path
    assert resolve_factory("my_factories:plain").__name__ == "plain"
    assert sys.path[0] == str(own_module)  # uvicorn's way: the current directory first


@pytest.mark.parametrize("model,fragments", [
    ("resnet", ("unknown model 'resnet'", "package.module:function")),
    ("my_factories:", ("name a model factory as package.module:function",)),
    ("no_such_module:build", ("cannot import 'no_such_module'", "No module named 'no_such_module'")),
    ("broken_factories:build", ("cannot import 'broken_factories'", "a_package_that_is_not_installed")),
    ("my_factories:nope", ("my_factories has no attribute 'nope'",)),
    ("my_factories:NOT_CALLABLE", ("is not callable (int)",)),
    ("my_factories:raises", ("model factory my_factories:raises failed: RuntimeError: this factory needs a GPU",)),
    ("my_factories:not_a_module", ("returned a str, not a torch.nn.Module",)),
    ("my_factories:wrong_logits", ("must return logits of shape (batch, 10)",)),
])
def test_a_bad_factory_is_one_line_and_exit_2(own_module, capsys, model, fragments):
    for command in (["summary", "--data", "digits"], ["train", *TINY_TRAIN, "--out", str(own_module / "run")]):
        line = _one_error_line(capsys, main([*command, "--model", model]), *fragments)
        assert "second line" not in line
    assert not (own_module / "run").exists()


@pytest.mark.parametrize("reg,fragment", [
    ("dropout=0.4", "dropout=0.4 asks for a dropout layer with p=0.4"),
    ("dropout=0.4:spatial", "asks for a channel dropout layer with p=0.4"),
    ("bn", "bn asks for a batch-norm layer"),
    ("bn:post", "bn:post asks for a batch-norm layer"),
    ("noise=0.2:hidden", "noise=0.2:hidden asks for a sandbag.regularizers.GaussianNoise(0.2) layer"),
])
def test_a_layer_the_factory_did_not_place_is_one_line_and_exit_2(own_module, capsys, reg, fragment):
    code = main(["summary", "--data", "digits", "--model", "my_factories:plain", "--reg", reg])
    _one_error_line(capsys, code, fragment, "model my_factories:plain has none")


def test_what_sandbag_places_itself_needs_nothing_from_the_factory(own_module):
    """Penalties and input noise work on any module; a strength of 0 needs no layer; any dropout kind counts."""
    specs = parse_specs(["l2=1e-3:decoupled", "l1=1e-4:prox", "noise=0.3", "dropout=0:spatial"])
    model = build_model("my_factories:plain", (1, 8, 8), 3, specs)
    assert type(model.gaussian_noise).__name__ == "GaussianNoise" and model.gaussian_noise.sigma == 0.3
    assert [name for name, _ in model.named_children()] == ["gaussian_noise", "model"]
    assert type(build_model("my_factories:plain", (1, 8, 8), 3)).__name__ == "Sequential"  # no noise: as built
    assert build_model("my_factories:alpha", (1, 8, 8), 3, parse_specs(["dropout=0.25"]))


def test_a_factory_model_that_lacks_a_probes_structure_skips_that_probe(own_module):
    from sandbag.study.probes import probe_run
    from sandbag.train import RunConfig, fit

    run = own_module / "alpha-run"
    fit(RunConfig(data="digits", model="my_factories:alpha", regs=["dropout=0.3"], train_size=100, epochs=1,
                  batch_size=25, device="cpu"), run)
    probes = probe_run(run)
    assert "nn.Dropout" in probes["skipped"]["dropout"] and "dropout_eval_acc" not in probes
    assert probes["weights"]["n"] > 0


# ----------------------------------------------------------------------------------------------------------------
# The example factory through the command line


def test_train_records_the_factory_and_evaluate_reloads_it(in_repo, tmp_path, capsys):
    run = tmp_path / "run"
    regs = ["--reg", "bn", "--reg", "dropout=0.3", "--reg", "noise=0.2", "--reg", "l2=1e-3"]
    assert main(["train", *TINY_TRAIN, "--model", EXAMPLE, *regs, "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["model"] == EXAMPLE
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["penalty"] > 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == pytest.approx(summary["test_acc"]) and result["gap"] == pytest.approx(summary["gap"])
    cfg, model, _ = load_checkpoint(run)
    assert cfg.model == EXAMPLE and "model.0.0.weight" in model.state_dict()  # the input noise in front
    _one_error_line(capsys, main(["export", str(run)]), "a model factory's model", "ref-cnn and mlp only")


def test_summary_and_output_shapes_read_a_factory_model(in_repo, capsys):
    assert main(["summary", "--data", "digits", "--model", EXAMPLE, "--reg", "bn", "--reg", "dropout=0.2"]) == 0
    out = capsys.readouterr().out
    assert 'Model: "examples.tiny_resnet:build"' in out and "(Residual)" in out and "(None, 10)" in out
    model = build_model(EXAMPLE, (3, 20, 20), 4)
    shapes = output_shapes(model, (3, 20, 20))
    assert shapes["0"] == (16, 10, 10) and list(shapes.values())[-1] == (4,)


def test_several_seeds_at_once_train_a_factory_model(in_repo, tmp_path):
    from sandbag.multiseed import fit_seeds
    from sandbag.train import RunConfig

    cfg = RunConfig(data="digits", model=EXAMPLE, regs=["dropout=0.2", "noise=0.1", "l1=1e-4:prox"], train_size=60,
                    epochs=1, batch_size=20, device="cpu")
    summaries = fit_seeds(cfg, [3, 4], tmp_path / "seeds")
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    assert load_checkpoint(tmp_path / "seeds" / "seed-4")[0].model == EXAMPLE


def test_a_study_on_the_example_factory_finishes(in_repo, tmp_path):
    """examples/custom.toml, smaller still: 23 one-epoch runs in spawned workers, probed, timed, and the report."""
    from sandbag.study import StudyConfig, load_config, run_study
    from sandbag.study.report import build_report

    cfg = load_config(ROOT / "examples" / "custom.toml")
    assert cfg.model == EXAMPLE
    small = {"data": ["digits"], "train_size": 100, "epochs": 1, "sweep_epochs": 1, "batch_sizes": [32],
             "timing_repeats": 1}
    cfg = StudyConfig.from_dict({**cfg.to_dict(), **small})
    out = tmp_path / "study"
    rows = run_study(cfg, out, workers=2, threads=1)
    assert len(rows) == 23 and all(r["status"] == "finished" for r in rows)
    folders = list((out / "runs" / "digits").iterdir())
    assert all(json.loads((f / "config.json").read_text())["model"] == EXAMPLE for f in folders)
    probes = {f.name: json.loads((f / "probes.json").read_text()) for f in folders}
    assert all("skipped" not in p for p in probes.values())
    assert any("dropout_masks" in p for name, p in probes.items() if name.startswith("headline-dropout"))
    assert any("bn_example" in p for name, p in probes.items() if name.startswith("extra-bn-post"))
    meta = json.loads((out / "study.json").read_text())
    assert meta["config"]["model"] == EXAMPLE and meta["timing_seconds"] > 0
    build_report(out)  # reads the run folders only
    assert (out / "report.html").exists()


def test_the_study_config_checks_the_factory_before_any_run(in_repo):
    from sandbag.study import StudyConfig

    assert StudyConfig(model=EXAMPLE).model == EXAMPLE
    with pytest.raises(ModelError, match="has no attribute 'nope'"):
        StudyConfig(model="examples.tiny_resnet:nope")
    with pytest.raises(ModelError, match="unknown model 'resnet'"):
        StudyConfig(model="resnet")


# ----------------------------------------------------------------------------------------------------------------
# Penalties on a factory's model: numerical oracles


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and dense weights, the oracle's own way (not penalized_parameters)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_penalties_act_on_the_factory_models_weights(in_repo, fresh_seed):
    torch.manual_seed(fresh_seed)
    gen = torch.Generator().manual_seed(fresh_seed)
    lam, alpha, lr = (10 ** (-4 * torch.rand(3, generator=gen) - 1)).tolist()
    model = build_model(EXAMPLE, (1, 12, 12), 5, parse_specs(["bn", "noise=0.1"]))
    weights = _weights(model)
    assert len(weights) == 8
    l2 = penalty(model, parse_specs([f"l2={lam}"]))
    assert l2.item() == pytest.approx(0.5 * lam * sum(w.detach().double().square().sum().item() for w in weights),
                                      rel=1e-5)
    l1 = penalty(model, parse_specs([f"l1={alpha}"]))
    assert l1.item() == pytest.approx(alpha * sum(w.detach().double().abs().sum().item() for w in weights), rel=1e-5)

    # decoupled L2 shrinks each weight by (1 - lr * lam) before the step; BN scale and shift stay as they were
    before = [w.detach().clone() for w in weights]
    bn_before = [p.detach().clone() for m in model.modules() if isinstance(m, BN) for p in m.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    Regularizer(model, parse_specs([f"l2={lam}:decoupled"])).before_step(opt)
    for w, w0 in zip(weights, before, strict=True):
        assert torch.allclose(w, w0 * (1 - lr * lam), rtol=1e-6, atol=0)
    bn_after = [p for m in model.modules() if isinstance(m, BN) for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(bn_after, bn_before, strict=True))

    # proximal L1 soft-thresholds by lr * alpha after the (SGD) step: weights below it become exactly 0
    prox = 0.05 / lr
    threshold = lr * prox  # as the technique forms it
    before = [w.detach().clone() for w in weights]
    Regularizer(model, parse_specs([f"l1={prox}:prox"])).after_step(opt)
    for w, w0 in zip(weights, before, strict=True):
        assert torch.equal(w, w0.sign() * (w0.abs() - threshold).clamp_min(0))
        assert torch.equal(w == 0, w0.abs() <= threshold)


def test_a_factory_run_binds_the_penalty_in_setup_run(in_repo, fresh_seed):
    from sandbag.train import RunConfig, setup_run

    lam = 10 ** -(1 + 3 * torch.rand(1, generator=torch.Generator().manual_seed(fresh_seed)).item())
    s = setup_run(RunConfig(data="digits", model=EXAMPLE, regs=[f"l2={lam}", "dropout=0.2"], train_size=50,
                            seed=fresh_seed, device="cpu"))
    oracle = 0.5 * lam * sum(w.detach().double().square().sum().item() for w in _weights(s.model))
    assert s.regularizer.penalty().item() == pytest.approx(oracle, rel=1e-5)


def test_the_example_places_what_each_technique_asks_for(in_repo):
    def kinds(regs):
        return {type(m).__name__ for m in build_model(EXAMPLE, (1, 28, 28), 10, parse_specs(regs)).modules()}

    assert {"Dropout", "BatchNorm2d", "BatchNorm1d", "GaussianNoise"} <= kinds(["dropout=0.4", "bn",
                                                                                  "noise=0.1:hidden"])
    assert "Dropout2d" in kinds(["dropout=0.4:spatial"]) and "Dropout" not in kinds(["dropout=0.4:spatial"])
    assert not {"Dropout", "BatchNorm2d", "GaussianNoise"} & kinds(["l2=1e-3", "l1=1e-4"])
    post = build_model(EXAMPLE, (1, 28, 28), 10, parse_specs(["bn:post"]))[0]
    assert [type(m).__name__ for m in post] == ["Conv2d", "ReLU", "BatchNorm2d"]


# ----------------------------------------------------------------------------------------------------------------
# A factory's model that regularizes on its own, and factories that cannot place an arm: found before any run

# The official PyTorch MNIST example's Net, unchanged but for its two dropout rates ({p1}, {p2}: drawn per test run)
NET = '''
import torch
import torch.nn.functional as F
from torch import nn

from sandbag.errors import ModelError
from sandbag.regularizers import GaussianNoise, find


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout({p1})
        self.dropout2 = nn.Dropout({p2})
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def build(input_shape, num_classes, techniques):
    """The example as it is: it ignores its techniques."""
    return Net()


def mixed(input_shape, num_classes, techniques):
    """Batch norm and noise of its own; LayerNorm and a dropout of rate 0, which do not count."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.LayerNorm(16), nn.ReLU(),
                         GaussianNoise({sigma}), nn.Dropout(0.0), nn.Linear(16, num_classes))


MOST_DROPOUT = {most}  # the highest dropout rate `capped` places (a ModelError of its own above it); 0: none


def capped(input_shape, num_classes, techniques):
    """Places bn, hidden noise and dropout up to MOST_DROPOUT from its techniques; nothing of its own."""
    bn, noise = find(techniques, "bn"), find(techniques, "noise", "hidden")
    dropout = find(techniques, "dropout") if MOST_DROPOUT else None
    if dropout is not None and dropout.value > MOST_DROPOUT:
        raise ModelError(f"this factory takes dropout up to {{MOST_DROPOUT}}, not {{dropout.value}}")
    layers = [nn.Flatten(), nn.Linear(784, 16), *([nn.BatchNorm1d(16)] if bn else []), nn.ReLU(),
              *([GaussianNoise(noise.value)] if noise else []), *([nn.Dropout(dropout.value)] if dropout else [])]
    return nn.Sequential(*layers, nn.Linear(16, num_classes))
'''


def _net_module(folder: Path, name: str, monkeypatch, **values) -> None:
    """NET as module `name` in `folder` (a user's working directory), imported afresh."""
    monkeypatch.delitem(sys.modules, name, raising=False)
    (folder / f"{name}.py").write_text(NET.format(**{"p1": 0.1, "p2": 0.1, "sigma": 0.1, "most": 1, **values}))


@pytest.fixture
def net_module(own_module, fresh_seed, monkeypatch):
    """mnist_net.py beside my_factories.py, its rates fresh each run; returns them (p1, p2, sigma)."""
    rng = torch.Generator().manual_seed(fresh_seed)
    from sandbag.regularizers import TECHNIQUES

    # Two-decimal rates in [0.05, 0.95], never the study's textbook dropout rate: at that rate Net's own layer would
    # fit the study's dropout arm, and the tests that name the arm Net cannot place would find another one.
    rates = [r / 100 for r in range(5, 96) if r / 100 != TECHNIQUES["dropout"].textbook]
    p1, p2, sigma = (rates[int(torch.randint(len(rates), (1,), generator=rng))] for _ in range(3))
    _net_module(own_module, "mnist_net", monkeypatch, p1=p1, p2=p2, sigma=sigma)
    return p1, p2, sigma


def _lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_the_layers_a_factorys_model_brings_on_its_own_are_named(net_module):
    from sandbag.models import own_regularization

    p1, p2, sigma = net_module
    assert own_regularization("mnist_net:build", (1, 28, 28), 10) == [f"Dropout(p={p1:g}) at dropout1",
                                                                     f"Dropout(p={p2:g}) at dropout2"]
    assert own_regularization("mnist_net:mixed", (1, 28, 28), 10) == ["BatchNorm1d(16) at 2",
                                                                     f"GaussianNoise(sigma={sigma:g}) at 5"]
    assert own_regularization("my_factories:plain", (1, 28, 28), 10) == []
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    own_regularization("mnist_net:build", (1, 28, 28), 10)  # builds a model: the global random state stays
    assert torch.equal(torch.rand(3), expected)


def test_train_on_a_model_with_its_own_dropout_warns_in_one_line(net_module, own_module, capsys):
    p1, p2, _ = net_module
    assert main(["train", *TINY_TRAIN, "--model", "mnist_net:build", "--out", str(own_module / "run")]) == 0
    assert _lines(capsys) == [f"sandbag: warning: model mnist_net:build brings regularization of its own, kept in "
                              f"every run whatever its techniques (a study's none arm too): Dropout(p={p1:g}) at "
                              f"dropout1, Dropout(p={p2:g}) at dropout2"]
    assert (own_module / "run" / "summary.json").exists()
    assert main(["train", *TINY_TRAIN, "--model", "my_factories:plain", "--out", str(own_module / "plain")]) == 0
    assert _lines(capsys) == []  # nothing of its own: nothing said


def test_dropout_on_a_model_with_dropout_at_other_rates_names_what_it_found(net_module, own_module, capsys):
    p1, p2, _ = net_module
    for reg, asks in (("dropout=0.99", "a dropout layer with p=0.99"),
                      ("dropout=0.99:spatial", "a channel dropout layer with p=0.99")):
        code = main(["train", *TINY_TRAIN, "--model", "mnist_net:build", "--reg", reg, "--out", str(own_module / "r")])
        line = _one_error_line(capsys, code, f"{reg} asks for {asks}")
        assert (f"model mnist_net:build has none that fits (it has 2 dropout layers of its own, Dropout(p={p1:g}) "
                f"at dropout1, Dropout(p={p2:g}) at dropout2, which sandbag leaves as they are)") in line, line
        assert "warning" not in line  # the error alone: the layers it names are the warning's
    assert not (own_module / "r").exists()


def _study_file(path: Path, model: str, *lines: str) -> Path:
    text = "\n".join([f'model = "{model}"', 'data = ["digits"]', "train_size = 100", "seeds = 2", "extra_seeds = 2",
                      "batch_sizes = [32]", *lines])
    path.write_text(text + "\n")
    return path


def test_a_study_refuses_a_model_with_its_own_regularization_before_any_run(net_module, own_module, capsys):
    from sandbag.errors import ConfigError
    from sandbag.study import StudyConfig, load_config

    p1, p2, _ = net_module
    out = own_module / "study"
    toml = _study_file(own_module / "net.toml", "mnist_net:build")
    line = _one_error_line(capsys, main(["study", "--config", str(toml), "--out", str(out), "--quiet"]),
                           f"Dropout(p={p1:g}) at dropout1, Dropout(p={p2:g}) at dropout2",
                           'set model_own_regularization = "allow"')
    assert line.startswith("sandbag: error: model mnist_net:build brings regularization of its own"), line
    assert not out.exists()
    with pytest.raises(ConfigError, match="BatchNorm1d.16. at 2, GaussianNoise"):
        StudyConfig(model="mnist_net:mixed", data=["digits"])
    with pytest.raises(ConfigError, match="model_own_regularization must be one of refuse, allow, got 'yes'"):
        StudyConfig(model_own_regularization="yes")
    with pytest.raises(ConfigError, match="model_own_regularization must be str, got True"):
        load_config(_study_file(own_module / "bool.toml", "ref-cnn", "model_own_regularization = true"))


def test_allowed_the_study_checks_every_arm_and_keeps_the_layers_for_the_report(net_module, own_module):
    """Allowed, Net still cannot place the lecture's dropout arm (its rates are its own); a study of penalties on it
    runs, and study.json and the report's problems say what it keeps."""
    from sandbag.study import StudyConfig, compare_config
    from sandbag.study.i18n import translator
    from sandbag.study.report import problem_blocks
    from sandbag.study.runner import study_meta

    p1, p2, _ = net_module
    with pytest.raises(ModelError, match=r"^arm 'dropout' \(dropout=0.4\) cannot run on model mnist_net:build: "):
        StudyConfig(model="mnist_net:build", data=["digits"], model_own_regularization="allow")
    cfg = compare_config("l2=1e-3", "none", model="mnist_net:build", data="digits", seeds=2)
    layers = [f"Dropout(p={p1:g}) at dropout1", f"Dropout(p={p2:g}) at dropout2"]
    assert cfg.model_own_regularization == "allow" and cfg.model_own_layers == layers
    meta = study_meta(cfg, "sandbag compare", 1, 1)
    assert meta["model_own_layers"] == layers
    for lang in ("en", "ko"):
        said = " ".join(text for _, text in problem_blocks(meta, [], translator(lang)))
        assert "mnist_net:build" in said and ", ".join(layers) in said, said
    assert "model_own_layers" not in study_meta(StudyConfig(), "sandbag study", 1, 1)


def test_compare_on_it_warns_in_one_line_before_its_runs(net_module, own_module, capsys, monkeypatch):
    """A compare allows the model's own layers, as train does, and says so before any run (stopped here)."""
    import sandbag.study.runner

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sandbag.study.runner, "run_study", stop)
    p1, p2, _ = net_module
    code = main(["compare", "l2=1e-3", "none", "--model", "mnist_net:build", "--data", "digits", "--seeds", "2",
                 "--quiet", "--out", str(own_module / "compare")])
    assert code == 130 and _lines(capsys) == [
        f"sandbag: warning: model mnist_net:build brings regularization of its own, kept in every run whatever its "
        f"techniques (a study's none arm too): Dropout(p={p1:g}) at dropout1, Dropout(p={p2:g}) at dropout2",
        "sandbag: interrupted; files already written are complete"]


def test_a_study_whose_factory_cannot_place_one_arm_stops_before_any_run(own_module, capsys, monkeypatch):
    """Every arm is built before the first run: the lecture's dropout arm (at its textbook strength), and a sweep
    strength the factory refuses while it takes the textbook one."""
    from sandbag.study import StudyConfig

    _net_module(own_module, "capped", monkeypatch, most=0.5)
    _net_module(own_module, "never", monkeypatch, most=0)
    out = own_module / "study"
    toml = _study_file(own_module / "never.toml", "never:capped")
    _one_error_line(capsys, main(["study", "--config", str(toml), "--out", str(out), "--quiet"]),
                    "arm 'dropout' (dropout=0.4) cannot run on model never:capped: dropout=0.4 asks for a dropout "
                    "layer with p=0.4", "model never:capped has none:")
    assert not out.exists()
    with pytest.raises(ModelError, match=r"^arm 'dropout=0.6' \(dropout=0.6\) cannot run on model capped:capped: "
                                         r"this factory takes dropout up to 0.5, not 0.6$"):
        StudyConfig(model="capped:capped", data=["digits"], sweep={"dropout": [0.2, 0.6]})
    assert StudyConfig(model="capped:capped", data=["digits"], sweep={"dropout": [0.2, 0.5]}).model_own_layers == []
