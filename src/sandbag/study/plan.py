"""The study design: the arm tables expanded into arms, the runs they make, and the choice of strengths.

Arms are data: the [[arms]] tables of lecture.toml (with ``lecture = true``) and of the study file
(`sandbag.study.schema.study_tables`; what a table may hold is in lecture.toml's header). `planned_arms` expands
them for a `StudyConfig`: each ``for_each`` table once per technique or batch size, ``{tech}`` and ``{b}`` filled
in. The validation sweep is not a table: it runs for every technique an arm leaves to it (a spec such as
``dropout={dropout}``), each strength of the technique's grid on ``sweep_seeds`` seeds, plus one arm without any
technique; `choose_strengths` then picks each technique's strength by validation accuracy, and the arms that wait
for it (`dependent`) run. `runs_of` turns arms into `Run`s, whose folders are named by their config hash, so a
rerun reuses what is done.

    group     arm               seeds         changes
    sweep     none              sweep_seeds   val_fraction (unless val_size), epochs = sweep_epochs
    sweep     {t}={value}       sweep_seeds   per strength of the grid of t, for each t an arm leaves to the sweep
    (tables)  name              seeds, ...    the table's specs and overrides
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..regularizers import ALIASES, TECHNIQUES, tunable
from ..runs import RunConfig
from . import schema, stats
from .claims import Claim
from .layout import CELL, slug, split_cell

ARM_KEYS = ("name", "specs", "group", "seeds", "for_each", "base", "min_nproc", "batch_size", "epochs", "train_size",
            "lr")
OVERRIDES = {"batch_size": int, "epochs": int, "train_size": int, "lr": float}  # RunConfig fields an arm may set
SEED_SETTINGS = ("seeds", "extra_seeds", "batch_seeds", "sweep_seeds")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")


@dataclass(frozen=True, eq=False)  # identity-hashed: a Run is a key of the scheduler's result table
class Run:
    data: str
    group: str  # sweep, headline, extra, batch, or a study file's own group
    arm: str  # e.g. none, l2, dropout, bn-post, l2=0.001, bn-b4
    technique: str  # none, l2, l1, noise, dropout, bn, or several joined by +
    seed: int
    config: RunConfig = field(repr=False)

    def folder(self, study_dir: Path) -> Path:
        """runs/<data>/<group>-<arm>-s<seed>-<config key>: the name existing study folders use."""
        arm = re.sub(r"[^A-Za-z0-9.=-]+", "_", self.arm)  # not slug(): an arm name keeps its edges, as ever
        return Path(study_dir) / "runs" / slug(self.data) / f"{self.group}-{arm}-s{self.seed}-{self.config.key()}"


@dataclass(frozen=True)
class Design:
    """A study's arms (expanded, as study.json records them) and claims, made once from its config."""

    arms: list[dict]
    claims: list[Claim]

    @property
    def swept(self) -> list[str]:
        """The techniques the validation sweep tunes, in registry order."""
        techniques = {a["technique"] for a in self.arms if a["group"] == "sweep"}
        return [t for t in tunable() if t in techniques]


def make_design(cfg) -> Design:
    """The arms and claims of a `StudyConfig` (a claim or arm that does not fit raises `ConfigError`)."""
    arm_tables, claim_tables = schema.study_tables(cfg.lecture, cfg.arms, cfg.claims)
    arms = planned_arms(cfg, arm_tables)
    claims = schema.parse_claims(claim_tables, arms, cfg.to_dict(), list(TECHNIQUES))
    return Design(arms, claims)


def technique_of(specs: Iterable[str]) -> str:
    """The technique(s) an arm's specs use: none, one name, or several joined by + (aliases such as keep resolved)."""
    names = []
    for spec in specs:
        name = spec.split(":")[0].split("=")[0].strip().lower()
        names.append(ALIASES[name][0] if name in ALIASES else name)
    return "+".join(names) or "none"


def placeholders(specs: Iterable[str]) -> set[str]:
    return {f for spec in specs for _, f, _, _ in string.Formatter().parse(spec) if f}


