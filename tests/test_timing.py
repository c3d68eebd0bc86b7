"""The timing phase's rounds (`sandbag.study.timing.alternated`): chunks of an epoch, cut as training cuts it,
timed in turn and scaled to an epoch. The clock is faked so the oracle is exact: arm i costs c_i seconds an image."""

from __future__ import annotations

import itertools

import pytest
import torch

from sandbag import data as data_mod
from sandbag.runs import RunConfig
from sandbag.study import timing
from sandbag.train import load_data, setup_run

SMALL = dict(data="mnist-5k", train_size=200, val_size=50, epochs=1, device="cpu")


@pytest.fixture(scope="module")
def dataset():
    return load_data(RunConfig(**SMALL))


@pytest.mark.parametrize("batch, regs", [(32, []), (24, ["bn"]), (7, ["bn"])])
def test_chunks_of_an_epoch_are_its_batches_in_training_order(dataset, fresh_seed, batch, regs):
    """Every epoch's chunks, joined, are the batches `train_one_epoch` takes with the same generator: the same
    images in the same order, a BN net's batch of one dropped as training drops it."""
    cfg = RunConfig(**SMALL, batch_size=batch, regs=regs, seed=fresh_seed % 1000)
    s = setup_run(cfg, dataset=dataset)
    steps = data_mod.num_batches(len(s.ds.x_train), batch, 2 if regs else 1)
    images = int(torch.randint(1, 4 * batch, (1,), generator=torch.Generator().manual_seed(fresh_seed)))
    per = max(1, images // batch)
    chunks = timing.epoch_chunks(s, cfg, images)
    oracle = torch.Generator().manual_seed(s.generator.initial_seed())
    s.generator.manual_seed(s.generator.initial_seed())
    for _ in range(2):  # two epochs: the second reshuffles
        expected = list(data_mod.batches(s.ds.x_train, s.ds.y_train, batch, generator=oracle,
                                         min_batch=2 if regs else 1))
        got = [list(next(chunks)) for _ in range(-(-steps // per))]
        assert [len(c) for c in got] == [min(per, steps - k) for k in range(0, steps, per)]
        flat = list(itertools.chain.from_iterable(got))
        assert len(flat) == len(expected) == steps
        for (xb, yb), (xe, ye) in zip(flat, expected, strict=True):
            assert torch.equal(xb, xe) and torch.equal(yb, ye)


def test_rounds_scale_each_chunk_to_an_epoch_and_reverse_their_order(dataset, fresh_seed, monkeypatch):
    """With a clock where arm i's training costs c_i seconds an image, every round of every arm reads exactly
    c_i x the epoch's images, in chunk rounds and epoch rounds alike; the arms take turns in the given order and
    the reverse in every other round; rounds stop once each arm has two epochs' worth and `min_seconds`."""
    rng = torch.Generator().manual_seed(fresh_seed)
    costs = (1e-4 + 1e-3 * torch.rand(3, generator=rng)).tolist()
    batches = [32, 8, 50]
    configs = [RunConfig(**SMALL, batch_size=b, seed=k) for k, b in enumerate(batches)]
    clock = {"now": 0.0}
    turns: list[int] = []
    cost_of = {}

    def fake_run_epoch(net, optimizer, regularizer, batches_, steps, **_):
        images = sum(len(yb) for _, yb, _ in batches_)
        clock["now"] += cost_of.get(id(net), 0.0) * images  # warm-up steps cost nothing here
        turns.append(cost_of.get(id(net)))
        return {}

    def set_up(cfg, dataset):
        s = setup_run(cfg, dataset=dataset)
        cost_of[id(s.net)] = costs[batches.index(cfg.batch_size)]
        return s

    monkeypatch.setattr(timing, "run_epoch", fake_run_epoch)
    monkeypatch.setattr(timing, "setup_run", set_up)
    monkeypatch.setattr(timing.time, "thread_time", lambda: clock["now"])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["now"])
    min_seconds = float(2 * max(costs) * 200 + 0.05)  # more than two epochs of the dearest arm
    for images in (None, 64):
        turns.clear()
        out, clock_name = timing.alternated(configs, dataset, min_seconds, images)
        turns[:] = turns[len(configs):]  # each arm's warm-up steps first, then the rounds
        assert clock_name == timing.CPU
        rounds = out[0]["rounds"]
        assert all(m["rounds"] == rounds == len(m["epoch_seconds"]) == len(m["wall_epoch_seconds"]) for m in out)
        for m, c in zip(out, costs, strict=True):
            assert m["epoch_seconds"] == pytest.approx([c * 200] * rounds, rel=1e-9)
            assert m["seconds_per_epoch"] == pytest.approx(c * 200, rel=1e-9)
            assert m["epochs"] >= 2
        order = [turns[k * 3:(k + 1) * 3] for k in range(rounds)]
        assert all(o == (costs if k % 2 == 0 else costs[::-1]) for k, o in enumerate(order))
        if images is None:
            assert rounds == max(2, -(-min_seconds // (min(costs) * 200)))
        else:
            assert rounds > 2 * -(-200 // 64)  # chunks: many more rounds than epochs


def test_passes_chunk_the_arms_a_part_compares_at_one_batch_size_and_time_the_rest_epoch_by_epoch():
    """Arms compared at one batch size take turns every `ROUND_STEPS` steps, one group per batch size; arms compared
    across batch sizes epoch by epoch, together; an arm can be in both; `whole_epochs` puts every arm in epochs."""
    from sandbag.study.claims import Claim, Part

    def part(a, b):
        return Part(kind="paired", label="", metric="timing.seconds_per_epoch", a=("g", a), b=("g", b),
                    direction="greater", ratio=True)

    claims = [Claim(number=1, id="c", text="", parts=[part("dropout", "none"), part("b4", "none"),
                                                      part("b128", "none"), part("bn-b128", "b128")])]
    batch = {("g", "dropout"): 32, ("g", "none"): 32, ("g", "b4"): 4, ("g", "b128"): 128, ("g", "bn-b128"): 128}
    assert timing.passes(claims, batch) == [
        ([("g", "b128"), ("g", "b4"), ("g", "none")], None),
        ([("g", "dropout"), ("g", "none")], timing.ROUND_STEPS),
        ([("g", "b128"), ("g", "bn-b128")], timing.ROUND_STEPS)]
    assert timing.passes(claims, batch, whole_epochs=True) == [(sorted(batch), None)]
