"""Where a study's runs execute: a local process pool or a Ray cluster, behind one small interface.

The study scheduler (`sandbag.study.runner`) decides what runs and when; an `Executor` only runs one run config
into its run folder (`execute`: train, then the probe step) and hands back a `concurrent.futures.Future` of its
summary. Both executors produce the same run folders,
so the study folder (results, resume) is the same whichever ran it:

- `LocalExecutor`: a process pool on this machine (spawned workers, one thread each by default).
- `RayExecutor`: each run is a Ray task asking for the CPUs (and GPUs) it needs. The task trains into a temporary
  folder on whichever node runs it and returns the folder's files, which are written into the study folder here,
  summary last; no shared file system is needed. A task lost with its worker or node is retried by Ray
  (``max_retries``); finished runs are never resubmitted because the scheduler reuses their folders.

Ray is optional: ``pip install 'sandbag[ray]'``.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from .. import files
from ..errors import ConfigError, one_line

FAILED = "failed.json"  # a run that raised: its one-line reason and traceback (no summary.json, so a rerun redoes it)
WORKER = "worker.json"  # the pid of the local worker process that has the run (which run a lost worker had)

EXECUTORS = ("local", "ray")


def init_worker(threads: int) -> None:
    """A pool worker's start: its torch thread count."""
    import torch

    torch.set_num_threads(threads)


def failed(folders: list[str], exc: Exception) -> list[dict]:
    """A run that raised (the user's factory, `MemoryError`, a diverging custom loss): failed.json in each of its
    folders, with the one-line reason and the traceback (`sandbag study --debug` prints it); the summaries the
    scheduler records instead of the runs' own. The other runs of the study go on."""
    reason = one_line(exc, named=True)
    record = {"status": "failed", "reason": reason, "traceback": traceback.format_exc()}
    for folder in folders:
        files.write_json(Path(folder) / FAILED, record)
    return [{"status": "failed", "reason": reason} for _ in folders]


def start_folders(folders: list[str], pid: int | None = None) -> None:
    """Before a run: no failed.json from an earlier try; with `pid`, worker.json naming the process that has it."""
    for folder in folders:
        Path(folder, FAILED).unlink(missing_ok=True)
        if pid is not None:
            files.write_json(Path(folder) / WORKER, {"pid": pid})


def execute(cfg_dict: dict, folder: str, local: bool = False, companion: bool = True) -> dict:
    """Worker entry point: one run, or its failure (`failed`) if it raises; see `train_and_probe`. `local`: a
    worker of this machine's pool, which names itself in worker.json (which run a lost worker had)."""
    start_folders([folder], os.getpid() if local else None)
    try:
        return train_and_probe(cfg_dict, folder, companion)
    except Exception as exc:
        return failed([folder], exc)[0]


def train_and_probe(cfg_dict: dict, folder: str, companion: bool = True) -> dict:
    """One run, its folder written by `train.fit` (data-parallel under torchrun if nproc > 1),
    then the probe step (`sandbag.study.probes`) on the trained model; returns the run's summary with the probe
    step's seconds (``probe_seconds``, for the study's time itemization)."""
    from ..runs import RunConfig
    from .probes import probe_run

    cfg = RunConfig.from_dict(cfg_dict)
    if cfg.nproc > 1:
        from ..distributed import launch_run

        summary = launch_run(cfg, folder)
    else:
        from ..train import fit

        summary = fit(cfg, folder)
    started = time.perf_counter()
    probe_run(folder, companion)
    return {**summary, "probe_seconds": time.perf_counter() - started}


def execute_seeds(cfg_dicts: list[dict], folders: list[str], local: bool = False, companion: bool = True) -> list[dict]:
    """Worker entry point for runs that differ only in their seed: trained together as one vmapped model
    (`sandbag.multiseed.fit_seeds`), each seed's folder written as `fit` writes it, then each probed. Returns the
    runs' summaries in order, each with its probe step's seconds; all of them failed if the training raises."""
    start_folders(folders, os.getpid() if local else None)
    try:
        return train_and_probe_seeds(cfg_dicts, folders, companion)
    except Exception as exc:
        return failed(folders, exc)


