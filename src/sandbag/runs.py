"""What a run is and how its folder is laid out: `RunConfig`, the run folder writer and readers, checkpoints.

A run folder holds

- ``config.json``   everything needed to rerun it (plus the sandbag and torch versions),
- ``metrics.jsonl`` one JSON object per epoch,
- ``summary.json``  the final epoch's figures, total time, parameter counts and ``status``; written last, so its
                    presence marks a complete folder,
- ``model.pt``      ``{"format", "state_dict", "config", "input_shape", "num_classes"}``, loadable with
                    ``torch.load(..., weights_only=True)``,
- ``probes.json``   (study runs) what the study's probe step measured on the trained model.

Every file is written atomically (write, then rename). Timings live in their own fields (``*_seconds``,
``samples_per_sec``); every other figure is reproducible: same seed, data and machine give the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import files
from .data import TEST_SPLITS, relative_path
from .errors import CheckpointError, ConfigError, one_line
from .models import build_model, check_model_name
from .regularizers import Spec, parse_specs

OPTIMIZERS = ("adam", "adamw", "sgd")
AMP_MODES = (None, "bf16")
CHECKPOINT_FORMAT = "sandbag-run/1"
TIMING_FIELDS = ("epoch_seconds", "eval_seconds", "samples_per_sec")
# summary.json's wall times: they differ between two runs of the same config (and between ranks), nothing else does
SUMMARY_TIMES = ("total_seconds", "seconds_per_epoch", "train_seconds", "eval_seconds", "setup_seconds")
COMPLETE = ("finished", "diverged")  # statuses of a folder that need no rerun
# Fields that came after the first run folders: left out of the config hash at these values, so folders made before
# them keep their keys and are reused.
HASHED_WHEN_SET = {"amp": None, "val_size": None, "test": "default", "eval_every": 1, "track_size": None}


@dataclass
class RunConfig:
    """Everything that defines a training run. Defaults follow Keras: Adam, lr 1e-3, batch 32."""

    data: str = "mnist-5k"
    model: str = "ref-cnn"  # or a model factory's "package.module:function" (see sandbag.models)
    regs: list[str] = field(default_factory=list)
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    seed: int = 0
    data_seed: int = 0  # fixes the validation split and the train subset, independent of `seed`
    train_size: int | None = None
    val_fraction: float = 0.0
    val_size: int | None = None  # a validation split of this many images not used for training
    test: str = "default"  # "rest": test on every image not used for training or validation (needs train_size)
    standardize: bool = False
    nproc: int = 1  # data-parallel processes (DDP); batch_size is the global batch, split among them
    amp: str | None = None  # "bf16": bfloat16 autocast for forward and loss (changes the numbers, so it is hashed)
    eval_every: int = 1  # clean train/val/test figures every k epochs and at the last one
    track_size: int | None = None  # each epoch: clean accuracy on a fixed stratified subset of the training images
    # How to run, not what: excluded from the config hash.
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    tensorboard: bool = False
    # Where a relative data path (npz:data.npz) is read from: the working directory when the config was made, so
    # `sandbag evaluate RUN` finds the data from anywhere. Recorded beside the path rather than folded into it, so
    # the config hash (and a study's run folders) stays the same wherever the study is run from.
    base_dir: str | None = None

    EXECUTION = ("device", "threads", "channels_last", "tensorboard", "base_dir")

    def __post_init__(self) -> None:
        self.regs = [str(s) for s in parse_specs(self.regs)]  # validate early, store canonically
        if self.base_dir is None and relative_path(self.data):
            self.base_dir = os.getcwd()
        check_model_name(self.model)  # a factory path only by its shape: nothing is imported here
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate must be a number > 0, got {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"),
            (0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (self.train_size is None or self.train_size > 0, f"train size must be > 0, got {self.train_size}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.nproc >= 1, f"nproc must be >= 1, got {self.nproc}"),
            (self.amp in AMP_MODES, f"unknown amp mode {self.amp!r}; valid: bf16 (or leave it off)"),
            (self.test in TEST_SPLITS, f"unknown test split {self.test!r}; valid: {', '.join(TEST_SPLITS)}"),
            (self.test == "default" or self.train_size, 'test "rest" needs a train_size'),
            (self.val_size is None or self.val_size > 0, f"val size must be > 0, got {self.val_size}"),
            (self.val_size is None or not self.val_fraction, "give val_size or val_fraction, not both"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.track_size is None or self.track_size > 0, f"track size must be > 0, got {self.track_size}"),
            (self.batch_size % max(self.nproc, 1) == 0,
             f"batch size {self.batch_size} is the global batch and must split evenly among {self.nproc} processes"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def specs(self) -> list[Spec]:
        return parse_specs(self.regs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown run config keys: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def key(self) -> str:
        """A short hash of what determines the results (not how they are computed)."""
        what = {k: v for k, v in self.to_dict().items() if k not in self.EXECUTION}
        if what["nproc"] == 1:
            del what["nproc"]  # single-process runs keep the keys they had before data-parallel training existed
        for name, unset in HASHED_WHEN_SET.items():  # fields added later: runs without them keep their keys
            if what.get(name) == unset:
                what.pop(name, None)
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def default(name: str):
    """The default of RunConfig field `name` (the CLI shows and uses these; it keeps no copy of its own)."""
    f = next(f for f in fields(RunConfig) if f.name == name)
    return f.default_factory() if callable(f.default_factory) else f.default


def versions() -> dict[str, str]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"sandbag": version("sandbag"), "torch": torch.__version__}


# ----------------------------------------------------------------------------------------------------------------
# Writing


class RunFolder:
    """Writes config.json, metrics.jsonl, summary.json and model.pt, each atomically."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def start(self, cfg: RunConfig) -> None:
        files.make_dir(self.path)
        (self.path / "summary.json").unlink(missing_ok=True)  # a rerun is unfinished until it finishes
        files.write_json(self.path / "config.json", {**cfg.to_dict(), "versions": versions()})

    def write_metrics(self, history: list[dict]) -> None:
        files.write_jsonl(self.path / "metrics.jsonl", history)

    def finish(self, model: nn.Module, cfg: RunConfig, summary: dict, input_shape, num_classes: int) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        torch_save(self.path / "model.pt", {
            "format": CHECKPOINT_FORMAT,
            "config": cfg.to_dict(),
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "state_dict": state,
        })
        files.write_json(self.path / "summary.json", summary)  # last: its presence marks a complete folder


