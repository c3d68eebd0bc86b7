"""Build a study's report from its folder: verdicts, figures, report.md/report.html. Pure: no model, no data set.

Nothing here trains or runs a model. `build_report(study_dir)` reads study.json, results.csv and the run folders'
metrics.jsonl and probes.json (what the probe step, `sandbag.study.probes`, measured on each trained model), so
`sandbag report STUDY_DIR` rebuilds everything after the fact without torch, the data or any model.pt. The HTML is
self-contained (figures embedded as base64 PNG) and every value that comes from a file or a name is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import files
from ..errors import ConfigError
from . import claims, figures, layout, regime, schema, stats
from .claims import Claim
from .i18n import TIMING_METHOD, TIMING_METHOD_V1, TIMING_METHOD_V2, TIMING_METHOD_V3, translator
from .layout import PROBES, TIMING, slug
from .results import read_metrics, read_results

VERDICT_MARK = {"supported": "SUPPORTED", "contradicted": "CONTRADICTED", "negligible": "NEGLIGIBLE",
                "inconclusive": "inconclusive", "mixed": "mixed", "not testable": "NOT TESTABLE"}


def build_report(study_dir: Path | str, lang: str = "en", against: Path | str | None = None,
                 out: Path | str | None = None) -> Path:
    """Write analysis.json, verdicts.json, figures/*.png, report.md and report.html; return report.html's path.
    `lang` ("en" or "ko") is the language of report.md, report.html and the figures; analysis.json and
    verdicts.json are the same in every language (English texts), for tools that read them. `against`: another
    study folder (a replicate's original, say) whose verdicts the report sets beside these, part by part, and
    counts the agreement of (agreement.json). `out`: the folder all of these go to (default: the study folder);
    the study folder is then only read, so a report in another language leaves the first one as it was."""
    study_dir = Path(study_dir)
    out = files.make_dir(Path(out)) if out is not None else study_dir
    other = None
    if against is not None:
        other = files.read_json(Path(against) / layout.VERDICTS)
        if not isinstance(other, list):
            raise ConfigError(f"{against} has no verdicts.json to compare with (build its report first)")
    t = translator(lang)
    meta = json.loads((study_dir / layout.STUDY).read_text())
    cfg = meta["config"]
    rows = attach_probes(study_dir, read_results(study_dir))
    arms = study_arms(meta, rows)
    found = study_claims(meta, arms)
    colors = figures.palette(["none", *meta.get("techniques", []), *[a["arm"] for a in arms]])
    regime_map = _regime(out, meta, rows, arms) if cfg.get("train_sizes") else None
    with figures.language(lang):
        if regime_map is None:
            figure_paths = {data: draw_figures(Inputs(study_dir, cfg, meta, rows, arms, data, colors, lang, out))
                            for data in cfg["data"]}
        else:
            figure_paths = {data: _draw_regime(out, regime_map, data, colors, lang) for data in cfg["data"]}
    files.write_json(out / "analysis.json", jsonable(claims.probe_values(cfg["data"], rows, found)))
    timing = _read_timing(study_dir)
    verdicts = claims.evaluate_claims(cfg["data"], rows, found, timing=timing["rows"] if timing else None,
                                      exploratory=schema.exploratory(meta.get("preregistered"), found))
    files.write_json(out / layout.VERDICTS, jsonable(verdicts))
    shown = claims.localize(verdicts, found, lang)
    blocks = _document(meta, rows, arms, shown, figure_paths, study_dir, timing, t, regime_map)
    if out != study_dir:
        blocks.append(("p", t("Built by `sandbag report --out` from the study folder `{study}`, which holds "
                              "results.csv, aggregate.csv and runs/.", study=study_dir)))
    if other is not None:
        their_meta = files.read_json(Path(against) / layout.STUDY) or {}
        agreed = agreement(verdicts, other, part_strengths(meta), part_strengths(their_meta))
        split = variance_split(cfg, rows, their_meta.get("config") or {}, read_results(against))
        files.write_json(out / "agreement.json", jsonable({"against": str(against), **agreed, "variance": split}))
        blocks += agreement_section(agreed, str(against), shown, t) + _variance_section(split, t)
    files.write_text(out / "report.md", _markdown(blocks))
    files.write_text(out / "report.html", _html(blocks, out, lang))
    return out / "report.html"


def _regime(report_dir: Path, meta: dict, rows: list[dict], arms: list[dict]) -> dict:
    """regime.json of a study over train_sizes: the map's rows, each arm's test accuracy per size, and per data
    set and technique where it pays (`sandbag.study.regime`); written here, returned for the report."""
    cfg = meta["config"]
    effects = regime.regime_rows(cfg, rows, arms, meta.get("chosen") or {})
    out = {"version": 1, "sizes": regime.sizes_of(cfg), "rows": effects,
           "accuracy": regime.accuracy_rows(cfg, rows, arms),
           "summary": {data: regime.summary(effects, data) for data in cfg["data"]}}
    files.write_json(report_dir / layout.REGIME, jsonable(out))
    return out


def _draw_regime(report_dir: Path, regime_map: dict, data: str, colors: dict, lang: str) -> dict[str, Path]:
    fig_dir = report_dir / "figures" / slug(data)
    files.make_dir(fig_dir)
    path = figures.regime_map(fig_dir / "regime.png", [r for r in regime_map["rows"] if r["data"] == data],
                              [r for r in regime_map["accuracy"] if r["data"] == data], colors, lang, data)
    return {"regime": Path(path).relative_to(report_dir)}


def localized_verdicts(study_dir: Path, lang: str = "en", report_dir: Path | None = None):
    """verdicts.json in `lang` for a terminal table: (verdicts, translator, verdict cell function). English keeps
    the lowercase verdict words of verdicts.json. `report_dir`: where the report (and its verdicts.json) was
    written, when not in the study folder."""
    study_dir = Path(study_dir)
    t = translator(lang)
    verdicts = files.read_json(Path(report_dir or study_dir) / layout.VERDICTS)
    if lang == "en":
        def cell(result):
            mixed = result["verdict"] == stats.MIXED and result.get("decided")
            return f"{result['verdict']} (decided)" if mixed else result["verdict"]
        return verdicts, t, cell
    meta = files.read_json(study_dir / layout.STUDY)
    found = study_claims(meta, study_arms(meta, read_results(study_dir)))
    return claims.localize(verdicts, found, lang), t, lambda result: _claim_cell(result, t)


def _read_timing(study_dir: Path) -> dict | None:
    """timing.json of the timing phase (`sandbag.study.timing`), or None for a study without one."""
    return files.read_json(study_dir / TIMING)


def study_arms(meta: dict, rows: list[dict]) -> list[dict]:
    """The arms the study ran, as run_study recorded them in study.json; for an older study.json without them,
    the arms found in results.csv."""
    return meta.get("arms") or arms_from_rows(rows, meta["config"])


def study_claims(meta: dict, arms: list[dict]) -> list[Claim]:
    """The claims the study tests, as run_study recorded them in study.json; for a study.json written before
    claims were data, the lecture's claims resolved against its arms (as the code of the time built them)."""
    if meta.get("claims") is not None:
        return [Claim.from_dict(c) for c in meta["claims"]]
    return schema.parse_claims(schema.lecture()["claims"], arms, meta["config"], meta.get("techniques", []))


def arms_from_rows(rows: list[dict], cfg: dict) -> list[dict]:
    """The arms found in a results table: the fallback for a study.json written before it recorded its arms."""
    seen: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["group"], r["arm"])
        if key not in seen:
            base = r["arm"].rsplit("-b", 1)[0] if r["group"] == "batch" else r["arm"]
            seen[key] = {"group": r["group"], "arm": r["arm"], "technique": r["technique"],
                         "batch_size": r.get("batch_size") or cfg["batch_size"], "base": base}
    order = {g: i for i, g in enumerate(("sweep", "headline", "extra", "batch"))}
    return sorted(seen.values(), key=lambda a: order.get(a["group"], len(order)))


def attach_probes(study_dir: Path, rows: list[dict]) -> list[dict]:
    """Each finished row with its run folder's probes.json under "probes" (None where the folder has none)."""
    for row in rows:
        finished = row.get("status") == "finished"
        row["probes"] = files.read_json(study_dir / row["run_dir"] / PROBES) if finished else None
    return rows


def _runs(rows, data, group, arm):
    return sorted((r for r in rows if r["data"] == data and r["group"] == group and r["arm"] == arm
                   and r["status"] == "finished"), key=lambda r: r["seed"])


def _arm_names(arms: list[dict], group: str) -> list[str]:
    return [a["arm"] for a in arms if a["group"] == group]


def _probed(runs: list[dict]) -> list[dict]:
    return [r["probes"] for r in runs if r.get("probes")]


def _uses(arm: dict, technique: str) -> bool:
    return technique in arm["technique"].split("+")


# ----------------------------------------------------------------------------------------------------------------
# Figures: one registry of what each figure draws and from which arms


@dataclass(frozen=True)
class Inputs:
    """What a figure is drawn from: one data set's rows and arms of the study."""

    study_dir: Path
    cfg: dict
    meta: dict
    rows: list[dict]
    arms: list[dict]
    data: str
    colors: dict
    lang: str
    out: Path  # where the figures go: the study folder, or `sandbag report --out`'s

    def runs(self, arm: dict) -> list[dict]:
        return _runs(self.rows, self.data, arm["group"], arm["arm"])

    def first_probed(self, technique: str, field: str) -> tuple[dict | None, list[dict]]:
        """The first arm (in the study's order, sweep left out) that uses `technique` and whose runs were probed
        for `field`, and those probes."""
        for arm in self.arms:
            if arm["group"] != "sweep" and _uses(arm, technique):
                probed = [p for p in _probed(self.runs(arm)) if field in p]
                if probed:
                    return arm, probed
        return None, []


def _penalty(x: Inputs, path: Path) -> Path:
    figures.penalty_figure(path, lang=x.lang)  # returns the minima it drew
    return path


def _learning_curves(x: Inputs, path: Path) -> Path:
    return figures.learning_curves(path, _curves(x.study_dir, x.rows, x.arms, x.data), x.colors, x.lang)


def _weight_histograms(x: Inputs, path: Path) -> Path:
    """Every arm (sweep and batch-size arms left out) that uses only weight penalties, or nothing."""
    weights = {}
    for arm in x.arms:
        plain = set(arm["technique"].split("+")) <= {"none", "l2", "l1"}
        probed = _probed(x.runs(arm))
        if arm["group"] not in ("sweep", "batch") and plain and probed:
            weights[arm["arm"]] = probed[0]["weights"]
    return figures.weight_histograms(path, weights, colors=x.colors, lang=x.lang)


def _dropout(x: Inputs, path: Path) -> Path:
    arm, dropout = x.first_probed("dropout", "dropout_eval_acc")
    masks = np.array([[c == "1" for c in row] for row in dropout[0]["dropout_masks"]]) if dropout else None
    return figures.dropout_figure(
        path, masks if masks is not None else np.zeros((1, 1), dtype=bool),
        [p["dropout_eval_acc"] for p in dropout], [p["dropout_on_acc"] for p in dropout],
        color=figures.color_for(arm["arm"] if arm else "dropout", x.colors), lang=x.lang)


def _bn(x: Inputs, path: Path) -> Path:
    arm, bn = x.first_probed("bn", "bn_example")
    example = bn[0]["bn_example"] if bn else {"before": [], "after": [], "layer": "", "feature": 0}
    suffix = translator(x.lang)(" ({layer}, feature {feature})", layer=example["layer"], feature=example["feature"])
    return figures.bn_figure(path, example["before"], example["after"], title_suffix=suffix,
                             color=figures.color_for(arm["arm"] if arm else "bn", x.colors), lang=x.lang)


def _batch_size(x: Inputs, path: Path) -> Path:
    return figures.batch_size_figure(path, _batch_rows(x.cfg, x.rows, x.arms, x.data), x.colors, x.lang)


def _headline(x: Inputs, path: Path) -> Path:
    return figures.headline_figure(path, _headline_rows(x.rows, x.arms, x.data), x.colors, x.lang)


def _validation_curves(x: Inputs, path: Path) -> Path:
    sweeps, chosen = _sweeps(x.rows, x.data, x.meta.get("chosen", {}).get(x.data, {}))
    return figures.validation_curves(path, sweeps, chosen, x.colors, x.lang)


FIGURES: dict[str, Callable[[Inputs, Path], Path]] = {
    "penalty": _penalty,                       # claim 4's problem: no runs
    "learning_curves": _learning_curves,       # the headline arms, per epoch
    "weight_histograms": _weight_histograms,   # arms with weight penalties only, and none
    "dropout": _dropout,                       # the first arm with dropout
    "bn": _bn,                                 # the first arm with batch norm
    "batch_size": _batch_size,                 # none and bn at each batch size
    "headline": _headline,                     # the headline arms
    "validation_curves": _validation_curves,   # the sweep
}
assert tuple(sorted(FIGURES)) == tuple(sorted(layout.CELL_FIGURES)), "layout.CELL_FIGURES names the figures here"


def draw_figures(x: Inputs) -> dict[str, Path]:
    """Every figure of `FIGURES` for one data set, into figures/<slug>/<id>.png of the report's folder: {id: path
    in that folder}."""
    fig_dir = x.out / "figures" / slug(x.data)
    files.make_dir(fig_dir)
    return {fid: Path(draw(x, fig_dir / f"{fid}.png")).relative_to(x.out) for fid, draw in FIGURES.items()}


def _curves(study_dir: Path, rows, arms, data) -> dict:
    curves = {}
    for arm in _arm_names(arms, "headline"):
        runs = _runs(rows, data, "headline", arm)
        if not runs:
            continue
        # test: the evaluated epochs (every eval_every-th and the last) that every seed reached; train: every epoch
        # where the runs tracked it (track_acc), else the evaluated ones
        full = [read_metrics(study_dir / r["run_dir"]) for r in runs]
        histories = [[row for row in h if "test_acc" in row] for h in full]
        epochs = min(len(h) for h in histories)
        curves[arm] = {"epoch": [row["epoch"] for row in histories[0][:epochs]],
                       "train_acc": [[row["train_acc"] for row in h[:epochs]] for h in histories],
                       "test_acc": [[row["test_acc"] for row in h[:epochs]] for h in histories]}
        if all(h and all("track_acc" in row for row in h) for h in full):
            tracked = min(len(h) for h in full)
            curves[arm].update(train_epoch=[row["epoch"] for row in full[0][:tracked]],
                               train_acc=[[row["track_acc"] for row in h[:tracked]] for h in full])
    return curves


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan for n < 2): the verdict rule's own interval."""
    result = stats.paired_verdict(values, "greater")
    return result["mean"], (result["ci_high"] - result["mean"]) if result["n"] >= 2 else math.nan


def _headline_rows(rows, arms, data) -> list[dict]:
    out = []
    for arm in _arm_names(arms, "headline"):
        runs = _runs(rows, data, "headline", arm)
        if runs:
            acc, acc_ci = mean_ci([r["test_acc"] for r in runs])
            gap, gap_ci = mean_ci([r["gap"] for r in runs])
            out.append({"arm": arm, "test_acc_mean": acc, "test_acc_ci": acc_ci, "gap_mean": gap, "gap_ci": gap_ci,
                        "n": len(runs)})
    return out


def _batch_rows(cfg, rows, arms, data) -> list[dict]:
    out = []
    seeds = set(range(layout.first_seed(cfg), layout.first_seed(cfg) + cfg["extra_seeds"]))
    for b in cfg["batch_sizes"]:
        for bn in (False, True):
            kind = "bn" if bn else "none"
            arm = next((a for a in arms if a["group"] != "sweep" and a.get("base", a["arm"]) == kind
                        and a["batch_size"] == b), None)
            runs = [r for r in _runs(rows, data, arm["group"], arm["arm"]) if r["seed"] in seeds] if arm else []
            if runs:
                acc, ci = mean_ci([r["test_acc"] for r in runs])
                secs = sum(r["seconds_per_epoch"] for r in runs) / len(runs)
                out.append({"batch_size": b, "bn": bn, "test_acc_mean": acc, "test_acc_ci": ci,
                            "seconds_per_epoch_mean": secs, "n": len(runs)})
    return out


def _twins_text(rows, t) -> str:
    """A sentence on the runs the sweep and the other arms share (the scheduler trains each config once), if any."""
    swept = {r.get("config_key") for r in rows if r["group"] == "sweep"}
    shared = sum(1 for r in rows if r["group"] != "sweep" and r.get("config_key") in swept)
    return (" " + t("{n} of those runs (the arm without a technique and each chosen strength, on the sweep's seeds) "
                    "are the sweep's own runs, with the same data, seed and epochs, trained once: their strength was "
                    "chosen on validation images, their comparison is on the test set.", n=shared)) if shared else ""


def _sweeps(rows, data, chosen) -> tuple[dict, dict]:
    sweeps: dict[str, list] = {}
    for r in rows:
        if r["data"] == data and r["group"] == "sweep" and r["technique"] != "none" and r["status"] == "finished":
            sweeps.setdefault(r["technique"], []).append((r["strength"], r["val_acc"]))
    return {t: sorted(v) for t, v in sweeps.items()}, chosen


# ----------------------------------------------------------------------------------------------------------------
# The document: a list of blocks rendered to Markdown and to HTML from one source


def _document(meta, rows, arms, verdicts, figure_paths, study_dir, timing, t, regime_map=None) -> list[tuple]:
    cfg = meta["config"]
    hw, ver = meta["hardware"], meta["versions"]
    n_runs = len(rows)
    head: list[tuple] = [("h1", t("sandbag study: {name}", name=cfg["name"]))]
    if cfg.get("quick"):
        head.append(("p", t("**Quick preset: a reduced study (fewer seeds, epochs and samples). Treat its verdicts "
                            "as a smoke test, not as evidence.**")))
    blocks: list[tuple] = [("h2", t("Design and protocol"))]
    track = (t("measured every epoch on a fixed stratified subset of {n} training images, in the runs whose "
               "learning speed is read (the headline arms, the sweep, and arms a claim reads it of; the others have "
               "none).", n=cfg["track_size"])
             if cfg.get("track_size") else t("interpolated between the evaluated epochs."))
    every = (t(" Clean figures every {k} epochs and at the last.", k=cfg["eval_every"])
             if cfg.get("eval_every", 1) > 1 else "")
    blocks += [
        ("p", t("{n_runs} runs on {data}; {seeds} seeds for the headline comparison, {extra_seeds} for the "
                "sub-experiments. Wall time {wall}, compute in runs {compute}.", n_runs=n_runs,
                data=", ".join(cfg["data"]), seeds=cfg["seeds"], extra_seeds=cfg["extra_seeds"],
                wall=format_duration(meta.get("wall_seconds"), t),
                compute=format_duration(meta.get("cpu_seconds_runs"), t))),
        ("p", t("Command: `{command}`", command=meta["command"])),
        ("p", t("Versions: sandbag {sandbag}, torch {torch}, Python {python}. Hardware: {processor}, {cpus} CPUs, "
                "{workers} workers x {threads} threads.", sandbag=ver["sandbag"], torch=ver["torch"],
                python=ver.get("python", "?"), processor=hw["processor"], cpus=hw["cpus"], workers=hw["workers"],
                threads=hw["threads_per_worker"])),
        ("h3", t("Protocol")),
        ("ul", [
            _sampling_text(cfg, t),
            t("Model {model}; optimizer {optimizer} (lr {lr}); {epochs} epochs at batch {batch_size}; training set "
              "{train} samples (stratified, seeded); test set: {test}.", model=cfg["model"],
              optimizer=cfg["optimizer"], lr=cfg["lr"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
              train=t("all") if not cfg["train_size"] else cfg["train_size"], test=_test_text(cfg, t)),
            t("Strength is a nuisance parameter: each technique's strength is chosen by validation accuracy on "
              "{validation} ({sweep_epochs} epochs, {sweep_seeds} seed(s) per strength, the mean decides), never on "
              "the test set. The chosen value then runs on {seeds} seeds.", validation=_validation_text(cfg, t),
              sweep_epochs=cfg["sweep_epochs"], sweep_seeds=cfg.get("sweep_seeds", 1), seeds=cfg["seeds"])
            + _twins_text(rows, t),
            t("Verdict rule: paired difference over seeds (same seeds for both arms), mean with a 95% Student-t "
              "interval. Supported if the interval lies on the claimed side of zero (or above -margin for 'at least "
              "as good'), contradicted if on the other side, negligible (no practical difference) if neither and "
              "the interval lies inside ± the smallest effect of interest, inconclusive otherwise. A claim is "
              "decided when every part is supported, contradicted or negligible; its verdict is their common one, "
              "or mixed."),
            t("Smallest effects of interest: {effects}.", effects=_smallest(cfg, t)),
            t("Multiple comparisons: beside each verdict, its p-value (of the test behind it: zero difference, the "
              "margin, or both equivalence bounds; p < 0.05 exactly when the interval decides) adjusted by Holm's "
              "method over every paired part of every claim of the data set (family-wise error 5%); the parts that "
              "read machine timings are adjusted as a family of their own, so the other verdicts do not depend on "
              "the machine's speed."),
            t("Power: for each inconclusive part, the smallest difference this many seeds detect with 80% power "
              "(from the observed paired spread), and the seeds that would decide the part with 80% probability "
              "were the observed difference and spread the truth: by detecting the difference, or by showing it "
              "negligible where the part has a smallest effect of interest."),
            t("P(A > B): the share of paired seeds in which A's value is above B's (a tie counts half), with its 95% "
              "Wilson interval."),
            t("Gap = clean (evaluation-mode) training accuracy minus test accuracy. Learning speed = fractional "
              "epoch at which clean training accuracy reaches {target} (epochs + 1 if never), {how}",
              target=cfg["learn_target"], how=track) + every,
            (t("Timing claims (seconds per epoch): {method}.", method=_timing_method(timing, t)) if timing else
             t("Timing claims (seconds per epoch): from the runs themselves, which ran in parallel workers and "
               "shared the machine (this study has no timing phase).")),
        ]),
    ]
    if regime_map is not None:
        blocks[-1][1].insert(2, _sizes_text(cfg, t))
    for data in cfg["data"] if regime_map is None else []:
        blocks += _strength_section(meta, rows, data, t)
        blocks += _headline_section(rows, arms, data, t)
    key = "regime" if regime_map is not None else "headline"  # the one figure that says most
    out = [*head, *_findings(cfg, verdicts, figure_paths, key, t, regime_map), *problem_blocks(meta, rows, t)]
    out += [("h2", t("Claims")), *_preregistration(meta, verdicts, t)]
    out.append(("table", ["#", t("claim"), *cfg["data"]],
                [[str(v["number"]), _claim_text(v, t), *[_claim_cell(v["data"][d], t) for d in cfg["data"]]]
                 for v in verdicts]))
    out += _claims_summary(cfg, verdicts, t)
    for data in cfg["data"] if regime_map is not None else []:
        out += _regime_section(regime_map, data, t)
    for v in verdicts:
        out.append(("h3", f"{v['number']}. {_claim_text(v, t)}"))
        for data in cfg["data"]:
            result = v["data"][data]
            out.append(("p", f"**{data}: {_claim_cell(result, t)}**"))
            out.append(("table", [t("part"), "n", t("mean difference"), t("95% CI"), t("smallest effect"),
                                  t("verdict"), t("p (Holm)"), t("survives Holm"), t("P(A > B) [95% CI]")],
                        [_part_row(p, t) for p in result["parts"]]))
            out += [("p", line) for line in _power_lines(result["parts"], t)]
            out += _depends_on(meta, v, data, t)
            if v["figure"] and v["figure"] in figure_paths[data]:
                out.append(("p", t("Figure: [{caption}](#{anchor})", caption=_figure_title(v["figure"], t),
                                   anchor=_anchor(v["figure"], data))))
    out += _figures_section(cfg, verdicts, figure_paths, key, t)
    out += blocks
    out += [("h2", t("Files")), ("p", t("results.csv (one row per run), aggregate.csv (mean, std, n per arm), "
                                        "analysis.json (the probed values the claims read, from each run's "
                                        "probes.json), verdicts.json, figures/, runs/."))]
    return out


# What each figure shows and what to look for (its caption; claims link to it)
FIGURE_CAPTIONS = {
    "headline": "Test accuracy and train-test gap of each technique (mean with 95% interval over seeds): a technique "
                "right of the dotted line (no technique) tested better; a gap nearer 0 overfits less.",
    "learning_curves": "Learning curves: clean training accuracy every epoch (tracked images) and test accuracy "
                       "where evaluated; a technique that trades fit for generalization rises more slowly in training "
                       "and ends higher in test.",
    "validation_curves": "Validation accuracy against each technique's strength (the sweep): the marked point is "
                         "the strength chosen, the one every verdict speaks of.",
    "penalty": "The closed-form problem of the L2 claim: the penalized minimum moves toward zero as lambda grows.",
    "weight_histograms": "Weights of the arms with weight penalties and of none: L1 piles weights at or near zero, "
                         "L2 shrinks them without zeros.",
    "dropout": "Dropout's keep-masks during training (left), and accuracy with dropout left on at evaluation against "
               "off (right): left on, it costs accuracy.",
    "bn": "One feature before and after batch normalization: mean 0 and std 1 after it (before scale and shift).",
    "batch_size": "Test accuracy and seconds per epoch at each batch size, with and without batch norm.",
    "regime": "The regime map: each technique's effect on test accuracy and on the gap against training-set size, "
              "and each arm's test accuracy; a line above zero and outside the grey band pays.",
}
FIGURE_TITLES = {"headline": "techniques compared", "learning_curves": "learning curves",
                 "validation_curves": "strength sweeps", "penalty": "the penalty's minimum",
                 "weight_histograms": "weight histograms", "dropout": "dropout at evaluation", "bn": "batch norm",
                 "batch_size": "batch sizes", "regime": "the regime map"}
assert set(FIGURE_CAPTIONS) == set(FIGURE_TITLES) == set(layout.FIGURES)


def _anchor(figure: str, data: str) -> str:
    return f"fig-{figure}-{slug(data)}"


def _figure_title(figure: str, t) -> str:
    return t(FIGURE_TITLES[figure])


def _figure(figure: str, data: str, paths: dict, t) -> tuple:
    caption = t("{title} ({data}). {caption}", title=_figure_title(figure, t), data=data,
                caption=t(FIGURE_CAPTIONS[figure]))
    return ("img", paths[figure], caption, _anchor(figure, data))


def _figures_section(cfg, verdicts, figure_paths, key, t) -> list[tuple]:
    """Each figure once, with a caption that says what to see: those the claims name and the strength sweep, the
    findings' own figure left out (it stands at the top)."""
    named = {v["figure"] for v in verdicts if v.get("figure")} | {"validation_curves"}
    out = []
    for data in cfg["data"]:
        shown = [f for f in layout.FIGURES if f in named and f != key and f in figure_paths[data]]
        out += [_figure(f, data, figure_paths[data], t) for f in shown]
    return [("h2", t("Figures")), *out] if out else []


METRIC_NAMES = {"test_acc": "test accuracy", "train_acc": "clean training accuracy", "val_acc": "validation accuracy",
                "gap": "the train-test gap", "train_loss": "clean training loss", "test_loss": "test loss",
                "weight_l2": "the weights' L2 norm", "frac_small": "the share of weights below 1e-3",
                "frac_zero": "the share of weights exactly 0", "epochs_to_target": "epochs to learn",
                "seconds_per_epoch": "seconds per epoch"}


def part_sentence(p: dict, t) -> str:
    """A paired part in plain words, with its number, interval and unit: "bn raised test accuracy by 5.5 pt
    [+5.1 pt, +5.9 pt] over none"; parts without two named arms or a known metric: their label and numbers."""
    column = (p.get("metric") or "").split(".", 1)[-1]
    ci = f"[{_amount(p, p['ci_low'], t)}, {_amount(p, p['ci_high'], t)}]"
    known = p.get("b") and column in METRIC_NAMES and not p.get("ratio") and math.isfinite(p["mean"])
    if known and (p["ci_low"] > 0 or p["ci_high"] < 0):  # "raised" only where the interval says so
        template = ("{a} raised {metric} by {amount} {ci} over {b}" if p["mean"] > 0 else
                    "{a} lowered {metric} by {amount} {ci} against {b}")
        return t(template, a=p["a"], b=p["b"], metric=t(METRIC_NAMES[column]),
                 amount=_amount(p, abs(p["mean"]), t, sign=False), ci=ci)
    if known:
        return t("{metric}, {a} minus {b}: {amount} {ci}", a=p["a"], b=p["b"], metric=t(METRIC_NAMES[column]),
                 amount=_amount(p, p["mean"], t), ci=ci)
    return f"{p['label']}: {_amount(p, p['mean'], t)} {ci}"


def _shown_parts(result: dict) -> list[dict]:
    """The parts a finding quotes: decided ones, the largest effect against its interval first (else the first)."""
    def weight(p):
        half = (p["ci_high"] - p["ci_low"]) / 2
        return abs(p["mean"]) / half if half > 0 else math.inf

    paired = [p for p in result["parts"] if p["kind"] == "paired" and p["verdict"] != stats.NOT_TESTABLE
              and math.isfinite(p.get("mean", math.nan)) and math.isfinite(p.get("ci_high", math.nan))]
    decided = sorted((p for p in paired if p["verdict"] in (stats.SUPPORTED, stats.CONTRADICTED)), key=weight,
                     reverse=True)
    return decided[:2] or paired[:1]


def _findings(cfg, verdicts, figure_paths, key, t, regime_map=None) -> list[tuple]:
    """What the study found, first: the decided count, in a study over sizes one sentence per technique on where
    it pays, one line per claim with its strongest numbers, then the figure that says most."""
    out = [("h2", t("Findings"))]
    for data in cfg["data"]:
        if regime_map is not None:
            rows = [r for r in regime_map["rows"] if r["data"] == data]
            out.append(("ul", regime_sentences(regime_map["summary"].get(data, []), rows, t)))
        decided = sum(1 for v in verdicts if v["data"][data]["decided"])
        testable = sum(1 for v in verdicts if v["data"][data]["verdict"] != stats.NOT_TESTABLE)
        out.append(("p", t("**{data}: {decided} of {total} claims decided.** {scope}", data=data, decided=decided,
                           total=testable, scope=_scope_text(cfg, t))))
        items = []
        for v in verdicts:
            result = v["data"][data]
            shown = _shown_parts(result)
            numbers = _sentence_start("; ".join(part_sentence(p, t) for p in shown), shown)
            more = len(result["parts"]) - len(shown)
            tail = t(" (+{n} more parts)", n=more) if more > 0 and shown else ""
            items.append(f"**{v['number']}. {_claim_cell(result, t)}**: {_claim_text(v, t)}"
                         + (f" {numbers}{tail}." if numbers else ""))
        out.append(("ul", items))
        if key in figure_paths[data]:
            out.append(_figure(key, data, figure_paths[data], t))
    return out


def _sentence_start(numbers: str, shown: list[dict]) -> str:
    """The numbers follow the claim's sentence as one of their own: a capital unless they open with an arm's name
    ("bn raised ...": a name keeps its spelling)."""
    arm = shown[0].get("a") if shown else None
    if not numbers[:1].islower() or (arm and numbers.startswith(arm)):
        return numbers
    return numbers[0].upper() + numbers[1:]


def resting_strengths(meta: dict, part: dict, data: str) -> dict[str, float]:
    """The chosen strengths a claim part (as study.json records it) rests on: {technique: strength} of the
    placeholders in its arms' specs ("l2={l2}"); {} for a part whose arms are fixed or that reads no arm."""
    arms = {(a["group"], a["arm"]): a for a in meta.get("arms") or []}
    chosen = (meta.get("chosen") or {}).get(data) or {}
    found = {}
    for side in (part.get("a"), part.get("b"), *(part.get("first") or []), *(part.get("second") or [])):
        arm = arms.get(tuple(side)) if side else None
        for spec in (arm or {}).get("specs", []):
            found.update((name, chosen[name]) for name in chosen if "{" + name + "}" in spec)
    return found


def _depends_on(meta: dict, v: dict, data: str, t) -> list[tuple]:
    """The chosen strengths a claim's verdict rests on, with a warning where one sits at an edge of its grid."""
    claim = next((c for c in meta.get("claims") or [] if c.get("id") == v.get("id")), None)
    if claim is None:
        return []
    chosen = {}
    for part in claim["parts"]:
        chosen.update(resting_strengths(meta, part, data))
    if not chosen:
        return []
    grids = (meta.get("grids") or {}).get(data) or {}
    named = []
    for tech in chosen:
        grid = sorted(grids.get(tech) or (meta["config"].get("sweep") or {}).get(tech) or [])
        edge = (t(", the strongest of its grid") if len(grid) > 1 and math.isclose(chosen[tech], grid[-1]) else
                t(", the weakest of its grid") if len(grid) > 1 and math.isclose(chosen[tech], grid[0]) else "")
        named.append(f"{tech} {_g(chosen[tech])}{edge}")
    return [("p", t("This verdict speaks of the strengths chosen on validation data: {strengths}.",
                    strengths="; ".join(named)))]


def part_strengths(meta: dict) -> dict[tuple, dict[str, float]]:
    """{(claim id, data set, part index): the chosen strengths the part rests on} of a study, for every data set
    (or cell) it chose strengths for; {} for a study.json written before claims and arms were recorded in it."""
    return {(c.get("id") or c["number"], data, i): resting_strengths(meta, part, data)
            for c in meta.get("claims") or [] for data in meta.get("chosen") or {}
            for i, part in enumerate(c["parts"])}


def agreement(verdicts: list[dict], other: list[dict], strengths: dict | None = None,
              their_strengths: dict | None = None) -> dict:
    """Part by part (matched by claim id, data set and position), the verdicts of two studies of one design: each
    pair, and how many agree, over all parts, over those that do not read machine timings, and over those whose
    arms ran at the same chosen strengths in both studies (`strengths`, `their_strengths`: `part_strengths` of
    each). Two replicates may choose neighbouring strengths on a flat validation curve; a part that rests on them
    compares two settings, not one answer asked twice, and the split shows which disagreements are of that kind."""
    theirs = {(v.get("id") or v["number"], d, i): p for v in other for d, r in v["data"].items()
              for i, p in enumerate(r["parts"])}
    pairs = []
    for v in verdicts:
        for data, result in v["data"].items():
            for i, p in enumerate(result["parts"]):
                key = (v.get("id") or v["number"], data, i)
                q = theirs.get(key)
                if q is None:
                    continue
                pair = {"claim": v["number"], "id": v.get("id"), "data": data, "part": i, "label": p["label"],
                        "timed": bool(p.get("timed")), "here": p["verdict"], "here_mean": p["mean"],
                        "there": q["verdict"], "there_mean": q["mean"], "same": p["verdict"] == q["verdict"]}
                if key in (strengths or {}) and key in (their_strengths or {}):
                    pair.update(strengths_here=strengths[key], strengths_there=their_strengths[key],
                                same_strengths=not _moved(strengths[key], their_strengths[key]))
                pairs.append(pair)
    untimed = [x for x in pairs if not x["timed"]]
    alike = [x for x in pairs if x.get("same_strengths")]
    return {"pairs": pairs, "same": sum(x["same"] for x in pairs), "total": len(pairs),
            "same_untimed": sum(x["same"] for x in untimed), "total_untimed": len(untimed),
            **({"same_at_same_strengths": sum(x["same"] for x in alike), "total_at_same_strengths": len(alike)}
               if any("same_strengths" in x for x in pairs) else {})}


def _moved(here: dict[str, float], there: dict[str, float]) -> list[str]:
    """"l2 0.0001 → 0.001" for each chosen strength a part rests on that differs between two studies."""
    return [f"{tech} {_g(here.get(tech))} → {_g(there.get(tech))}" for tech in dict.fromkeys([*here, *there])
            if tech not in here or tech not in there or not math.isclose(here[tech], there[tech])]


SPLIT_METRICS = ("test_acc", "gap")


def variance_split(cfg: dict, rows: list[dict], their_cfg: dict, their_rows: list[dict]) -> list[dict]:
    """Where the spread over seeds comes from, for the headline arms' test accuracy and gap, when one study draws a
    sample per seed and the other trains every seed on one fixed sample (the same design otherwise): the fixed
    study's variance over seeds is the initialization's (and batch order's), the per-seed study's is that plus the
    sample's, so the sample's share is their difference (floored at 0) over the per-seed variance. [] when both
    studies sample alike: then no pair of them separates the two sources."""
    modes = {cfg.get("data_sampling", "fixed"), their_cfg.get("data_sampling", "fixed")}
    if modes != {"fixed", "per-seed"}:
        return []
    per_seed, fixed = (rows, their_rows) if cfg.get("data_sampling") == "per-seed" else (their_rows, rows)
    out = []
    for data in cfg["data"]:
        for arm in dict.fromkeys(r["arm"] for r in per_seed if r["group"] == "headline" and r["data"] == data):
            for metric in SPLIT_METRICS:
                both = [stats.mean_std(r[metric] for r in _runs(x, data, "headline", arm))[1]
                        for x in (per_seed, fixed)]
                if not all(math.isfinite(sd) for sd in both):
                    continue
                total, init = both[0] ** 2, both[1] ** 2
                out.append({"data": data, "arm": arm, "metric": metric, "sd_total": both[0], "sd_init": both[1],
                            "sample_share": max(0.0, total - init) / total if total > 0 else math.nan})
    return out


def _variance_section(split: list[dict], t) -> list[tuple]:
    if not split:
        return [("p", t("Where the spread comes from: not separable here. Both studies draw their samples alike; a "
                        "study of the same design with the other data_sampling (fixed or per-seed) splits the spread "
                        "over seeds into the training sample's share and the initialization's."))]
    rows = [[x["arm"], x["metric"], _g(x["sd_total"]), _g(x["sd_init"]), f"{x['sample_share']:.0%}"
             if math.isfinite(x["sample_share"]) else "n/a"] for x in split]
    return [("h3", t("Where the spread comes from")),
            ("p", t("Standard deviation over seeds with a sample per seed (sample and initialization) and with one "
                    "fixed sample (initialization only); the training sample's share of the variance is their "
                    "difference over the first.")),
            ("table", [t("arm"), t("metric"), t("sd, sample per seed"), t("sd, fixed sample"),
                       t("sample's share")], rows)]


def agreement_section(agreed: dict, against: str, shown: list[dict], t) -> list[tuple]:
    """The report's blocks for `agreement`'s result against the study `against`: the count, the split by chosen
    strengths where both studies recorded them, and the table, part by part."""
    labels = {(v["number"], d, i): p["label"] for v in shown for d, r in v["data"].items()
              for i, p in enumerate(r["parts"])}
    split = "total_at_same_strengths" in agreed
    rows = [[str(x["claim"]), labels.get((x["claim"], x["data"], x["part"]), x["label"]), x["data"],
             f"{t(VERDICT_MARK[x['here']])} ({_mean_cell(x['here_mean'])})", f"{t(VERDICT_MARK[x['there']])} "
             f"({_mean_cell(x['there_mean'])})",
             *(["; ".join(_moved(x.get("strengths_here") or {}, x.get("strengths_there") or {}))] if split else []),
             t("yes") if x["same"] else t("no")] for x in agreed["pairs"]]
    blocks = [("h2", t("Against another study")),
              ("p", t("**{same} of {total} parts reach the same verdict as {other}** ({same_untimed} of "
                      "{total_untimed} of the parts that do not read machine timings).", other=f"`{against}`",
                      **{k: agreed[k] for k in ("same", "total", "same_untimed", "total_untimed")}))]
    moved = dict.fromkeys(change for x in agreed["pairs"] if x.get("same_strengths") is False
                          for change in _moved(x["strengths_here"], x["strengths_there"]))
    if split and moved:
        blocks.append(("p", t("Of the {total} parts whose arms ran at the same chosen strengths in both studies, "
                              "{same} reach the same verdict. The other {other} rest on strengths the two sweeps "
                              "chose differently ({which}; here → there): each of them compares two settings, not "
                              "one question asked twice.", total=agreed["total_at_same_strengths"],
                              same=agreed["same_at_same_strengths"],
                              other=agreed["total"] - agreed["total_at_same_strengths"],
                              which="; ".join(moved))))
    header = ["#", t("part"), t("data"), t("here (mean)"), t("there (mean)"),
              *([t("strengths, if they differ")] if split else []), t("same")]
    return [*blocks, ("table", header, rows)]


def _mean_cell(mean) -> str:
    return _g(math.nan if mean is None else mean)  # the other study's verdicts.json wrote its NaN as null


def _sampling_text(cfg: dict, t) -> str:
    seeds = f"{layout.first_seed(cfg)}-{layout.first_seed(cfg) + cfg['seeds'] - 1}"
    replicate = cfg.get("replicate") or 0
    if cfg.get("data_sampling") == "per-seed":
        return t("Data sampling per seed: seed s draws its own stratified training sample (and its validation and "
                 "test images); every arm of seed s gets the same ones, so each comparison stays paired. Replicate "
                 "{replicate}, seeds {seeds}.", replicate=replicate, seeds=seeds)
    return t("Data sampling fixed: every run trains on one stratified sample (data seed {data_seed}); the seeds "
             "vary the initialization and batch order only. Replicate {replicate}, seeds {seeds}.",
             data_seed=layout.first_seed(cfg), replicate=replicate, seeds=seeds)


def _sizes_text(cfg: dict, t) -> str:
    """The protocol line of a study over train_sizes: its sizes, and how many epochs each trains."""
    sizes = regime.sizes_of(cfg)
    if cfg.get("size_steps"):
        per_size = [layout.size_epochs(cfg["size_steps"], cfg["batch_size"], n, cfg["epochs"],
                                       cfg.get("size_min_epochs", 1)) for n in sizes]
        epochs = ", ".join(f"{n}: {e}" for n, e in zip(sizes, per_size, strict=True))
        how = t("every run of a size trains about {steps} steps at batch {batch}, and at least {min_epochs} epochs "
                "(epochs per size: {epochs})", steps=cfg["size_steps"], batch=cfg["batch_size"],
                min_epochs=cfg.get("size_min_epochs", 1), epochs=epochs)
    else:
        how = t("every run trains {epochs} epochs at every size", epochs=cfg["epochs"])
    return t("Training-set sizes {sizes} (the regime map): each size is a study of its own, with its own samples, "
             "validation sweep and chosen strengths; {how}.", sizes=", ".join(str(n) for n in sizes), how=how)


def _scope_text(cfg: dict, t) -> str:
    """What a verdict below speaks of: over samples and initializations, or over initializations of one sample."""
    if cfg.get("train_sizes"):
        sizes = ", ".join(str(n) for n in regime.sizes_of(cfg))
        return t("Scope: each verdict holds over training samples of {data} at the sizes it names ({sizes} images) "
                 "and initializations, at the strengths the validation sweep chose at each size.",
                 data=", ".join(cfg["data"]), sizes=sizes)
    size = cfg.get("train_size") or t("all")
    data = ", ".join(cfg["data"])
    if cfg.get("data_sampling") == "per-seed":
        return t("Scope: each verdict holds over {n}-image training samples of {data} and initializations, at the "
                 "strengths the validation sweep chose.", n=size, data=data)
    return t("Scope: each verdict holds for one fixed {n}-image training sample of {data}, over initializations, at "
             "the strengths the validation sweep chose.", n=size, data=data)


def _claim_text(v: dict, t) -> str:
    return v["text"] + (t(" (exploratory)") if v.get("exploratory") else "")


def _preregistration(meta: dict, verdicts: list[dict], t) -> list[tuple]:
    """The design's hash now and when the study first ran, and which claims came or changed since (exploratory)."""
    now, first = meta.get("design"), meta.get("preregistered")
    if not now or not first:
        return []
    out = [("p", t("Design {now}; preregistered as {first} when the study first ran ({at}).", now=now["design"],
                   first=first["design"], at=first.get("at", "?")))]
    changed = [str(v["number"]) for v in verdicts if v.get("exploratory")]
    if changed:
        out.append(("p", t("**Claims {which} were added or changed after the study first ran: they are exploratory, "
                           "adjusted for multiple comparisons in a family of their own, not with the preregistered "
                           "claims.**", which=", ".join(changed))))
    return out


def _timing_method(timing: dict, t) -> str:
    """How the timing phase measured, in the report's language (an older timing.json has only the English)."""
    fields = timing.get("method_fields")
    template = {4: TIMING_METHOD, 3: TIMING_METHOD_V3, 2: TIMING_METHOD_V2}.get(timing.get("version"), TIMING_METHOD_V1)
    return t(template, **fields) if fields else timing["method"]


def problem_blocks(meta, rows, t) -> list[tuple]:
    """Diverged runs and strengths that fell back to the textbook value: said up front, never hidden."""
    out = []
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        names = "; ".join(f"{r['data']}/{r['group']}/{r['arm']} seed {r['seed']}: {r.get('reason')}" for r in failed)
        out.append(("p", t("**{n} run(s) failed and are left out; the claims that read their arms are "
                           "inconclusive. Run the same command on this folder again to retry them:** {names}.",
                           n=len(failed), names=names)))
    diverged = [r for r in rows if r["status"] not in ("finished", "failed")]
    if diverged:
        names = ", ".join(sorted({f"{r['data']}/{r['group']}/{r['arm']}" for r in diverged}))
        out.append(("p", t("**{n} run(s) did not finish (status diverged: NaN/inf loss) and are left out of every "
                           "comparison:** {names}.", n=len(diverged), names=names)))
    if meta.get("model_own_layers"):
        out.append(("p", t("**Model {model} regularizes on its own in every arm, the none arm too (the study "
                           "allows it: model_own_regularization = \"allow\"): {layers}. No arm is unregularized; "
                           "each technique is compared with the model as it comes.**", model=meta["config"]["model"],
                           layers=", ".join(meta["model_own_layers"]))))
    unprobed = [r for r in rows if r["status"] == "finished" and not r.get("probes")]
    if unprobed:
        out.append(("p", t("**{n} finished run(s) have no probes.json (measurements of the trained model); the "
                           "claims that need them are inconclusive. Run the same `sandbag study` command on this "
                           "folder again to probe them.**", n=len(unprobed))))
    for data, techniques in (meta.get("chosen_by_textbook_fallback") or {}).items():
        out.append(("p", t("**{data}: every validation run of {techniques} diverged; the textbook strength was used "
                           "instead.**", data=data, techniques=", ".join(techniques))))
    return out


# how each plateau-centre rule (study.json's strength_rule) breaks a tie between two middle strengths
PLATEAU_TIES = {"plateau-centre": "the better mean",
                "plateau-centre-stronger": "the stronger: when the sweep cannot tell, regularize"}


def _strength_section(meta, rows, data, t) -> list[tuple]:
    cfg = meta["config"]
    chosen = meta.get("chosen", {}).get(data, {})
    table, edges, extended = [], [], []
    if not chosen:
        return []  # nothing was swept: no arm leaves its strength to the validation data
    for tech in chosen:
        runs = [r for r in rows if r["data"] == data and r["group"] == "sweep" and r["technique"] == tech
                and r["status"] == "finished"]
        by_value: dict[float, list[float]] = {}
        for r in runs:
            by_value.setdefault(r["strength"], []).append(r["val_acc"])
        cells = []
        for value in sorted(by_value):
            accs = by_value[value]
            error = stats.standard_error(accs)
            cells.append(f"{_g(value)}: {sum(accs) / len(accs):.4f}" + (f" ± {error:.4f}" if math.isfinite(error)
                                                                         else ""))
        book = cfg["textbook"].get(tech)
        book_acc = next((sum(v) / len(v) for s, v in by_value.items() if book is not None and math.isclose(s, book)),
                        None)
        original = sorted(cfg["sweep"].get(tech, []))
        grid = sorted((meta.get("grids") or {}).get(data, {}).get(tech) or original)
        if len(grid) > len(original):
            extended.append(f"{tech}: {', '.join(_g(v) for v in grid if v not in original)}")
        pick = chosen.get(tech)
        if pick is not None and len(grid) > 1 and (math.isclose(pick, grid[0]) or math.isclose(pick, grid[-1])):
            end = t("the weakest") if math.isclose(pick, grid[0]) else t("the strongest")
            edges.append(f"{tech} ({_g(pick)}, {end})")
        table.append([tech, _g(pick), "; ".join(cells),
                      f"{_g(book)}" + (t(" (val acc {acc})", acc=f"{book_acc:.4f}") if book_acc is not None
                                       else t(" (not swept)"))])
    seeds = cfg.get("sweep_seeds", 1)
    per_strength = ("Validation accuracy per strength: mean over {seeds} seed(s) ± one standard error." if seeds > 1
                    else "Validation accuracy per strength: mean over {seeds} seed(s).")
    rule = meta.get("strength_rule")
    how = (t("Chosen by the one-standard-error rule: the weakest strength whose mean validation accuracy is within "
             "one standard error (over the best strength's seeds) of the best mean, so that strengths the sweep "
             "cannot tell apart resolve the same way each time; the verdicts below speak of the strength this rule "
             "chose.") if rule == "one-standard-error" else
           t("Chosen by the plateau-centre rule: of the strengths whose mean validation accuracy is within one "
             "standard error of a difference (the sweep's seeds paired) of the best mean, the middle one in order of "
             "strength (of two middle ones, {tie}), so that a flat stretch of the validation curve gives the same "
             "strength each time; the verdicts below speak of the strength this rule chose.",
             tie=t(PLATEAU_TIES[rule])) if rule in PLATEAU_TIES else
           t("Chosen by the best mean validation accuracy; the verdicts below speak of that strength."))
    blocks = [("h2", t("Chosen strengths ({data})", data=data)),
              ("p", t(per_strength, seeds=seeds) + " " + how),
              ("table", [t("technique"), t("chosen"), t("validation accuracy per strength"), t("textbook setting")],
               table)]
    if extended:
        blocks.append(("p", t("Grids extended beyond an edge where the rule's pick sat (one step at a time, up to "
                              "{n} a side): {values}.", n=meta.get("grid_extensions", "?"),
                              values="; ".join(extended))))
    if edges:
        blocks.append(("p", t("**At an edge of its grid: {edges}. A wider grid might choose another strength.**",
                              edges=", ".join(edges))))
    return [*blocks, ("p", t("Figure: [{caption}](#{anchor})", caption=_figure_title("validation_curves", t),
                             anchor=_anchor("validation_curves", data)))]


def _sizes(sizes: list[int]) -> str:
    return ", ".join(str(n) for n in sizes)


def _points(row: dict) -> str:
    """An effect in accuracy points with its interval: +2.1 [+1.2, +3.0]."""
    return f"{100 * row['mean']:+.2f} [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]"


def regime_sentences(summary: list[dict], rows: list[dict], t) -> list[str]:
    """One sentence per technique, generated from the map's test-accuracy rows: where it raised test accuracy
    (and where most), where it lowered it, where its effect was negligible, and where the study cannot say."""
    out = []
    for entry in summary:
        tech, pays = entry["technique"], entry["pays"]
        if pays:
            best = max((r for r in rows if r["technique"] == tech and r["metric"] == "test_acc"
                        and r["train_size"] in pays), key=lambda r: r["mean"])
            text = t("**{tech}** raised test accuracy at {sizes} images (most at {size}: {effect} points).",
                     tech=tech, sizes=_sizes(pays), size=best["train_size"], effect=_points(best))
        else:
            text = t("**{tech}** raised test accuracy at no size tested.", tech=tech)
        if entry["costs"]:
            text += " " + t("It lowered test accuracy at {sizes} images.", sizes=_sizes(entry["costs"]))
        if entry["negligible"]:
            smallest = next((r["smallest_effect"] for r in rows if r["metric"] == "test_acc"
                             and r.get("smallest_effect")), None)
            text += " " + t("Its effect was negligible (inside ±{smallest} points) at {sizes} images.",
                            smallest=_g(100 * smallest) if smallest else "?", sizes=_sizes(entry["negligible"]))
        if entry["open"]:
            text += " " + t("At {sizes} images the interval is too wide to say.", sizes=_sizes(entry["open"]))
        out.append(text)
    return out


def _effect_cell(row: dict, t) -> str:
    if not row["n"]:
        return "—"
    return f"{_points(row)} {t(VERDICT_MARK[row['verdict']])}"


def _regime_section(regime_map: dict, data: str, t) -> list[tuple]:
    """The map of one data set: the sentences, the figure, then the effects per technique and size, the strengths
    chosen at each size and each arm's test accuracy."""
    rows = [r for r in regime_map["rows"] if r["data"] == data]
    sizes = regime_map["sizes"]
    summary = regime_map["summary"].get(data, [])
    techniques = list(dict.fromkeys(r["technique"] for r in rows))

    def table(metric):
        by = {(r["technique"], r["train_size"]): r for r in rows if r["metric"] == metric}
        return [[tech, *[_effect_cell(by[(tech, n)], t) if (tech, n) in by else "—" for n in sizes]]
                for tech in techniques]

    strengths = {(r["technique"], r["train_size"]): r["strength"] for r in rows if r["metric"] == "test_acc"}
    chosen = [[tech, *[", ".join(f"{_g(v)}" for v in (strengths.get((tech, n)) or {}).values()) or "—"
                       for n in sizes]] for tech in techniques]
    accuracy = {(r["arm"], r["train_size"]): r for r in regime_map["accuracy"] if r["data"] == data}
    arms = list(dict.fromkeys(r["arm"] for r in regime_map["accuracy"] if r["data"] == data))
    levels = [[arm, *[f"{accuracy[(arm, n)]['mean']:.4f}" if accuracy.get((arm, n), {}).get("n") else "—"
                      for n in sizes]] for arm in arms]
    header = [t("technique"), *[t("{n} images", n=n) for n in sizes]]
    where = [[e["technique"], _g(e["first_pays"]), _sizes(e["pays"]) or "—", _sizes(e["costs"]) or "—",
              _sizes(e["negligible"]) or "—", _sizes(e["open"]) or "—"] for e in summary]
    return [
        ("h2", t("Regime map ({data}): where each technique pays", data=data)),
        ("p", t("Figure: [{caption}](#{anchor})", caption=_figure_title("regime", t),
                anchor=_anchor("regime", data))),
        ("p", t("Where each technique changes test accuracy (training images; paired rule, 95% interval):")),
        ("table", [t("technique"), t("first pays at"), t("raises"), t("lowers"), t("negligible"), t("cannot say")],
         where),
        ("p", t("Test accuracy, technique minus none, in points [95% CI] and its verdict by the paired rule, before "
                "Holm's adjustment (the claims below adjust for multiple comparisons):")),
        ("table", header, table("test_acc")),
        ("p", t("Gap (train − test accuracy), technique minus none, in points [95% CI] (below zero: narrower):")),
        ("table", header, table("gap")),
        ("p", t("Strength chosen on validation data at each size:")),
        ("table", header, chosen),
        ("p", t("Test accuracy of each arm (mean over seeds):")),
        ("table", [t("arm"), *header[1:]], levels),
    ]


def _headline_section(rows, arms, data, t) -> list[tuple]:
    body = []
    for arm in _arm_names(arms, "headline"):
        runs = _runs(rows, data, "headline", arm)
        if not runs:
            continue
        regs = runs[0]["regs"] or "none"
        cells = [arm, regs, str(len(runs))]
        for metric, digits in (("train_acc", 4), ("test_acc", 4), ("gap", 4), ("weight_l2", 2), ("frac_small", 3),
                               ("epochs_to_target", 2), ("seconds_per_epoch", 2)):
            mean, sd = stats.mean_std(r.get(metric) for r in runs)
            sd = sd if math.isfinite(sd) else 0.0
            cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}")
        body.append(cells)
    header = [t("arm"), t("spec"), "n", t("train acc"), t("test acc"), t("gap"), t("weight L2"), t("frac |w|<1e-3"),
              t("epochs to target"), t("s/epoch")]
    return [("h2", t("Headline ({data}): mean ± std over seeds", data=data)),
            ("table", header, body)]


def _part_row(p: dict, t) -> list[str]:
    mark = t(VERDICT_MARK[p["verdict"]])
    if p["kind"] == "check":
        return [p["label"], str(p["n"]), t("worst {worst} (tolerance {tolerance})", worst=_g(p["mean"]),
                                           tolerance=_g(p["tolerance"])), "", "", mark, "", t("(deterministic check)"),
                ""]
    smallest = _g(p.get("smallest_effect")) if p.get("smallest_effect") else "—"
    if p["verdict"] == stats.NOT_TESTABLE:
        where = (t("every run at {bound}", bound=_g(p["bound"])) if p.get("every_run", True) else
                 t("both arms' means within {room} of {bound}", room=smallest, bound=_g(p["bound"])))
        return [p["label"], str(p["n"]), where, "", smallest, mark, "—", "—", "—"]
    ci = f"[{_amount(p, p['ci_low'], t)}, {_amount(p, p['ci_high'], t)}]"
    if p.get("smallest_effect"):
        smallest = _amount(p, p["smallest_effect"], t, sign=False)
    survives = t("yes") if p.get("holm") else t("no") if p["verdict"] in stats.DECIDED else "—"
    beats = p.get("p_a_beats_b") or {}
    better = (f"{beats['p']:.2f} [{beats['low']:.2f}, {beats['high']:.2f}]" if beats.get("n") else "—")
    return [p["label"], str(p["n"]), _amount(p, p["mean"], t), ci, smallest, mark, _g(p.get("p_holm")), survives,
            better]


# How a difference of each metric reads: (scale, unit); accuracies and shares in points, the rest as measured
UNITS = {"train_acc": (100, "pt"), "val_acc": (100, "pt"), "test_acc": (100, "pt"), "gap": (100, "pt"),
         "running_acc": (100, "pt"), "frac_small": (100, "pt"), "frac_zero": (100, "pt"),
         "epochs_to_target": (1, "epochs"), "seconds_per_epoch": (1, "s"), "total_seconds": (1, "s")}


def _unit(p: dict) -> tuple[float, str]:
    """A part's (scale, unit) for a reader: a ratio in percent, a known metric in its unit, else as measured."""
    if p.get("ratio"):
        return 100, "%"
    metric = (p.get("metric") or "").split(".", 1)[-1]
    return UNITS.get(metric, (1, ""))


def _amount(p: dict, value, t, sign: bool = True) -> str:
    """A value of a part's difference in the reader's unit: +1.43 pt, +2.1%, -0.8 epochs (a bare number without a
    known unit)."""
    if value is None or not math.isfinite(value):
        return _g(value)
    scale, unit = _unit(p)
    number = f"{scale * value:+.3g}" if sign else f"{scale * value:.3g}"
    return f"{number}{unit}" if unit == "%" else f"{number} {t(unit)}" if unit else number


def _claim_cell(result: dict, t) -> str:
    mark = t(VERDICT_MARK[result["verdict"]])
    return t("{mark} (decided)", mark=mark) if result["verdict"] == stats.MIXED and result.get("decided") else mark


def _test_text(cfg: dict, t) -> str:
    if cfg.get("test") == "rest":
        return t("every image not used for training or validation")
    return t("the data set's own test split")


def _validation_text(cfg: dict, t) -> str:
    if cfg.get("val_size"):
        return (t("{n} stratified images not used for training", n=cfg["val_size"]) +
                (t(", held out of the test set") if cfg.get("test") == "rest" else ""))
    return t("a {fraction} stratified split carved from the training data", fraction=f"{cfg['val_fraction']:.0%}")


def _smallest(cfg: dict, t) -> str:
    effects = cfg.get("smallest_effect") or {}
    return ", ".join(f"{metric} {_g(value)}" for metric, value in effects.items()) or t("none named")


def _power_lines(parts: list[dict], t) -> list[str]:
    lines = []
    for p in parts:
        if p.get("missing"):
            lines.append(t("Inconclusive ({label}): runs failed ({runs}).", label=p["label"],
                           runs=", ".join(p["missing"])))
            continue
        power = p.get("power")
        if p["verdict"] != stats.INCONCLUSIVE or not power or power.get("detectable") is None:
            continue
        needed = power.get("seeds_needed")
        # what the power is of: the mean difference against zero, or (noninferior, equivalent) its distance from
        # the margin it must clear, which is not the mean difference shown beside it
        against = (t("the observed distance from the margin ({observed})", observed=_amount(p, power["observed"], t))
                   if p.get("direction") in stats.NEEDS_MARGIN else
                   t("the observed difference ({observed})", observed=_amount(p, power["observed"], t)))
        more = (t("{n} seeds would decide it, by detecting {against} or showing it negligible", n=needed,
                  against=against) if needed and power.get("decide_by_negligible")
                else t("{n} seeds would detect {against}", n=needed, against=against) if needed
                else t("no number of seeds detects a difference of 0") if not power.get("observed")
                else t("more than {n} seeds would be needed for {against}", n=stats.MAX_SEEDS, against=against))
        lines.append(t("Power ({label}): with n = {n} the smallest difference detected with 80% power is "
                       "{detectable}; {more}.", label=p["label"], n=p["n"],
                       detectable=_amount(p, power["detectable"], t, sign=False), more=more))
    return lines


def _claims_summary(cfg: dict, verdicts: list[dict], t) -> list[tuple]:
    """How many claims are decided, how many verdicts survive Holm, what a larger study could move, and the claims
    whose verdicts differ between data sets."""
    out = []
    for data in cfg["data"]:
        decided = [v["number"] for v in verdicts if v["data"][data]["decided"]]
        untestable = [p for v in verdicts for p in v["data"][data]["parts"] if p["verdict"] == stats.NOT_TESTABLE]
        paired = [p for v in verdicts for p in v["data"][data]["parts"]
                  if p["kind"] == "paired" and p["verdict"] != stats.NOT_TESTABLE]
        testable = [v for v in verdicts if v["data"][data]["verdict"] != stats.NOT_TESTABLE]
        survive = sum(1 for p in paired if p.get("holm"))
        out.append(("p", t("**{data}: {decided} of {total} claims decided** (every part supported, contradicted or "
                           "negligible); {survive} of {paired} paired parts survive Holm's correction (family-wise "
                           "5%).", data=data, decided=len(decided), total=len(testable), survive=survive,
                           paired=len(paired))))
        if untestable:
            out.append(("p", t("{data}: not testable, so neither decided nor counted ({n} parts; the metric sits at "
                               "its bound in both arms, or each arm's mean within the smallest effect of interest of "
                               "it, so no difference that matters can show): {labels}.", data=data, n=len(untestable),
                               labels="; ".join(p["label"] for p in untestable))))
        open_claims = []
        for v in verdicts:
            needed = [p.get("power", {}).get("seeds_needed") for p in v["data"][data]["parts"]
                      if p["verdict"] == stats.INCONCLUSIVE]
            if needed:
                known = [n for n in needed if n]
                open_claims.append(f"{v['number']}" + (t(" (≈{n} seeds)", n=max(known)) if known else ""))
        if open_claims:
            out.append(("p", t("{data}: a larger study could still move claims {claims}; `sandbag study --seeds N "
                               "--extra-seeds N` on the same folder reuses the runs done.", data=data,
                               claims=", ".join(open_claims))))
    if len(cfg["data"]) > 1:
        differ = [str(v["number"]) for v in verdicts if len({v["data"][d]["verdict"] for d in cfg["data"]}) > 1]
        out.append(("p", t("Verdicts that differ between data sets (a finding in itself): {which}.",
                           which=", ".join(differ) if differ else t("none"))))
    return out


def _g(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a" if math.isnan(x) else ("∞" if x > 0 else "-∞")
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def format_duration(s, t) -> str:
    """A duration in the report's language: minutes from two minutes on, else seconds."""
    if s is None:
        return "n/a"
    return t("{minutes} min", minutes=f"{s / 60:.1f}") if s >= 120 else t("{seconds} s", seconds=f"{s:.0f}")


def _markdown(blocks) -> str:
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + rest[0])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            header, body = rest
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
            out.append("\n".join(lines))
        elif kind == "img":
            path, alt = rest[:2]
            anchor = f'<a id="{rest[2]}"></a>\n\n' if len(rest) > 2 else ""
            out.append(f"{anchor}![{alt}]({Path(path).as_posix()})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then the two Markdown inline forms the report uses: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\[([^\]]+)\]\((#[A-Za-z0-9._=-]+)\)", r'<a href="\2">\1</a>', text)  # [text](#anchor)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:1px 4px}"""


def _html(blocks, report_dir: Path, lang: str = "en") -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(rest[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            header, rows = rest
            head = "".join(f"<th>{_inline(h)}</th>" for h in header)
            rows_html = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>")
        elif kind == "img":
            path, alt = rest[:2]
            anchor = f' id="{html.escape(rest[2])}"' if len(rest) > 2 else ""
            data = base64.b64encode((report_dir / path).read_bytes()).decode("ascii")
            body.append(f'<figure{anchor}><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                        f"<figcaption>{html.escape(alt)}</figcaption></figure>")
    title = html.escape(next(rest[0] for kind, *rest in blocks if kind == "h1"))
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def jsonable(obj):
    """Plain JSON: string keys, non-finite floats as null, numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