def train_and_probe_seeds(cfg_dicts: list[dict], folders: list[str], companion: bool = True) -> list[dict]:
    from ..multiseed import fit_seeds
    from ..runs import RunConfig
    from .probes import probe_run

    cfg = RunConfig.from_dict(cfg_dicts[0])
    seeds = [RunConfig.from_dict(d).seed for d in cfg_dicts]
    summaries = fit_seeds(cfg, seeds, run_dirs=folders)
    out = []
    for summary, folder in zip(summaries, folders, strict=True):
        started = time.perf_counter()
        probe_run(folder, companion)
        out.append({**summary, "probe_seconds": time.perf_counter() - started})
    return out


class Executor:
    """Runs study runs. `submit` returns a future of the run's summary, resolved once its folder is complete;
    where `trains_seeds` is true, `submit_seeds` does the same for runs that differ only in their seed, trained
    together (a future of their summaries, in order)."""

    name = "executor"
    trains_seeds = False

    def capacity(self, nproc: int = 1) -> int:
        """How many runs of `nproc` processes each to keep in flight."""
        raise NotImplementedError

    def submit(self, cfg_dict: dict, folder: str, companion: bool = True) -> Future:
        """`companion`: the probe step measures BN companion noise (`probes.probe_run`) on this run."""
        raise NotImplementedError

    def submit_seeds(self, cfg_dicts: list[dict], folders: list[str], companion: bool = True) -> Future:
        raise NotImplementedError(f"the {self.name} executor trains one run per task")

    def shutdown(self, cancel: bool = False) -> None:
        """Wait for (or with `cancel`, drop) what is pending and release the workers."""

    def lost(self, exc: BaseException) -> bool:
        """Whether a task's exception says its worker was lost (not that the run failed): its runs are redone."""
        return False

    def lost_workers(self, folders: list[str]) -> dict[str, str]:
        """After a loss: of the lost tasks' run folders, those whose own worker died, each with how it ended
        ("killed by SIGKILL", "exit code 3"); the others were stopped with it (an empty dict: unknown)."""
        return {}

    def restart(self) -> None:
        """Fresh workers after a loss."""

    def describe(self) -> dict:
        return {"executor": self.name}


