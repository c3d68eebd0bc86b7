"""The regime map: where, in training-set size, each technique starts and stops paying (no torch).

A study over ``train_sizes`` runs its arms in every cell (a data set at one size, `layout.cells`), each cell with
its own sweep, so each technique's strength is chosen at each size. `regime_rows` reads the finished runs: per data
set, technique (each headline arm other than none), size and metric, the paired difference technique minus none
over the seeds both ran, by the study's own verdict rule (`stats.paired_verdict`: 95% t-interval, the metric's
smallest effect of interest), with Holm's adjustment over the map's parts of each data set and metric. The report
draws them (`figures.regime_map`) and words them (`findings`); regime.json holds them.

    metric             direction   "pays" when
    test_acc           greater     the technique's test accuracy is higher
    gap                less        its train - test gap is smaller
    epochs_to_target   less        it reaches learn_target in fewer epochs (epochs of that size)
"""

from __future__ import annotations

import math

from . import stats
from .claims import results_table
from .layout import cell_key

METRICS = {"test_acc": "greater", "gap": "less", "epochs_to_target": "less"}
BASE = "none"  # the arm every technique is measured against


def sizes_of(cfg: dict) -> list[int]:
    return sorted(cfg.get("train_sizes") or [])


def map_arms(arms: list[dict]) -> list[str]:
    """The headline arms the map draws against none, in the study's order."""
    return [a["arm"] for a in arms if a["group"] == "headline" and a["arm"] != BASE]


def _values(table: dict, cell: str, arm: str, metric: str) -> dict[int, float]:
    runs = table.get((cell, "headline", arm), {})
    return {s: r[metric] for s, r in runs.items() if r.get(metric) is not None and math.isfinite(r[metric])}


def regime_rows(cfg: dict, rows: list[dict], arms: list[dict], chosen: dict[str, dict[str, float]]) -> list[dict]:
    """One row per data set, technique, size and metric: the paired effect (technique minus none) with its
    interval, verdict, seeds and the strength chosen at that size; Holm-adjusted p per data set and metric."""
    table = results_table(rows)
    smallest = cfg.get("smallest_effect") or {}
    out = []
    for data in cfg["data"]:
        for arm in map_arms(arms):
            technique = next(a["technique"] for a in arms if a["arm"] == arm and a["group"] == "headline")
            for size in sizes_of(cfg):
                cell = cell_key(data, size)
                for metric, direction in METRICS.items():
                    a, b = _values(table, cell, arm, metric), _values(table, cell, BASE, metric)
                    paired = [a[s] - b[s] for s in sorted(set(a) & set(b))]
                    v = stats.paired_verdict(paired, direction, smallest=smallest.get(metric))
                    out.append({"data": data, "technique": arm, "techniques": technique, "train_size": size,
                                "metric": metric, "direction": direction, "mean": v["mean"],
                                "ci_low": v["ci_low"], "ci_high": v["ci_high"], "verdict": v["verdict"],
                                "n": v["n"], "p": v["p"], "smallest_effect": smallest.get(metric),
                                "strength": _strength(chosen.get(cell, {}), technique),
                                "arm_mean": _mean(a.values()), "none_mean": _mean(b.values())})
    for data in cfg["data"]:
        for metric in METRICS:
            family = [r for r in out if r["data"] == data and r["metric"] == metric and math.isfinite(r["p"])]
            for row, adjusted in zip(family, stats.holm([r["p"] for r in family]), strict=True):
                row["p_holm"] = adjusted
                row["holm"] = row["verdict"] in stats.DECIDED and adjusted < stats.ALPHA
    return out


def _strength(chosen: dict[str, float], technique: str) -> dict[str, float] | None:
    """The strengths chosen at a size for the techniques of an arm ("l2+dropout"), None for those without one."""
    found = {t: chosen[t] for t in technique.split("+") if t in chosen}
    return found or None


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def accuracy_rows(cfg: dict, rows: list[dict], arms: list[dict]) -> list[dict]:
    """Each arm's own test accuracy at each size (the learning curves of the map's third panel): mean and 95%
    t-interval over its seeds."""
    table = results_table(rows)
    out = []
    for data in cfg["data"]:
        for arm in [BASE, *map_arms(arms)]:
            for size in sizes_of(cfg):
                values = list(_values(table, cell_key(data, size), arm, "test_acc").values())
                v = stats.paired_verdict(values, "greater")
                out.append({"data": data, "arm": arm, "train_size": size, "mean": v["mean"], "ci_low": v["ci_low"],
                            "ci_high": v["ci_high"], "n": v["n"]})
    return out


def summary(rows: list[dict], data: str, metric: str = "test_acc") -> list[dict]:
    """Per technique, from the map's rows: the smallest size where it pays (its interval on the paying side of
    zero), the sizes where it costs (the other side), and the sizes where it is negligible (inside the smallest
    effect of interest)."""
    out = []
    for tech in dict.fromkeys(r["technique"] for r in rows if r["data"] == data):
        mine = sorted((r for r in rows if r["data"] == data and r["technique"] == tech and r["metric"] == metric),
                      key=lambda r: r["train_size"])
        pays = [r["train_size"] for r in mine if r["verdict"] == stats.SUPPORTED]
        out.append({"technique": tech, "metric": metric, "first_pays": pays[0] if pays else None, "pays": pays,
                    "costs": [r["train_size"] for r in mine if r["verdict"] == stats.CONTRADICTED],
                    "negligible": [r["train_size"] for r in mine if r["verdict"] == stats.NEGLIGIBLE],
                    "open": [r["train_size"] for r in mine if r["verdict"] == stats.INCONCLUSIVE]})
    return out