def _setting(cfg, value, where: str, b: int | None = None):
    """A table value: a number as it is, "{b}" the batch size, "{name}" the study setting `name`."""
    if not isinstance(value, str):
        return value
    name = value.strip("{}")
    if value != f"{{{name}}}":
        raise ConfigError(f"{where}: expected a number or '{{a study setting}}', got {value!r}")
    if name == "b":
        if b is None:
            raise ConfigError(f"{where}: {{b}} is the batch size of a for_each = 'batch_size' arm")
        return b
    if not hasattr(cfg, name) or name in ("arms", "claims"):
        raise ConfigError(f"{where}: unknown study setting {value!r}")
    return getattr(cfg, name)


def _seed_count(cfg, value, where: str) -> int:
    if isinstance(value, str) and value.strip("{}") not in SEED_SETTINGS:
        raise ConfigError(f"{where}: seeds must be a number or one of "
                          f"{', '.join('{' + s + '}' for s in SEED_SETTINGS)}, got {value!r}")
    count = _setting(cfg, value, where) or cfg.extra_seeds  # batch_seeds None: as many as the other sub-experiments
    if not isinstance(count, int) or isinstance(count, bool) or count < 2:
        raise ConfigError(f"{where}: seeds must be a whole number >= 2 (for a confidence interval), got {count!r}")
    return count


def _expand(cfg, table: dict, number: int) -> list[dict]:
    """One [[arms]] table as the arms it makes (none when the study's nproc is below its min_nproc)."""
    where = f"arm {table.get('name', number)!r}" if isinstance(table, dict) else f"arm {number}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    for key in table:
        if key not in ARM_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{schema.near(key, ARM_KEYS)}")
    name, specs, group = table.get("name"), table.get("specs", []), table.get("group", "headline")
    if not isinstance(table.get("base", ""), str):
        raise ConfigError(f"{where}: base must be the name of the arm this one varies, got {table['base']!r}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: needs a name (a string; claims name the arm by it)")
    if not (isinstance(specs, list) and all(isinstance(s, str) for s in specs)):
        raise ConfigError(f"{where}: specs must be a list of technique specs such as ['dropout=0.5'], got {specs!r}")
    if not isinstance(group, str) or not NAME.fullmatch(group) or group == "sweep":
        raise ConfigError(f"{where}: group must be a simple name other than 'sweep', got {group!r}")
    min_nproc = table.get("min_nproc", 1)
    if not isinstance(min_nproc, int) or isinstance(min_nproc, bool) or min_nproc < 1:
        raise ConfigError(f"{where}: min_nproc must be a whole number >= 1, got {min_nproc!r}")
    if cfg.nproc < min_nproc:
        return []
    for_each = table.get("for_each")
    if for_each == "technique":
        rounds = [{"tech": t} for t in TECHNIQUES]
    elif for_each == "batch_size":
        rounds = [{"b": b} for b in cfg.batch_sizes if b != cfg.batch_size]
    elif for_each is None:
        rounds = [{}]
    else:
        raise ConfigError(f"{where}: for_each must be 'technique' or 'batch_size', got {for_each!r}")
    return [_arm(cfg, table, where, name, specs, group, **r) for r in rounds]


def _arm(cfg, table: dict, where: str, name: str, specs: list[str], group: str, tech: str | None = None,
         b: int | None = None) -> dict:
    if tech is not None:
        strength = f"{tech}={{{tech}}}" if TECHNIQUES[tech].has_strength else tech
        specs = [strength if s == "{tech}" else s.replace("{tech}", tech) for s in specs]
        name = name.replace("{tech}", tech)
    if b is not None:
        name = name.replace("{b}", str(b))
    if not NAME.fullmatch(name) or "{" in name:
        raise ConfigError(f"{where}: name {name!r} must be letters, digits and . _ = + - (no spaces, no @)")
    unknown = sorted(placeholders(specs) - set(tunable()))
    if unknown:
        raise ConfigError(f"{where}: unknown placeholder {{{unknown[0]}}} in its specs; a placeholder is a technique "
                          f"with a strength, standing for the strength the sweep chose: {', '.join(tunable())}")
    overrides = {}
    for key, kind in OVERRIDES.items():
        if key in table:
            value = _setting(cfg, table[key], f"{where}: {key}", b)
            if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)):
                raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
            if value is not None:
                overrides[key] = kind(value)
    return {"group": group, "arm": name, "technique": technique_of(specs), "specs": specs,
            "seeds": _seed_count(cfg, table.get("seeds", "{seeds}"), where),
            "batch_size": overrides.get("batch_size", cfg.batch_size), "epochs": overrides.get("epochs", cfg.epochs),
            "dependent": bool(placeholders(specs)), "base": table.get("base", name),
            "overrides": overrides}