def make_executor(name: str, *, workers: int, threads: int, address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise ConfigError("--address applies to --executor ray only")
        return LocalExecutor(workers, threads)
    if name == "ray":
        return RayExecutor(threads=threads, address=address, workers=workers)
    raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")


def run_nproc(cfg_dict: dict) -> int:
    return max(1, int(cfg_dict.get("nproc") or 1))


# ----------------------------------------------------------------------------------------------------------------


class LocalExecutor(Executor):
    """A pool of spawned worker processes on this machine, `threads` torch threads each."""

    name = "local"
    trains_seeds = True

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.processes: dict = {}  # pid -> multiprocessing.Process of every worker this pool started
        self.pool = self.start()

    def start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                   initializer=init_worker, initargs=(self.threads,))

    def capacity(self, nproc: int = 1) -> int:
        return max(1, self.workers // nproc)

    def submit(self, cfg_dict: dict, folder: str, companion: bool = True) -> Future:
        return self.watched(self.pool.submit(execute, cfg_dict, folder, True, companion))

    def submit_seeds(self, cfg_dicts: list[dict], folders: list[str], companion: bool = True) -> Future:
        return self.watched(self.pool.submit(execute_seeds, cfg_dicts, folders, True, companion))

    def watched(self, future: Future) -> Future:
        # The pool's worker processes, kept to read a lost one's exit code: ProcessPoolExecutor only says that "a
        # process terminated abruptly" (its `_processes` is private, read-only here; spawned workers start on submit).
        self.processes.update(getattr(self.pool, "_processes", None) or {})
        return future

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def lost_workers(self, folders: list[str]) -> dict[str, str]:
        # The broken pool's own thread stops and reaps its workers after it has set the futures' errors. Read exit
        # codes only once it is done: a worker reaped by that thread while read here reads as running (None), and
        # the lost run would go unnamed while the runs stopped with the pool were blamed (a probe: 6 of 210 losses
        # read so; none of 150 once the pool was shut down first).
        self.pool.shutdown(wait=True, cancel_futures=True)
        codes = {}
        for folder in folders:
            process = self.processes.get((files.read_json(Path(folder) / WORKER) or {}).get("pid"))
            if process is not None and process.exitcode not in (None, 0):
                codes[folder] = process.exitcode
        # the pool stops its other workers with SIGTERM once one is lost: those did not die of themselves; if none
        # stands out (a SIGTERM from outside), every lost task's worker is suspect
        died = {folder: code for folder, code in codes.items() if code != -signal.SIGTERM} or codes
        return {folder: exit_description(code) for folder, code in died.items()}

    def restart(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.processes.clear()
        self.pool = self.start()

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads}


def exit_description(code: int) -> str:
    """A process's exit code in words: "killed by SIGKILL" for a signal, else "exit code N"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ----------------------------------------------------------------------------------------------------------------


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed: pip install 'sandbag[ray]'") from None
    return ray


class RayExecutor(Executor):
    """Each run a Ray task with ``num_cpus = threads * nproc`` (and ``num_gpus = gpus_per_run * nproc``; by default
    1 per process when the cluster has GPUs, else 0). Joins the Ray instance already initialized in this process,
    else ``ray.init(address)``, which with no address starts a local instance (shut down again by `shutdown`)."""

    name = "ray"

    def __init__(self, threads: int = 1, address: str | None = None, workers: int | None = None,
                 gpus_per_run: float | None = None, max_retries: int = 3):
        ray = import_ray()
        self.ray, self.threads, self.address, self.max_retries = ray, threads, address, max_retries
        self.started = False
        if not ray.is_initialized():
            options = {"address": address, "include_dashboard": False, "logging_level": logging.WARNING}
            if address is None and workers:
                options["num_cpus"] = workers * threads
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f" at {address}" if address else ""
                raise ConfigError(f"cannot start or reach Ray{where}: {one_line(exc)}") from None
            self.started = True
        resources = ray.cluster_resources()
        self.cpus, self.gpus = int(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        self.gpus_per_run = gpus_per_run if gpus_per_run is not None else (1.0 if self.gpus else 0.0)
        self.remote = ray.remote(ray_run)  # the task function; tests may swap it
        self._refs: list = []

    def capacity(self, nproc: int = 1) -> int:
        slots = self.cpus // (self.threads * nproc)
        if self.gpus_per_run:
            slots = min(slots, int(self.gpus // (self.gpus_per_run * nproc)))
        return max(1, slots)

    def submit(self, cfg_dict: dict, folder: str, companion: bool = True) -> Future:
        nproc = run_nproc(cfg_dict)
        ref = self.remote.options(
            num_cpus=self.threads * nproc, num_gpus=self.gpus_per_run * nproc, max_retries=self.max_retries,
        ).remote(cfg_dict, self.threads, companion)
        self._refs.append(ref)
        done: Future = Future()
        done.set_running_or_notify_cancel()

        def gather(task: Future) -> None:
            try:
                payload = task.result()
                write_run_files(Path(folder), payload["files"])
                done.set_result(payload["summary"])
            except BaseException as exc:  # noqa: B036 -- handed to the waiting scheduler, which re-raises it
                done.set_exception(exc)

        ref.future().add_done_callback(gather)
        return done

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
        self._refs.clear()
        if self.started:
            self.ray.shutdown()
            self.started = False

    def describe(self) -> dict:
        return {"executor": self.name, "address": self.address, "cluster_cpus": self.cpus, "cluster_gpus": self.gpus,
                "threads_per_run": self.threads, "gpus_per_run": self.gpus_per_run}


def ray_run(cfg_dict: dict, threads: int, companion: bool = True) -> dict:
    """A Ray task: train and probe one run in a temporary folder and return its files (the driver writes them)."""
    init_worker(threads)
    with tempfile.TemporaryDirectory(prefix="sandbag-run-") as tmp:
        summary = execute(cfg_dict, tmp, companion=companion)
        root = Path(tmp)
        found = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {"summary": summary, "files": found}


def write_run_files(folder: Path, found: dict[str, bytes]) -> None:
    """Write a run folder's files, each atomically, ``summary.json`` (the mark of a complete folder) last."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").unlink(missing_ok=True)
    for name in sorted(found, key=lambda n: n == "summary.json"):
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:
            raise ValueError(f"run file {name!r} is outside its run folder")
        files.write_bytes(path, found[name])
