# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Regularization, one technique at a time
#
# Regularization makes training deliberately harder so that the network does not overfit its training images and what it
# learns carries over to images it has never seen, much as a runner who trains with sandbags strapped on is faster once
# they come off. The test set plays the part of those unseen images: it is our rehearsal for real use.
#
# This notebook follows the lecture sandbag grew from, in its order: the reference CNN, then the L2 penalty, the L1
# penalty, noise injection, dropout and batch normalization, and at the end a small study that checks the claims
# made about them. It uses sandbag's public API only. Every model trains for 20 epochs on 300 MNIST digits: long
# enough that the unregularized network fits its training images and tests well below them (the regime where a
# technique has something to do), short enough that each cell takes seconds on a CPU. The numbers depend on the seed
# and the machine, so the text says what to look for rather than what you will get.

# %%
import copy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from sandbag import analysis
from sandbag.models import build_model, keras_summary
from sandbag.regularizers import Regularizer, parse_spec, parse_specs, penalized_parameters
from sandbag.runs import RunConfig
from sandbag.study import StudyConfig, build_report, compare_config, planned_arms, read_results, run_study
from sandbag.study.report import localized_verdicts
from sandbag.train import evaluate, load_data, setup_run, train_one_epoch, weight_stats

torch.set_num_threads(2)
torch.manual_seed(0)
plt.rcParams.update({"figure.dpi": 72, "figure.constrained_layout.use": True, "axes.grid": True,
                     "grid.alpha": 0.3})

TRAIN_SIZE, EPOCHS = 300, 20  # an overfitting regime: see the introduction
# mnist-5k: 5,000 real MNIST digits; a stratified, seeded slice of 300 for training, 1,000 held out for testing
DATA = load_data(RunConfig(data="mnist-5k", train_size=TRAIN_SIZE))
X_TEST, Y_TEST = DATA.x_test, DATA.y_test
print(DATA)


def train(*regs: str, epochs: int = EPOCHS, seed: int = 0):
    """Train the reference CNN with the given technique specs; returns sandbag's RunSetup (.model, .ds, ...)."""
    cfg = RunConfig(regs=list(regs), epochs=epochs, train_size=TRAIN_SIZE, seed=seed, device="cpu", threads=2)
    run = setup_run(cfg, dataset=DATA)  # seeds the weights, builds the model, binds the techniques
    for _ in range(epochs):
        train_one_epoch(run.net, run.optimizer, run.regularizer, run.ds.x_train, run.ds.y_train, cfg.batch_size,
                        run.generator)
    return run


def accuracy(run) -> dict:
    """Clean (evaluation-mode) accuracy on the training images and on the test images."""
    return {split: evaluate(run.model, x, y)["acc"]
            for split, x, y in [("train", run.ds.x_train, run.ds.y_train), ("test", X_TEST, Y_TEST)]}


# %% [markdown]
# ## 1. The data and the reference model
#
# The reference model is the lecture's Keras CNN: three 3×3 convolutions with max and average pooling between them,
# a dense layer of 128 units and a 10-way output. Here it is with a dropout layer at keep ratio 0.6 inserted after
# the hidden dense layer, as in the lecture. Dropout adds a layer but no parameters, so the count stays at 241,546.

# %%
fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for digit, ax in enumerate(axes):
    ax.imshow(DATA.x_train[DATA.y_train == digit][0, 0], cmap="gray_r")
    ax.set_title(str(digit))
    ax.axis("off")
fig.suptitle("One training image per class (mnist-5k)")
plt.show()

model = build_model("ref-cnn", DATA.input_shape, DATA.num_classes, parse_specs(["keep=0.6"]))
print(keras_summary(model, DATA.input_shape))

# %% [markdown]
# ## 2. L2: a penalty on large weights
#
# L2 adds half the sum of the squared weights, times a strength λ, to the loss: L' = L + ½·λ·Σw². Large weights now
# cost something, so training settles for smaller ones. First the picture for a single weight: a loss whose minimum
# sits at w = 4.5, the penalty ½·w², and their sum for several λ. The minimum of the sum is a·4.5/(a + λ) for a loss
# of curvature a (here a = 1), so it slides toward zero as λ grows but never reaches it. The grid search below
# should agree with that formula to the grid's resolution.

