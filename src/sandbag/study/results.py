"""Result rows: one per run, read from its folder; results.csv, aggregate.csv and reading them back.

No torch here: the report reads results through this module.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .. import files

RESULT_COLUMNS = [
    "data", "group", "arm", "technique", "seed", "regs", "strength", "batch_size", "epochs", "val_fraction", "status",
    "epochs_done", "train_acc", "val_acc", "test_acc", "gap", "train_loss", "val_loss", "test_loss", "running_loss",
    "running_acc", "penalty", "weight_l2", "frac_small", "frac_zero", "epochs_to_target", "seconds_per_epoch",
    "total_seconds", "params", "trainable_params", "config_key", "run_dir", "reason",
]
# The numeric columns a claim's part may compare (its `metric`), besides probe.<field> and timing.<quantity>
METRICS = ["train_acc", "val_acc", "test_acc", "gap", "train_loss", "val_loss", "test_loss", "running_loss",
           "running_acc", "penalty", "weight_l2", "frac_small", "frac_zero", "epochs_to_target", "seconds_per_epoch",
           "total_seconds"]
AGGREGATE_METRICS = ["train_acc", "val_acc", "test_acc", "gap", "test_loss", "weight_l2", "frac_small", "frac_zero",
                     "epochs_to_target", "seconds_per_epoch"]


def read_metrics(folder: Path | str) -> list[dict]:
    """A run folder's metrics.jsonl as per-epoch rows (the torch-free reader the report uses)."""
    text = (Path(folder) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def epochs_to_target(metrics: list[dict], target: float, chance: float) -> float:
    """Fractional epoch at which clean training accuracy first reaches `target`, linear between the evaluated
    epochs (from chance accuracy at epoch 0; epochs without clean figures, see `eval_every`, are skipped);
    the last epoch + 1 if it never does (censored). Runs with `track_size` measure it every epoch on their fixed
    training subset (``track_acc``), which is then used."""
    key = "track_acc" if any("track_acc" in row for row in metrics) else "train_acc"
    previous_epoch, previous_acc = 0.0, chance
    for row in metrics:
        acc = row.get(key)
        if acc is None:
            continue
        if acc >= target:
            if acc == previous_acc:
                return float(row["epoch"])
            return previous_epoch + (target - previous_acc) / (acc - previous_acc) * (row["epoch"] - previous_epoch)
        previous_epoch, previous_acc = float(row["epoch"]), acc
    return float((metrics[-1]["epoch"] if metrics else 0) + 1)


def result_row(run, study_dir: Path, summary: dict, learn_target: float | None) -> dict:
    """One results.csv row for a `plan.Run` whose folder holds `summary`; `learn_target` None: a run whose learning
    speed nothing reads (`plan.tracks`) has no ``epochs_to_target``."""
    speed = (None if learn_target is None
             else epochs_to_target(read_metrics(run.folder(study_dir)), learn_target, chance=0.1))
    return {**identity(run, study_dir), **{k: v for k, v in summary.items() if k not in ("device",)},
            "epochs_to_target": speed}


def identity(run, study_dir: Path) -> dict:
    """What a result row says about its run before any figure: data, group, arm, seed, specs, folder."""
    strength = next((float(r.split("=")[1].split(":")[0]) for r in run.config.regs if "=" in r), None)
    return {"data": run.data, "group": run.group, "arm": run.arm, "technique": run.technique, "seed": run.seed,
            "regs": " ".join(run.config.regs), "strength": strength, "batch_size": run.config.batch_size,
            "epochs": run.config.epochs, "val_fraction": run.config.val_fraction,
            "run_dir": str(run.folder(study_dir).relative_to(study_dir))}


def failed_row(run, study_dir: Path, reason: str) -> dict:
    """The results.csv row of a run that failed: what it is, status ``failed`` and the one-line reason."""
    return {**identity(run, study_dir), "status": "failed", "reason": reason, "config_key": run.config.key()}


def write_results(study_dir: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (r["data"], r["group"], r["arm"], r["seed"]))
    files.write_text(study_dir / "results.csv", to_csv(rows, RESULT_COLUMNS))
    files.write_text(study_dir / "aggregate.csv", to_csv(aggregate(rows), None))


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean, std (n-1) and n per (data, group, arm) over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["group"], row["arm"]), []).append(row)
    out = []
    for (data, group, arm), members in groups.items():
        agg = {"data": data, "group": group, "arm": arm, "n": len(members)}
        for metric in AGGREGATE_METRICS:
            values = [float(m[metric]) for m in members if m.get(metric) not in (None, "")]
            mean = sum(values) / len(values) if values else math.nan
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
            agg[f"{metric}_mean"], agg[f"{metric}_std"] = mean, std
        out.append(agg)
    return out


def to_csv(rows: list[dict], columns: list[str] | None) -> str:
    columns = columns or (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_results(study_dir: Path | str) -> list[dict]:
    """results.csv as dicts with numbers parsed back."""
    with open(Path(study_dir) / "results.csv", newline="") as f:
        return [{k: parse_number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def parse_number(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
