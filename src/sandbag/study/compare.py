"""`sandbag compare A B`: the one-command A/B, as a study file written for you.

Each side is a comma-separated list of technique specs (``dropout=0.5``, ``l2=1e-3,dropout=0.3``, ``l2={l2}`` for
the strength a validation sweep chooses) or ``none``. The study it builds has the two arms, the lecture left out,
and three claims of A against B, paired by seed: test accuracy higher, train-test gap narrower, and the training
accuracy target reached in fewer epochs. Its other settings are the standard preset's (500 training images of
mnist-5k, tested on the rest, 40 epochs), unless the command line gives them. It runs as any study: resumable on
the same --out, rebuilt by `sandbag report`.
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from .config import StudyConfig, load_preset

BASE_PRESET = "standard"
SETTINGS = ("data", "model", "epochs", "train_size", "test", "val_size", "batch_size", "lr", "optimizer", "seeds")


def side(text: str) -> list[str]:
    """One side of the comparison as its spec list ("none": no technique)."""
    specs = [s.strip() for s in str(text).split(",") if s.strip()]
    if not specs:
        raise ConfigError(f"a side of the comparison is empty ({text!r}); give specs such as dropout=0.5, or none")
    return [] if specs == ["none"] else specs


def arm_name(specs: list[str]) -> str:
    """An arm name for a spec list: none, or the specs joined by + (characters a name cannot hold become _)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", "+".join(specs)).strip("_") or "none"


def _claims(a: str, b: str) -> list[dict]:
    def claim(cid, text, text_ko, metric, direction, label, label_ko, figure):
        return {"id": cid, "text": text, "text_ko": text_ko, "figure": figure,
                "parts": [{"label": label, "label_ko": label_ko, "metric": metric, "a": a, "b": b,
                           "direction": direction}]}

    return [
        claim("test-accuracy", f"{a} gives higher test accuracy than {b}.", f"{a}의 테스트 정확도가 {b}보다 높다.",
              "test_acc", "greater", f"test accuracy: {a} minus {b}", f"테스트 정확도: {a} − {b}", "headline"),
        claim("gap", f"{a} leaves a narrower train-test gap than {b}.", f"{a}는 {b}보다 학습-테스트 격차가 좁다.",
              "gap", "less", f"gap: {a} minus {b}", f"격차: {a} − {b}", "learning_curves"),
        claim("learning-speed", f"{a} reaches the training accuracy target in fewer epochs than {b}.",
              f"{a}는 {b}보다 적은 에포크에 목표 학습 정확도에 이른다.", "epochs_to_target", "less",
              f"epochs to the target: {a} minus {b}", f"목표까지 에포크: {a} − {b}", "learning_curves"),
    ]


def compare_config(a: str, b: str, **settings) -> StudyConfig:
    """The study of A against B: two arms, three claims, the standard preset's settings except `settings` (any of
    SETTINGS; None: the preset's)."""
    specs_a, specs_b = side(a), side(b)
    name_a, name_b = arm_name(specs_a), arm_name(specs_b)
    if name_a == name_b:
        raise ConfigError(f"both sides are {name_a!r}: compare two different settings")
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ConfigError(f"unknown compare settings {sorted(unknown)}")
    given = {k: v for k, v in settings.items() if v is not None}
    base = load_preset(BASE_PRESET).to_dict()
    # model_own_regularization "allow": a compare warns of a factory's own dropout or bn (the command line prints
    # the layers), as `sandbag train` does, rather than refusing as a study file does by default
    base.update(name="compare", lecture=False, quick=False, data_options={}, timing_repeats=0, batch_seeds=None,
                model_own_regularization="allow", **given)
    if isinstance(base["data"], str):
        base["data"] = [base["data"]]
    swept = "{" in "".join(specs_a + specs_b)
    base.update(extra_seeds=base["seeds"], batch_sizes=[base["batch_size"]], sweep_epochs=base["epochs"],
                val_size=base["val_size"] if swept else given.get("val_size"),
                arms=[{"name": name_a, "specs": specs_a}, {"name": name_b, "specs": specs_b}],
                claims=_claims(name_a, name_b))
    return StudyConfig.from_dict(base, source="sandbag compare")
