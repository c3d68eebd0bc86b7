"""Running a study: the scheduler and `run_study`.

The study is data (`config.StudyConfig`, expanded by `plan` into `Run`s). Strength is a nuisance parameter: each
technique's strength is chosen on a validation split carved from the training data (group ``sweep``), and the
chosen value then runs on several seeds (groups ``headline`` and ``extra``), compared with no regularization on the
test set.

Runs execute in a local process pool or as Ray tasks (`executors`); each writes its own run folder, named by its
config hash, so a rerun of the same command skips finished runs (resume) and redoes unfinished ones. Each run's
probe step writes probes.json beside it; runs reused from a folder written before that step are probed here.
`results.csv` and `aggregate.csv` are rebuilt from the run folders after every finished run, atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from .. import files
from ..errors import ConfigError, OutputError
from ..regularizers import TECHNIQUES, tunable
from ..runs import read_summary, versions
from . import costs, probes, schema, timing
from .claims import PROBE
from .config import StudyConfig
from .executors import FAILED, WORKER, Executor, LocalExecutor, make_executor, write_run_files
from .layout import PROBES, STUDY, TIMING
from .plan import (
    MAX_EXTENSIONS,
    Run,
    arm_runs,
    arms_reading,
    beyond_edge,
    choose_strengths,
    dependent_runs,
    independent_runs,
    room_beyond,
    sweep_arm,
    sweep_scores,
)
from .plan import RULE as STRENGTH_RULE
from .results import failed_row, result_row, write_results

MAX_LOSSES = 3  # a run whose worker is lost this many times is marked failed (the run itself may kill it: memory)


def _seedless(run: Run) -> tuple:
    """What a run is apart from its seed: runs equal in this can be trained together."""
    config = run.config.to_dict()
    config.pop("seed")
    return run.data, run.group, run.arm, json.dumps(config, sort_keys=True)


def seeds_together_default() -> bool:
    """Train an arm's seeds together (one vmapped model) where a CUDA GPU is what the runs train on: one small
    CNN leaves most of a GPU idle, while on a CPU core one run at a time is as fast per seed."""
    import torch  # here: the scheduler's process needs torch only for this question

    return torch.cuda.is_available()


def default_parallelism() -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core (measured faster than
    one worker with all threads for these small models; see benchmarks/)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores), 1


class StudyLock:
    """An exclusive lock on the study folder: a second `sandbag study` on it refuses instead of interleaving."""

    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / ".lock"

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
class RunDone:
    """A run that finished here (not reused), for a progress line: which run, how it ended, its wall seconds."""

    data: str
    group: str
    arm: str
    seed: int
    status: str  # the summary's status (finished, diverged, ...), or "failed": the run wrote no summary.json
    test_acc: float | None
    seconds: float  # wall seconds from submission to result, the probe step included
    number: int  # runs done or failed by then, this one and reused ones included (k of "k of total")


@dataclass
class Progress:
    """What the caller's display needs: counts of runs done (incl. reused), running and left; the runs finished
    here, in order (a display shows each one once: those past the last it showed); the runs in parallel."""

    total: int = 0
    done: int = 0
    reused: int = 0
    running: int = 0
    failed: int = 0
    probed: int = 0  # reused runs probed here because their folder had no probes.json
    slots: int = 1  # runs at a time (the executor's capacity)
    finished: list[RunDone] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per event a display prints once (a lost worker)


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
    seeds_together: bool | None = None,
    retime: bool = False,
) -> list[dict]:
    """Run (or resume) a whole study into `study_dir`; return the result rows. Finished runs are reused.

    `executor` is ``local`` (a process pool here) or ``ray`` (Ray tasks; `address` of the cluster, or a local
    Ray instance without one); see `sandbag.study.executors`. `seeds_together`: train each arm's seeds as one
    vmapped model (`sandbag.multiseed.fit_seeds`; arms without batch norm, local executor); None: where the runs
    train on a CUDA GPU. The timing phase runs when the folder has no timing.json for this design yet, or with
    `retime` (runs reused, only the epoch times measured again)."""
    if seeds_together and executor != "local":
        raise ConfigError(f"--seeds-together needs the local executor (the {executor} executor runs one run per task)")
    study_dir = Path(study_dir)
    default_workers, default_threads = default_parallelism()
    workers, threads = workers or default_workers, threads or default_threads
    with StudyLock(study_dir):
        started = time.perf_counter()
        before = files.read_json(study_dir / STUDY)
        other = ((before or {}).get("config") or {}).get("replicate", 0)
        if before and other != cfg.replicate:  # its results.csv, verdicts and report would be overwritten
            raise ConfigError(f"{study_dir} holds replicate {other} of a study; run replicate {cfg.replicate} into "
                              f"a folder of its own (--out {study_dir.name}-r{cfg.replicate})")
        meta = study_meta(cfg, command, workers, threads, before)
        pool = make_executor(executor, workers=workers, threads=threads, address=address)
        if seeds_together is None:
            seeds_together = executor == "local" and seeds_together_default()
        meta["hardware"].update(pool.describe(), seeds_together=seeds_together)
        files.write_json(study_dir / "study.json", meta)
        scheduler = Scheduler(cfg, study_dir, pool, on_progress, seeds_together=seeds_together)
        rows, chosen = scheduler.run()
        timed = time.perf_counter()
        run_phase = timed - started
        if cfg.timing_repeats and timing.timed_arms(cfg.design.claims) and all(d in chosen for d in cfg.cells):
            if retime or not timing.is_current(files.read_json(study_dir / TIMING), cfg, chosen):
                timing.measure(cfg, study_dir, threads, chosen)  # alone: every run has finished
        meta.update(chosen=chosen, chosen_by_textbook_fallback=scheduler.fallbacks, grids=scheduler.grids,
                    grid_extensions=MAX_EXTENSIONS,
                    strength_rule=STRENGTH_RULE,
                    timing_seconds=time.perf_counter() - timed, wall_seconds=time.perf_counter() - started,
                    cpu_seconds_runs=sum(r.get("total_seconds") or 0 for r in rows), runs=len(rows))
        meta["time"] = costs.itemize(scheduler.costs, run_phase, scheduler.progress.slots, meta["timing_seconds"])
        files.write_json(study_dir / "study.json", meta)
    return rows


def study_meta(cfg: StudyConfig, command: str | None, workers: int, threads: int, before: dict | None = None) -> dict:
    """study.json before the runs: config, command, versions, hardware, and the design (techniques, arms, claims,
    and its hashes). `before`: the folder's study.json from an earlier run, whose preregistration is kept: the
    design as it was when the study first ran, against which the report marks claims changed since."""
    claims = cfg.design.claims
    seeds = {k: getattr(cfg, k) for k in ("seeds", "extra_seeds", "batch_seeds", "sweep_seeds")}
    now = {**schema.preregistration(cfg.design.arms, claims, seeds), "at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    return {
        "config": cfg.to_dict(),
        "command": command or " ".join(["sandbag", *sys.argv[1:]]),
        "versions": {**versions(), "python": platform.python_version()},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "cpus": os.cpu_count(), "workers": workers, "threads_per_worker": threads},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "techniques": list(TECHNIQUES), "tunable": tunable(), "arms": cfg.design.arms,
        "claims": [c.to_dict() for c in claims],
        "design": now, "preregistered": (before or {}).get("preregistered") or now,
        # what a factory's model regularizes with on its own, kept in every arm (the study allowed it): the report
        # says so up front
        **({"model_own_layers": cfg.model_own_layers} if cfg.model_own_layers else {}),
    }


def companion_arms(claims) -> set[tuple[str, str]]:
    """The (group, arm) pairs whose BN companion noise a claim reads."""
    return arms_reading(claims, f"{PROBE}companion_prob_std_mean")


class Scheduler:
    """Feeds runs to the pool: independent runs first (the validation sweep at the front), then, once a data set's
    sweep is complete, the runs at its chosen strengths. Reused runs without probes.json are probed at the end."""

    def __init__(self, cfg: StudyConfig, study_dir: Path, executor: Executor | None = None,
                 on_progress: Callable[[Progress], None] | None = None, workers: int = 1, threads: int = 1,
                 seeds_together: bool = False):
        self.cfg, self.study_dir = cfg, Path(study_dir)
        self.executor = executor or LocalExecutor(workers, threads)
        if seeds_together and not self.executor.trains_seeds:
            raise ConfigError(f"the {self.executor.name} executor trains one run per task: no --seeds-together")
        self.seeds_together = seeds_together
        self.on_progress = on_progress or (lambda p: None)
        self.rows: dict[Run, dict] = {}
        self.chosen: dict[str, dict[str, float]] = {}
        self.fallbacks: dict[str, list[str]] = {}
        self.grids: dict[str, dict[str, list[float]]] = {}  # per data set, each swept technique's grid as extended
        self.progress = Progress()
        self.losses: dict[Run, int] = {}  # lost workers per run (see `requeue`)
        self.costs: list[dict[str, float]] = []  # worker-seconds per category of each run done here
        self.companion_arms = companion_arms(cfg.design.claims)
        self.trained: dict[str, Run] = {}  # config key -> a finished run of it (its twins are copies, `twins`)
        self.waiting: dict[str, list[Run]] = {}  # config key -> runs waiting for their twin to finish
        self.failed_keys: set[str] = set()  # configs whose run failed: their twins train themselves

    def run(self) -> tuple[list[dict], dict]:
        queue = [run for data in self.cfg.cells for run in independent_runs(self.cfg, data)]
        self.progress.total = len(queue) + sum(
            len(dependent_runs(self.cfg, d, {t: 0.0 for t in tunable()})) for d in self.cfg.cells
        )
        queue = self.reuse(queue)
        self.enqueue(queue, self.release(queue))  # on resume a finished sweep releases its dependent runs at once
        queue = self.twins(queue, queue)  # a run of the same config as one ahead of it waits for that one
        pool = self.executor
        slots = self.progress.slots = pool.capacity(self.cfg.nproc)
        running: dict[Future, tuple[list[Run], float]] = {}  # each task: its runs (seeds trained together), start
        try:
            while queue or running:
                while queue and len(running) < slots:
                    runs = self.take(queue)
                    try:
                        running[self.submit(runs)] = runs, time.perf_counter()
                    except Exception as exc:  # a worker was lost since the last wait: the pool takes no more
                        if not pool.lost(exc):
                            raise
                        queue[:0] = runs
                        self.requeue(queue, self.collect(wait(running)[0], running))
                self.report(len(running))
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                lost = self.collect(finished, running)
                if lost:  # the pool stops its other workers too: wait for their tasks, then start afresh
                    lost += self.collect(wait(running)[0], running)
                    self.requeue(queue, lost)
                queue[:0] = self.released_twins()
                self.report(len(running))  # each finished run shown now, not after the next submissions
                self.write()
                self.enqueue(queue, self.release(queue, [run for runs, _ in running.values() for run in runs]))
        except BaseException:
            pool.shutdown(cancel=True)
            self.write()
            raise
        pool.shutdown()
        self.probe_missing()
        self.report(0)
        self.write()
        return list(self.rows.values()), self.chosen

    def collect(self, finished: Iterable[Future], running: dict) -> list[Run]:
        """Record the runs of the finished tasks (a run that raised comes back as failed, see
        `executors.failed`); return the runs of tasks whose worker was lost."""
        lost = []
        for future in finished:
            runs, submitted = running.pop(future)
            try:
                result = future.result()
            except Exception as exc:
                if not self.executor.lost(exc):
                    raise  # the scheduler or executor itself broke: a bug, with its traceback
                lost += runs
                continue
            self.record_task(runs, result if isinstance(result, list) else [result], time.perf_counter() - submitted)
        return lost

    def requeue(self, queue: list[Run], lost: list[Run]) -> None:
        """After a lost worker: fresh workers, and the lost runs back at the front of the queue (their folders are
        unfinished, so they are redone from scratch). A run whose own worker died counts a loss, with one line; its
        `MAX_LOSSES`-th marks it failed. Runs stopped with the pool go back without counting."""
        folders = {str(run.folder(self.study_dir)): run for run in lost}
        died = self.executor.lost_workers(list(folders)) or dict.fromkeys(folders, "lost")
        self.executor.restart()
        again = []
        for folder, run in folders.items():
            if folder not in died:
                again.append(run)
                continue
            losses = self.losses[run] = self.losses.get(run, 0) + 1
            name = f"{run.data} {run.group}/{run.arm} seed {run.seed}"
            if losses >= MAX_LOSSES:
                reason = f"its worker was lost {losses} times (last: {died[folder]})"
                files.write_json(Path(folder) / FAILED, {"status": "failed", "reason": reason})
                self.record(run)
                self.progress.notes.append(f"{name}: worker lost ({died[folder]}), {losses} times now; run failed")
            else:
                again.append(run)
                self.progress.notes.append(f"{name}: worker lost ({died[folder]}); run redone from the start")
        queue[:0] = again

    def take(self, queue: list[Run]) -> list[Run]:
        """The next task's runs, taken off the queue: the first run, and with `seeds_together` every queued run
        that differs from it only in its seed (when `multiseed.fit_seeds` can train them as one model)."""
        from ..multiseed import trains_together  # here: multiseed imports torch, which the scheduler rarely needs

        first = queue.pop(0)
        if not (self.seeds_together and trains_together(first.config)):
            return [first]
        same = [run for run in queue if _seedless(run) == _seedless(first)]
        for run in same:
            queue.remove(run)
        return [first, *same]

    def submit(self, runs: list[Run]) -> Future:
        folders = [str(run.folder(self.study_dir)) for run in runs]
        companion = self.needs_companion(runs[0])
        if len(runs) == 1:
            return self.executor.submit(runs[0].config.to_dict(), folders[0], companion)
        return self.executor.submit_seeds([run.config.to_dict() for run in runs], folders, companion)

    def needs_companion(self, run: Run) -> bool:
        """Whether a claim reads the BN companion noise of this run's arm (the probe costs ~2 s a run; measured
        only where it is read)."""
        return (run.group, run.arm) in self.companion_arms

    def record_task(self, runs: list[Run], results: list[dict], seconds: float) -> None:
        """Record a finished task's runs; its worker-seconds count once (seeds trained together share them)."""
        for run in runs:
            self.record(run, seconds / len(runs))
        probe_seconds = sum(result.get("probe_seconds") or 0.0 for result in results)
        self.costs.append(costs.run_costs(results[0], seconds, probe_seconds))

    def reuse(self, runs: list[Run]) -> list[Run]:
        """Record runs whose folder already holds a finished summary; return the rest."""
        todo = []
        for run in runs:
            summary = read_summary(run.folder(self.study_dir))
            if summary and summary.get("config_key") == run.config.key():
                self.rows[run] = result_row(run, self.study_dir, summary, self.learn_target(run))
                self.trained.setdefault(run.config.key(), run)
                self.progress.done += 1
                self.progress.reused += 1
            else:
                todo.append(run)
        return todo

    def learn_target(self, run: Run) -> float | None:
        """None for a run without the tracked subset in a study that tracks one (`plan.tracks`): its
        epochs_to_target would be read off the few evaluated epochs, and nothing reads it."""
        tracked = run.config.track_size is not None or self.cfg.track_size is None
        return self.cfg.learn_target if tracked else None

    def record(self, run: Run, seconds: float = 0.0) -> None:
        folder = run.folder(self.study_dir)
        summary = read_summary(folder)
        if summary is None:  # the run raised (failed.json says why) or its worker was lost for good
            reason = (files.read_json(folder / FAILED) or {}).get("reason") or "it wrote no summary.json"
            self.rows[run] = failed_row(run, self.study_dir, reason)
            self.progress.failed += 1
            self.failed_keys.add(run.config.key())
        else:
            self.rows[run] = result_row(run, self.study_dir, summary, self.learn_target(run))
            self.progress.done += 1
            self.trained.setdefault(run.config.key(), run)  # finished or diverged: a twin would end alike
        status, test_acc = (summary.get("status", "?"), summary.get("test_acc")) if summary else ("failed", None)
        self.progress.finished.append(RunDone(run.data, run.group, run.arm, run.seed, status, test_acc, seconds,
                                              self.progress.done + self.progress.failed))

    def twins(self, runs: list[Run], pending: list[Run]) -> list[Run]:
        """Of `runs`, those to train. A run whose config another run of the study has (the sweep's run at the
        chosen strength is the headline's run of the same seed: same data, seed and epochs) is trained once: a twin
        of a finished run is copied now (`copy_twin`), a twin of one in `pending` ahead of it waits for it."""
        todo, first = [], {}
        for run in pending:
            first.setdefault(run.config.key(), run)
        for run in runs:
            key = run.config.key()
            if key in self.trained:
                self.copy_twin(run, self.trained[key])
            elif first.get(key, run) is not run:
                self.waiting.setdefault(key, []).append(run)
            else:
                todo.append(run)
        return todo

    def copy_twin(self, run: Run, source: Run) -> None:
        """`run`'s folder as a copy of its finished twin's, summary last (probes.json too when both probe alike;
        otherwise the probe step runs here at the end, `probe_missing`); recorded as a reused run."""
        src = source.folder(self.study_dir)
        skip = {WORKER, FAILED} | (set() if self.needs_companion(run) == self.needs_companion(source) else {PROBES})
        found = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file() and p.name not in skip}
        write_run_files(run.folder(self.study_dir), found)
        self.rows[run] = result_row(run, self.study_dir, read_summary(run.folder(self.study_dir)),
                                    self.learn_target(run))
        self.progress.done += 1
        self.progress.reused += 1

    def released_twins(self) -> list[Run]:
        """Runs that waited for a twin now finished (copied here) or failed (queued to train themselves)."""
        again = []
        for key in list(self.waiting):
            source = self.trained.get(key)
            if source is not None:
                for run in self.waiting.pop(key):
                    self.copy_twin(run, source)
            elif key in self.failed_keys:
                again += self.waiting.pop(key)
        return again

    def probe_missing(self) -> None:
        """The probe step for finished runs whose folder has no probes.json (reused from an older study folder,
        or killed between summary.json and probes.json): here, in this process."""
        for run, row in self.rows.items():
            folder = run.folder(self.study_dir)
            if row.get("status") == "finished" and not probes.has_probes(folder):
                probes.probe_run(folder, self.needs_companion(run))
                self.progress.probed += 1

    def release(self, queue: list[Run], running: Iterable[Run] = ()) -> list[Run]:
        """For each data set whose sweep just completed: first the runs of a strength beyond the edge of each grid
        whose pick sits there (`plan.beyond_edge`, up to `plan.MAX_EXTENSIONS` a side); once no grid needs one,
        choose the strengths and return the (not yet done) dependent runs."""
        busy = {(r.data, r.group) for r in [*queue, *running, *(r for w in self.waiting.values() for r in w)]}
        released = []
        for data in self.cfg.cells:
            if data in self.chosen or (data, "sweep") in busy:
                continue
            beyond = self.sweep_beyond_edges(data)
            if beyond:
                released += beyond  # swept first; the choice waits for them
                continue
            self.chosen[data], fell_back = choose_strengths(self.sweep_rows(data), self.cfg.textbook,
                                                            self.cfg.design.swept)
            if fell_back:
                self.fallbacks[data] = fell_back
            released += self.reuse(dependent_runs(self.cfg, data, self.chosen[data]))
        return self.twins(released, [*queue, *running, *released])  # queued after the independent runs waiting

    @staticmethod
    def enqueue(queue: list[Run], released: list[Run]) -> None:
        """Released runs into the queue: sweep runs (strengths beyond a grid's edge) at its front, since the runs
        at the chosen strengths wait for them; the others at its back."""
        queue[:0] = [r for r in released if r.group == "sweep"]
        queue.extend(r for r in released if r.group != "sweep")

    def sweep_rows(self, data: str) -> list[dict]:
        return [row for run, row in self.rows.items() if run.data == data and run.group == "sweep"]

    def sweep_beyond_edges(self, data: str) -> list[Run]:
        """The runs still to do of the strengths added beyond grid edges (on resume, added strengths whose runs
        are done are reused, and the edges looked at again)."""
        while True:
            added = self.extend(data)
            if not added:
                return []
            todo = self.reuse(added)
            if todo:
                return todo

    def extend(self, data: str) -> list[Run]:
        """For each grid whose pick (`plan.RULE`) sits at an edge: one strength beyond it, its runs (the grids as
        extended are kept in `grids`, for study.json and the report)."""
        grids = self.grids.setdefault(data, {t: list(self.cfg.grid(t)) for t in self.cfg.design.swept})
        scores = sweep_scores(self.sweep_rows(data))
        runs = []
        for tech, grid in grids.items():
            value = beyond_edge(grid, scores.get(tech, {}), tech)
            if value is None or not room_beyond(grid, self.cfg.grid(tech), value):
                continue
            grid.append(value)
            runs += arm_runs(self.cfg, data, sweep_arm(self.cfg, tech, value))
        self.progress.total += len(runs)
        return runs

    def report(self, running: int) -> None:
        self.progress.running = running
        self.on_progress(self.progress)

    def write(self) -> None:
        write_results(self.study_dir, list(self.rows.values()))
