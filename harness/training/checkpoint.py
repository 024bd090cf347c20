"""Per-epoch checkpoints written atomically and durably, so a trial killed at any moment resumes from a whole file.

A checkpoint is written to a temporary file, fsynced, and renamed over the old one, which is kept as
`<name>.prev` first; the directory is fsynced so the rename survives a power cut. A checkpoint that cannot
be read anyway (a full disk, a filesystem that lied) is moved aside as `<name>.corrupt-<time>` with a
warning naming it, and the trial resumes from the previous one, or from scratch when that is bad too.
"""

from __future__ import annotations

import io
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.files import atomic_write_bytes, previous_of


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue(), keep_previous=True)


def load_checkpoint(path: Path, fall_back: bool = True) -> dict[str, Any] | None:
    """The newest readable checkpoint: `path`, else the one before it; None when neither is there or readable.

    An unreadable file is moved aside (never deleted: it may be evidence) and named in a warning. Without
    `fall_back` (a finished model, where an older epoch would silently be the wrong model) it is an error.
    """
    for candidate in (path, previous_of(path)) if fall_back else (path,):
        if not candidate.is_file():
            continue
        try:
            return torch.load(candidate, map_location="cpu", weights_only=False)
        except Exception as e:  # truncated zip, bad pickle, short read: whatever a broken write leaves
            if not fall_back:
                raise RuntimeError(
                    f"checkpoint {candidate} cannot be read ({type(e).__name__}); delete {candidate.parent} "
                    "and rerun to train it again"
                ) from e
            aside = candidate.with_name(f"{candidate.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(candidate, aside)
            print(
                f"ltbench: warning: checkpoint {candidate} cannot be read ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); moved aside to {aside}",
                file=sys.stderr,
                flush=True,
            )
    return None


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
