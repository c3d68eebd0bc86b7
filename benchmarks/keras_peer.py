"""sandbag against Keras 3 on TensorFlow CPU: the same model and data, fit and predict, interleaved in one run.

The Keras side runs in its own virtual environment (TensorFlow and torch in one process would fight over threads
and memory): ``--setup`` creates benchmarks/.keras-venv and installs ``tensorflow-cpu`` into it from the package
registry. Without that venv the benchmark is skipped with a message (exit code 0).

Keras runs in a subprocess of that venv's python (benchmarks/_keras_worker.py), answering one command at a time
with JSON; sandbag runs in this process; the parent alternates them (Keras epoch, sandbag epoch, ...), so only one
side computes at any moment. Fit: one training epoch of the reference CNN over the mnist-5k training split (Adam
1e-3), Keras timed by an epoch callback, sandbag by `train_one_epoch` set up as `fit` does. Predict: the evaluation
pass over all 5,000 images at batch 256, Keras ``model.predict``, sandbag in evaluation mode under inference_mode.

    python benchmarks/keras_peer.py --setup      # once: creates benchmarks/.keras-venv (a few hundred MB)
    python benchmarks/keras_peer.py              # fit at 32/128/256, predict at 256
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C
import numpy as np
import torch

from sandbag import train

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SANDBAG_KERAS_VENV") or HERE / ".keras-venv")  # the variable: another venv
VENV_PYTHON = VENV / "bin" / "python"
PACKAGE = "tensorflow-cpu"


def setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", PACKAGE], check=True)
    print(f"keras_peer: {VENV} is ready")


class KerasWorker:
    """The Keras side: a subprocess of the venv's python speaking one JSON line per command."""

    def __init__(self, data: Path, threads: int):
        self.proc = subprocess.Popen([str(VENV_PYTHON), str(HERE / "_keras_worker.py"), str(data), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"keras_peer: the Keras worker exited (code {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def ask(self, **cmd) -> float:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def main() -> None:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--setup", action="store_true", help=f"create {VENV.name} with {PACKAGE} and exit")
    p.add_argument("--batches", help="comma-separated fit batch sizes (default 32,128,256; smoke 128)")
    p.add_argument("--predict-batch", type=int, default=256)
    args = p.parse_args()
    if args.setup:
        setup()
        return
    if not VENV_PYTHON.exists():
        print(f"## sandbag vs Keras\n\nkeras_peer: skipped: no Keras environment at {VENV} "
              "(create it with `python benchmarks/keras_peer.py --setup`, which installs tensorflow-cpu).")
        return
    args = C.finish_args(args)
    if args.device != "cpu":
        raise SystemExit("keras_peer compares CPU against CPU: leave --device out")
    batches = [int(b) for b in (args.batches or ("128" if args.smoke else "32,128,256")).split(",")]
    ds = train.load_data(train.RunConfig(train_size=256 if args.smoke else None))
    x_eval = torch.cat([ds.x_train, ds.x_test])[: 512 if args.smoke else None]

    from inference import predictor
    from throughput import sandbag_loop

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()  # noqa: E731
        np.savez(data, x_train=nhwc(ds.x_train), y_train=ds.y_train.numpy(), x_eval=nhwc(x_eval))
        keras = KerasWorker(data, args.threads)
        try:
            rows = []
            n = len(ds.x_train)
            for batch in batches:
                times = C.interleave({"keras": lambda b=batch: keras.ask(op="fit", batch=b),
                                      "sandbag": sandbag_loop(batch, "cpu", args.threads, None, ds=ds)},
                                     args.warmup, args.repeats)
                rows.append(_row(f"fit, batch {batch}", n, times))
            torch.manual_seed(0)
            from sandbag.models import build_model

            model = build_model("ref-cnn", ds.input_shape, ds.num_classes)
            times = C.interleave({"keras": lambda: keras.ask(op="predict", batch=args.predict_batch),
                                  "sandbag": predictor(model, x_eval, args.predict_batch, "cpu")},
                                 args.warmup, args.repeats)
            rows.append(_row(f"predict, batch {args.predict_batch}", len(x_eval), times))
        finally:
            keras.close()
    print(C.heading("sandbag vs Keras (samples/s)", args))
    print(f"Keras {keras.info['keras']} on TensorFlow {keras.info['tensorflow']} (CPU, {args.threads} threads, "
          f"{keras.info['params']:,} params) in benchmarks/.keras-venv; sandbag in this process. Fit: {n} samples "
          f"per epoch; predict: {len(x_eval)} images.\n")
    print(C.table(["what", "Keras", "sandbag", "sandbag / Keras", "spread K / s"], rows))


def _row(what: str, n: int, times: dict[str, list[float]]) -> list:
    keras, ours = n / C.median(times["keras"]), n / C.median(times["sandbag"])
    return [what, keras, ours, f"{ours / keras:.2f}", f"{C.spread(times['keras'])} / {C.spread(times['sandbag'])}"]


if __name__ == "__main__":
    main()
