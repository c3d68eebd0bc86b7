"""The Keras side of keras_peer.py; runs under benchmarks/.keras-venv's python (Keras 3 on TensorFlow CPU).

    _keras_worker.py DATA.npz THREADS

Builds the reference CNN in Keras, then answers one JSON command per stdin line with one JSON line on stdout:
``{"op": "fit", "batch": B}`` -> one training epoch (timed inside fit by a callback, so fit's per-call set-up is not
counted), ``{"op": "predict", "batch": B}`` -> one predict over the evaluation images (timed as a call),
``{"op": "quit"}``. The first line it prints is ``{"ready": true, "tensorflow": ..., "keras": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    data_path, threads = sys.argv[1], int(sys.argv[2])
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras import layers

    data = np.load(data_path, allow_pickle=False)
    x, y, x_eval = data["x_train"], data["y_train"], data["x_eval"]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=x.shape[1:]),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.AveragePooling2D(2),
        layers.Conv2D(128, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.t0

    timer = EpochTimer()
    out = sys.stdout
    sys.stdout = sys.stderr  # anything Keras prints goes to stderr; stdout carries the JSON lines only
    print(json.dumps({"ready": True, "tensorflow": tf.__version__, "keras": keras.__version__,
                      "params": int(model.count_params())}), file=out, flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "fit":
            model.fit(x, y, batch_size=cmd["batch"], epochs=1, shuffle=True, verbose=0, callbacks=[timer])
            result = {"seconds": timer.seconds}
        elif cmd["op"] == "predict":
            t0 = time.perf_counter()
            model.predict(x_eval, batch_size=cmd["batch"], verbose=0)
            result = {"seconds": time.perf_counter() - t0}
        else:
            break
        print(json.dumps(result), file=out, flush=True)


if __name__ == "__main__":
    main()
