"""The study design as data: the arms table, the runs it expands into, and the choice of strengths.

`ARMS` is the one place that says what a study runs. Each `Arm` names its group and arm, its technique, its spec
templates (``{l2}`` is the strength chosen for l2 on validation data, ``{value}`` a sweep strength), how many seeds
it runs, which run settings it changes and when it applies. `runs_of` expands the table for a `StudyConfig` and a
data set into `Run`s; `planned_arms` gives the expanded arms as plain dicts (written into study.json, read by the
claims and the report, which therefore never hard-code an arm). The technique list comes from
`sandbag.regularizers`: a technique added there gets a sweep and a headline arm here without another edit.

    group     arm                 technique  specs              seeds        changes
    sweep     none                none       -                  sweep_seeds  val_fraction, sweep_epochs
    sweep     {t}={value}         t          {t}={value}        sweep_seeds  per strength of [sweep].t
    headline  none                none       -                  seeds
    headline  {t} (tunable)       t          {t}={t}            seeds
    headline  bn                  bn         bn                 seeds
    extra     l2-bias             l2         l2={l2}:bias       extra_seeds
    extra     l1-prox             l1         l1={l1}:prox       extra_seeds
    extra     bn-post             bn         bn:post            extra_seeds
    extra     bn-sync             bn         bn:sync            extra_seeds  only when nproc > 1
    batch     none-b{b}, bn-b{b}  none, bn   -, bn              batch_seeds  per batch size b != batch_size
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..regularizers import TECHNIQUES, tunable
from ..runs import RunConfig

if TYPE_CHECKING:
    from .config import StudyConfig

GROUPS = ("sweep", "headline", "extra", "batch")


@dataclass(frozen=True)
class Arm:
    """One row of the study design (see the module docstring)."""

    group: str
    name: str  # may hold {b} (per batch size) or {value} (per sweep strength)
    technique: str  # "none" or a key of regularizers.TECHNIQUES
    specs: tuple[str, ...] = ()  # spec templates: {<technique>} = chosen strength, {value} = sweep strength
    seeds: str = "seeds"  # the StudyConfig field with its seed count: seeds | extra_seeds | sweep_seeds | batch_seeds
    overrides: tuple[tuple[str, str], ...] = ()  # (RunConfig field, StudyConfig field or "{b}"); None: keep
    per: str = ""  # "" | "batch_size" (each batch size but the reference one) | "strength" (each sweep value)
    min_nproc: int = 1  # the arm runs only when the study's nproc is at least this
    figures: tuple[str, ...] = ()  # figures that show the arm beyond the per-group ones ("weights")

    @property
    def dependent(self) -> bool:
        """Needs the strengths chosen on validation data (a placeholder other than {value} or {b})."""
        return any(name not in ("value", "b") for name in self.placeholders)

    @property
    def placeholders(self) -> set[str]:
        return {f for spec in self.specs for _, f, _, _ in string.Formatter().parse(spec) if f}


_SWEEP = (("val_fraction", "val_fraction"), ("epochs", "sweep_epochs"))
_BATCH = (("batch_size", "{b}"), ("epochs", "batch_epochs"))

ARMS: tuple[Arm, ...] = (
    Arm("sweep", "none", "none", seeds="sweep_seeds", overrides=_SWEEP),
    *(Arm("sweep", f"{t}={{value}}", t, (f"{t}={{value}}",), "sweep_seeds", _SWEEP, per="strength")
      for t in tunable()),
    Arm("headline", "none", "none", figures=("weights",)),
    *(Arm("headline", t, t, (f"{t}={{{t}}}",), figures=("weights",) if t in ("l2", "l1") else ())
      for t in tunable()),
    *(Arm("headline", t, t, (t,)) for t, tech in TECHNIQUES.items() if not tech.has_strength),
    Arm("extra", "l2-bias", "l2", ("l2={l2}:bias",), "extra_seeds"),
    Arm("extra", "l1-prox", "l1", ("l1={l1}:prox",), "extra_seeds", figures=("weights",)),
    Arm("extra", "bn-post", "bn", ("bn:post",), "extra_seeds"),
    Arm("extra", "bn-sync", "bn", ("bn:sync",), "extra_seeds", min_nproc=2),  # local vs global-batch statistics
    Arm("batch", "none-b{b}", "none", (), "batch_seeds", _BATCH, per="batch_size"),
    Arm("batch", "bn-b{b}", "bn", ("bn",), "batch_seeds", _BATCH, per="batch_size"),
)


@dataclass(frozen=True, eq=False)  # identity-hashed: a Run is a key of the scheduler's result table
class Run:
    data: str
    group: str  # sweep | headline | extra | batch
    arm: str  # e.g. none, l2, dropout, bn-post, l2=0.001, bn-b4
    technique: str  # none, l2, l1, noise, dropout, bn
    seed: int
    config: RunConfig = field(repr=False)

    def folder(self, study_dir: Path) -> Path:
        """runs/<data>/<group>-<arm>-s<seed>-<config key>: the name existing study folders use."""
        slug = slugify(self.data)
        arm = re.sub(r"[^A-Za-z0-9.=-]+", "_", self.arm)
        return Path(study_dir) / "runs" / slug / f"{self.group}-{arm}-s{self.seed}-{self.config.key()}"


def slugify(data: str) -> str:
    """A data set name as a folder name (also the report's figures/<data>/ folder)."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", data).strip("_")


def _seed_count(cfg: StudyConfig, arm: Arm) -> int:
    return getattr(cfg, arm.seeds) or cfg.extra_seeds  # batch_seeds None: as many as the other sub-experiments


def _instances(cfg: StudyConfig, arm: Arm, data: str | None = None) -> list[dict]:
    """The arm expanded over what it runs per (batch sizes, sweep strengths): name, specs, overrides."""
    if cfg.nproc < arm.min_nproc:
        return []
    if arm.per == "batch_size":
        values = [{"b": b} for b in cfg.batch_sizes if b != cfg.batch_size]
    elif arm.per == "strength":
        values = [{"value": v} for v in cfg.sweep.get(arm.technique, [])]
    else:
        values = [{}]
    out = []
    for v in values:
        overrides = {}
        for run_field, source in arm.overrides:
            if run_field == "val_fraction" and (cfg.split(data) if data else {"val_size": cfg.val_size})["val_size"]:
                continue  # every run holds out the same val_size images; the sweep validates on them
            value = v["b"] if source == "{b}" else getattr(cfg, source)
            if value is not None:
                overrides[run_field] = value
        name = arm.name.format(b=v.get("b"), value=f"{v['value']:g}" if "value" in v else None)
        out.append({"name": name, "values": v, "overrides": overrides})
    return out


def planned_arms(cfg: StudyConfig) -> list[dict]:
    """The arms this study runs, expanded (one per batch size / sweep strength): group, arm, technique, spec
    templates, seed count, batch size, epochs, and `base` (the arm name without its batch-size suffix)."""
    out = []
    for arm in ARMS:
        for inst in _instances(cfg, arm):
            specs = [s.replace("{value}", repr(inst["values"]["value"])) if "value" in inst["values"] else s
                     for s in arm.specs]
            out.append({
                "group": arm.group, "arm": inst["name"], "technique": arm.technique, "specs": specs,
                "seeds": _seed_count(cfg, arm), "batch_size": inst["overrides"].get("batch_size", cfg.batch_size),
                "epochs": inst["overrides"].get("epochs", cfg.epochs), "dependent": arm.dependent,
                "base": arm.name.replace("-b{b}", "") if arm.per == "batch_size" else inst["name"],
                "figures": list(arm.figures),
            })
    return out


def design(cfg: StudyConfig) -> dict:
    """What study.json records about the design: the technique lists and the expanded arms."""
    return {"techniques": list(TECHNIQUES), "tunable": tunable(), "arms": planned_arms(cfg),
            "arms_table": [asdict(a) for a in ARMS]}


def _runs(cfg: StudyConfig, data: str, dependent: bool, chosen: dict[str, float] | None) -> list[Run]:
    runs = []
    base = dict(data=data, model=cfg.model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                optimizer=cfg.optimizer, nproc=cfg.nproc, eval_every=cfg.eval_every, track_size=cfg.track_size,
                **cfg.split(data))
    for arm in ARMS:
        if arm.dependent != dependent:
            continue
        for inst in _instances(cfg, arm, data):
            fill = {**(chosen or {}), **inst["values"]}
            regs = [spec.format(**{k: v for k, v in fill.items()}) for spec in arm.specs]
            for seed in range(_seed_count(cfg, arm)):
                config = RunConfig(**{**base, "regs": regs, "seed": seed, **inst["overrides"]})
                runs.append(Run(data, arm.group, inst["name"], arm.technique, seed, config))
    return runs


def independent_runs(cfg: StudyConfig, data: str) -> list[Run]:
    """Runs that need no chosen strength, the validation sweep first (the scheduler queues them in this order)."""
    return _runs(cfg, data, dependent=False, chosen=None)


def dependent_runs(cfg: StudyConfig, data: str, chosen: dict[str, float]) -> list[Run]:
    """Runs at the strengths chosen on validation data."""
    return _runs(cfg, data, dependent=True, chosen=chosen)


def runs_of(cfg: StudyConfig, data: str, chosen: dict[str, float]) -> list[Run]:
    return independent_runs(cfg, data) + dependent_runs(cfg, data, chosen)


def choose_strengths(sweep_rows: Iterable[dict], fallback: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Per technique, the strength with the best validation accuracy, averaged over the sweep's seeds (ties: lower
    mean validation loss). Only finished runs count.

    A technique whose every validation run diverged falls back to its textbook strength; those are returned too,
    so the report can say so."""
    scores: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for row in sweep_rows:
        if row["technique"] != "none" and row["status"] == "finished":
            scores.setdefault((row["technique"], row["strength"]), []).append((row["val_acc"], row["val_loss"]))
    best: dict[str, tuple] = {}
    for (tech, strength), values in scores.items():
        score = (sum(a for a, _ in values) / len(values), -sum(loss for _, loss in values) / len(values))
        if tech not in best or score > best[tech][0]:
            best[tech] = (score, strength)
    fell_back = [t for t in tunable() if t not in best]
    chosen = {tech: best[tech][1] if tech in best else fallback[tech] for tech in tunable()}
    return chosen, fell_back
