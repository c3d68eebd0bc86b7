"""Atomic file writes: a reader (or a process killed mid-write) sees the old file or the new one, never half.

No torch here: the report writes through this module and needs neither torch nor a model."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputError


def write_with(path: Path, write) -> None:
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
    write_with(path, lambda f: f.write(text.encode("utf-8")))


def write_bytes(path: Path, data: bytes) -> None:
    write_with(path, lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file's value, or None when it is missing or not readable JSON (a folder an older version wrote, a run
    still in progress): the callers treat both as "not there"."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
