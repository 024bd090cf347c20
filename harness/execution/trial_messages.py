"""What a worker tells the driver through `tune.report`: a trial's epoch, its end, or its own failure.

Each message names its trial (`key`, since one Tune trial may carry a group) and its `kind`, and carries its
numbers as one JSON string, not as a dict. Tune keeps running statistics (max, min, mean, last-5 and last-10
means, with their windows) for every number of every report of every trial for the whole run, and writes
them into its experiment state: with the epoch row and the final metrics as numbers that came to ~45
metrics and most of the driver's ~170 KB per finished trial (tracemalloc, docs/benchmarks.md). A string is
not a number, so Tune keeps only its own handful.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["epoch", "final", "failed"]


def _plain(value: Any) -> Any:
    """A NumPy or torch scalar as the Python number it holds (JSON knows no other)."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"a trial's report holds {type(value).__name__}, which is not a number")


def _message(kind: Kind, key: str, payload: Any) -> dict[str, Any]:
    return {"kind": kind, "key": key, "payload": json.dumps(payload, default=_plain)}


def epoch_message(key: str, row: dict[str, Any]) -> dict[str, Any]:
    """One epoch's row (the trainer's numbers, which become MLflow metrics)."""
    return _message("epoch", key, row)


def final_message(key: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The trial has finished and its result is in the store; `metrics` for the console's line."""
    return _message("final", key, metrics)


def failed_message(key: str, reason: str) -> dict[str, Any]:
    """The trial's own exception (a diverged loss, a method's bug), in one line."""
    return _message("failed", key, reason)


@dataclass(frozen=True)
class TrialMessage:
    kind: str
    key: str
    payload: Any


def read_message(result: dict[str, Any]) -> TrialMessage | None:
    """The message in a Tune result, None for a report that carries none (Tune's own bookkeeping)."""
    if "kind" not in result:
        return None
    return TrialMessage(result["kind"], result["key"], json.loads(result["payload"]))