# %%
w = np.linspace(-2.0, 7.0, 9001)
loss = 0.5 * (w - 4.5) ** 2  # a loss of one weight, smallest at w = 4.5 (curvature a = 1)
lams = [0.0, 0.5, 1.0, 2.0, 4.0]
grid_minima = [w[np.argmin(loss + 0.5 * lam * w**2)] for lam in lams]

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
left.plot(w, loss, "k--", label="loss L(w)")
left.plot(w, 0.5 * w**2, "k:", label="penalty ½·w²")
for lam, w_min in zip(lams[1:], grid_minima[1:], strict=True):
    total = loss + 0.5 * lam * w**2
    (line,) = left.plot(w, total, label=f"L + ½·{lam:g}·w²")
    left.plot(w_min, total.min(), "o", color=line.get_color())
left.set(ylim=(0, 16), xlabel="weight w", ylabel="value", title="Adding ½·λ·w² to the loss")
left.legend(fontsize=8)
right.plot(lams, grid_minima, "o-", label="minimum on the grid")
right.plot(lams, [4.5 / (1 + lam) for lam in lams], "kx", ms=10, label="4.5 / (1 + λ)")
right.set(xlabel="λ", ylabel="w at the minimum", title="The minimum moves toward zero", ylim=(0, 5))
right.legend()
plt.show()
for lam, w_min in zip(lams, grid_minima, strict=True):
    print(f"λ = {lam:<4g} minimum on the grid {w_min:.3f}   closed form {4.5 / (1 + lam):.3f}")

# %% [markdown]
# Now on the real network: the same seed trained twice for 20 epochs, once without any technique and once with
# `l2=5e-3`. With the penalty the weights should end up with a smaller norm, overall and layer by layer (how much
# smaller depends on λ, the optimizer and how long it trains).

# %%
LAM = 5e-3
base = train()
l2 = train(f"l2={LAM}")


def layer_norms(run) -> dict:
    """The L2 norm of each penalized weight tensor, by layer name."""
    return {name.split(".")[0]: p.detach().norm().item() for name, p in penalized_parameters(run.model)}


names = list(layer_norms(base))
x = np.arange(len(names))
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(x - 0.2, list(layer_norms(base).values()), 0.4, label="no regularization")
ax.bar(x + 0.2, list(layer_norms(l2).values()), 0.4, label=f"l2={LAM}")
ax.set_xticks(x, names)
ax.set(ylabel="‖w‖ of the layer", title="Weight norm per layer after training")
ax.legend()
plt.show()
acc = {"none": accuracy(base), f"l2={LAM}": accuracy(l2)}
for label, run in [("none", base), (f"l2={LAM}", l2)]:
    print(f"{label:9} global weight norm {weight_stats(run.model)['weight_l2']:6.2f}   "
          f"accuracy train {acc[label]['train']:.3f}, test {acc[label]['test']:.3f}")

# %% [markdown]
# Biases are left out of the penalty: it acts on the weights of the convolution and dense layers only (`:bias` adds
# the biases back). `penalized_parameters` is the one rule that decides this. To see it with numbers, compute the
# penalty by hand, then add 10 to every bias of a copy of the model: the default penalty should not move, while
# the `:bias` variant should grow.

# %%
spec, spec_bias = parse_specs([f"l2={LAM}"]), parse_specs([f"l2={LAM}:bias"])
weights = [name for name, _ in penalized_parameters(base.model)]
with_bias = [name for name, _ in penalized_parameters(base.model, include_bias=True)]
print("penalized by default:", weights)
print("added by :bias:      ", [name for name in with_bias if name not in weights])

by_hand = 0.5 * LAM * sum(p.detach().pow(2).sum().item() for _, p in penalized_parameters(base.model))
print(f"penalty by hand {by_hand:.6f}   Regularizer.penalty() {Regularizer(base.model, spec).penalty().item():.6f}")

