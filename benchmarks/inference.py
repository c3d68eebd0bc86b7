"""Inference throughput: a BN model evaluated as trained and with BN folded into its weights, interleaved.

The model is the reference CNN with ``bn`` (BN before each activation), trained briefly so its running statistics
are real; `sandbag.export.fold_batchnorm` folds it. Before any timing, the folded model's outputs are checked
against the unfolded model's on fresh random inputs (max |difference| must be <= 1e-5). Also timed: the reference
CNN without BN (what the Keras peer's predict runs). Evaluation as sandbag does it: evaluation mode,
``torch.inference_mode()``, channels_last, in batches over all 5,000 mnist-5k images.

    python benchmarks/inference.py                  # batches 128, 256, 1000
"""

from __future__ import annotations

import _common as C
import torch

from sandbag import train
from sandbag.export import fold_batchnorm
from sandbag.models import build_model

TOLERANCE = 1e-5


def predictor(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str):
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    x = x.to(device).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run():
        for start in range(0, len(x), batch):
            model(x[start : start + batch]).argmax(1)

    return lambda: C.timed(run, device)


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--batches", help="comma-separated batch sizes (default 128,256,1000; smoke 256)")
    args = C.finish_args(p.parse_args())
    batches = [int(b) for b in (args.batches or ("256" if args.smoke else "128,256,1000")).split(",")]
    cfg = train.RunConfig(regs=["bn"], epochs=1, train_size=128 if args.smoke else 1000, device="cpu",
                          threads=args.threads)
    ds = train.load_data(train.RunConfig())
    x = torch.cat([ds.x_train, ds.x_test])[: 512 if args.smoke else None]

    bn_model = _trained(cfg)
    folded, report = fold_batchnorm(bn_model)
    probe = torch.rand(256, *ds.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        diff = (folded(probe) - bn_model.eval()(probe)).abs().max().item()
    if not diff <= TOLERANCE:
        raise SystemExit(f"inference: folded outputs differ by {diff:.3g} > {TOLERANCE}")
    torch.manual_seed(0)
    plain = build_model("ref-cnn", ds.input_shape, ds.num_classes)

    rows = []
    for batch in batches:
        variants = {
            "bn, unfolded": predictor(bn_model, x, batch, args.device),
            "bn, folded (sandbag export)": predictor(folded, x, batch, args.device),
            "no bn (reference CNN)": predictor(plain, x, batch, args.device),
        }
        times = C.interleave(variants, args.warmup, args.repeats)
        base = len(x) / C.median(times["bn, unfolded"])
        for name, t in times.items():
            rate = len(x) / C.median(t)
            rows.append([batch, name, rate, f"{rate / base:.2f}", C.spread(t)])
    print(C.heading("Inference throughput (samples/s), BN folded vs not", args))
    print(f"{len(x)} images, {args.threads} threads, device {args.device}, evaluation mode under inference_mode, "
          f"channels_last. Folded: {len(report['folded'])} BN layers folded, {len(report['kept'])} kept; "
          f"max |folded - unfolded| on 256 random inputs = {diff:.1e} (must be <= {TOLERANCE:g}).\n")
    print(C.table(["batch", "model", "samples/s", "vs unfolded", "spread"], rows))


def _trained(cfg: train.RunConfig) -> torch.nn.Module:
    """The BN model after `cfg`'s short training (rebuilt from the run's state, as `sandbag export` would see it)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train.fit(cfg, tmp)
        _, model, _ = train.load_checkpoint(tmp)
    return model


if __name__ == "__main__":
    main()
