"""The names a study folder is made of, shared by the engine that writes it and the torch-free report that reads it.

    STUDY/study.json            the config, the design (arms and claims), hardware, versions, times
    STUDY/results.csv           one row per run; aggregate.csv: mean, std, n per arm
    STUDY/timing.json           the timing phase (`timing`)
    STUDY/runs/<slug>/<group>-<arm>-s<seed>-<config key>/   a run folder; probes.json beside its summary.json
    STUDY/figures/<slug>/       the report's figures
"""

from __future__ import annotations

import re

STUDY = "study.json"
PROBES = "probes.json"  # written into each run folder by sandbag.study.probes
TIMING = "timing.json"  # written into the study folder by sandbag.study.timing
VERDICTS = "verdicts.json"
REGIME = "regime.json"  # the regime map of a study over train_sizes (`sandbag.study.regime`)

# Seeds and samples: replicate r of a study runs seeds r*SEED_BLOCK ... (and, per seed, samples drawn with them)
SEED_BLOCK = 1000
SAMPLING = ("fixed", "per-seed")


def first_seed(cfg: dict) -> int:
    """The first seed of a study's replicate, from its config as study.json records it."""
    return int(cfg.get("replicate") or 0) * SEED_BLOCK


# The figures a report draws (figures/<slug>/<id>.png); a claim names the one that shows it by id
CELL_FIGURES = ("learning_curves", "validation_curves", "penalty", "weight_histograms", "dropout", "bn",
                "batch_size", "headline")  # drawn per data set (per cell in a study over sizes)
MAP_FIGURES = ("regime",)  # drawn per data set across its sizes (figures/<slug>/regime.png)
FIGURES = CELL_FIGURES + MAP_FIGURES

# The per-seed numbers of probes.json a claim's part may read as probe.<field> (`sandbag.study.probes` writes them)
PROBE_FIELDS = ("dropout_accuracy_drop", "dropout_disagreement", "dropout_eval_acc", "dropout_on_acc",
                "bn_z_mean_absmax", "bn_z_std_absdev_max", "bn_z_std_eps_absdev_max", "companion_prob_std_mean")
# The quantities of timing.json a part may read as timing.<quantity>
TIMING_FIELDS = ("seconds_per_epoch",)


# A study over training-set sizes (`train_sizes`, the regime map) runs every arm in each *cell*, a data set at one
# size, keyed "mnist-5k@500": runs, results.csv rows and the sweep's choice are per cell; claims naming arms at a
# size ("dropout@500", "dropout@min_size") are decided per data set across its cells.
CELL = "@"


def cell_key(data: str, size: int | None) -> str:
    return data if size is None else f"{data}{CELL}{size}"


def split_cell(key: str) -> tuple[str, int | None]:
    """(data set, training-set size) of a cell key; (key, None) for a plain data set."""
    data, sep, size = key.rpartition(CELL)
    return (data, int(size)) if sep and size.isdigit() else (key, None)


def cells(cfg: dict) -> list[str]:
    """The cells of a study, from its config as study.json records it: each data set at each of `train_sizes`,
    or the data sets themselves."""
    sizes = cfg.get("train_sizes") or []
    return [cell_key(d, n) for d in cfg["data"] for n in sizes] if sizes else list(cfg["data"])


def size_epochs(size_steps: int | None, batch_size: int, size: int | None, epochs: int, min_epochs: int = 1) -> int:
    """Epochs of a run at `size` training images: `epochs`, or with `size_steps` the epochs that make about that
    many optimizer steps at `batch_size`, and at least `min_epochs`."""
    if size_steps is None or size is None:
        return epochs
    return max(1, min_epochs, round(size_steps * batch_size / size))


def slug(name: str) -> str:
    """A data set (or arm) name as a folder name: runs/<slug>/ and figures/<slug>/."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")