def _sweep(cfg, swept: list[str]) -> list[dict]:
    """The validation sweep's arms for the techniques in `swept`: none, then each strength of each grid."""
    if not swept:
        return []
    return [sweep_arm(cfg), *(sweep_arm(cfg, t, value) for t in swept for value in cfg.grid(t))]


def sweep_arm(cfg, technique: str = "none", value: float | None = None) -> dict:
    """The sweep's arm for one strength of a technique (also for a strength the sweep adds beyond its grid), or
    without a technique: the baseline the sweep's strengths are seen against."""
    name = "none" if value is None else f"{technique}={value:g}"
    specs = [] if value is None else [f"{technique}={value!r}"]
    return {"group": "sweep", "seeds": cfg.sweep_seeds, "batch_size": cfg.batch_size, "epochs": cfg.sweep_epochs,
            "dependent": False, "overrides": {"epochs": cfg.sweep_epochs}, "arm": name, "technique": technique,
            "specs": specs, "base": name}


def planned_arms(cfg, tables: list[dict] | None = None) -> list[dict]:
    """The arms a study runs, expanded: the sweep first, then every table's arms in order. Each is a dict: group,
    arm, technique, spec templates, seed count, batch size, epochs, dependent (waits for chosen strengths), base
    (the arm a batch-size arm varies) and the RunConfig overrides."""
    if tables is None:
        tables = schema.study_tables(cfg.lecture, cfg.arms, cfg.claims)[0]
    arms = [arm for number, table in enumerate(tables, 1) for arm in _expand(cfg, table, number)]
    seen: dict[str, dict] = {}
    for arm in arms:
        if arm["arm"] in seen:
            raise ConfigError(f"arm {arm['arm']!r} is declared twice (the lecture's arms are included unless "
                              "lecture = false; give yours other names)")
        seen[arm["arm"]] = arm
    wanted = set().union(*(placeholders(a["specs"]) for a in arms)) if arms else set()
    return _sweep(cfg, [t for t in tunable() if t in wanted]) + arms


def _overrides(cfg, arm: dict, data: str) -> dict:
    out = dict(arm["overrides"])
    if arm["group"] == "sweep" and not cfg.split(data)["val_size"]:
        out["val_fraction"] = cfg.val_fraction  # else every run holds out the same val_size images; the sweep
    return out                                  # validates on them


def arms_reading(claims: Iterable[Claim], metric: str) -> set[tuple[str, str]]:
    """The (group, arm) pairs whose `metric` a claim reads (an arm at a size, "bn@500", as its arm)."""
    return {(group, arm.split(CELL)[0]) for claim in claims for part in claim.parts if part.metric == metric
            for group, arm in part.arms()}


def tracks(cfg, arm: dict) -> bool:
    """Whether the runs of `arm` measure clean accuracy on `track_size` training images every epoch: the headline
    arms (their learning curves), the sweep (its run at the chosen strength is the headline's run of that seed,
    trained once: `runner.Scheduler.twins`) and the arms a claim reads ``epochs_to_target`` of. The others skip
    it: nothing reads their learning speed, and those evaluations cost ~15% of an epoch on 500 images."""
    return arm["group"] in ("headline", "sweep") or (arm["group"], arm["arm"]) in arms_reading(
        cfg.design.claims, "epochs_to_target")


def arm_runs(cfg, data: str, arm: dict, chosen: dict[str, float] | None = None) -> list[Run]:
    """The runs of one arm on data set (or cell) `data` (its specs at the `chosen` strengths), one per seed."""
    base = dict(data=data, model=cfg.model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                optimizer=cfg.optimizer, nproc=cfg.nproc, eval_every=cfg.eval_every,
                track_size=cfg.track_size if tracks(cfg, arm) else None, **cfg.split(data))
    overrides = _overrides(cfg, arm, data)
    overrides["epochs"] = cfg.epochs_at(data, overrides.get("epochs", cfg.epochs))
    name, size = split_cell(data)
    if size is not None:  # a cell of a study over sizes: its data set (cfg.split gave its size)
        base["data"] = name
    regs = [spec.format(**(chosen or {})) for spec in arm["specs"]]
    runs = []
    for seed in range(cfg.first_seed, cfg.first_seed + arm["seeds"]):
        config = RunConfig(**{**base, "regs": regs, "seed": seed, "data_seed": cfg.data_seed(seed), **overrides})
        runs.append(Run(data, arm["group"], arm["arm"], arm["technique"], seed, config))
    return runs


