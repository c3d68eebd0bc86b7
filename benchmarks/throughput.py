"""Training throughput: sandbag's trainer against a minimal hand-written PyTorch loop, in one run, interleaved.

For each batch size, one training epoch at a time, in alternating order after a warm-up, each variant in its own
process (so each has the allocator state and settings it would have as a program of its own):

- ``plain NCHW``: the textbook loop a PyTorch user writes (same model, data, Adam, batch, threads), default layout;
- ``plain channels_last``: the same loop with model and data in channels_last;
- ``plain channels_last, tuned malloc``: that loop plus sandbag's glibc settings (`sandbag.allocator.tune_allocator`),
  to show how much of sandbag's lead is the allocator (not a baseline: a user would not know to do it);
- ``sandbag``: `sandbag.train.train_one_epoch` with model, optimizer, data and allocator set up as `fit` sets them up;
- ``sandbag, bf16`` with ``--amp bf16``;
- ``sandbag, torch.compile`` with ``--compile`` (a candidate fit does not use: compiled before the warm-up round).

Prints samples/s (median), the ratio to the best of the two plain loops, and the percentage of the matrix-multiply
peak measured in the same run (training FLOPs per sample = 3 x 2 x the conv/dense MACs, counted by hooks).
``--baseline REV`` adds ``sandbag @ REV``: the same loop on the sandbag of git revision REV (its ``src/`` exported
to a temporary folder and imported in that variant's process instead of this checkout's), to compare training
steps before and after a change in one run. ``--multiseed 1,8,32`` adds sandbag.multiseed.fit_seeds throughput
for that many seeds trained at once.

    python benchmarks/throughput.py                     # CPU, batches 32/128/256
    python benchmarks/throughput.py --threads 1 --batches 32 --baseline 9c34bf5
    python benchmarks/throughput.py --device cuda --batches 128,1024 --amp bf16 --multiseed 1,16,64
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _common as C
import torch
import torch.nn.functional as F

from sandbag import train
from sandbag.models import build_model


def _data(train_size: int | None, device: str, threads: int):
    torch.set_num_threads(threads)
    return train.load_data(train.RunConfig(train_size=train_size)).to(device)


def plain_loop(batch: int, device: str, threads: int, train_size: int | None, channels_last: bool,
               tuned_malloc: bool = False):
    """The minimal loop a PyTorch user writes: shuffle, slice, forward, loss, backward, step."""
    if tuned_malloc:
        train.tune_allocator()
    ds = _data(train_size, device, threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*build_model("ref-cnn", ds.input_shape, ds.num_classes)).to(device)  # textbook order
    x, y = ds.x_train, ds.y_train
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    n = len(x)

    def epoch():
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return lambda: C.timed(epoch, device)


def sandbag_loop(batch: int, device: str, threads: int, train_size: int | None, amp: str | None = None, ds=None,
                 compile_model: bool = False, trainer=train):
    """train_one_epoch on what `train.setup_run` sets up for `fit` (allocator, channels_last model and data, its
    optimizer and regularizer); `compile_model`: the model wrapped in torch.compile (not what fit does: a candidate);
    `trainer`: the `sandbag.train` module to use (another revision's, for `baseline_loop`)."""
    torch.set_num_threads(threads)
    cfg = trainer.RunConfig(batch_size=batch, device=device, threads=threads, amp=amp, train_size=train_size)
    if ds is None:
        ds = trainer.load_data(trainer.RunConfig(train_size=train_size)).to(device)
    s = trainer.setup_run(cfg, dataset=ds)
    net = torch.compile(s.net) if compile_model else s.net

    def epoch():
        trainer.train_one_epoch(net, s.optimizer, s.regularizer, s.ds.x_train, s.ds.y_train, batch, s.generator,
                                amp=cfg.amp)

    return lambda: C.timed(epoch, device)


def baseline_loop(src: str, batch: int, device: str, threads: int, train_size: int | None):
    """`sandbag_loop` with sandbag imported from `src` (another revision's source folder) in this process."""
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "sandbag" or m.startswith("sandbag.")]:
        del sys.modules[name]
    sys.path.insert(0, src)
    old = importlib.import_module("sandbag.train")
    assert old.__file__.startswith(src), old.__file__
    return sandbag_loop(batch, device, threads, train_size, trainer=old)


