"""The study's figures: each function takes plain data, writes one PNG and returns its path.

Every figure reads on its own (title, axis labels with units, legend) and copes with tiny inputs (one seed, one
epoch); an empty input gives a figure that says "no data" instead of an error. Each technique keeps its color
across figures: the report makes one `palette` from the study's arms and passes it to every figure (`colors`).

No torch here. The penalty figure plots `penalty.penalty_minima` (claim 4's check lives there too). Weight and BN
histograms take either raw values or counts on fixed bins (what a run's probes.json holds; `histogram`).
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..fonts import use_hangul_font
from .i18n import technique_label, translator
from .penalty import PENALTY_PROBLEM, grid, penalty_minima, penalty_span
from .stats import standard_error

DPI = 110

# Colors are handed out in the order the study lists its arms (Okabe-Ito colorblind-safe palette, then more), so
# each technique keeps its color in every figure of a report; the report passes the one mapping to each figure.
PALETTE = ("#000000", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#332288", "#882255",
           "#117733", "#999933", "#44AA99", "#AA4499", "#661100", "#6699CC")
OTHER = "#7F7F7F"


@contextmanager
def language(lang: str = "en"):
    """Figures drawn inside speak `lang`'s fonts: for Korean a Hangul font behind DejaVu Sans in the font list
    (`fonts.use_hangul_font`; restored on leaving), so no title falls back to empty boxes and every number and
    tick label is drawn as in English."""
    with matplotlib.rc_context():
        # the figures lay themselves out (tight_layout): a notebook's constrained layout would warn on each one
        matplotlib.rcParams["figure.constrained_layout.use"] = False
        if lang == "ko":
            use_hangul_font()
        yield


def palette(names: Sequence[str]) -> dict[str, str]:
    """One color per name, in order (repeated names keep their first color)."""
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def color_for(name: str, colors: Mapping[str, str] | None = None) -> str:
    """`name`'s color in `colors`, also for a spec-like name (``l2=1e-3`` -> ``l2``); else a fixed color of its
    own, derived from the name (the same in every figure)."""
    colors = colors or {}
    name = str(name).strip()
    if name in colors:
        return colors[name]
    base = name.split(":")[0].split("=")[0].strip()
    if base in colors:
        return colors[base]
    if not name:
        return OTHER
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _subplots(*args, figsize, **kwargs):
    """A figure and its axes without pyplot: no GUI backend and no global figure list are touched, so drawing a
    report neither changes a notebook's inline backend nor needs a display."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _no_data(path, title: str, why: str = "no data") -> Path:  # callers pass `why` in their language
    fig, ax = _subplots(figsize=(6, 3.5))
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
    fig, axes = _subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


# ----------------------------------------------------------------------------------------------------------------
# Penalty figure: how L2 and L1 move the minimum of a one-weight quadratic loss


