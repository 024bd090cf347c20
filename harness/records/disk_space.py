"""A full disk, recognised wherever it surfaces, and said in one line: which filesystem, how full, and what
a rerun needs.

ENOSPC reaches ltbench in several disguises: an `OSError` from a write, a `RuntimeError` from `torch.save`
("... No space left on device"), SQLite's "database or disk is full" inside SQLAlchemy's and MLflow's
exceptions, a Ray or Tune error wrapping any of them. `is_disk_full` looks through an error's whole chain
for any of these, so the worker reports a full disk as the trial's own failure (never a lost worker to
retry) and the driver stops with `DiskFull` instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from harness.core.errors import LtbenchError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_MESSAGES = ("no space left on device", "database or disk is full", "disk quota exceeded")


class DiskFull(LtbenchError):
    """A filesystem ltbench writes to is full; finished trials are kept, and a rerun resumes the rest."""


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or any error in its cause/context chain, is a full filesystem."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
            return True
        if any(text in str(error).lower() for text in FULL_MESSAGES):
            return True
        error = error.__cause__ or error.__context__
    return False


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path` (or its nearest existing parent)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def disk_full_message(path: Path, need_bytes: int | None = None) -> str:
    """One line: the full filesystem, its free and total space, and how much to free for a rerun."""
    where = mount_point(path)
    usage = shutil.disk_usage(where)
    need = f"; a trial here needs about {_mb(need_bytes)} MB more" if need_bytes else ""
    return (
        f"the filesystem at {where} (holding {path}) is full: {_mb(usage.free)} MB free of {_mb(usage.total)} MB"
        f"{need}; free space there (or use another --results-dir/--storage), then rerun the same command: "
        "finished trials are kept and the rest resume from their checkpoints"
    )


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def largest_trial_bytes(trials_root: Path) -> int | None:
    """The largest trial directory under a local store, as an estimate of what one more trial needs."""
    sizes = [sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) for d in trials_root.glob("*") if d.is_dir()]
    return max(sizes, default=None) or None
