"""Atomic file writes: a reader (or a process killed mid-write) sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, OutputError


def _replace_from_temp(path: Path, write) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it: the old file stays whole until then.

    A full disk or an unwritable folder raises `OutputError` (one line); the previous version is left intact."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}; earlier results are intact") from None
        raise


def make_dir(path: Path) -> Path:
    """mkdir -p, with a full disk or an unwritable place reported as one `OutputError` line."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return Path(path)


def write_text(path: Path, text: str) -> None:
    _replace_from_temp(path, lambda f: f.write(text.encode("utf-8")))


def write_bytes(path: Path, data: bytes) -> None:
    _replace_from_temp(path, lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def torch_save(path: Path, obj: Any) -> None:
    _replace_from_temp(path, lambda f: torch.save(obj, f))


def torch_load_tagged(path: Path, fmt: str, what: str, device: str = "cpu") -> dict:
    """Load a dict saved by `torch_save` with ``weights_only=True`` and check its ``format`` tag.

    Anything else (a truncated, foreign or malicious file: torch raises many types for those) is one
    `CheckpointError` line; a pickle that would run code is refused by the weights-only unpickler."""
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load {path} as {what}: {reason[:200]}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise CheckpointError(f"{path} is not {what} (no format tag {fmt!r})")
    return obj
