"""What a study runs: `StudyConfig`, the presets, TOML loading and validation.

A study config is checked when it is made: every field against its annotation (`check_type`, read from the
dataclass, so a new field is checked without another edit), the ranges, the strengths and every arm's specs
(through the same spec parser the runs use), and its design: the arms expanded and the claims parsed against them
(`plan.make_design`; a claim that names an arm the study does not run is an error here, not an empty verdict
later). The design is made once, here, and kept as `StudyConfig.design`.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from ..errors import ConfigError, SandbagError
from ..models import check_model_name
from ..regularizers import TECHNIQUES, tunable
from ..runs import RunConfig
from . import layout, own_model, plan
from .layout import SAMPLING, SEED_BLOCK
from .results import METRICS

PRESETS = ("quick", "standard", "full", "fashion", "regime", "regime-fashion")
DATA_OPTIONS = ("train_size", "test", "val_size")  # what `data_options` may set per data set


@dataclass
class StudyConfig:
    """What a study runs. Every field can be set in a TOML file; `sweep` and `textbook` are tables."""

    name: str = "standard"
    data: list[str] = field(default_factory=lambda: ["mnist-5k"])
    model: str = "ref-cnn"  # or your own model's factory, "package.module:function" (see sandbag.models)
    # "allow": the factory's model may bring dropout, batch norm or noise of its own (kept in every arm, the none arm
    # too); "refuse" (default): such a study stops before its first run, naming the layers (see study.own_model)
    model_own_regularization: str = "refuse"
    train_size: int | None = None
    # the regime map: run every arm at each of these training-set sizes (each size its own sweep, strengths chosen
    # per size), instead of at train_size; claims name arms at a size ("dropout@500", "dropout@min_size")
    train_sizes: list[int] = field(default_factory=list)
    # with train_sizes: train every run of a size for about this many optimizer steps at batch_size (epochs =
    # size_steps * batch_size / size, rounded, >= 1; sweep runs too), so each size gets the same updates; None:
    # `epochs` (and `sweep_epochs`) at every size
    size_steps: int | None = None
    size_min_epochs: int = 1  # with size_steps: no size trains fewer epochs (a large size would stop short of fitting)
    test: str = "default"  # "rest": test on every image not used for training or validation (needs train_size)
    val_size: int | None = None  # the sweep's validation images, from those not used for training (else val_fraction)
    eval_every: int = 1  # clean train/val/test figures every k epochs (and at the last one)
    track_size: int | None = None  # learning speed measured each epoch on this many training images
    # per data set: its own train_size / test / val_size, e.g. {"fashion-mnist": {"test": "default"}}
    data_options: dict[str, dict[str, str | int]] = field(default_factory=dict)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    seeds: int = 5  # headline comparison
    extra_seeds: int = 3  # sub-experiments: bias in L2, proximal L1, BN placement, batch sizes
    batch_seeds: int | None = None  # the batch-size arms' seeds, if fewer than extra_seeds (None: extra_seeds)
    val_fraction: float = 0.1
    sweep_epochs: int = 4
    sweep_seeds: int = 1  # seeds per strength of the validation sweep (the mean chooses; error bars in the report)
    # per technique: the strengths its sweep tries and its fallback strength (default: the technique's own `grid`
    # and `textbook`, sandbag.regularizers); a study file gives only those it changes
    sweep: dict[str, list[float]] = field(default_factory=dict)
    textbook: dict[str, float] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=lambda: [4, 32, 128])
    batch_epochs: int | None = None  # epochs for the batch-size runs (default: epochs)
    learn_target: float = 0.95  # clean training accuracy that defines "learned" for learning speed
    # smallest effect of interest per metric: a paired interval inside +-it is "negligible" (no practical difference)
    smallest_effect: dict[str, float] = field(default_factory=lambda: {
        "test_acc": 0.003, "train_acc": 0.003, "gap": 0.003, "train_loss": 0.003})
    timing_repeats: int = 5  # repetitions of the timing phase (seconds per epoch, measured alone); 0: none
    timing_seconds: float = 1.0  # each timed arm's epochs in one repetition last at least this long (and 2 epochs)
    quick: bool = False  # marks a reduced study in the report
    nproc: int = 1  # data-parallel processes per run; > 1 also runs bn-sync (BN over the global batch) next to bn
    # "per-seed": seed s trains (and validates and tests) on its own stratified sample, shared by every arm of seed
    # s, so verdicts hold over samples as well as initializations; "fixed": one sample (data_seed 0) for every run
    data_sampling: str = "fixed"
    replicate: int = 0  # replicate r runs seeds r*1000 ... on samples no other replicate draws (layout.SEED_BLOCK)
    lecture: bool = True  # include the lecture's arms and claims (lecture.toml) beside the file's own
    arms: list[dict[str, typing.Any]] = field(default_factory=list)  # [[arms]]: the file's own arms
    claims: list[dict[str, typing.Any]] = field(default_factory=list)  # [[claims]]: the file's own claims

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        for f in fields(self):
            check_type(f.name, getattr(self, f.name), _hints()[f.name], "study config")
        checks = [
            (len(self.data) >= 1, "a study needs at least one data set"),
            (self.seeds >= 2, f"seeds must be >= 2 for a confidence interval, got {self.seeds}"),
            (2 <= self.extra_seeds <= self.seeds, f"extra_seeds must be in [2, seeds], got {self.extra_seeds}"),
            (0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (self.test in ("default", "rest"), f"test must be default or rest, got {self.test!r}"),
            (self.eval_every >= 1 and (self.track_size or 1) >= 1, "eval_every and track_size must be >= 1"),
            (self.timing_repeats >= 0, f"timing_repeats must be >= 0, got {self.timing_repeats}"),
            (self.timing_seconds > 0, f"timing_seconds must be > 0, got {self.timing_seconds}"),
            (self.sweep_seeds >= 1, f"sweep_seeds must be >= 1, got {self.sweep_seeds}"),
            (self.batch_seeds is None or 2 <= self.batch_seeds <= self.extra_seeds,
             f"batch_seeds must be in [2, extra_seeds], got {self.batch_seeds}"),
            (self.epochs >= 1 and self.sweep_epochs >= 1, "epochs and sweep_epochs must be >= 1"),
            (self.batch_size in self.batch_sizes, f"batch_sizes must include batch_size {self.batch_size}"),
            (all(b >= 2 for b in self.batch_sizes), "batch sizes must be >= 2 (BN needs two samples)"),
            (0 < self.learn_target <= 1, f"learn_target must be in (0, 1], got {self.learn_target}"),
            (self.data_sampling in SAMPLING, f"data_sampling must be one of {', '.join(SAMPLING)}, got "
                                             f"{self.data_sampling!r}"),
            (self.replicate >= 0, f"replicate must be >= 0, got {self.replicate}"),
            (max(self.seeds, self.sweep_seeds) <= SEED_BLOCK,
             f"a replicate holds at most {SEED_BLOCK} seeds; got seeds {self.seeds}, sweep_seeds {self.sweep_seeds}"),
            (not (self.train_sizes and self.train_size), "give train_size or train_sizes, not both"),
            (not (self.train_sizes and self.lecture), "a study over train_sizes needs lecture = false (the lecture's "
                                                     "claims name arms at one size; give claims that name a size, "
                                                     "e.g. 'dropout@500', as the regime preset does)"),
            (all(n >= 10 for n in self.train_sizes) and len(set(self.train_sizes)) == len(self.train_sizes),
             f"train_sizes must be distinct sizes of 10 images or more, got {self.train_sizes}"),
            (self.size_min_epochs >= 1, f"size_min_epochs must be >= 1, got {self.size_min_epochs}"),
            (self.size_steps is None or (self.size_steps >= 1 and bool(self.train_sizes)),
             f"size_steps must be >= 1 and goes with train_sizes, got {self.size_steps}"),
            (self.nproc >= 1 and all(b % self.nproc == 0 and b >= 2 * self.nproc for b in self.batch_sizes),
             f"nproc must be >= 1 and split every batch size evenly, two samples or more each; got {self.nproc}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for data, options in self.data_options.items():
            unknown = set(options) - set(DATA_OPTIONS)
            if unknown:
                raise ConfigError(f"[data_options.{data}] has unknown keys {sorted(unknown)}; valid: "
                                  f"{', '.join(DATA_OPTIONS)}")
        self.train_sizes = sorted(self.train_sizes)
        for cell in self.cells:
            RunConfig(**self.split(cell))  # the split options of each data set, checked as its runs will be
        for metric, value in self.smallest_effect.items():
            if metric not in METRICS or not value > 0:
                metrics = ", ".join(METRICS)
                raise ConfigError(f"[smallest_effect] {metric} = {value}: give a metric of {metrics} and a number > 0")
        techniques = tunable()
        for table in ("sweep", "textbook"):
            unknown = set(getattr(self, table)) - set(techniques)
            if unknown:
                raise ConfigError(f"[{table}] has unknown techniques {sorted(unknown)}; valid: {', '.join(techniques)}")
        self.sweep = {t: list(self.sweep.get(t) or TECHNIQUES[t].grid) for t in techniques}
        self.textbook = {t: self.textbook.get(t, TECHNIQUES[t].textbook) for t in techniques}
        for tech in techniques:
            if not self.sweep[tech]:
                raise ConfigError(f"[sweep] needs a list of strengths for {tech} (it declares no default grid)")
            if self.textbook[tech] is None:
                raise ConfigError(f"[textbook] needs a strength for {tech} (the fallback if its sweep diverges)")
        # validate every strength once, through the same parser the runs use
        for tech, values in self.sweep.items():
            for v in values:
                RunConfig(regs=[f"{tech}={v}"])
        self.design = plan.make_design(self)
        for arm in self.design.arms:
            try:
                RunConfig(regs=[s.format(**self.textbook) for s in arm["specs"]], **arm["overrides"])
            except SandbagError as exc:
                raise ConfigError(f"arm {arm['arm']!r}: {exc}") from None
        check_model_name(self.model)
        # a factory is imported and built for every arm here: a bad path, an arm it cannot place or regularization
        # of its own stops the study before any run, not in the workers; the layers allowed are kept for the report
        self.model_own_layers = own_model.check_model(self)

    @property
    def first_seed(self) -> int:
        """The replicate's first seed: its runs use seeds first_seed, first_seed + 1, ..."""
        return self.replicate * SEED_BLOCK

    def data_seed(self, seed: int) -> int:
        """The sample a run of `seed` draws: its own per seed, else the replicate's one sample."""
        return seed if self.data_sampling == "per-seed" else self.first_seed

    def grid(self, technique: str) -> list[float]:
        """The strengths the validation sweep tries for `technique`."""
        return self.sweep[technique]

    @property
    def cells(self) -> list[str]:
        """What the study runs its arms on: each data set, or each data set at each of `train_sizes`
        ("mnist-5k@500", `layout.cell_key`)."""
        return layout.cells({"data": self.data, "train_sizes": self.train_sizes})  # no deep copy of the config

    def split(self, cell: str) -> dict:
        """train_size, test and val_size of a data set or cell: the study's, or its data set's `data_options`; a
        cell's own size as train_size."""
        data, size = layout.split_cell(cell)
        out = {key: self.data_options.get(data, {}).get(key, getattr(self, key)) for key in DATA_OPTIONS}
        return {**out, "train_size": size} if size is not None else out

    def epochs_at(self, cell: str, epochs: int) -> int:
        """The epochs a run of `cell` trains for: `epochs`, or with `size_steps` the epochs that make about that
        many steps at the cell's size (`layout.size_epochs`)."""
        return layout.size_epochs(self.size_steps, self.batch_size, layout.split_cell(cell)[1], epochs,
                                  self.size_min_epochs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "study config") -> StudyConfig:
        known = {f.name for f in fields(cls)}
        hints = _hints()
        for key, value in d.items():
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(known)}"
                raise ConfigError(f"{source}: unknown key {key!r}{hint}")
            check_type(key, value, hints[key], source)
        return cls(**d)