shifted = copy.deepcopy(base.model)
with torch.no_grad():
    for name, p in shifted.named_parameters():
        if name.endswith("bias"):
            p.add_(10.0)
for label, specs in [(f"l2={LAM}", spec), (f"l2={LAM}:bias", spec_bias)]:
    before, after = Regularizer(base.model, specs).penalty().item(), Regularizer(shifted, specs).penalty().item()
    print(f"{label:16} penalty {before:10.4f} -> {after:10.4f} after adding 10 to every bias")

# %% [markdown]
# ## 3. L1: a penalty that makes weights zero
#
# L1 adds α·Σ|w|. Its pull toward zero has the same size for every weight, large or small, so small weights are
# pushed all the way to zero. For the one-weight loss above the minimum becomes max(4.5 − α, 0): it shifts by α and
# lands exactly on zero once α ≥ 4.5, which L2 never does. In training, a gradient step on |w| overshoots zero
# instead of stopping there, so the plain `l1=α` leaves many weights near zero but few exactly zero. The proximal
# form `l1=α:prox` applies the shrinkage after each optimizer step and clips at zero, and so produces exact zeros.
# That is why L1 is the choice when you want a sparse tensor of weights, most of them zero or nearly so. The
# histograms of log10|w| should show more weights at tiny magnitudes (left of the dotted line at |w| = 10⁻³) with L1
# than without; exact zeros have no logarithm, so the titles count them, and only `:prox` should have any.

# %%
ALPHA = 1e-4
l1 = train(f"l1={ALPHA}")
l1_prox = train(f"l1={ALPHA}:prox")

alphas = np.linspace(0, 6, 61)
fig, axes = plt.subplots(1, 4, figsize=(14, 3))
axes[0].plot(alphas, [w[np.argmin(loss + a * np.abs(w))] for a in alphas], label="L1: loss + α·|w|")
axes[0].plot(alphas, [w[np.argmin(loss + 0.5 * a * w**2)] for a in alphas], "--", label="L2: loss + ½·α·w²")
axes[0].set(xlabel="strength α (or λ)", ylabel="w at the minimum", title="One weight")
axes[0].legend(fontsize=8)
for ax, (label, run) in zip(axes[1:], [("none", base), (f"l1={ALPHA}", l1), (f"l1={ALPHA}:prox", l1_prox)],
                            strict=True):
    values = analysis.weight_values(run.model)
    ax.hist(np.log10(np.abs(values[values != 0])), bins=np.linspace(-8, 0, 81), log=True)
    ax.axvline(-3, color="k", ls=":")  # |w| = 1e-3
    ax.set(title=f"{label}\nexactly zero: {int((values == 0).sum()):,} of {values.size:,}",
           xlabel="log10 |w| (nonzero weights)")
axes[1].set_ylabel("count (log scale)")
plt.show()
acc.update({f"l1={ALPHA}": accuracy(l1), f"l1={ALPHA}:prox": accuracy(l1_prox)})
for label, run in [("none", base), (f"l1={ALPHA}", l1), (f"l1={ALPHA}:prox", l1_prox)]:
    stats = weight_stats(run.model)
    print(f"{label:14} |w| < 1e-3: {stats['frac_small']:6.1%}   exactly 0: {stats['frac_zero']:6.1%}   "
          f"test accuracy {acc[label]['test']:.3f}")

# %% [markdown]
# ## 4. Noise injection
#
# `noise=σ` adds Gaussian noise N(0, σ²) to every input pixel during training only: the network never sees exactly
# the same image twice, and at evaluation it gets the clean one. Below, the baseline's trained weights go into a
# model built with `noise=0.3`, whose first layer is that noise layer. Two forward passes over one image should
# give different outputs in training mode; in evaluation mode the noise is off and the passes should agree
# exactly (a difference of 0).

# %%
noisy = build_model("ref-cnn", DATA.input_shape, DATA.num_classes, parse_specs(["noise=0.3"]))
noisy.load_state_dict(base.model.state_dict())  # the noise layer has no parameters: the names line up
image = X_TEST[:1]
torch.manual_seed(0)
with torch.no_grad():
    seen = [image] + [noisy.gaussian_noise.train()(image) for _ in range(3)]
fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
titles = ["clean (evaluation)", "training pass 1", "training pass 2", "training pass 3"]
for ax, img, title in zip(axes, seen, titles, strict=True):
    ax.imshow(img[0, 0], cmap="gray_r")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle("What the network sees with noise=0.3")
plt.show()

with torch.no_grad():
    for mode in ("training", "evaluation"):
        noisy.train(mode == "training")
        first, second = noisy(image).softmax(1), noisy(image).softmax(1)
        print(f"{mode:10} mode: max |difference| of the class probabilities between two passes "
              f"{(first - second).abs().max().item():.4f}")
noise_run = train("noise=0.3")  # and a model trained with it, for the comparison after section 6

# %% [markdown]
# ## 5. Dropout
#
# Dropout switches off a random set of hidden units at every training step, so no unit can rely on any particular
# other one, and the same example is handled by a different subnetwork each time it comes round; that makes rote
# memorization harder, and it also slows learning down. The lecture keeps 60% of the units (keep ratio 0.6), which
# is a drop rate of 0.4: `keep=0.6` and `dropout=0.4` are one and the same spec. The kept units are scaled by
# 1/(1 − 0.4) ≈ 1.67 so the expected activation stays the same, and at evaluation every unit is back and nothing is
# scaled. Dropout saves no computation: every unit is still computed, then some are zeroed.
#
# The mask picture shows which of the 128 hidden units one sample keeps at each of 12 training steps (dark: kept).
# Below it, about 40% of the outputs should be zero, the kept ones should all equal 1/(1 − 0.4), and evaluation
# mode should hand its input back untouched.

# %%
print("keep=0.6 is parsed as", parse_spec("keep=0.6"), "| same as dropout=0.4:",
      parse_spec("keep=0.6") == parse_spec("dropout=0.4"))
drop = train("keep=0.6")
acc["keep=0.6"] = accuracy(drop)
masks = analysis.dropout_masks(drop.model, steps=12, seed=0)  # (steps, units), True = kept

layer = copy.deepcopy(drop.model.dropout)
ones = torch.ones(1000, 128)
torch.manual_seed(0)
out = layer.train()(ones)
kept = ", ".join(f"{v:.4f}" for v in out[out != 0].unique().tolist())
print(f"training:   zeros {(out == 0).float().mean().item():.1%}, kept values {kept}, mean {out.mean().item():.3f}"
      f"  (1/(1 - 0.4) = {1 / 0.6:.4f})")
print(f"evaluation: output equals input: {torch.equal(layer.eval()(ones), ones)}")

left_on = analysis.dropout_left_on(drop.model, X_TEST[:300], Y_TEST[:300], passes=3, seed=0)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 2.8), gridspec_kw={"width_ratios": [3, 1]})
left.imshow(masks, cmap="Greys", aspect="auto", interpolation="nearest")
left.set(xlabel="hidden unit", ylabel="training step",
         title=f"Dropout masks at keep ratio 0.6 ({masks.mean():.0%} kept)")
left.grid(False)
right.bar(["eval"] + [f"on {i + 1}" for i in range(left_on["passes"])], [left_on["eval_acc"], *left_on["on_accs"]],
          color=["C0"] + ["C3"] * left_on["passes"])
right.set(ylabel="test accuracy", title="Dropout left on at test", ylim=(0, 1))
plt.show()
print(f"predictions that change between passes with dropout left on: {left_on['disagreement']:.1%}; "
      f"between two evaluation passes: {left_on['eval_disagreement']:.1%}")
for label in ("none", "keep=0.6"):
    print(f"{label:9} accuracy train {acc[label]['train']:.3f}, test {acc[label]['test']:.3f}")

# %% [markdown]
# If dropout belongs to training only, the right-hand bars should show it: left on at test time, it makes each pass
# predict a little differently, and usually worse, than the evaluation-mode model.

