"""A study: every technique on the reference CNN, several seeds, the sub-experiments, as a list of runs.

The study is data: a `StudyConfig` (from a preset or a TOML file) expands into `Run`s, each a `RunConfig` with
a place in the study (data set, group, arm, seed). Strength is a nuisance parameter: each technique's strength is
chosen on a validation split carved from the training data (group ``sweep``), and the chosen value then runs on
several seeds (groups ``headline`` and ``extra``), compared with no regularization on the test set.

Runs execute in a local process pool or as Ray tasks (`sandbag.executors`); each writes its own run folder, named
by its config hash, so a rerun of the same command skips finished runs (resume) and redoes unfinished ones.
`results.csv` and `aggregate.csv` are rebuilt from the run folders after every finished run, atomically.
"""

from __future__ import annotations

import csv
import difflib
import fcntl
import io
import json
import math
import os
import platform
import re
import sys
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from . import files
from .errors import ConfigError, OutputError
from .train import RunConfig, versions

PRESETS = ("quick", "standard", "full")
TECHNIQUES = ("l2", "l1", "noise", "dropout")  # the ones with a strength to choose; bn has none


@dataclass
class StudyConfig:
    """What a study runs. Every field can be set in a TOML file; `sweep` and `textbook` are tables."""

    name: str = "standard"
    data: list[str] = field(default_factory=lambda: ["mnist-5k"])
    model: str = "ref-cnn"
    train_size: int | None = None
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    seeds: int = 5  # headline comparison
    extra_seeds: int = 3  # sub-experiments: bias in L2, proximal L1, BN placement, batch sizes
    val_fraction: float = 0.1
    sweep_epochs: int = 4
    sweep: dict[str, list[float]] = field(default_factory=lambda: {
        "l2": [1e-4, 1e-3, 1e-2], "l1": [1e-5, 1e-4, 1e-3], "noise": [0.1, 0.3, 0.5], "dropout": [0.2, 0.4, 0.6],
    })
    textbook: dict[str, float] = field(default_factory=lambda: {"l2": 1e-3, "l1": 1e-4, "noise": 0.3, "dropout": 0.4})
    batch_sizes: list[int] = field(default_factory=lambda: [4, 32, 128])
    batch_epochs: int | None = None  # epochs for the batch-size runs (default: epochs)
    learn_target: float = 0.95  # clean training accuracy that defines "learned" for learning speed
    quick: bool = False  # marks a reduced study in the report
    nproc: int = 1  # data-parallel processes per run; > 1 also runs bn-sync (BN over the global batch) next to bn

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = [self.data]
        checks = [
            (len(self.data) >= 1, "a study needs at least one data set"),
            (self.seeds >= 2, f"seeds must be >= 2 for a confidence interval, got {self.seeds}"),
            (2 <= self.extra_seeds <= self.seeds, f"extra_seeds must be in [2, seeds], got {self.extra_seeds}"),
            (0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (self.epochs >= 1 and self.sweep_epochs >= 1, "epochs and sweep_epochs must be >= 1"),
            (self.batch_size in self.batch_sizes, f"batch_sizes must include batch_size {self.batch_size}"),
            (all(b >= 2 for b in self.batch_sizes), "batch sizes must be >= 2 (BN needs two samples)"),
            (0 < self.learn_target <= 1, f"learn_target must be in (0, 1], got {self.learn_target}"),
            (self.nproc >= 1 and all(b % self.nproc == 0 and b >= 2 * self.nproc for b in self.batch_sizes),
             f"nproc must be >= 1 and split every batch size evenly, two samples or more each; got {self.nproc}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for table in ("sweep", "textbook"):
            unknown = set(getattr(self, table)) - set(TECHNIQUES)
            if unknown:
                raise ConfigError(f"[{table}] has unknown techniques {sorted(unknown)}; valid: {', '.join(TECHNIQUES)}")
        for tech in TECHNIQUES:
            if not self.sweep.get(tech):
                raise ConfigError(f"[sweep] needs a list of strengths for {tech}")
        # validate every strength once, through the same parser the runs use
        for tech, values in self.sweep.items():
            for v in values:
                RunConfig(regs=[f"{tech}={v}"])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "study config") -> StudyConfig:
        known = {f.name: f for f in fields(cls)}
        for key, value in d.items():
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(known)}"
                raise ConfigError(f"{source}: unknown key {key!r}{hint}")
            _check_type(key, value, known[key].type, source)
        return cls(**d)


def _check_type(key: str, value, annotation: str, source: str) -> None:
    """TOML values against the field's annotation (strings under `from __future__ import annotations`)."""
    if value is None and annotation.endswith("| None"):
        return
    expected = {
        "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "int | None": (int,),
        "list[str]": (list, str), "list[int]": (list,), "dict[str, list[float]]": (dict,),
        "dict[str, float]": (dict,),
    }[annotation]
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if ok and annotation == "list[int]":
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if ok and annotation == "dict[str, list[float]]":
        ok = all(isinstance(v, list) and all(_is_number(x) for x in v) for v in value.values())
    if ok and annotation == "dict[str, float]":
        ok = all(_is_number(v) for v in value.values())
    if not ok:
        raise ConfigError(f"{source}: {key} must be {annotation.replace(' | None', '')}, got {value!r}")


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def load_preset(name: str) -> StudyConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    text = resources.files("sandbag.presets").joinpath(f"{name}.toml").read_text()
    return StudyConfig.from_dict(tomllib.loads(text), source=f"preset {name}")


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
    return StudyConfig.from_dict(d, source=str(path))


# ----------------------------------------------------------------------------------------------------------------
# Arms and runs


@dataclass(frozen=True, eq=False)  # identity-hashed: a Run is a key of the scheduler's result table
class Run:
    data: str
    group: str  # sweep | headline | extra | batch
    arm: str  # e.g. none, l2, dropout, bn-post, l2=0.001, bn-b4
    technique: str  # none, l2, l1, noise, dropout, bn
    seed: int
    config: RunConfig

    def folder(self, study_dir: Path) -> Path:
        slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", self.data).strip("_")
        arm = re.sub(r"[^A-Za-z0-9.=-]+", "_", self.arm)
        return study_dir / "runs" / slug / f"{self.group}-{arm}-s{self.seed}-{self.config.key()}"


def _run(cfg: StudyConfig, data: str, group: str, arm: str, technique: str, seed: int, regs: list[str],
         **overrides) -> Run:
    base = dict(data=data, model=cfg.model, regs=regs, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                optimizer=cfg.optimizer, seed=seed, train_size=cfg.train_size, nproc=cfg.nproc)
    return Run(data, group, arm, technique, seed, RunConfig(**{**base, **overrides}))


def independent_runs(cfg: StudyConfig, data: str) -> list[Run]:
    """Runs that need no chosen strength: the validation sweep, none, bn, bn-post and the batch-size arms."""
    runs = [_run(cfg, data, "sweep", "none", "none", 0, [], val_fraction=cfg.val_fraction, epochs=cfg.sweep_epochs)]
    for tech in TECHNIQUES:
        for value in cfg.sweep[tech]:
            runs.append(_run(cfg, data, "sweep", f"{tech}={value:g}", tech, 0, [f"{tech}={value}"],
                             val_fraction=cfg.val_fraction, epochs=cfg.sweep_epochs))
    for seed in range(cfg.seeds):
        runs.append(_run(cfg, data, "headline", "none", "none", seed, []))
        runs.append(_run(cfg, data, "headline", "bn", "bn", seed, ["bn"]))
    for seed in range(cfg.extra_seeds):
        runs.append(_run(cfg, data, "extra", "bn-post", "bn", seed, ["bn:post"]))
        if cfg.nproc > 1:  # local (per-process) vs global-batch statistics; identical in one process
            runs.append(_run(cfg, data, "extra", "bn-sync", "bn", seed, ["bn:sync"]))
        for b in cfg.batch_sizes:
            if b != cfg.batch_size:
                epochs = cfg.batch_epochs or cfg.epochs
                runs.append(_run(cfg, data, "batch", f"none-b{b}", "none", seed, [], batch_size=b, epochs=epochs))
                runs.append(_run(cfg, data, "batch", f"bn-b{b}", "bn", seed, ["bn"], batch_size=b, epochs=epochs))
    return runs


def dependent_runs(cfg: StudyConfig, data: str, chosen: dict[str, float]) -> list[Run]:
    """Runs at the strengths chosen on validation data: the headline techniques, L2 with biases, proximal L1."""
    runs = []
    for seed in range(cfg.seeds):
        for tech in TECHNIQUES:
            runs.append(_run(cfg, data, "headline", tech, tech, seed, [f"{tech}={chosen[tech]}"]))
    for seed in range(cfg.extra_seeds):
        runs.append(_run(cfg, data, "extra", "l2-bias", "l2", seed, [f"l2={chosen['l2']}:bias"]))
        runs.append(_run(cfg, data, "extra", "l1-prox", "l1", seed, [f"l1={chosen['l1']}:prox"]))
    return runs


def choose_strengths(sweep_rows: Iterable[dict], fallback: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Per technique, the strength with the best validation accuracy (ties: lower validation loss).

    A technique whose every validation run diverged falls back to its textbook strength; those are returned too,
    so the report can say so."""
    best: dict[str, tuple] = {}
    for row in sweep_rows:
        tech = row["technique"]
        if tech == "none" or row["status"] != "finished":
            continue
        score = (row["val_acc"], -row["val_loss"])
        if tech not in best or score > best[tech][0]:
            best[tech] = (score, row["strength"])
    fell_back = [t for t in TECHNIQUES if t not in best]
    chosen = {tech: best[tech][1] if tech in best else fallback[tech] for tech in TECHNIQUES}
    return chosen, fell_back


# ----------------------------------------------------------------------------------------------------------------
# Reading run folders into result rows


def read_summary(folder: Path) -> dict | None:
    """A run's summary if its folder is complete (finished or diverged), else None (rerun it)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") in ("finished", "diverged") else None


def epochs_to_target(metrics: list[dict], target: float, chance: float) -> float:
    """Fractional epoch at which clean training accuracy first reaches `target` (linear between epochs, from
    chance accuracy at epoch 0); epochs + 1 if it never does (censored)."""
    previous_epoch, previous_acc = 0.0, chance
    for row in metrics:
        acc = row["train_acc"]
        if acc >= target:
            if acc == previous_acc:
                return float(row["epoch"])
            return previous_epoch + (target - previous_acc) / (acc - previous_acc) * (row["epoch"] - previous_epoch)
        previous_epoch, previous_acc = float(row["epoch"]), acc
    return float(len(metrics) + 1)


def result_row(run: Run, study_dir: Path, summary: dict, learn_target: float) -> dict:
    folder = run.folder(study_dir)
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    strength = next((float(r.split("=")[1].split(":")[0]) for r in run.config.regs if "=" in r), None)
    return {
        "data": run.data, "group": run.group, "arm": run.arm, "technique": run.technique, "seed": run.seed,
        "regs": " ".join(run.config.regs), "strength": strength, "batch_size": run.config.batch_size,
        "epochs": run.config.epochs, "val_fraction": run.config.val_fraction,
        "run_dir": str(folder.relative_to(study_dir)),
        **{k: v for k, v in summary.items() if k not in ("device",)},
        "epochs_to_target": epochs_to_target(metrics, learn_target, chance=0.1),
    }


RESULT_COLUMNS = [
    "data", "group", "arm", "technique", "seed", "regs", "strength", "batch_size", "epochs", "val_fraction", "status",
    "epochs_done", "train_acc", "val_acc", "test_acc", "gap", "train_loss", "val_loss", "test_loss", "running_loss",
    "running_acc", "penalty", "weight_l2", "frac_small", "frac_zero", "epochs_to_target", "seconds_per_epoch",
    "total_seconds", "params", "trainable_params", "config_key", "run_dir",
]
AGGREGATE_METRICS = ["train_acc", "val_acc", "test_acc", "gap", "test_loss", "weight_l2", "frac_small", "frac_zero",
                     "epochs_to_target", "seconds_per_epoch"]


def write_results(study_dir: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (r["data"], r["group"], r["arm"], r["seed"]))
    files.write_text(study_dir / "results.csv", _csv(rows, RESULT_COLUMNS))
    files.write_text(study_dir / "aggregate.csv", _csv(aggregate(rows), None))


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


def _csv(rows: list[dict], columns: list[str] | None) -> str:
    columns = columns or (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_results(study_dir: Path) -> list[dict]:
    """results.csv as dicts with numbers parsed back."""
    with open(study_dir / "results.csv", newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ----------------------------------------------------------------------------------------------------------------
# Execution


def default_parallelism() -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core (measured faster than
    one worker with all threads for these small models; see benchmarks/)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores), 1


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _execute(cfg_dict: dict, folder: str) -> dict:
    """Worker entry point: one run, its folder written by `fit` (data-parallel under torchrun if nproc > 1)."""
    from .train import fit

    cfg = RunConfig.from_dict(cfg_dict)
    if cfg.nproc > 1:
        from .distributed import launch_run

        return launch_run(cfg, folder)
    return fit(cfg, folder)


class StudyLock:
    """An exclusive lock on the study folder: a second `sandbag study` on it refuses instead of interleaving."""

    def __init__(self, study_dir: Path):
        self.path = study_dir / ".lock"

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a+")
        except OSError as exc:
            raise OutputError(f"cannot use study folder {self.path.parent}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ConfigError(f"{self.path.parent} is in use by another sandbag study; wait or use --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        return False


@dataclass
class Progress:
    """What the caller's display needs: counts of runs done (incl. reused), running and left."""

    total: int = 0
    done: int = 0
    reused: int = 0
    running: int = 0
    failed: int = 0


def run_study(
    cfg: StudyConfig,
    study_dir: Path,
    *,
    workers: int | None = None,
    threads: int | None = None,
    command: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    executor: str = "local",
    address: str | None = None,
) -> list[dict]:
    """Run (or resume) a whole study into `study_dir`; return the result rows. Finished runs are reused.

    `executor` is ``local`` (a process pool here) or ``ray`` (Ray tasks; `address` of the cluster, or a local
    Ray instance without one); see `sandbag.executors`."""
    from .executors import make_executor

    study_dir = Path(study_dir)
    default_workers, default_threads = default_parallelism()
    workers, threads = workers or default_workers, threads or default_threads
    with StudyLock(study_dir):
        started = time.perf_counter()
        meta = _study_meta(cfg, command, workers, threads)
        pool = make_executor(executor, workers=workers, threads=threads, address=address)
        meta["hardware"].update(pool.describe())
        files.write_json(study_dir / "study.json", meta)
        scheduler = _Scheduler(cfg, study_dir, workers, threads, on_progress, executor=pool)
        rows, chosen = scheduler.run()
        meta.update(chosen=chosen, chosen_by_textbook_fallback=scheduler.fallbacks,
                    wall_seconds=time.perf_counter() - started,
                    cpu_seconds_runs=sum(r.get("total_seconds") or 0 for r in rows), runs=len(rows))
        files.write_json(study_dir / "study.json", meta)
    return rows


def _study_meta(cfg: StudyConfig, command: str | None, workers: int, threads: int) -> dict:
    return {
        "config": cfg.to_dict(),
        "command": command or " ".join(["sandbag", *sys.argv[1:]]),
        "versions": {**versions(), "python": platform.python_version()},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "cpus": os.cpu_count(), "workers": workers, "threads_per_worker": threads},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class _Scheduler:
    """Feeds runs to the pool: independent runs first (the validation sweep at the front), then, once a data set's
    sweep is complete, the runs at its chosen strengths."""

    def __init__(self, cfg, study_dir, workers, threads, on_progress, executor=None):
        self.cfg, self.study_dir, self.workers, self.threads = cfg, study_dir, workers, threads
        self.executor = executor
        self.on_progress = on_progress or (lambda p: None)
        self.rows: dict[Run, dict] = {}
        self.chosen: dict[str, dict[str, float]] = {}
        self.fallbacks: dict[str, list[str]] = {}
        self.progress = Progress()

    def run(self) -> tuple[list[dict], dict]:
        queue = [run for data in self.cfg.data for run in independent_runs(self.cfg, data)]
        self.progress.total = len(queue) + sum(
            len(dependent_runs(self.cfg, d, {t: 0.0 for t in TECHNIQUES})) for d in self.cfg.data
        )
        queue = self._reuse(queue)
        queue.extend(self._maybe_release(queue))  # on resume a finished sweep releases its dependent runs at once
        from .executors import LocalExecutor  # executors imports this module: import here, not at the top

        pool = self.executor or LocalExecutor(self.workers, self.threads)
        slots = pool.capacity(self.cfg.nproc)
        running: dict[Future, Run] = {}
        try:
            while queue or running:
                while queue and len(running) < slots:
                    run = queue.pop(0)
                    running[pool.submit(run.config.to_dict(), str(run.folder(self.study_dir)))] = run
                self._report(len(running))
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    run = running.pop(future)
                    future.result()  # a failure in a run is a bug: let it surface
                    self._record(run)
                self._write()
                queue.extend(self._maybe_release(queue, running.values()))
        except BaseException:
            pool.shutdown(cancel=True)
            self._write()
            raise
        pool.shutdown()
        self._report(0)
        self._write()
        return list(self.rows.values()), self.chosen

    def _reuse(self, runs: list[Run]) -> list[Run]:
        """Record runs whose folder already holds a finished summary; return the rest."""
        todo = []
        for run in runs:
            summary = read_summary(run.folder(self.study_dir))
            if summary and summary.get("config_key") == run.config.key():
                self.rows[run] = result_row(run, self.study_dir, summary, self.cfg.learn_target)
                self.progress.done += 1
                self.progress.reused += 1
            else:
                todo.append(run)
        return todo

    def _record(self, run: Run) -> None:
        summary = read_summary(run.folder(self.study_dir))
        if summary is None:
            self.progress.failed += 1
            return
        self.rows[run] = result_row(run, self.study_dir, summary, self.cfg.learn_target)
        self.progress.done += 1

    def _maybe_release(self, queue: list[Run], running: Iterable[Run] = ()) -> list[Run]:
        """For each data set whose sweep just completed: choose strengths, return its (not yet done) dependent runs."""
        busy = {(r.data, r.group) for r in [*queue, *running]}
        released = []
        for data in self.cfg.data:
            if data in self.chosen or (data, "sweep") in busy:
                continue
            sweep = [row for run, row in self.rows.items() if run.data == data and run.group == "sweep"]
            self.chosen[data], fell_back = choose_strengths(sweep, self.cfg.textbook)
            if fell_back:
                self.fallbacks[data] = fell_back
            released += self._reuse(dependent_runs(self.cfg, data, self.chosen[data]))
        return released  # queued after the independent runs still waiting

    def _report(self, running: int) -> None:
        self.progress.running = running
        self.on_progress(self.progress)

    def _write(self) -> None:
        write_results(self.study_dir, list(self.rows.values()))
