"""Files written whole or not at all: a temporary file, fsynced, renamed over the target, the directory
fsynced so the rename survives a power cut. Checkpoints, results and the store's local copies use it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

PREVIOUS_SUFFIX = ".prev"


def atomic_write_bytes(path: Path, data: bytes, keep_previous: bool = False) -> None:
    """Write `path` whole or not at all; with `keep_previous`, the file it replaces stays as `<path>.prev`."""
    atomic_write(path, lambda f: f.write(data), keep_previous)


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], keep_previous: bool = False) -> None:
    """`write` fills an open temporary file, which then replaces `path` whole (see `atomic_write_bytes`); a
    failed `write` leaves `path` as it was. The temporary name is unique per process and thread, so trials
    of one node that fetch the same file at once each write their own."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if keep_previous and path.is_file():
        os.replace(path, previous_of(path))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def previous_of(path: Path) -> Path:
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=True).encode())