def penalty_figure(
    path,
    lams: Sequence[float] = PENALTY_PROBLEM["lams"],
    alphas: Sequence[float] = PENALTY_PROBLEM["alphas"],
    a: float = 1.0,
    w0: float = 4.5,
    n: int = 20001,
    lang: str = "en",
) -> dict:
    """Left: loss a/2 (w - w0)^2, the L2 term lam/2 w^2 and their sum for each lam, each sum's minimum marked.
    Right: the same with alpha |w|. The minima come from `penalty.penalty_minima` (grid search next to the closed
    form, claim 4's evidence); this only plots them, and returns them."""
    t = translator(lang)
    minima = penalty_minima(lams, alphas, a, w0, n)
    lo, hi = penalty_span(w0)
    w = grid(lo, hi, n)

    def loss(v):
        return a * (v - w0) ** 2 / 2

    panels = [
        ("l2", "λ", lambda lam: (lambda v: lam * v**2 / 2), "½λw²", t("L2: loss + ½λw²")),
        ("l1", "α", lambda al: (lambda v: al * np.abs(v)), "α|w|", t("L1: loss + α|w|")),
    ]
    fig, axes = _subplots(1, 2, figsize=(14, 6))
    top = 1.35 * max(loss(lo), loss(hi), a * w0**2 / 2, 1e-9)
    for ax, (key, symbol, term_of, term_text, title) in zip(axes, panels, strict=True):
        rows = minima[key]
        values = [r["lam" if key == "l2" else "alpha"] for r in rows]
        ax.plot(w, loss(w), color="black", lw=2.2,
                label=t("loss a(w−w0)²/2 (a={a}, min at w0={w0})", a=f"{a:g}", w0=f"{w0:g}"))
        colors = matplotlib.colormaps["viridis"](np.linspace(0.05, 0.85, max(len(values), 1)))
        for k, (value, color) in enumerate(zip(values, colors, strict=False)):
            term = term_of(value)
            total = loss(w) + term(w)
            w_num = rows[k]["numeric_min"]
            i = int(np.searchsorted(w, w_num))
            ax.plot(w, term(w), color=color, lw=1, ls="--", alpha=0.8)
            label = t("loss + {term}, {symbol}={value}: min at w*={w}", term=term_text, symbol=symbol,
                      value=f"{value:g}", w=f"{w_num:.3f}")
            ax.plot(w, total, color=color, lw=2, label=label)
            ax.plot([w_num], [total[i]], "o", color=color, ms=8, mec="black", zorder=5)
            same = sum(math.isclose(r["numeric_min"], w_num, abs_tol=1e-9) for r in rows[:k])  # stack labels
            ax.annotate(
                f"{symbol}={value:g}: w*={w_num:.2f}", (w_num, total[i]), xytext=(9, 3 + 12 * same),
                textcoords="offset points", fontsize=8, color=color,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.plot([], [], color="0.4", lw=1, ls="--", label=t("penalty term {term} alone (dashed)", term=term_text))
        ax.axvline(0, color="0.6", lw=0.8)
        ax.axvline(w0, color="0.6", lw=0.8, ls=":")
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.04 * top, top)
        ax.set_xlabel(t("weight w"))
        ax.set_ylabel(t("objective value"))
        note = (
            t("minimum moves toward 0 as λ grows, never reaches it: w* = a·w0/(a+λ)")
            if key == "l2"
            else t("minimum is exactly 0 once α ≥ a·|w0| = {bound}: w* = sign(w0)·max(|w0|−α/a, 0)",
                   bound=f"{a * abs(w0):g}")
        )
        ax.set_title(f"{title}\n{note}", fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
        ax.grid(alpha=0.3)
    fig.suptitle(t("How a weight penalty moves the minimum of a one-weight quadratic loss"))
    _save(fig, path)
    return minima


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
    """Mean and std over seeds (axis 0), ignoring nan; an epoch no seed reached stays nan. The std is the sample
    std (ddof 1), as `stats.mean_std` gives the tables; a column with one seed has no band."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns, and one-seed columns for ddof 1
        return np.nanmean(m, 0), np.nanstd(m, 0, ddof=1)


def learning_curves(path, curves: Mapping[str, Mapping], colors: Mapping[str, str] | None = None,
                    lang: str = "en") -> Path:
    """One panel per technique: clean (evaluation-mode) train accuracy (solid) and test accuracy (dashed) per
    epoch, mean over seeds with a ±1 std band. curves[arm] = {"epoch": [...], "train_acc": [[per seed]...],
    "test_acc": [[per seed]...]}, and optionally "train_epoch" when the train curve has epochs of its own (a run
    that tracks training accuracy every epoch but evaluates the test set every few)."""
    t = translator(lang)
    title = t("Learning curves: clean train vs test accuracy")
    if not curves:
        return _no_data(path, title, t("no data"))
    fig, axes = _grid_axes(len(curves))
    lowest = 1.0  # the lowest test accuracy drawn: the panels show the band the claims are about
    for ax, (arm, c) in zip(axes, curves.items(), strict=True):
        epochs = _floats(c.get("epoch") or [])
        train, test = c.get("train_acc") or [], c.get("test_acc") or []
        if len(epochs) == 0:
            epochs = np.arange(1, max([len(s) for s in [*train, *test]] or [0]) + 1, dtype=float)
        seeds = max(len(train), len(test))
        color = color_for(arm, colors)
        train_epochs = _floats(c["train_epoch"]) if c.get("train_epoch") else epochs
        for series, x, ls, label in ((train, train_epochs, "-", t("train (clean)")), (test, epochs, "--", t("test"))):
            if not series or len(x) == 0:
                continue
            mean, std = _mean_std(_seed_matrix(series, len(x)))
            if ls == "--":
                lowest = min(lowest, float(np.nanmin(mean)))
            if len(x) <= 2:  # test evaluated at one or two epochs: points with error bars, no line between them
                ax.errorbar(x, mean, yerr=std, fmt="s", color=color, ms=6, capsize=4,
                            label=t("{label}, mean ± 1 std", label=label))
                continue
            ax.plot(x, mean, ls=ls, color=color, lw=2, marker="o" if len(x) <= 15 else None, ms=4,
                    label=t("{label}, mean", label=label))
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15 if ls == "-" else 0.08,
                            label=t("{label}, ±1 std", label=label))
        if len(epochs) == 0 or seeds == 0:
            ax.text(0.5, 0.5, t("no data"), ha="center", va="center", color="0.4", transform=ax.transAxes)
        ax.set_title(t("{arm} (n={n} seeds)" if seeds != 1 else "{arm} (n={n} seed)",
                       arm=technique_label(arm, lang), n=seeds))
        ax.set_xlabel(t("epoch"))
        ax.set_ylabel(t("accuracy (fraction correct)"))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    for ax in axes:  # from a little below the lowest test accuracy (and 0.9) to 1: early epochs rise into view
        ax.set_ylim(max(0.0, min(lowest, 0.9) - 0.05), 1.005)
    fig.suptitle(t("{title} (mean ± 1 std over seeds)", title=title))
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Weight histograms


def histogram(values, edges: Sequence[float] | None = None, bins: int = 120, symmetric: bool = True) -> dict:
    """Raw values as the histogram dict the figures draw: ``edges``, ``counts``, ``n``, ``mean``, ``std``, ``zero``
    (exactly 0), ``small`` (|w| < 1e-3), and the log10 |w| histogram of the nonzero ones (``log_edges``,
    ``log_counts``). A dict already of this form (e.g. from probes.json) is returned as it is."""
    if isinstance(values, Mapping):
        return dict(values)
    v = np.asarray(values if values is not None else [], dtype=float).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0, "zero": 0, "small": 0, "mean": None, "std": None, "edges": [], "counts": [],
                "log_edges": [], "log_counts": []}
    m = float(np.abs(v).max()) or 1.0
    if edges is None:
        count = min(bins, max(5, len(v) // 10))
        edges = np.linspace(-m, m, bins + 1) if symmetric else np.histogram_bin_edges(v, count)
    edges = np.asarray(edges, dtype=float)
    nz = np.log10(np.abs(v[v != 0]))
    log_edges = np.linspace(math.floor(nz.min()), max(math.ceil(nz.max()), math.floor(nz.min()) + 1), 81) if len(
        nz) else np.zeros(0)
    return {"n": len(v), "zero": int(np.sum(v == 0)), "small": int(np.sum(np.abs(v) < 1e-3)),
            "mean": float(v.mean()), "std": float(v.std()), "edges": edges.tolist(),
            "counts": np.histogram(v, edges)[0].tolist(), "log_edges": log_edges.tolist(),
            "log_counts": np.histogram(nz, log_edges)[0].tolist() if len(nz) else []}


def _trim(edges, counts) -> tuple[np.ndarray, np.ndarray]:
    """Drop empty bins at both ends (fixed bins are wider than most models' weights)."""
    edges, counts = np.asarray(edges, dtype=float), np.asarray(counts, dtype=float)
    filled = np.flatnonzero(counts)
    if len(filled) == 0:
        return edges[:0], counts[:0]
    lo, hi = filled[0], filled[-1] + 1
    return edges[lo : hi + 1], counts[lo:hi]


def weight_histograms(path, weights: Mapping[str, object], small: float = 1e-3, lang: str = "en",
                      colors: Mapping[str, str] | None = None) -> Path:
    """Left: histograms of the weight values, log-scale counts. Right: log10 |w| of the nonzero weights. Legend
    labels give each arm's fraction of weights exactly 0 and with |w| < `small`. weights[arm]: raw values or a
    `histogram` dict (counts on fixed bins, as probes.json holds them)."""
    t = translator(lang)
    title = t("Weight values of the conv/dense layers")
    hists = {k: histogram(v) for k, v in weights.items()}
    if not hists or all(h["n"] == 0 for h in hists.values()):
        return _no_data(path, title, t("no data"))
    fig, (left, right) = _subplots(1, 2, figsize=(13, 5))
    any_nonzero = False
    for arm, h in hists.items():
        color, label = color_for(arm, colors), technique_label(arm, lang)
        if h["n"] == 0:
            left.plot([], [], color=color, label=t("{label}: no weights", label=label))
            continue
        zero, tiny = h["zero"] / h["n"], h["small"] / h["n"]
        text = t("{label} (n={n}): exactly 0: {zero}, |w|<{small}: {tiny}", label=label, n=f"{h['n']:,}",
                 zero=f"{zero:.1%}", small=f"{small:g}", tiny=f"{tiny:.1%}")
        edges, counts = _trim(h["edges"], h["counts"])
        if len(counts):
            left.stairs(counts, edges, color=color, lw=1.8, label=text)
        else:
            left.plot([], [], color=color, label=text)
        log_edges, log_counts = _trim(h.get("log_edges", []), h.get("log_counts", []))
        nonzero = h["n"] - h["zero"]
        if len(log_counts):
            any_nonzero = True
            right.stairs(log_counts, log_edges, color=color, lw=1.8,
                         label=t("{label}: {n} nonzero", label=label, n=f"{nonzero:,}"))
        else:
            right.plot([], [], color=color, label=t("{label}: all weights exactly 0", label=label))
    left.set_yscale("log")
    left.set_xlabel(t("weight value w"))
    left.set_ylabel(t("count (log scale)"))
    left.set_title(t("Distribution of weight values"))
    left.legend(fontsize=7.5)
    left.grid(alpha=0.3)
    right.axvline(np.log10(small), color="0.5", ls=":", lw=1)
    if any_nonzero:
        right.set_yscale("log")
    else:
        right.text(0.5, 0.5, t("every weight is exactly 0"), ha="center", va="center", color="0.4",
                   transform=right.transAxes)
    right.set_xlabel(t("log10 |w| (nonzero weights; exact zeros counted in the left legend)"))
    right.set_ylabel(t("count (log scale)"))
    right.set_title(t("Magnitudes: the dotted line is |w| = {small}", small=f"{small:g}"))
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=7.5)
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Dropout


def dropout_figure(path, masks: np.ndarray, eval_acc: Sequence[float], on_acc: Sequence[float],
                   color: str = PALETTE[4], lang: str = "en") -> Path:
    """Left: the dropout keep-masks of one sample over training steps (dropped units dark). Right: test accuracy
    in evaluation mode vs with dropout wrongly left on at test time (per-seed points, mean bars)."""
    masks = np.asarray(masks if masks is not None else np.zeros((0, 0)), dtype=bool)
    if masks.ndim == 1:
        masks = masks[None, :]
    ev, on = _floats(eval_acc), _floats(on_acc)
    ev, on = ev[np.isfinite(ev)], on[np.isfinite(on)]
    t = translator(lang)
    title = t("Dropout: random masks in training, and why it must be off at test time")
    if masks.size == 0 and len(ev) == 0 and len(on) == 0:
        return _no_data(path, title, t("no data"))
    fig, (left, right) = _subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    if masks.size:
        left.imshow(masks, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                    extent=(-0.5, masks.shape[1] - 0.5, masks.shape[0] + 0.5, 0.5))
        left.set_title(t("Keep-masks for one sample: kept {kept} of {units} units (white kept, black dropped)",
                         kept=f"{masks.mean():.0%}", units=masks.shape[1]), fontsize=10)
        left.set_xlabel(t("hidden unit (dense layer input)"))
        left.set_ylabel(t("training step"))
        left.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        left.text(0.5, 0.5, t("no masks"), ha="center", va="center", color="0.4", transform=left.transAxes)
        left.set_axis_off()
    groups = [(t("eval mode\n(dropout off)"), ev, color), (t("dropout left on\n(wrong)"), on, "#999999")]
    for i, (label, vals, color) in enumerate(groups):
        if len(vals):
            right.bar(i, vals.mean(), width=0.6, color=color, alpha=0.5, edgecolor="black",
                      label=t("{label}: mean {mean} (n={n})", label=label.splitlines()[0], mean=f"{vals.mean():.3f}",
                              n=len(vals)))
            jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
            right.plot(i + jitter, vals, "o", color="black", ms=5)
    right.plot([], [], "o", color="black", ms=5, label=t("one seed"))
    right.set_xticks([0, 1], [g[0] for g in groups])
    right.set_xlim(-0.6, 1.6)
    finite = np.concatenate([ev, on])
    if len(finite):
        lo = max(0.0, finite.min() - 0.1)
        right.set_ylim(lo, min(1.0, finite.max() + 0.05) if finite.max() + 0.05 > lo else lo + 0.1)
    right.set_ylabel(t("test accuracy (fraction correct)"))
    right.set_title(t("Test accuracy"), fontsize=10)
    right.legend(fontsize=7.5, loc="lower right")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Batch norm


def bn_figure(path, before, after, title_suffix: str = "", color: str = PALETTE[5], lang: str = "en") -> Path:
    """Histograms of one hidden feature over a training batch: BN's input (left) and the normalized value
    (right, before BN's scale and shift) with the standard normal density for reference. before/after: raw values
    or `histogram` dicts (as probes.json holds them)."""
    b, z = histogram(before, bins=60, symmetric=False), histogram(after, bins=60, symmetric=False)
    suffix = str(title_suffix or "").strip()
    t = translator(lang)
    title = t("Batch norm: one hidden feature before and after normalization") + (f" {suffix}" if suffix else "")
    if b["n"] == 0 and z["n"] == 0:
        return _no_data(path, title, t("no data"))
    fig, axes = _subplots(1, 2, figsize=(12, 4.5))
    panels = [
        (axes[0], b, "#999999", t("before BN (layer input)"), t("activation value"), False),
        (axes[1], z, color, t("after normalization z = (x − μ_B) / √(σ²_B + ε)"), t("normalized value z"), True),
    ]
    for ax, h, color_, label, xlabel, normal in panels:
        if h["n"] == 0 or not h["counts"]:
            ax.text(0.5, 0.5, t("no data"), ha="center", va="center", color="0.4", transform=ax.transAxes)
            ax.set_title(label, fontsize=10)
            continue
        edges, counts = np.asarray(h["edges"], dtype=float), np.asarray(h["counts"], dtype=float)
        widths = np.diff(edges)
        density = counts / (counts.sum() * np.where(widths > 0, widths, 1.0))
        mean, std = float(h["mean"]), float(h["std"])
        ax.stairs(density, edges, fill=True, color=color_, alpha=0.7, label=t("{n} values", n=f"{h['n']:,}"))
        ax.axvline(mean, color="black", lw=1.5, label=t("mean = {mean}", mean=f"{mean:.3g}"))
        ax.axvspan(mean - std, mean + std, color="black", alpha=0.07,
                   label=t("± 1 std (std = {std})", std=f"{std:.3g}"))
        if normal:
            points = np.linspace(min(edges[0], -3), max(edges[-1], 3), 200)
            ax.plot(points, np.exp(-points**2 / 2) / math.sqrt(2 * math.pi), color="black", ls="--", lw=1,
                    label=t("N(0, 1) density"))
        ax.set_title(t("{label}\nmean {mean}, std {std}", label=label, mean=f"{mean:.3g}", std=f"{std:.3g}"),
                     fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(t("density"))
        ax.legend(fontsize=7.5)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def batch_size_figure(path, rows: Sequence[Mapping], colors: Mapping[str, str] | None = None,
                      lang: str = "en") -> Path:
    """Left: test accuracy vs batch size with and without BN (error bars: CI half-widths). Right: seconds per
    epoch vs batch size. rows: {"batch_size", "bn", "test_acc_mean", "test_acc_ci", "seconds_per_epoch_mean"}."""
    t = translator(lang)
    title = t("Batch size: test accuracy and training time, with and without batch norm")
    rows = [r for r in rows or [] if r.get("batch_size") is not None]
    if not rows:
        return _no_data(path, title, t("no data"))
    fig, (left, right) = _subplots(1, 2, figsize=(12, 4.6))
    sizes = sorted({int(r["batch_size"]) for r in rows})
    for bn in (False, True):
        group = sorted((r for r in rows if bool(r.get("bn")) == bn), key=lambda r: r["batch_size"])
        if not group:
            continue
        x = np.array([r["batch_size"] for r in group], dtype=float)
        color, label = (color_for("bn", colors), t("with BN")) if bn else (color_for("none", colors), t("without BN"))
        acc = _floats([r.get("test_acc_mean") for r in group])
        ci = np.nan_to_num(_floats([r.get("test_acc_ci") for r in group]))
        sec = _floats([r.get("seconds_per_epoch_mean") for r in group])
        left.errorbar(x, acc, yerr=ci, color=color, marker="o", capsize=4, lw=1.8, label=label)
        right.plot(x, sec, color=color, marker="o", lw=1.8, label=label)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel(t("batch size (samples, log2 scale)"))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    left.set_ylabel(t("test accuracy (fraction correct)"))
    left.set_title(t("Test accuracy (error bars: 95% CI over seeds)"), fontsize=10)
    right.set_ylabel(t("seconds per epoch"))
    right.set_title(t("Training time per epoch"), fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Headline and validation curves


def headline_figure(path, rows: Sequence[Mapping], colors: Mapping[str, str] | None = None,
                    lang: str = "en") -> Path:
    """Test accuracy (left) and train-test gap (right) per technique, mean with 95% CI error bars.
    rows: {"arm", "test_acc_mean", "test_acc_ci", "gap_mean", "gap_ci", "n"}."""
    t = translator(lang)
    title = t("Regularization techniques: test accuracy and generalization gap")
    rows = [r for r in rows or [] if r.get("arm") is not None]
    if not rows:
        return _no_data(path, title, t("no data"))
    fig, axes = _subplots(1, 2, figsize=(12, max(3.2, 0.45 * len(rows) + 1.8)))
    y = np.arange(len(rows))
    labels = [f"{technique_label(r['arm'], lang)} (n={r.get('n', '?')})" for r in rows]
    row_colors = [color_for(r["arm"], colors) for r in rows]
    panels = [
        (axes[0], "test_acc", t("test accuracy (fraction correct)"), t("Test accuracy")),
        (axes[1], "gap", t("train − test accuracy (fraction)"), t("Generalization gap (lower: less overfitting)")),
    ]
    for ax, key, xlabel, panel_title in panels:
        mean = _floats([r.get(f"{key}_mean") for r in rows])
        ci = _floats([r.get(f"{key}_ci") for r in rows])
        for i in range(len(rows)):
            if np.isfinite(mean[i]):
                err = None if not np.isfinite(ci[i]) else [[ci[i]], [ci[i]]]
                ax.errorbar(mean[i], y[i], xerr=err, fmt="o", color=row_colors[i], capsize=4, ms=7, lw=1.8)
        note = t("mean with 95% CI over seeds")
        baseline = next((i for i, r in enumerate(rows) if r["arm"] == "none"), None)
        if key == "test_acc" and baseline is not None and np.isfinite(mean[baseline]):
            ax.axvline(mean[baseline], color=row_colors[baseline], lw=0.8, ls=":")
            note += t("; dotted: mean of none")
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


def validation_curves(path, sweeps: Mapping[str, Sequence], chosen: Mapping[str, float] | None = None,
                      colors: Mapping[str, str] | None = None, lang: str = "en") -> Path:
    """One panel per technique: validation accuracy vs strength (log x where the values span decades), each
    point a run, the line through the mean per value with ±1 standard error (several seeds per value), the chosen
    value marked. sweeps[t] = [(value, val_acc)...]."""
    t = translator(lang)
    title = t("Choosing each technique's strength on validation data")
    chosen = chosen or {}
    sweeps = {k: [(float(v), float(a)) for v, a in pts if v is not None and a is not None] for k, pts in
              (sweeps or {}).items()}
    if not sweeps:
        return _no_data(path, title, t("no data"))
    fig, axes = _grid_axes(len(sweeps), sharey=False)
    for ax, (tech, pts) in zip(axes, sweeps.items(), strict=True):
        color = color_for(tech, colors)
        if not pts:
            ax.text(0.5, 0.5, t("no data"), ha="center", va="center", color="0.4", transform=ax.transAxes)
            ax.set_title(technique_label(tech, lang))
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
        ax.plot(values, accs, "o", color=color, alpha=0.45, ms=5, label=t("one run"))
        half = np.array([standard_error(accs[values == u]) for u in uniq])
        ax.plot(uniq, means, "-", color=color, lw=1.8, label=t("mean per value"))
        if np.isfinite(half).any():
            ax.errorbar(uniq, means, yerr=np.where(np.isfinite(half), half, 0), fmt="none", ecolor=color,
                        capsize=4, lw=1.2, label=t("±1 standard error over seeds"))
        if tech in chosen and chosen[tech] is not None:
            c = float(chosen[tech])
            ax.axvline(c, color="black", ls="--", lw=1)
            near = np.argmin(np.abs(uniq - c))
            ax.plot([c], [means[near] if np.isclose(uniq[near], c) else np.nanmax(means)], "*", color="black",
                    ms=14, label=t("chosen: {value}", value=f"{c:g}"))
        ax.set_title(technique_label(tech, lang))
        ax.set_xlabel(t("{tech} strength", tech=technique_label(tech, lang)))
        ax.set_ylabel(t("validation accuracy (fraction correct)"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def regime_map(path, effects: Sequence[Mapping], accuracy: Sequence[Mapping],
               colors: Mapping[str, str] | None = None, lang: str = "en", data: str = "") -> Path:
    """The regime map of one data set: against training-set size (log axis), each technique's paired effect on
    test accuracy (left) and on the train-test gap (middle), technique minus none in points with its 95% band,
    zero and the smallest-effect band drawn; each arm's own test accuracy (right, the learning curves).
    effects: `regime.regime_rows` rows of this data set; accuracy: `regime.accuracy_rows` rows."""
    t = translator(lang)
    title = t("Where each technique pays, by training-set size") + (f" ({data})" if data else "")
    effects = [r for r in effects or [] if r.get("n")]
    if not effects:
        return _no_data(path, title, t("no data"))
    fig, axes = _subplots(1, 3, figsize=(16, 4.6))
    panels = [(axes[0], "test_acc", t("test accuracy: technique − none (points)"), t("Effect on test accuracy")),
              (axes[1], "gap", t("gap: technique − none (points)"), t("Effect on the gap (below 0: narrower)"))]
    for ax, metric, ylabel, panel_title in panels:
        rows = [r for r in effects if r["metric"] == metric]
        smallest = next((r["smallest_effect"] for r in rows if r.get("smallest_effect")), None)
        if smallest:
            ax.axhspan(-100 * smallest, 100 * smallest, color="0.85", alpha=0.6, lw=0,
                       label=t("smallest effect of interest"))
        ax.axhline(0, color="0.3", lw=0.9)
        for tech in dict.fromkeys(r["technique"] for r in rows):
            mine = sorted((r for r in rows if r["technique"] == tech), key=lambda r: r["train_size"])
            x = np.array([r["train_size"] for r in mine], dtype=float)
            mean, low, high = (100 * _floats([r[k] for r in mine]) for k in ("mean", "ci_low", "ci_high"))
            color = color_for(tech, colors)
            ax.plot(x, mean, "o-", color=color, lw=1.8, ms=5, label=technique_label(tech, lang))
            ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel(t("training images (log scale)"))
        ax.set_ylabel(ylabel)
        ax.set_title(f"{panel_title}\n{t('mean with 95% CI over paired seeds')}", fontsize=10)
        ax.grid(alpha=0.3)
    ax = axes[2]
    for arm in dict.fromkeys(r["arm"] for r in accuracy):
        mine = sorted((r for r in accuracy if r["arm"] == arm and r.get("n")), key=lambda r: r["train_size"])
        if not mine:
            continue
        x = np.array([r["train_size"] for r in mine], dtype=float)
        mean, low, high = (_floats([r[k] for r in mine]) for k in ("mean", "ci_low", "ci_high"))
        color = color_for(arm, colors)
        ax.plot(x, mean, "o-", color=color, lw=1.8, ms=5, label=technique_label(arm, lang))
        ax.fill_between(x, low, high, color=color, alpha=0.12, lw=0)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 1.0))  # accuracy lives in [0, 1]: a wide band of two seeds stays inside
    ax.set_xscale("log")
    ax.set_xlabel(t("training images (log scale)"))
    ax.set_ylabel(t("test accuracy (fraction correct)"))
    ax.set_title(f"{t('Test accuracy of each arm')}\n{t('mean with 95% CI over seeds')}", fontsize=10)
    ax.grid(alpha=0.3)
    for ax in axes:
        sizes = sorted({r["train_size"] for r in effects})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
    axes[0].legend(fontsize=8, loc="best")
    axes[2].legend(fontsize=8, loc="lower right")  # none among them
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