def torch_save(path: Path, obj: Any) -> None:
    """`torch.save` written atomically (see `sandbag.files`)."""
    files.write_with(path, lambda f: torch.save(obj, f))


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_summary(folder: Path | str) -> dict | None:
    """A run's summary if its folder is complete (finished or diverged), else None (rerun it)."""
    summary = files.read_json(Path(folder) / "summary.json")
    return summary if isinstance(summary, dict) and summary.get("status") in COMPLETE else None


def torch_load_tagged(path: Path, fmt: str, what: str, device: str = "cpu") -> dict:
    """Load a dict saved by `torch_save` with ``weights_only=True`` and check its ``format`` tag.

    Anything else (a truncated, foreign or malicious file: torch raises many types for those) is one
    `CheckpointError` line that says which of these it is; a pickle that would run code is refused by the
    weights-only unpickler."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would only precede the error line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise CheckpointError(_unloadable(Path(path), exc)) from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise CheckpointError(f"{path} is not {what} (no format tag {fmt!r})")
    return obj


# How a torch checkpoint file begins: torch.save's zip archive, or the legacy (pre-1.6) pickle stream, which opens
# with protocol 2 and torch's magic number. Torch's own errors for a file cut short ("[Errno 22] Invalid argument",
# "failed finding central directory") do not say that, so the file's first bytes decide what to tell the user.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _unloadable(path: Path, exc: Exception) -> str:
    """Why torch could not load `path`, in the user's terms: not a torch file, refused, or truncated/corrupt."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
        size = path.stat().st_size
    except OSError as err:  # a folder, or no permission: the OS says it best
        return f"cannot load {path}: {err.strerror or one_line(err)}"
    if not head:
        return f"{path}: truncated or corrupt checkpoint (the file is empty)"
    zipped = head.startswith(_ZIP_MAGIC) or _ZIP_MAGIC.startswith(head)
    if not zipped and not (head.startswith(_LEGACY_MAGIC) or _LEGACY_MAGIC.startswith(head)):
        return f"{path}: not a torch checkpoint file (it starts with neither torch's zip header nor its legacy one)"
    if zipped and _foreign_zip(path):
        return f"{path}: not a torch checkpoint file (a zip archive without torch's data.pkl; an .npz, say)"
    if "Weights only load failed" in str(exc):
        return (f"{path}: refused by the weights-only unpickler (it holds objects other than tensors and plain "
                "data, which could run code)")
    return f"{path}: truncated or corrupt checkpoint ({size:,} bytes; torch cannot read it)"


def _foreign_zip(path: Path) -> bool:
    """A complete zip archive that torch did not write (torch's archives hold <name>/data.pkl)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return not any(name.endswith("/data.pkl") for name in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False  # not even a readable zip: cut short or damaged


def load_checkpoint(path: Path | str, device: str = "cpu") -> tuple[RunConfig, nn.Module, dict]:
    """Rebuild a trained model from a run folder or a model.pt, refusing anything that is not ours.

    Loading uses ``weights_only=True``: a file that would run code when unpickled is rejected.
    """
    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"no checkpoint at {file}: expected a run folder with model.pt")
    ckpt = torch_load_tagged(file, CHECKPOINT_FORMAT, "a sandbag checkpoint", device)
    try:
        cfg = RunConfig.from_dict(ckpt["config"])
        model = build_model(cfg.model, tuple(ckpt["input_shape"]), int(ckpt["num_classes"]), cfg.specs)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{file} does not match its architecture: {one_line(exc)}") from None
    return cfg, model.to(device), ckpt
