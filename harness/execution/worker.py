"""What runs inside a Ray worker: the Tune trainable that trains one trial, and its resource request.

The driver hands each trial over as its config, the store's URI and the key of the backbone it stands on
(from the plan), so the trainer is given everything it needs and never consults the plan itself. The
trainable resolves the method class through the plugin loader (a worker process imports the plugins
itself) and reports every epoch, then the final result, through `tune.report`.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import ray
from ray import tune
from ray.tune import PlacementGroupFactory

from harness.core.trial import TrialConfig
from harness.plugins.loading import load_methods
from harness.records.disk_space import disk_full_message, is_disk_full
from harness.records.lease import default_holder, leased
from harness.records.storage import Storage
from harness.training.trainer import run_trial


def exception_line(error: BaseException) -> str:
    """The last line of the error's traceback (`module.Type: message`), the reason a failed trial gives."""
    lines = [ln.strip() for ln in "".join(traceback.format_exception(error)).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def quiet_exit_on_sigterm() -> None:
    """Keep a stopping worker from printing a traceback on the driver's terminal.

    Ray stops an idle worker with SIGTERM (after a trial, or when the run ends), and its worker turns the
    signal into `SystemExit`. When the signal lands while Python runs a weakref callback or a `__del__`,
    Python cannot raise there: it prints "Exception ignored in ..." with a traceback, which Ray forwards to
    the driver, although nothing went wrong. This hook drops exactly that report (an unraisable
    `SystemExit`) and hands every other one to Python's default hook."""

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, SystemExit):
            return
        sys.__unraisablehook__(unraisable)

    sys.unraisablehook = hook


def train_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: runs in a Ray worker, reports epochs and the final result. The trial's own
    exception becomes a `failed` result (so Tune does not retry it); only a dead worker reaches Tune as an
    error. (Tune stops a trial with SystemExit, which is not an Exception and passes through.)"""
    quiet_exit_on_sigterm()
    cfg = TrialConfig.from_dict(config["trial"])
    storage = Storage.open(config["storage"])  # the store every node and the driver read
    try:
        # the trial's lease in the store: another driver sharing it waits instead of training it too
        with leased(storage.trial(cfg.key), config.get("lease_holder") or default_holder(), say) as lease:

            def report(row: dict[str, Any]) -> None:
                lease.check()  # between epochs: stop if another driver took the trial over
                tune.report({"kind": "epoch", "row": row})

            result = run_trial(
                cfg,
                storage,
                load_methods().get(cfg.method),
                backbone=config.get("backbone"),
                report=report,
                node=ray.get_runtime_context().get_node_id(),
            )
    except Exception as e:
        # a full disk is said as such (the trial's own failure: a full disk is never retried as a lost worker)
        reason = disk_full_message(storage.trial(cfg.key).local_dir) if is_disk_full(e) else exception_line(e)
        tune.report({"kind": "failed", "reason": reason})
        return
    tune.report({"kind": "final", **result["metrics"]})


def say(message: str) -> None:
    """A line for the driver's terminal (Ray forwards a worker's output there)."""
    print(f"ltbench: {message}", flush=True)


def trial_resources(config: dict[str, Any]) -> PlacementGroupFactory:
    """One bundle of the suite's per-trial CPUs (and GPU share, fractions allowed) for each Tune trial."""
    res = config["trial"]["resources"]
    bundle = {"CPU": float(res.get("cpu", 1))}
    if res.get("gpu", 0):
        bundle["GPU"] = float(res["gpu"])
    return PlacementGroupFactory([bundle])
