"""Data-parallel training (2 CPU processes, gloo, loopback): equivalence with one process, BN local vs synced, the
run folder, the launcher and a crashed rank."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sandbag import distributed
from sandbag import train as train_mod
from sandbag.cli import main
from sandbag.errors import ConfigError
from sandbag.models import build_model
from sandbag.runs import SUMMARY_TIMES, read_summary
from sandbag.train import RunConfig, channels_last, epoch_metrics, fit, load_checkpoint, load_data, weight_stats

# Short runs on real digits: 160 samples, batch 32 -> 5 steps, 2 ranks of 16. SGD: Adam's normalized step turns
# float-rounding differences in near-zero gradients into visible weight differences. The BN runs use the mlp: in
# ref-cnn, BN -> ReLU -> max-pool routes gradients by near-ties that rounding differences (torch's BN kernel vs the
# all-reduce one) flip within a few steps; AllReduceBatchNorm on conv maps is checked on its own below.
BASE = dict(data="mnist-5k", model="ref-cnn", train_size=160, epochs=1, batch_size=32, optimizer="sgd", lr=0.05,
            seed=3, device="cpu", threads=1)
CONFIGS = {
    "plain": dict(BASE, regs=["l2=1e-3", "l1=1e-4:prox"]),
    "sync": dict(BASE, model="mlp", regs=["bn:sync", "l2=1e-3"]),
    "local": dict(BASE, model="mlp", regs=["bn"]),
}
WORLD = 2


# ----------------------------------------------------------------------------------------------------------------
# Ranks started with torch.multiprocessing (one session runs every in-process check)


def _rank_session(rank: int, port: int, out: str, dataset) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    with distributed.process_group("cpu", timeout=60) as ctx:
        _check_allreduce_batchnorm(ctx)
        for name, cfg in CONFIGS.items():
            summary = fit(RunConfig(**cfg, nproc=WORLD), Path(out) / f"{name}-rank{rank}", dataset=dataset, dist=ctx)
            torch.save(summary, Path(out) / f"{name}-summary{rank}.pt")


def _check_allreduce_batchnorm(ctx) -> None:
    """AllReduceBatchNorm on uneven shards = BatchNorm over the concatenated batch: outputs, input and parameter
    gradients, running statistics (two steps), evaluation."""
    for make, shape, layout in ((nn.BatchNorm2d, (11, 3, 5, 4), torch.channels_last),
                                (nn.BatchNorm2d, (11, 3, 5, 4), torch.contiguous_format),
                                (nn.BatchNorm1d, (9, 6), torch.contiguous_format)):
        gen = torch.Generator().manual_seed(0)
        x = (torch.randn(*shape, generator=gen) * 3 + 1).contiguous(memory_format=layout)
        w = torch.randn(*shape, generator=gen)
        ref = make(shape[1])
        with torch.no_grad():
            ref.weight.copy_(torch.rand(shape[1], generator=gen) + 0.5)
            ref.bias.copy_(torch.randn(shape[1], generator=gen))
        mine = distributed.convert_sync_batchnorm(nn.Sequential(make(shape[1])))[0]
        assert isinstance(mine, distributed.AllReduceBatchNorm)
        mine.load_state_dict(ref.state_dict())
        cut = 4 if shape[0] == 11 else 6  # uneven shards: 4 + 7 and 6 + 3
        lo, hi = (0, cut) if ctx.rank == 0 else (cut, shape[0])
        for _ in range(2):
            xr = x.clone().requires_grad_()
            (ref(xr) * w).sum().backward()
            xm = x[lo:hi].clone().requires_grad_()
            out = mine(xm)
            torch.testing.assert_close(out, _train_out(ref, x)[lo:hi])
            (out * w[lo:hi]).sum().backward()
            torch.testing.assert_close(xm.grad, xr.grad[lo:hi], atol=1e-5, rtol=1e-4)
            for p_mine, p_ref in ((mine.weight, ref.weight), (mine.bias, ref.bias)):
                grad = p_mine.grad.clone()
                torch.distributed.all_reduce(grad)  # each rank holds its shard's part of the gradient
                torch.testing.assert_close(grad, p_ref.grad, atol=1e-5, rtol=1e-4)
                p_mine.grad, p_ref.grad = None, None
        torch.testing.assert_close(mine.running_mean, ref.running_mean)
        torch.testing.assert_close(mine.running_var, ref.running_var)
        assert int(mine.num_batches_tracked) == int(ref.num_batches_tracked) == 2
        mine.eval(), ref.eval()
        torch.testing.assert_close(mine(x[lo:hi]), ref(x)[lo:hi])


@torch.no_grad()
def _train_out(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """BN's training-mode output without touching its running statistics."""
    return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)


@pytest.fixture(scope="module")
def dataset():
    return load_data(RunConfig(**BASE))


