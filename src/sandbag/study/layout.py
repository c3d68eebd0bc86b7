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

# Seeds and samples: replicate r of a study runs seeds r*SEED_BLOCK ... (and, per seed, samples drawn with them)
SEED_BLOCK = 1000
SAMPLING = ("fixed", "per-seed")


def first_seed(cfg: dict) -> int:
    """The first seed of a study's replicate, from its config as study.json records it."""
    return int(cfg.get("replicate") or 0) * SEED_BLOCK


# The figures a report draws (figures/<slug>/<id>.png); a claim names the one that shows it by id
FIGURES = ("learning_curves", "validation_curves", "penalty", "weight_histograms", "dropout", "bn", "batch_size",
           "headline")

# The per-seed numbers of probes.json a claim's part may read as probe.<field> (`sandbag.study.probes` writes them)
PROBE_FIELDS = ("dropout_accuracy_drop", "dropout_disagreement", "dropout_eval_acc", "dropout_on_acc",
                "bn_z_mean_absmax", "bn_z_std_absdev_max", "bn_z_std_eps_absdev_max", "companion_prob_std_mean")
# The quantities of timing.json a part may read as timing.<quantity>
TIMING_FIELDS = ("seconds_per_epoch",)


def slug(name: str) -> str:
    """A data set (or arm) name as a folder name: runs/<slug>/ and figures/<slug>/."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")