def defaults() -> dict:
    """Every StudyConfig field's default (the CLI shows and uses these; it keeps no copy of its own)."""
    out = {}
    for f in fields(StudyConfig):
        out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
    return out


def _hints() -> dict:
    return typing.get_type_hints(StudyConfig)


# ----------------------------------------------------------------------------------------------------------------
# Field types, checked from the annotations


def type_name(annotation) -> str:
    """An annotation as a user reads it: int, list[int], dict[str, float] (None left out of optional ones)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if _is_union(annotation):
        return " or ".join(type_name(a) for a in args)
    origin = typing.get_origin(annotation)
    if origin is dict and args[1] is typing.Any:
        return "table"
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def matches(value, annotation) -> bool:
    """Whether a (TOML) value fits an annotation made of int, float, str, bool, None, Any, unions, list[X],
    dict[str, X].

    bool is not an int here, and an int is a float (TOML writes 1 for 1.0). Other annotations raise TypeError."""
    if annotation is typing.Any:
        return True
    if annotation is type(None) or annotation is None:
        return value is None
    if _is_union(annotation):
        return any(matches(value, a) for a in typing.get_args(annotation))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    raise TypeError(f"no type check for annotation {annotation!r}")


def check_type(key: str, value, annotation, source: str) -> None:
    """`ConfigError` (one line) unless `value` fits the field's annotation."""
    if not matches(value, annotation):
        raise ConfigError(f"{source}: {key} must be {type_name(annotation)}, got {value!r}")