@pytest.fixture(scope="module")
def ddp_session(tmp_path_factory, dataset):
    """Both ranks' session, with no retry: a rank that aborts fails the tests that read it. (CI saw rank 1 abort
    inside gloo twice, "terminate called without an active exception"; benchmarks/nproc_sessions.py --pytest runs
    this fixture back to back to look for it again.)"""
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(_rank_session, args=(distributed.free_port(), str(out), dataset),
                                          nprocs=WORLD, start_method="spawn")
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory, dataset):
    """The same configs trained in one process (bn:sync is plain bn there)."""
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summaries = {name: fit(RunConfig(**cfg), out / name, dataset=dataset) for name, cfg in CONFIGS.items()}
    finally:
        torch.set_num_threads(threads)
    return out, summaries, dataset


def _state(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def _last_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def test_allreduce_batchnorm_and_only_rank_zero_writes(ddp_session):
    # _check_allreduce_batchnorm ran in both ranks (an assertion there fails the session)
    for name in CONFIGS:
        assert {p.name for p in (ddp_session / f"{name}-rank0").iterdir()} == {
            "config.json", "metrics.jsonl", "summary.json", "model.pt"}
        assert not (ddp_session / f"{name}-rank1").exists()
        summaries = [torch.load(ddp_session / f"{name}-summary{r}.pt") for r in range(WORLD)]
        timing = SUMMARY_TIMES
        assert [{k: v for k, v in s.items() if k not in timing} for s in summaries][0] == {
            k: v for k, v in summaries[1].items() if k not in timing}  # every rank reports the same figures
        assert summaries[0]["world_size"] == WORLD and summaries[0]["status"] == "finished"


def test_two_way_matches_one_process_without_bn(ddp_session, single):
    """Same global batch and seed: same weights (l2 penalty once per step, proximal L1 on replicated weights)."""
    out, summaries, _ = single
    two, one = _state(ddp_session / "plain-rank0"), _state(out / "plain")
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=1e-5, msg=key)
    assert any((v == 0).any() for k, v in one.items() if k.endswith("weight"))  # the prox step made exact zeros
    s2, s1 = torch.load(ddp_session / "plain-summary0.pt"), summaries["plain"]
    for key in ("running_loss", "running_acc", "penalty", "train_loss", "test_loss", "weight_l2"):
        assert s2[key] == pytest.approx(s1[key], rel=1e-4, abs=1e-6), key
    # the all-reduced metrics count every sample once
    assert s2["running_acc"] * 160 == pytest.approx(round(s2["running_acc"] * 160))


def test_metrics_are_those_of_one_process_evaluating_the_saved_model(ddp_session, dataset):
    """Evaluation is split across ranks, yet reports what one process evaluating the saved model reports."""
    for name in CONFIGS:
        run = ddp_session / f"{name}-rank0"
        cfg, model, _ = load_checkpoint(run)
        ds = dataset
        if cfg.channels_last:
            model, ds = model.to(memory_format=torch.channels_last), channels_last(dataset)
        batch = getattr(train_mod, "EVAL_BATCH", 1000)  # the evaluation batch fit uses
        again, logged = {**epoch_metrics(model, ds, batch), **weight_stats(model)}, _last_metrics(run)
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "gap", "weight_l2"):
            assert again[key] == pytest.approx(logged[key], rel=1e-6, abs=1e-7), (name, key)


def test_synced_bn_running_statistics_match_one_process(ddp_session, single):
    out, _, _ = single
    two, one = _state(ddp_session / "sync-rank0"), _state(out / "sync")
    stats = [k for k in one if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 4
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=1e-5, msg=key)
    # the checkpoint loads into the plain model (BatchNorm's keys)
    build_model("mlp", (1, 28, 28), 10, RunConfig(regs=["bn"]).specs).load_state_dict(two)


def test_local_bn_keeps_per_rank_statistics(ddp_session, single):
    """Without bn:sync each rank normalizes its own 16 samples (ghost batch norm): rank 0's running statistics are
    those of BN over rank 0's shards, and differ from global-batch statistics."""
    _, _, dataset = single
    expected = _simulate_local_bn(RunConfig(**CONFIGS["local"]), dataset)
    two, one = _state(ddp_session / "local-rank0"), _state(single[0] / "local")
    for key in expected:
        torch.testing.assert_close(two[key], expected[key], atol=1e-6, rtol=1e-5, msg=key)
    assert not torch.allclose(two["batch_normalization.running_var"], one["batch_normalization.running_var"],
                              atol=1e-4, rtol=1e-3)