# %% [markdown]
# ## 6. Batch normalization
#
# Batch normalization standardizes each feature over the current mini-batch: subtract the batch mean and divide by
# the batch standard deviation, so every feature (every channel of a convolution) arrives with mean 0 and standard
# deviation 1 whatever the layer before it did. A learned scale γ and shift β then let the network put each feature
# where it helps. sandbag places BN right after each convolution and dense layer, before the activation. In
# evaluation mode BN uses running averages of the batch statistics collected during training instead.
#
# Below, a forward hook records the first BN layer's input and output on a batch of 64 images in training mode.
# Before BN the channels should have scattered means and spreads; after normalization (before γ and β) each
# channel's mean should be close to 0 and its standard deviation close to 1.

# %%
bn = train("bn")
first_bn = bn.model.batch_normalization
probe = copy.deepcopy(bn.model).train()
captured = {}
hook = probe.batch_normalization.register_forward_hook(
    lambda module, inputs, output: captured.update(x=inputs[0].detach(), y=output.detach()))
with torch.no_grad():
    probe(X_TEST[:64])
hook.remove()


def per_channel(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (biased) standard deviation of each channel over the batch and the image positions."""
    flat = t.transpose(0, 1).reshape(t.shape[1], -1).double()  # (channels, batch * height * width)
    return flat.mean(1).numpy(), flat.std(1, correction=0).numpy()


gamma, beta = first_bn.weight.detach().view(1, -1, 1, 1), first_bn.bias.detach().view(1, -1, 1, 1)
z = (captured["y"] - beta) / gamma  # BN's output before its learned scale and shift
(mean_in, std_in), (mean_z, std_z) = per_channel(captured["x"]), per_channel(z)
channel = int(np.abs(mean_in).argmax())

fig, axes = plt.subplots(1, 3, figsize=(13, 3))
axes[0].hist(captured["x"][:, channel].flatten().numpy(), bins=50, alpha=0.6, log=True, label="before BN")
axes[0].hist(z[:, channel].flatten().numpy(), bins=50, alpha=0.6, log=True, label="after normalization")
axes[0].set(title=f"Channel {channel} over one batch", xlabel="value")
axes[0].legend(fontsize=8)
for ax, before, after, title in [(axes[1], mean_in, mean_z, "Mean of each channel"),
                                 (axes[2], std_in, std_z, "Standard deviation of each channel")]:
    ax.plot(before, "o", ms=4, label="before BN")
    ax.plot(after, "o", ms=4, label="after normalization")
    ax.set(title=title, xlabel="channel")
axes[2].legend(fontsize=8)
plt.show()
print(f"after normalization: max |mean| {np.abs(mean_z).max():.1e}, std from {std_z.min():.4f} to {std_z.max():.4f}")
for name, m in bn.model.named_children():
    if "batch_normalization" in name:
        print(f"{name:22} learned scale γ in [{m.weight.min().item():.3f}, {m.weight.max().item():.3f}], "
              f"shift β in [{m.bias.min().item():.3f}, {m.bias.max().item():.3f}]")

# %% [markdown]
# γ and β start at 1 and 0; after 20 short epochs on 300 images they may have moved only a little.
#
# In training mode the statistics come from the batch, so one image's output depends on which other images share
# its batch: the batch statistics act like noise injected afresh at every step, and like dropout they disturb
# training on purpose. The smaller the batch, the noisier its statistics, which is why BN helps less with very
# small mini-batches. Evaluation mode uses the running statistics instead, so there the companions should not
# matter at all, and the layer should compute exactly (x − running mean) / √(running variance + ε) · γ + β.
#
# First one test image in two different batches of 8, then the spread of 8 images' predicted probabilities across
# 4 random batches for several batch sizes: the spread should shrink as the batch grows and be 0 in evaluation mode.

# %%
gen = torch.Generator().manual_seed(0)
batches = [torch.cat([X_TEST[:1], X_TEST[1 + torch.randperm(len(X_TEST) - 1, generator=gen)[:7]]]) for _ in range(2)]
probe = copy.deepcopy(bn.model)
with torch.no_grad():
    for mode in ("training", "evaluation"):
        probe.train(mode == "training")
        first, second = (probe(b)[0].softmax(0) for b in batches)
        print(f"{mode:10} mode: max |difference| of one image's class probabilities in two batches "
              f"{(first - second).abs().max().item():.4f}")
    layer = copy.deepcopy(first_bn).eval()
    by_hand = ((captured["x"] - layer.running_mean.view(1, -1, 1, 1))
               / torch.sqrt(layer.running_var.view(1, -1, 1, 1) + layer.eps) * gamma + beta)
    print(f"evaluation mode vs the formula with the running statistics: max |difference| "
          f"{(layer(captured['x']) - by_hand).abs().max().item():.1e}")

sizes = [2, 8, 32]
spread = [analysis.bn_companion_noise(bn.model, X_TEST, n_samples=8, n_batches=4, batch_size=b, seed=0) for b in sizes]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(sizes, [s["prob_std_mean"] for s in spread], "o-", label="training mode (batch statistics)")
ax.plot(sizes, [s["eval_prob_std_mean"] for s in spread], "s--", label="evaluation mode (running statistics)")
ax.set_xscale("log", base=2)
ax.set_xticks(sizes, [str(b) for b in sizes])
ax.set(xlabel="batch size", ylabel="spread of the probabilities", title="One image, different batch companions")
ax.legend()
plt.show()

# %% [markdown]
# ## Where each technique stood
#
# Each section trained one model on the same 300 images for the same 20 epochs and one seed. Here they are side by
# side: clean training accuracy, test accuracy, and the difference to no technique in test accuracy points. In this
# regime the unregularized network fits its training images (training accuracy near 1) and tests well below them,
# so a technique has a gap to close; with only a couple of epochs instead, the network would still be underfitting
# and every technique would lower test accuracy. Batch norm, dropout and noise should come out above none here; the
# weight penalties L2 and L1, under Adam, move test accuracy by a fraction of a point either way at any size (README,
# "The regime map"). One seed is one draw: section 7's study repeats the comparison over seeds and says which
# differences hold.

# %%
acc["noise=0.3"] = accuracy(noise_run)
acc["bn"] = accuracy(bn)
labels = [label for label in acc if label != "none"]
for label in labels:
    delta = 100 * (acc[label]["test"] - acc["none"]["test"])
    word = "raised" if delta > 0 else "lowered" if delta < 0 else "left"
    print(f"{label:14} train {acc[label]['train']:.3f}  test {acc[label]['test']:.3f}  "
          f"{word} test accuracy by {abs(delta):.1f} points against none")
fig, ax = plt.subplots(figsize=(8, 3))
names = ["none", *labels]
ax.bar(np.arange(len(names)) - 0.2, [acc[n]["train"] for n in names], 0.4, label="train (clean)")
ax.bar(np.arange(len(names)) + 0.2, [acc[n]["test"] for n in names], 0.4, label="test")
ax.set_xticks(np.arange(len(names)), names, rotation=20)
ax.set(ylim=(0.5, 1.0), ylabel="accuracy", title="One seed, 300 images, 20 epochs")
ax.legend()
plt.show()

# %% [markdown]
# ## 7. A small study: which claims hold?
#
# `sandbag study` trains the reference CNN under every technique on several seeds and turns each claim into a paired
# comparison with a verdict: *supported*, *contradicted*, *negligible* (no practical difference) or *inconclusive*. The
# study below is deliberately tiny (300 training images for three epochs, two seeds, no timing phase) so that it
# finishes quickly: expect most verdicts to come out inconclusive, since two seeds give wide intervals, and the timing
# claims (7 and 12) cannot be decided without their timing phase. Claim 4 is a computation rather than an experiment, so
# it can be decided even here. With so little training the accuracies are rough, and BN in particular can look poor:
# evaluation uses its running statistics, which may still lag behind weights that change fast this early. For verdicts
# that mean something, run `sandbag study` (the standard preset, about 14 minutes on two cores). Rerunning this cell
# reuses the finished runs.

# %%
study = StudyConfig.from_dict({
    "name": "notebook", "quick": True, "data": ["mnist-5k"], "train_size": 300, "epochs": 3, "eval_every": 3,
    "batch_size": 32, "seeds": 2, "extra_seeds": 2, "val_fraction": 0.2, "sweep_epochs": 2, "batch_sizes": [8, 32],
    "learn_target": 0.5, "timing_repeats": 0,
    "sweep": {"l2": [1e-3], "l1": [1e-4], "noise": [0.3], "dropout": [0.4]},
    "textbook": {"l2": 1e-3, "l1": 1e-4, "noise": 0.3, "dropout": 0.4},
})
STUDY_DIR = Path("notebook-study")
LANG = "en"  # the report's language: en or ko
rows = run_study(study, STUDY_DIR, workers=2, threads=1, command="the regularization notebook")
build_report(STUDY_DIR, lang=LANG)  # writes verdicts.json, the figures and report.md / report.html
print(f"{len(rows)} runs; report: {STUDY_DIR / 'report.html'}")

WORDS = {"supported": "**supported**", "contradicted": "**contradicted**", "negligible": "**negligible**",
         "mixed": "mixed", "inconclusive": "inconclusive"}  # bold: decided
verdicts, _, _ = localized_verdicts(STUDY_DIR, LANG)  # claim texts in the report's language
table = ["| # | claim | verdict |", "|---|---|---|"]
for v in verdicts:
    verdict = v["data"][study.data[0]]["verdict"]
    table.append(f"| {v['number']} | {v['text']} | {WORDS.get(verdict, verdict)} |")
display(Markdown("\n".join(table)))

headline = [r for r in read_results(STUDY_DIR) if r["group"] == "headline"]
arms = [a["arm"] for a in planned_arms(study) if a["group"] == "headline"]  # none first, then the techniques
fig, ax = plt.subplots(figsize=(7, 3))
for i, arm in enumerate(arms):
    accs = [r["test_acc"] for r in headline if r["arm"] == arm]
    ax.bar(i, np.mean(accs), color="C0", alpha=0.5)
    ax.plot([i] * len(accs), accs, "ko", ms=4)
ax.set_xticks(range(len(arms)), arms)
ax.set(ylabel="test accuracy", title="The study's headline arms (bar: mean, dots: seeds)")
plt.show()

# %% [markdown]
# ## 8. Your own question: does dropout 0.5 beat 0.3 here?
#
# The lecture's claims are only the start: `sandbag compare A B` asks your own. It trains both settings on the same
# seeds (so each seed's pair shares its initialization and batch order), and decides three claims of A against B:
# higher test accuracy, a narrower gap, fewer epochs to the training target. Each verdict comes with its mean
# difference, its 95% interval and, when it is inconclusive, how many seeds would settle it. From a terminal:
#
#     sandbag compare "dropout=0.5" "dropout=0.3" --seeds 3 --epochs 5 --train-size 300 --test default
#
# Below is the same study through the Python API, small enough for a notebook: three seeds are few, so expect wide
# intervals. A study file with `[[arms]]` and `[[claims]]` tables asks any question of this kind (README, "Ask your
# own question").

# %%
question = compare_config("dropout=0.5", "dropout=0.3", seeds=3, epochs=5, train_size=300, test="default")
QUESTION_DIR = Path("notebook-compare")
run_study(question, QUESTION_DIR, workers=2, threads=1, command="the regularization notebook, section 8")
build_report(QUESTION_DIR, lang=LANG)
answers, _, _ = localized_verdicts(QUESTION_DIR, LANG)
for v in answers:
    part = v["data"][question.data[0]]["parts"][0]
    print(f"{v['text']}\n  mean {part['mean']:+.4f}, 95% CI [{part['ci_low']:+.4f}, {part['ci_high']:+.4f}] "
          f"over {part['n']} seeds: {part['verdict']}")

diffs = answers[0]["data"][question.data[0]]["parts"][0]["diffs"]  # per seed: test acc of A minus B
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.axhline(0, color="0.5", lw=1)
ax.plot([int(s) for s in diffs], list(diffs.values()), "o", color="C1")
ax.set(xlabel="seed", ylabel="test acc: 0.5 minus 0.3", title="One paired difference per seed")
plt.show()