def _runs(cfg, data: str, dependent: bool, chosen: dict[str, float] | None) -> list[Run]:
    return [run for arm in cfg.design.arms if arm["dependent"] == dependent
            for run in arm_runs(cfg, data, arm, chosen)]


def independent_runs(cfg, data: str) -> list[Run]:
    """Runs that need no chosen strength, the validation sweep first (the scheduler queues them in this order)."""
    return _runs(cfg, data, dependent=False, chosen=None)


def dependent_runs(cfg, data: str, chosen: dict[str, float]) -> list[Run]:
    """Runs at the strengths chosen on validation data."""
    return _runs(cfg, data, dependent=True, chosen=chosen)


def runs_of(cfg, data: str, chosen: dict[str, float]) -> list[Run]:
    return independent_runs(cfg, data) + dependent_runs(cfg, data, chosen)


MAX_EXTENSIONS = 3  # strengths the sweep may add beyond each edge of a technique's grid


def sweep_scores(sweep_rows: Iterable[dict]) -> dict[str, dict[float, list[tuple[float, float, int]]]]:
    """{technique: {strength: [(val_acc, val_loss, seed) per finished seed]}} of the sweep's runs."""
    scores: dict[str, dict[float, list[tuple[float, float, int]]]] = {}
    for row in sweep_rows:
        if row["technique"] != "none" and row["status"] == "finished":
            scores.setdefault(row["technique"], {}).setdefault(row["strength"], []).append(
                (row["val_acc"], row["val_loss"], int(row["seed"])))
    return scores


def _mean(runs: list[tuple], k: int = 0) -> float:
    return sum(r[k] for r in runs) / len(runs)


def _by_mean(values: dict[float, list[tuple]]):
    """Best by mean's order: mean validation accuracy, then the lower mean validation loss."""
    return lambda v: (_mean(values[v]), -_mean(values[v], 1))


def best_by_mean(values: dict[float, list[tuple]]) -> float:
    """The strength with the best mean validation accuracy (ties: the lower mean validation loss)."""
    return max(sorted(values), key=_by_mean(values))


def one_standard_error(values: dict[float, list[tuple]]) -> float:
    """The weakest strength whose mean validation accuracy is within one standard error (of the best strength's
    seeds) of the best mean: strengths the sweep cannot tell apart resolve toward less regularization, the same
    way each time, instead of by chance (the one-standard-error rule of Breiman et al.; with one sweep seed there is
    no standard error and it is the best by mean)."""
    best = best_by_mean(values)
    accs = [r[0] for r in values[best]]
    error = stats.standard_error(accs)
    floor = sum(accs) / len(accs) - (error if math.isfinite(error) else 0.0)
    return min(v for v, runs in values.items() if _mean(runs) >= floor)


def paired_difference_error(values: dict[float, list[tuple]]) -> float:
    """The standard error of the difference between two strengths' mean validation accuracies, the seeds paired
    (seed s of every strength trains on the same sample from the same initialization, so what a seed does to all
    strengths alike is no noise between them): the residual variance of accuracy ~ strength + seed, over the seeds
    every strength has, times 2 / seeds, square-rooted. NaN with fewer than two such seeds or two strengths."""
    seeds = sorted(set.intersection(*({r[2] for r in runs} for runs in values.values()))) if values else []
    if len(seeds) < 2 or len(values) < 2:
        return math.nan
    acc = {v: {r[2]: r[0] for r in runs} for v, runs in values.items()}
    row = {v: sum(acc[v][s] for s in seeds) / len(seeds) for v in acc}
    col = {s: sum(acc[v][s] for v in acc) / len(acc) for s in seeds}
    grand = sum(row.values()) / len(row)
    residual = sum((acc[v][s] - row[v] - col[s] + grand) ** 2 for v in acc for s in seeds)
    return math.sqrt(2 * residual / ((len(acc) - 1) * (len(seeds) - 1)) / len(seeds))