# ----------------------------------------------------------------------------------------------------------------
# Loading


def preset_table(name: str, _from: tuple[str, ...] = ()) -> dict:
    """A preset's TOML, with the preset it starts from merged in (`starting_from`); `load_preset` checks it and
    makes its design."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    if name in _from:
        raise ConfigError(f"presets start from each other in a circle: {' -> '.join((*_from, name))}")
    table = tomllib.loads(resources.files("sandbag.presets").joinpath(f"{name}.toml").read_text())
    return starting_from(table, f"preset {name}", (*_from, name))


def starting_from(table: dict, source: str, _from: tuple[str, ...] = ()) -> dict:
    """A study file's table over the preset it names in `preset = "NAME"` (if any): the file's keys replace the
    preset's, its tables ([sweep], [smallest_effect] ...) merge into the preset's key by key, and its lists
    ([[claims]], [[arms]], data, batch_sizes) replace the preset's whole."""
    if "preset" not in table:
        return table
    name = table["preset"]
    if not isinstance(name, str):
        raise ConfigError(f"{source}: preset must be a preset's name, got {name!r}; valid: {', '.join(PRESETS)}")
    return _merged(preset_table(name, _from), {k: v for k, v in table.items() if k != "preset"})


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load_preset(name: str) -> StudyConfig:
    return StudyConfig.from_dict(preset_table(name), source=f"preset {name}")


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read study config {path}: {exc.strerror}") from None
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return StudyConfig.from_dict(starting_from(d, str(path)), source=str(path))
