"""The study's figures: each function takes plain data, writes one PNG and returns its path.

Every figure reads on its own (title, axis labels with units, legend) and copes with tiny inputs (one seed, one
epoch); an empty input gives a figure that says "no data" instead of an error. Each technique keeps its color
across figures (`ARM_COLORS`, `color_for`).

The closed forms behind the penalty figure are here too, pure functions the tests and the report use:
`l2_minimum`, `l1_minimum` and the grid search `numeric_minimum` they are checked against.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110

# One color per technique, the same in every figure (Okabe-Ito colorblind-safe palette, then grays).
ARM_COLORS: dict[str, str] = {
    "none": "#000000",
    "l2": "#0072B2",
    "l1": "#E69F00",
    "l1-prox": "#D55E00",
    "noise": "#009E73",
    "dropout": "#CC79A7",
    "bn": "#56B4E9",
    "bn-post": "#332288",
    "other": "#7F7F7F",
}
_EXTRA_COLORS = ("#882255", "#117733", "#999933", "#44AA99", "#AA4499", "#661100", "#6699CC", "#888888")


def color_for(arm: str) -> str:
    """The color of a technique: its `ARM_COLORS` entry, found from a name such as ``l2``, ``l2=1e-3``,
    ``bn:post`` or ``l1=1e-4:prox``; other names get a fixed color of their own (the same in every figure)."""
    name = str(arm).strip().lower()
    if name in ARM_COLORS:
        return ARM_COLORS[name]
    base, *options = name.split(":")
    base = base.split("=")[0].strip()
    if base == "keep":
        base = "dropout"
    for option in options:
        if f"{base}-{option}" in ARM_COLORS:
            return ARM_COLORS[f"{base}-{option}"]
    if base in ARM_COLORS and base != "other":
        return ARM_COLORS[base]
    if not name:
        return ARM_COLORS["other"]
    return _EXTRA_COLORS[zlib.crc32(name.encode()) % len(_EXTRA_COLORS)]


# ----------------------------------------------------------------------------------------------------------------
# Closed forms of the penalized one-weight problem


def l2_minimum(a: float, w0: float, lam: float) -> float:
    """argmin_w  a/2 (w - w0)^2 + lam/2 w^2  =  a w0 / (a + lam): shrinks toward 0, never reaches it."""
    return a * w0 / (a + lam)


def l1_minimum(a: float, w0: float, alpha: float) -> float:
    """argmin_w  a/2 (w - w0)^2 + alpha |w|  =  sign(w0) max(|w0| - alpha / a, 0): exactly 0 once alpha >= a|w0|."""
    return float(np.sign(w0) * max(abs(w0) - alpha / a, 0.0))


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    """n evenly spaced points on [lo, hi], plus w = 0 exactly when it lies inside (where L1 puts its minimum)."""
    grid = np.linspace(lo, hi, n)
    return np.union1d(grid, [0.0]) if lo <= 0 <= hi else grid


def numeric_minimum(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, n: int = 200001) -> float:
    """The grid argmin of a vectorized f on n points of [lo, hi] (0 included when inside): accurate to
    (hi - lo) / (n - 1)."""
    if not hi > lo or n < 2:
        raise ValueError(f"need lo < hi and n >= 2, got lo={lo}, hi={hi}, n={n}")
    grid = _grid(lo, hi, n)
    return float(grid[int(np.argmin(f(grid)))])


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _no_data(path, title: str, why: str = "no data") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=14, color="0.4", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


def _floats(values) -> np.ndarray:
    """A 1-d float array, None -> nan."""
    return np.array([np.nan if v is None else float(v) for v in (values if values is not None else [])], dtype=float)


def _grid_axes(n: int, width: float = 4.2, height: float = 3.3, max_cols: int = 3, sharey: bool = True):
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


# ----------------------------------------------------------------------------------------------------------------
# Penalty figure: how L2 and L1 move the minimum of a one-weight quadratic loss


def penalty_figure(
    path,
    lams: Sequence[float] = (0.5, 1, 2, 4),
    alphas: Sequence[float] = (1, 2.5, 4.5, 6),
    a: float = 1.0,
    w0: float = 4.5,
    n: int = 20001,
) -> dict:
    """Left: loss a/2 (w - w0)^2, the L2 term lam/2 w^2 and their sum for each lam, each sum's minimum marked.
    Right: the same with alpha |w|. Returns each minimum found on the plotted grid next to its closed form."""
    if not a > 0:
        raise ValueError(f"the loss curvature a must be > 0, got {a}")
    span = max(abs(w0), 1.0)
    lo, hi = min(0.0, w0) - 0.45 * span - 0.5, max(0.0, w0) + 0.45 * span + 0.5
    w = _grid(lo, hi, n)

    def loss(v):
        return a * (v - w0) ** 2 / 2

    panels = [
        ("l2", "lam", "λ", lams, lambda lam: (lambda v: lam * v**2 / 2), l2_minimum, "½λw²", "L2: loss + ½λw²"),
        ("l1", "alpha", "α", alphas, lambda al: (lambda v: al * np.abs(v)), l1_minimum, "α|w|", "L1: loss + α|w|"),
    ]
    result: dict[str, list[dict]] = {}
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    top = 1.35 * max(loss(lo), loss(hi), a * w0**2 / 2, 1e-9)
    for ax, (key, field, symbol, values, term_of, closed, term_text, title) in zip(axes, panels, strict=True):
        rows = []
        ax.plot(w, loss(w), color="black", lw=2.2, label=f"loss a(w−w0)²/2 (a={a:g}, min at w0={w0:g})")
        colors = plt.cm.viridis(np.linspace(0.05, 0.85, max(len(values), 1)))
        for value, color in zip(values, colors, strict=False):
            term = term_of(value)
            total = loss(w) + term(w)
            i = int(np.argmin(total))
            w_num, exact = float(w[i]), closed(a, w0, value)
            rows.append({field: float(value), "numeric_min": w_num, "closed_form": float(exact)})
            ax.plot(w, term(w), color=color, lw=1, ls="--", alpha=0.8)
            ax.plot(w, total, color=color, lw=2, label=f"loss + {term_text}, {symbol}={value:g}: min at w*={w_num:.3f}")
            ax.plot([w_num], [total[i]], "o", color=color, ms=8, mec="black", zorder=5)
            same = sum(math.isclose(r["numeric_min"], w_num, abs_tol=1e-9) for r in rows[:-1])  # stack labels
            ax.annotate(
                f"{symbol}={value:g}: w*={w_num:.2f}", (w_num, total[i]), xytext=(9, 3 + 12 * same),
                textcoords="offset points", fontsize=8, color=color,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.plot([], [], color="0.4", lw=1, ls="--", label=f"penalty term {term_text} alone (dashed)")
        ax.axvline(0, color="0.6", lw=0.8)
        ax.axvline(w0, color="0.6", lw=0.8, ls=":")
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.04 * top, top)
        ax.set_xlabel("weight w")
        ax.set_ylabel("objective value")
        note = (
            "minimum moves toward 0 as λ grows, never reaches it: w* = a·w0/(a+λ)"
            if key == "l2"
            else f"minimum is exactly 0 once α ≥ a·|w0| = {a * abs(w0):g}: w* = sign(w0)·max(|w0|−α/a, 0)"
        )
        ax.set_title(f"{title}\n{note}", fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
        ax.grid(alpha=0.3)
        result[key] = rows
    fig.suptitle("How a weight penalty moves the minimum of a one-weight quadratic loss")
    _save(fig, path)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Learning curves


def _seed_matrix(per_seed, epochs: int) -> np.ndarray:
    """(seeds, epochs) array, shorter (e.g. diverged) runs padded with nan."""
    out = np.full((len(per_seed), epochs), np.nan)
    for i, values in enumerate(per_seed):
        v = _floats(values)[:epochs]
        out[i, : len(v)] = v
    return out


def _mean_std(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over seeds (axis 0), ignoring nan; an epoch no seed reached stays nan."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns
        return np.nanmean(m, 0), np.nanstd(m, 0)


def learning_curves(path, curves: Mapping[str, Mapping]) -> Path:
    """One panel per technique: clean (evaluation-mode) train accuracy (solid) and test accuracy (dashed) per
    epoch, mean over seeds with a ±1 std band. curves[arm] = {"epoch": [...], "train_acc": [[per seed]...],
    "test_acc": [[per seed]...]}."""
    title = "Learning curves: clean train vs test accuracy"
    if not curves:
        return _no_data(path, title)
    fig, axes = _grid_axes(len(curves))
    for ax, (arm, c) in zip(axes, curves.items(), strict=True):
        epochs = _floats(c.get("epoch") or [])
        train, test = c.get("train_acc") or [], c.get("test_acc") or []
        if len(epochs) == 0:
            epochs = np.arange(1, max([len(s) for s in [*train, *test]] or [0]) + 1, dtype=float)
        seeds = max(len(train), len(test))
        color = color_for(arm)
        for series, ls, label in ((train, "-", "train (clean)"), (test, "--", "test")):
            if not series or len(epochs) == 0:
                continue
            mean, std = _mean_std(_seed_matrix(series, len(epochs)))
            ax.plot(epochs, mean, ls=ls, color=color, lw=2, marker="o" if len(epochs) <= 15 else None, ms=4,
                    label=f"{label}, mean")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15 if ls == "-" else 0.08,
                            label=f"{label}, ±1 std")
        if len(epochs) == 0 or seeds == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.4", transform=ax.transAxes)
        ax.set_title(f"{arm} (n={seeds} seed{'s' if seeds != 1 else ''})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (fraction correct)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title} (mean ± 1 std over seeds)")
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Weight histograms


def weight_histograms(path, weights: Mapping[str, np.ndarray], small: float = 1e-3) -> Path:
    """Left: overlaid histograms of the weight values, log-scale counts. Right: log10 |w| of the nonzero weights.
    Legend labels give each technique's fraction of weights exactly 0 and with |w| < `small`."""
    title = "Weight values of the conv/dense layers"
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in weights.items()}
    arrays = {k: v[np.isfinite(v)] for k, v in arrays.items()}
    if not arrays or all(len(v) == 0 for v in arrays.values()):
        return _no_data(path, title)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    m = max((np.abs(v).max() for v in arrays.values() if len(v)), default=1.0) or 1.0
    bins = np.linspace(-m, m, 121)
    nonzero = [np.abs(v[v != 0]) for v in arrays.values()]
    nonzero = np.concatenate(nonzero) if nonzero else np.zeros(0)
    log_lo = math.floor(np.log10(nonzero.min())) if len(nonzero) else -6
    log_hi = math.ceil(np.log10(nonzero.max())) if len(nonzero) else 0
    log_bins = np.linspace(log_lo, max(log_hi, log_lo + 1), 81)
    for label, v in arrays.items():
        color = color_for(label)
        if len(v) == 0:
            left.plot([], [], color=color, label=f"{label}: no weights")
            continue
        zero, tiny = float(np.mean(v == 0)), float(np.mean(np.abs(v) < small))
        text = f"{label} (n={len(v):,}): exactly 0: {zero:.1%}, |w|<{small:g}: {tiny:.1%}"
        left.hist(v, bins=bins, histtype="step", lw=1.8, color=color, label=text)
        nz = np.abs(v[v != 0])
        if len(nz):
            right.hist(np.log10(nz), bins=log_bins, histtype="step", lw=1.8, color=color,
                       label=f"{label}: {len(nz):,} nonzero")
        else:
            right.plot([], [], color=color, label=f"{label}: all weights exactly 0")
    left.set_yscale("log")
    left.set_xlabel("weight value w")
    left.set_ylabel("count (log scale)")
    left.set_title("Distribution of weight values")
    left.legend(fontsize=7.5)
    left.grid(alpha=0.3)
    right.axvline(np.log10(small), color="0.5", ls=":", lw=1)
    if len(nonzero):
        right.set_yscale("log")
    else:
        right.text(0.5, 0.5, "every weight is exactly 0", ha="center", va="center", color="0.4",
                   transform=right.transAxes)
    right.set_xlabel("log10 |w| (nonzero weights; exact zeros counted in the left legend)")
    right.set_ylabel("count (log scale)")
    right.set_title(f"Magnitudes: the dotted line is |w| = {small:g}")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=7.5)
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Dropout