def plateau_centre(values: dict[float, list[tuple]], tie: str = "better") -> float:
    """The middle, in order of strength, of the strengths the sweep cannot tell from the best: those whose mean
    validation accuracy lies within one paired standard error of a difference (`paired_difference_error`) of the
    best mean; of two middle ones, the better by mean (`tie` "better"), the weaker or the stronger. A flat stretch
    of the curve then gives its middle each time, where the best by mean is whichever point the seeds' noise lifts;
    a clear peak gives the peak. Without two paired seeds it is the best by mean."""
    best = best_by_mean(values)
    error = paired_difference_error(values)
    if not math.isfinite(error):
        return best
    top = _mean(values[best])
    tied = sorted(v for v, runs in values.items() if top - _mean(runs) <= error)
    middle = len(tied) // 2
    if len(tied) % 2:
        return tied[middle]
    pair = tied[middle - 1 : middle + 1]
    return {"better": max(pair, key=_by_mean(values)), "weaker": pair[0], "stronger": pair[1]}[tie]


RULES = {"one-standard-error": one_standard_error, "best-mean": best_by_mean, "plateau-centre": plateau_centre,
         "plateau-centre-weaker": lambda values: plateau_centre(values, "weaker"),
         "plateau-centre-stronger": lambda values: plateau_centre(values, "stronger")}
# The rule the study uses: the one that made replicates choose alike more often (benchmarks/strength_rules.py, by a
# decision rule fixed before each count). Standard preset, 2026-12-02, sweeps of replicates 0-5: best-mean chose the
# same strength or a grid neighbour in 53 of 60 pairs of replicates, the one-standard-error rule in 48 (with 2 sweep
# seeds one standard error is wide). 2026-12-07, sweeps of replicates 2-7 (benchmarks/sweep_replicates.toml), each
# rule extending its own grid: plateau-centre 59 of 60, best-mean 50, one-standard-error 43; its picks' mean
# validation accuracy 0.9128 against best-mean's 0.9136 (the rule allowed 0.005 less). Later that day, on the same
# sweeps, its tie between two middle strengths: the stronger 60 of 60 alike and 28 pairs the very same strength,
# the better by mean 59 and 26, the weaker 55 and 23 (mean validation accuracy 0.9110, 0.9128, 0.9124): adopted, as
# the decision fixed before the count asked (alike no fewer, the same more often, accuracy within 0.005 of
# best-mean's).
RULE = "plateau-centre-stronger"


def choose_strengths(sweep_rows: Iterable[dict], fallback: dict[str, float], swept: Iterable[str],
                     rule: str = RULE) -> tuple[dict[str, float], list[str]]:
    """Per technique of `swept`, the strength `rule` picks from the sweep's finished runs (`RULES`).

    A technique whose every validation run diverged falls back to its textbook strength; those are returned too,
    so the report can say so."""
    scores = sweep_scores(sweep_rows)
    swept = list(swept)
    fell_back = [t for t in swept if t not in scores]
    chosen = {t: RULES[rule](scores[t]) if t in scores else fallback[t] for t in swept}
    return chosen, fell_back


def room_beyond(grid: list[float], original: list[float], value: float) -> bool:
    """Whether `grid` (the `original` grid as extended so far) may take `value`: fewer than `MAX_EXTENSIONS`
    strengths added on its side."""
    high = value > max(original)
    return sum(1 for v in grid if v not in original and (v > max(original)) == high) < MAX_EXTENSIONS


def beyond_edge(grid: list[float], values: dict[float, list[tuple]], technique: str,
                rule: str = RULE) -> float | None:
    """When the strength `rule` picks sits at an edge of `grid`, the next strength one step beyond that edge (the
    grid's own ratio where it spans a decade or more, else its last spacing; halved toward the edge until the
    technique accepts it, and above 0); None when the pick is inside or nothing valid lies beyond."""
    grid = sorted(grid)
    if len(grid) < 2 or not values:
        return None
    best = RULES[rule](values)
    if best not in (grid[0], grid[-1]):
        return None
    inner, edge = (grid[-2], grid[-1]) if best == grid[-1] else (grid[1], grid[0])
    log = grid[0] > 0 and grid[-1] / grid[0] >= 10
    target = edge * (edge / inner) if log else edge + (edge - inner)
    for halving in range(5):
        value = float(f"{round(edge + (target - edge) / 2 ** halving, 12):.12g}")  # no float dust
        if value > 0 and value not in grid and TECHNIQUES[technique].valid(value):
            return value
    return None
