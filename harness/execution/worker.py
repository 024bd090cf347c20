"""What runs inside a Ray worker: the Tune trainable that trains one trial, and its resource request.

The driver hands each trial over as its config, the store's URI and the key of the backbone it stands on
(from the plan), so the trainer is given everything it needs and never consults the plan itself. One Tune
trial may carry a group of compatible trials (`members`), trained together in this process. The
trainable resolves the method class through the plugin loader (a worker process imports the plugins
itself) and reports every epoch, then the final result, through `tune.report`.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import PlacementGroupFactory

from harness.core.trial import TrialConfig
from harness.execution.trial_messages import epoch_message, failed_message, final_message
from harness.plugins.loading import load_methods
from harness.records.disk_space import disk_full_message, is_disk_full
from harness.records.lease import default_holder, leased
from harness.records.storage import Storage
from harness.training.group import run_group
from harness.training.trainer import trial_steps

# What a Ray worker runs for one Tune trial: the trial's config in, its epochs and end out through `tune.report`.
Trainable = Callable[[dict[str, Any]], None]


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


def group_members(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials one Tune trial carries: its `members` (a group formed by the queue), else itself alone."""
    return config.get("members") or [config]


def train_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: runs in a Ray worker and trains the trial it carries, or a group of trials in
    this one process (`harness.training.group`), reporting every epoch and each trial's end under the
    trial's key. A trial's own exception becomes its `failed` report (so Tune does not retry it) and the
    rest of the group goes on; only a dead worker reaches Tune as an error. (Tune stops a trial with
    SystemExit, which is not an Exception and passes through.)"""
    quiet_exit_on_sigterm()
    node = ray.get_runtime_context().get_node_id()
    scratch: dict[str, Path] = {}  # each trial's node-local copy, named when its disk is full

    def failed(key: str, error: Exception) -> None:
        # a full disk is said as such (the trial's own failure: a full disk is never retried as a lost worker)
        full = is_disk_full(error) and key in scratch
        reason = disk_full_message(scratch[key]) if full else exception_line(error)
        tune.report(failed_message(key, reason))

    steps = {}
    for member in group_members(config):
        cfg = TrialConfig.from_dict(member["trial"])
        try:
            storage = Storage.open(member["storage"])  # the store every node and the driver read
            scratch[cfg.key] = storage.trial(cfg.key).local_dir
            steps[cfg.key] = leased_steps(cfg, storage, member, node)
        except Exception as e:  # an unknown method, a store that cannot be opened: this trial alone fails
            failed(cfg.key, e)
    run_group(steps, lambda key, result: tune.report(final_message(key, result["metrics"])), failed)


def leased_steps(
    cfg: TrialConfig, storage: Storage, member: dict[str, Any], node: str
) -> Generator[None, None, dict[str, Any]]:
    """The trial's training steps (`trial_steps`) while it holds its lease in the store: another driver
    sharing the store waits instead of training it too, and the lease is checked between epochs (the trial
    stops if another driver took it over)."""
    holder = member.get("lease_holder") or default_holder()
    with leased(storage.trial(cfg.key), holder, say, home=member.get("lease_home")) as lease:

        def report(row: dict[str, Any]) -> None:
            lease.check()
            tune.report(epoch_message(cfg.key, row))

        return (
            yield from trial_steps(
                cfg,
                storage,
                load_methods().get(cfg.method),  # imported once per process
                backbone=member.get("backbone"),
                report=report,
                node=node,
            )
        )


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