def dropout_figure(path, masks: np.ndarray, eval_acc: Sequence[float], on_acc: Sequence[float]) -> Path:
    """Left: the dropout keep-masks of one sample over training steps (dropped units dark). Right: test accuracy
    in evaluation mode vs with dropout wrongly left on at test time (per-seed points, mean bars)."""
    masks = np.asarray(masks if masks is not None else np.zeros((0, 0)), dtype=bool)
    if masks.ndim == 1:
        masks = masks[None, :]
    ev, on = _floats(eval_acc), _floats(on_acc)
    ev, on = ev[np.isfinite(ev)], on[np.isfinite(on)]
    title = "Dropout: random masks in training, and why it must be off at test time"
    if masks.size == 0 and len(ev) == 0 and len(on) == 0:
        return _no_data(path, title)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    if masks.size:
        left.imshow(masks, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                    extent=(-0.5, masks.shape[1] - 0.5, masks.shape[0] + 0.5, 0.5))
        left.set_title(f"Keep-masks for one sample: kept {masks.mean():.0%} of {masks.shape[1]} units "
                       "(white kept, black dropped)", fontsize=10)
        left.set_xlabel("hidden unit (dense layer input)")
        left.set_ylabel("training step")
        left.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        left.text(0.5, 0.5, "no masks", ha="center", va="center", color="0.4", transform=left.transAxes)
        left.set_axis_off()
    groups = [("eval mode\n(dropout off)", ev, ARM_COLORS["dropout"]), ("dropout left on\n(wrong)", on, "#999999")]
    for i, (label, vals, color) in enumerate(groups):
        if len(vals):
            right.bar(i, vals.mean(), width=0.6, color=color, alpha=0.5, edgecolor="black",
                      label=f"{label.splitlines()[0]}: mean {vals.mean():.3f} (n={len(vals)})")
            jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
            right.plot(i + jitter, vals, "o", color="black", ms=5)
    right.plot([], [], "o", color="black", ms=5, label="one seed")
    right.set_xticks([0, 1], [g[0] for g in groups])
    right.set_xlim(-0.6, 1.6)
    finite = np.concatenate([ev, on])
    if len(finite):
        lo = max(0.0, finite.min() - 0.1)
        right.set_ylim(lo, min(1.0, finite.max() + 0.05) if finite.max() + 0.05 > lo else lo + 0.1)
    right.set_ylabel("test accuracy (fraction correct)")
    right.set_title("Test accuracy", fontsize=10)
    right.legend(fontsize=7.5, loc="lower right")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Batch norm