def multiseed_rate(ds, seeds: int, batch: int, device: str, threads: int, epochs: int, amp: str | None) -> float:
    """Training samples/s (all seeds together) of fit_seeds, median over its epochs after the first."""
    from sandbag.multiseed import fit_seeds

    rates = []
    cfg = train.RunConfig(batch_size=batch, device=device, threads=threads, epochs=epochs, amp=amp)
    fit_seeds(cfg, list(range(seeds)), dataset=ds, on_epoch=lambda rows: rates.append(rows[0]["samples_per_sec"]))
    return C.median(rates[1:] or rates)


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--batches", help="comma-separated batch sizes (default 32,128,256; smoke 32)")
    p.add_argument("--train-size", type=int, help="training samples (default all 4,000 of mnist-5k; smoke 128)")
    p.add_argument("--amp", choices=("bf16",), help="also time sandbag with bf16 autocast")
    p.add_argument("--compile", action="store_true", help="also time sandbag with the model under torch.compile")
    p.add_argument("--baseline", metavar="REV", help="also time the sandbag of git revision REV (see above)")
    p.add_argument("--multiseed", help="comma-separated seed counts for sandbag.multiseed at the first batch size "
                   "(e.g. 1,8,32)")
    args = C.finish_args(p.parse_args())
    batches = [int(b) for b in (args.batches or ("32" if args.smoke else "32,128,256")).split(",")]
    train_size = args.train_size or (128 if args.smoke else None)
    ds = train.load_data(train.RunConfig(train_size=train_size)).to(args.device)
    n = len(ds.x_train)
    flops = C.train_flops_per_sample(build_model("ref-cnn", ds.input_shape, ds.num_classes), ds.input_shape)
    mm_n = 256 if args.smoke else (8192 if args.device.startswith("cuda") else 2048)
    peak_before = C.matmul_peak(args.device, n=mm_n)

    rows = []
    base = (args.device, args.threads, train_size)
    tmp = tempfile.TemporaryDirectory()
    old_src = str(C.export_src(args.baseline, Path(tmp.name) / "baseline")) if args.baseline else None
    for batch in batches:
        variants = {
            "plain NCHW": C.Subprocess(plain_loop, batch, *base, False),
            "plain channels_last": C.Subprocess(plain_loop, batch, *base, True),
            "plain channels_last, tuned malloc": C.Subprocess(plain_loop, batch, *base, True, True),
            "sandbag": C.Subprocess(sandbag_loop, batch, *base),
        }
        if old_src:
            variants[f"sandbag @ {args.baseline}"] = C.Subprocess(baseline_loop, old_src, batch, *base)
        if args.amp:
            variants[f"sandbag, {args.amp}"] = C.Subprocess(sandbag_loop, batch, *base, args.amp)
        if args.compile:
            variants["sandbag, torch.compile"] = C.Subprocess(sandbag_loop, batch, *base, None, None, True)
        try:
            times = C.interleave(variants, args.warmup, args.repeats)
        finally:
            for variant in variants.values():
                variant.close()
        rates = {name: n / C.median(t) for name, t in times.items()}
        best_plain = max(rates["plain NCHW"], rates["plain channels_last"])
        for name, rate in rates.items():
            rows.append([batch, name, rate, f"{rate / best_plain:.3f}", C.spread(times[name]), rate * flops / 1e9])
    tmp.cleanup()
    peak = (peak_before + C.matmul_peak(args.device, n=mm_n)) / 2
    for row in rows:
        row[-1] = f"{100 * row[-1] / peak:.1f}%"

    print(C.heading("Training throughput (samples/s)", args))
    print(f"mnist-5k, {n} training samples, {args.threads} threads, device {args.device}. Training FLOPs per sample "
          f"{flops / 1e6:.2f} MFLOP (3 x 2 x conv/dense MACs); fp32 matmul peak ({mm_n}^3, measured before and after, "
          f"mean) {peak:,.0f} GFLOP/s.\n")
    print(C.table(["batch", "variant", "samples/s", "vs best plain", "spread", "% of peak"], rows))
    if args.baseline:
        for batch in batches:
            rate = {r[1]: r[2] for r in rows if r[0] == batch}
            print(f"\nbatch {batch}: sandbag / sandbag @ {args.baseline} = "
                  f"{rate['sandbag'] / rate[f'sandbag @ {args.baseline}']:.2f}x samples/s")
    if args.multiseed:
        batch = batches[0]
        epochs = 2 if args.smoke else 4
        single = next(r[2] for r in rows if r[0] == batch and r[1] == "sandbag")
        ms_rows = []
        for seeds in [int(s) for s in args.multiseed.split(",")]:
            rate = multiseed_rate(ds, seeds, batch, args.device, args.threads, epochs, args.amp)
            ms_rows.append([seeds, batch, rate, f"{rate / single:.2f}", f"{100 * rate * flops / 1e9 / peak:.1f}%"])
        amp = f", {args.amp}" if args.amp else ""
        print(f"\nsandbag.multiseed.fit_seeds (seeds trained at once as one vmapped model{amp}; samples/s counts every "
              f"seed; median epoch of {epochs}, the first dropped):\n")
        print(C.table(["seeds", "batch", "samples/s", "vs one sandbag run", "% of peak"], ms_rows))


if __name__ == "__main__":
    main()