def _simulate_local_bn(cfg: RunConfig, dataset) -> dict:
    """DDP with rank-local BN, in one process: each shard normalized alone with its rank's buffers, the mean of the
    shards' losses (DDP's gradient average). Returns rank 0's state."""
    from sandbag.train import make_optimizer

    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.model, dataset.input_shape, dataset.num_classes, cfg.specs)
    ds = dataset
    if cfg.channels_last:
        model, ds = model.to(memory_format=torch.channels_last), channels_last(dataset)
    optimizer = make_optimizer(cfg, model.parameters())
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    buffers = [[{k: v.clone() for k, v in m._buffers.items()} for m in norms] for _ in range(WORLD)]
    order = torch.randperm(len(ds.x_train), generator=generator)
    model.train()
    for start in range(0, len(order), cfg.batch_size):
        optimizer.zero_grad()
        loss = 0
        for rank, idx in enumerate(order[start : start + cfg.batch_size].tensor_split(WORLD)):
            for module, own in zip(norms, buffers[rank], strict=True):
                module._buffers.update(own)  # this rank's tensors, updated in place by its forward
            loss = loss + F.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx]) / WORLD
        loss.backward()
        optimizer.step()
    for module, own in zip(norms, buffers[0], strict=True):
        module._buffers.update(own)
    return {k: v.detach() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------
# Configuration (no processes)


def test_bn_sync_spec_nproc_config_and_keys():
    assert str(RunConfig(regs=["bn:post:sync"]).specs[0]) == "bn:post:sync"
    a, b = build_model(specs=RunConfig(regs=["bn:sync"]).specs), build_model(specs=RunConfig(regs=["bn"]).specs)
    assert repr(a) == repr(b)  # in one process bn:sync is bn
    assert RunConfig().key() == "a95b2747753d"  # single-process keys predate nproc: old run folders are reused
    assert RunConfig(nproc=2).key() != RunConfig().key()
    with pytest.raises(ConfigError, match="split evenly among 3"):
        RunConfig(nproc=3, batch_size=32)
    with pytest.raises(ConfigError, match="needs a process group"):
        fit(RunConfig(nproc=2, train_size=100, epochs=1))
    with pytest.raises(ConfigError, match="use --device cuda"):
        distributed.check_resources(2, "cuda:1")


def test_study_with_nproc_compares_local_and_synced_bn():
    from sandbag.study import StudyConfig, independent_runs

    runs = independent_runs(StudyConfig(nproc=2, seeds=2, extra_seeds=2, batch_sizes=[4, 32]), "mnist-5k")
    assert {r.config.nproc for r in runs} == {2}
    assert [r.config.regs for r in runs if r.arm == "bn-sync"] == [["bn:sync"], ["bn:sync"]]
    assert not any(r.arm == "bn-sync" for r in independent_runs(StudyConfig(seeds=2, extra_seeds=2), "mnist-5k"))
    with pytest.raises(ConfigError, match="nproc"):
        StudyConfig(nproc=3)


# ----------------------------------------------------------------------------------------------------------------
# The launcher: sandbag train --nproc 2, and a rank that dies


def _toy_npz(path: Path) -> str:
    """A small, learnable 10-class data set of 12x12 images (no sklearn import in the ranks: fast start)."""
    rng = np.random.default_rng(0)
    protos = rng.random((10, 12, 12))
    def make(n):
        y = np.arange(n) % 10
        return np.clip(protos[y] + 0.3 * rng.standard_normal((n, 12, 12)), 0, 1).astype(np.float32), y
    (x_train, y_train), (x_test, y_test) = make(256), make(100)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def _sandbag(*args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "sandbag", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_cli_nproc_writes_one_run_folder(tmp_path, monkeypatch, capsys):
    data = _toy_npz(tmp_path / "toy.npz")
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--nproc", "2", "--data", data, "--model", "mlp", "--reg", "bn:sync", "--epochs", "2",
                 "--batch-size", "32", "--device", "cpu", "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and stdout.strip().splitlines()[-1] == str(Path("runs") / runs[0].name)
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["nproc"] == 2 and config["batch_size"] == 32 and config["regs"] == ["bn:sync"]
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2 and summary["train_acc"] > 0.5
    assert "sandbag: error" not in stderr


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _descendants(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"SANDBAG_LAUNCHED=1" in env:
            return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_fails_the_job_with_one_clear_line(tmp_path):
    data = _toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "run"
    proc = _sandbag("train", "--nproc", "2", "--data", data, "--model", "mlp", "--epochs", "500", "--device", "cpu",
                    "--quiet", "--out", str(out), cwd=tmp_path, env={**os.environ, distributed.TIMEOUT_ENV: "20"})
    try:
        deadline = time.monotonic() + 90
        while not (out / "metrics.jsonl").exists():  # both ranks are training
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        pid = _rank_pid(proc.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert time.monotonic() - killed < 30  # no hang
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"sandbag: error: data-parallel job failed: rank 1 of 2 was killed by signal SIGKILL; "
                        r"the other ranks were stopped", last), stderr[-3000:]
    assert read_summary(out) is None  # not a complete run folder: a study reruns it