def bn_figure(path, before: Sequence[float], after: Sequence[float], title_suffix: str = "") -> Path:
    """Histograms of one hidden feature over a training batch: BN's input (left) and the normalized value
    (right, before BN's scale and shift) with the standard normal density for reference."""
    b, z = _floats(before), _floats(after)
    b, z = b[np.isfinite(b)], z[np.isfinite(z)]
    suffix = str(title_suffix or "").strip()
    title = "Batch norm: one hidden feature before and after normalization" + (f" {suffix}" if suffix else "")
    if len(b) == 0 and len(z) == 0:
        return _no_data(path, title)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = [
        (axes[0], b, "#999999", "before BN (layer input)", "activation value"),
        (axes[1], z, ARM_COLORS["bn"], "after normalization z = (x − μ_B) / √(σ²_B + ε)", "normalized value z"),
    ]
    for ax, vals, color, label, xlabel in panels:
        if len(vals) == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.4", transform=ax.transAxes)
            ax.set_title(label, fontsize=10)
            continue
        mean, std = float(vals.mean()), float(vals.std())
        ax.hist(vals, bins=min(60, max(5, len(vals) // 10)), density=True, color=color, alpha=0.7,
                edgecolor="white", label=f"{len(vals):,} values")
        ax.axvline(mean, color="black", lw=1.5, label=f"mean = {mean:.3g}")
        ax.axvspan(mean - std, mean + std, color="black", alpha=0.07, label=f"± 1 std (std = {std:.3g})")
        if vals is z:
            grid = np.linspace(min(vals.min(), -3), max(vals.max(), 3), 200)
            ax.plot(grid, np.exp(-grid**2 / 2) / math.sqrt(2 * math.pi), color="black", ls="--", lw=1,
                    label="N(0, 1) density")
        ax.set_title(f"{label}\nmean {mean:.3g}, std {std:.3g}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(fontsize=7.5)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def batch_size_figure(path, rows: Sequence[Mapping]) -> Path:
    """Left: test accuracy vs batch size with and without BN (error bars: CI half-widths). Right: seconds per
    epoch vs batch size. rows: {"batch_size", "bn", "test_acc_mean", "test_acc_ci", "seconds_per_epoch_mean"}."""
    title = "Batch size: test accuracy and training time, with and without batch norm"
    rows = [r for r in rows or [] if r.get("batch_size") is not None]
    if not rows:
        return _no_data(path, title)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    sizes = sorted({int(r["batch_size"]) for r in rows})
    for bn in (False, True):
        group = sorted((r for r in rows if bool(r.get("bn")) == bn), key=lambda r: r["batch_size"])
        if not group:
            continue
        x = np.array([r["batch_size"] for r in group], dtype=float)
        color, label = (ARM_COLORS["bn"], "with BN") if bn else (ARM_COLORS["none"], "without BN")
        acc = _floats([r.get("test_acc_mean") for r in group])
        ci = np.nan_to_num(_floats([r.get("test_acc_ci") for r in group]))
        sec = _floats([r.get("seconds_per_epoch_mean") for r in group])
        left.errorbar(x, acc, yerr=ci, color=color, marker="o", capsize=4, lw=1.8, label=label)
        right.plot(x, sec, color=color, marker="o", lw=1.8, label=label)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("batch size (samples, log2 scale)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    left.set_ylabel("test accuracy (fraction correct)")
    left.set_title("Test accuracy (error bars: 95% CI over seeds)", fontsize=10)
    right.set_ylabel("seconds per epoch")
    right.set_title("Training time per epoch", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Headline and validation curves


def headline_figure(path, rows: Sequence[Mapping]) -> Path:
    """Test accuracy (left) and train-test gap (right) per technique, mean with 95% CI error bars.
    rows: {"arm", "test_acc_mean", "test_acc_ci", "gap_mean", "gap_ci", "n"}."""
    title = "Regularization techniques: test accuracy and generalization gap"
    rows = [r for r in rows or [] if r.get("arm") is not None]
    if not rows:
        return _no_data(path, title)
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3.2, 0.45 * len(rows) + 1.8)))
    y = np.arange(len(rows))
    labels = [f"{r['arm']} (n={r.get('n', '?')})" for r in rows]
    colors = [color_for(r["arm"]) for r in rows]
    panels = [
        (axes[0], "test_acc", "test accuracy (fraction correct)", "Test accuracy"),
        (axes[1], "gap", "train − test accuracy (fraction)", "Generalization gap (lower: less overfitting)"),
    ]
    for ax, key, xlabel, panel_title in panels:
        mean = _floats([r.get(f"{key}_mean") for r in rows])
        ci = _floats([r.get(f"{key}_ci") for r in rows])
        for i in range(len(rows)):
            if np.isfinite(mean[i]):
                err = None if not np.isfinite(ci[i]) else [[ci[i]], [ci[i]]]
                ax.errorbar(mean[i], y[i], xerr=err, fmt="o", color=colors[i], capsize=4, ms=7, lw=1.8)
        note = "mean with 95% CI over seeds"
        baseline = next((i for i, r in enumerate(rows) if r["arm"] == "none"), None)
        if key == "test_acc" and baseline is not None and np.isfinite(mean[baseline]):
            ax.axvline(mean[baseline], color=ARM_COLORS["none"], lw=0.8, ls=":")
            note += "; dotted: mean of none"
        if key == "gap":
            ax.axvline(0, color="0.5", lw=0.8)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(f"{panel_title}\n{note}", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def validation_curves(path, sweeps: Mapping[str, Sequence], chosen: Mapping[str, float] | None = None) -> Path:
    """One panel per technique: validation accuracy vs strength (log x where the values span decades), each
    point a run, the line through the mean per value, the chosen value marked. sweeps[t] = [(value, val_acc)...]."""
    title = "Choosing each technique's strength on validation data"
    chosen = chosen or {}
    sweeps = {k: [(float(v), float(a)) for v, a in pts if v is not None and a is not None] for k, pts in
              (sweeps or {}).items()}
    if not sweeps:
        return _no_data(path, title)
    fig, axes = _grid_axes(len(sweeps), sharey=False)
    for ax, (tech, pts) in zip(axes, sweeps.items(), strict=True):
        color = color_for(tech)
        if not pts:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", color="0.4", transform=ax.transAxes)
            ax.set_title(tech)
            continue
        values = np.array([p[0] for p in pts])
        accs = np.array([p[1] for p in pts])
        uniq = np.unique(values)
        means = np.array([accs[values == u].mean() for u in uniq])
        positive = uniq[uniq > 0]
        if len(positive) >= 2 and positive.max() / positive.min() >= 10:
            if (uniq <= 0).any():
                ax.set_xscale("symlog", linthresh=float(positive.min()))
            else:
                ax.set_xscale("log")
        ax.plot(values, accs, "o", color=color, alpha=0.45, ms=5, label="one run")
        ax.plot(uniq, means, "-", color=color, lw=1.8, label="mean per value")
        if tech in chosen and chosen[tech] is not None:
            c = float(chosen[tech])
            ax.axvline(c, color="black", ls="--", lw=1)
            near = np.argmin(np.abs(uniq - c))
            ax.plot([c], [means[near] if np.isclose(uniq[near], c) else np.nanmax(means)], "*", color="black",
                    ms=14, label=f"chosen: {c:g}")
        ax.set_title(tech)
        ax.set_xlabel(f"{tech} strength")
        ax.set_ylabel("validation accuracy (fraction correct)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
