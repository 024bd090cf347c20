"""Run trials with Ray Tune: a local Ray instance by default, or an existing cluster (`address`).

One Tune run covers a whole `ltbench run`: end-to-end trials, shared stage-1 backbones and the decoupled
trials on them. Its search algorithm is a `Searcher` over a `TrialQueue` (`harness.trial_queue`), which hands
Tune a decoupled trial as soon as its own backbone has finished, the trial with the longest chain of estimated
work first (`harness.costs`), whenever it fits in the cluster beside the trials already handed out (so Tune
starts trials in parallel without ever fixing their order early). Each trial is one Tune trial of a function
trainable with the suite's per-trial resources (`cpu`, and `gpu`, fractions allowed to pack small trials on
one GPU). Trials report each epoch through `tune.report`; a driver callback forwards those reports to the
`Tracker`, so MLflow has a single writer whatever the concurrency. A trial's files live in its `Storage`
(`harness.storage`: the local results dir, or an object store that every node and the driver read), never only
on a worker's disk.
Each epoch's row travels nested under `row`, apart from the keys Ray adds to every report (`pid`, `done`,
`time_total_s`, ...), so only the trainer's own numbers become MLflow metrics. Every MLflow write goes
through `Tracker.guard`, so a tracking server that stops answering never stops the trials.

A trial's own exception (a diverged loss, a method's bug) is caught in the trainable and reported as a failed
final result: retrying it would fail again. Tune's `FailureConfig(max_failures=N)` then retries only what is
not the trial's fault, a worker process or node that died; the retry resumes from the trial's checkpoint.

The local Ray instance binds to 127.0.0.1: Ray has no authentication, and its ports must not be reachable
from the network.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import DEFAULT_MAX_RETRIES, TrialConfig
from harness.costs import cost_model
from harness.errors import LtbenchError
from harness.plan import trial_epochs
from harness.progress import SuiteProgress
from harness.storage import Storage
from harness.tracking import Tracker
from harness.training.trainer import RESULT_FILE
from harness.trial_queue import TrialQueue, plan_jobs

TUNE_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, on any OS
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # how many trials Tune may start at once (it reads it per run)
MAX_PENDING_TRIALS = 1000  # the searcher hands out only what fits, so this is not what limits them
CLUSTER_REFRESH_S = 5.0  # how often the searcher reads the cluster's resources again


@dataclass
class TrialOutcome:
    key: str
    label: str
    status: str  # FINISHED | FAILED
    reason: str = ""


class Interrupted(KeyboardInterrupt):
    """The user stopped the run (SIGINT): finished trials are kept, unfinished ones resume on a rerun."""


@dataclass
class ScheduleReport:
    outcomes: list[TrialOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.status != "FINISHED"]


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


def _train_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: runs in a Ray worker, reports epochs and the final result. The trial's own
    exception becomes a `failed` result (so Tune does not retry it); only a dead worker reaches Tune as an
    error. (Tune stops a trial with SystemExit, which is not an Exception and passes through.)"""
    import ray
    from ray import tune

    from harness.training.trainer import run_trial

    quiet_exit_on_sigterm()
    cfg = TrialConfig.from_dict(config["trial"])
    try:
        result = run_trial(
            cfg,
            Storage.open(config["storage"]),  # the store every node and the driver read
            report=lambda row: tune.report({"kind": "epoch", "row": row}),
            node=ray.get_runtime_context().get_node_id(),
        )
    except Exception as e:
        tune.report({"kind": "failed", "reason": exception_line(e)})
        return
    tune.report({"kind": "final", **result["metrics"]})


def queue_searcher(queue: TrialQueue, configs: dict[str, dict[str, Any]], demand: Callable[[str], dict[str, float]]):
    """A Tune `Searcher` over `queue`: Tune asks it for trials, and gets the config (`configs[key]`) of the
    highest-priority trial that may start, None while none may, FINISHED once every trial has been handed out
    or has failed. The driver's callback tells the queue when a trial ends.

    A trial is handed out only when the cluster has room for it beside the trials already handed out (their
    `demand`, Ray resources, against the cluster's totals, read again every few seconds so that nodes that
    join or leave count). So Tune may hold many pending trials and start them in parallel, yet never holds a
    low-priority trial ahead of a trial that becomes ready later: the order stays the queue's.
    """
    import ray
    from ray.tune.search import Searcher

    class QueueSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__()
            self.totals: dict[str, float] = {}  # the cluster's resources, as last read
            self.read_at = -float("inf")

        def _fits(self, key: str) -> bool:
            if not queue.running:
                return True  # a trial larger than the cluster waits in Tune, as it would alone
            if time.monotonic() - self.read_at > CLUSTER_REFRESH_S:
                self.totals, self.read_at = ray.cluster_resources(), time.monotonic()
            used: dict[str, float] = {}
            for running in queue.running:
                for name, amount in demand(running).items():
                    used[name] = used.get(name, 0.0) + amount
            return all(used.get(n, 0.0) + a <= self.totals.get(n, 0.0) + 1e-9 for n, a in demand(key).items())

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            ready = queue.ready()
            if not ready:
                return Searcher.FINISHED if queue.exhausted else None
            if not self._fits(ready[0]):
                return None
            return configs[queue.pop(ready[0])]

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            """Nothing to learn here: the callback settles the queue, with the reason a failure needs."""

    return QueueSearcher()


def _resources(config: dict[str, Any]):
    from ray.tune import PlacementGroupFactory

    res = config["trial"]["resources"]
    bundle = {"CPU": float(res.get("cpu", 1))}
    if res.get("gpu", 0):
        bundle["GPU"] = float(res["gpu"])
    return PlacementGroupFactory([bundle])


def _error_reason(trial) -> str:
    """The last line of the trial's error (the exception message), for MLflow and the summary."""
    text = ""
    if getattr(trial, "error_file", None) and os.path.isfile(trial.error_file):
        with open(trial.error_file) as f:
            text = f.read()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed without an error message"


def _progress_line(cfg: TrialConfig, row: dict[str, Any], planned_epochs: int) -> str:
    """One epoch of one trial; `planned_epochs` is what this trial trains (a stage-two trial's own epochs,
    not its backbone recipe's)."""
    epoch = int(row["epoch"])
    of = f"/{planned_epochs}" if epoch <= planned_epochs else ""
    line = f"  {cfg.label()} epoch {epoch}{of} loss {row['train_loss']:.4f}"
    if "val_mean_class_acc" in row:
        line += f" | val mean-class {100 * row['val_mean_class_acc']:.2f}"
    if "test_top1" in row:
        line += f" test {100 * row['test_top1']:.2f}"
    return line


def _finished_line(progress: SuiteProgress, cfg: TrialConfig, result: dict[str, Any] | None) -> str:
    line = f"[{progress.finished}/{progress.total}] {cfg.label()} finished"
    if result and "test_top1" in result:
        line += f": test top-1 {100 * result['test_top1']:.2f}"
        if "test_mean_class_acc" in result:
            line += f", mean-class {100 * result['test_mean_class_acc']:.2f}"
    return line + f" ({cfg.key})"


def _make_callback(
    tracker: Tracker,
    storage: Storage,
    report: ScheduleReport,
    progress: SuiteProgress,
    verbose: int,
    queue: TrialQueue,
    trials: dict[str, TrialConfig],
):
    from ray.tune import Callback

    def fail_unstarted(orphans: list[tuple[str, str]]) -> None:
        """Trials whose backbone failed: FAILED at once with its reason, never started."""
        for key, reason in orphans:
            cfg = trials[key]
            tracker.guard(lambda c=cfg, r=reason: tracker.fail(tracker.open_run(c), r))
            report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FAILED", reason))
            progress.trial_failed(cfg.key, cfg.label(), reason)

    class TrackingCallback(Callback):
        """Driver-side bridge from Tune events to MLflow runs and to the trial queue."""

        def __init__(self) -> None:
            self.run_ids: dict[str, str] = {}  # Tune trial id -> MLflow run, until the trial ends

        def _cfg(self, trial) -> TrialConfig:
            return TrialConfig.from_dict(trial.config["trial"])

        def _run_id(self, trial) -> str | None:
            """The trial's run, opened on first need (None while the tracking server is away)."""
            if trial.trial_id not in self.run_ids:
                run_id = tracker.guard(tracker.open_run, self._cfg(trial))
                if run_id is None:
                    return None
                self.run_ids[trial.trial_id] = run_id
            return self.run_ids[trial.trial_id]

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self._run_id(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if result.get("kind") == "epoch":
                row = result["row"]
                cfg = self._cfg(trial)
                run_id = self._run_id(trial)
                if run_id is not None:
                    tracker.guard(tracker.log_epoch, run_id, row)
                progress.epoch(cfg.key, row["epoch"])
                if verbose:
                    progress.line(_progress_line(cfg, row, progress.planned(cfg.key)))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            result = trial.last_result or {}
            if result.get("kind") == "failed":  # the trial's own exception, caught in the trainable
                self._failed(trial, str(result.get("reason", "")))
                return
            cfg = self._cfg(trial)
            run_id = self._run_id(trial)
            if run_id is not None:  # else the run is made from the trial's files when the server is back
                tracker.guard(tracker.finish, run_id, storage.trial(cfg.key))
            self.run_ids.pop(trial.trial_id, None)
            report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FINISHED"))
            queue.finish(cfg.key)
            progress.trial_done(cfg.key)
            progress.line(_finished_line(progress, cfg, result))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            """The trial's worker died more often than the retries allow."""
            self._failed(trial, _error_reason(trial))

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            progress.line(
                f"  {self._cfg(trial).label()}: its worker was lost ({_error_reason(trial)}); retrying from its "
                f"checkpoint (attempt {trial.num_failures + 1})"
            )

        def _failed(self, trial, reason: str) -> None:
            cfg = self._cfg(trial)
            run_id = self._run_id(trial)
            if run_id is not None:
                tracker.guard(tracker.fail, run_id, reason)
            self.run_ids.pop(trial.trial_id, None)
            report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FAILED", reason))
            orphans = queue.fail(cfg.key, reason)
            progress.trial_failed(cfg.key, cfg.label(), reason)
            fail_unstarted(orphans)

    return TrackingCallback()


class _LostWorkerTraceback(logging.Filter):
    """Drops Tune's "Trial task failed" error with the traceback of a lost worker: the tracking callback
    says the same in one line (which trial, why, which attempt comes next)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trial task failed")


@contextmanager
def _tune_environment() -> Iterator[None]:
    """What Tune reads per run, set for the length of one run. Environment variables:
    - `RAY_AIR_NEW_OUTPUT=0`: Tune's newer output engine prints its "Configuration for experiment" box, a
      results path and a TensorBoard hint even at `verbose=0`; its original engine prints nothing at
      `verbose=0` (Ray forwards the variable to a remote driver too);
    - `TUNE_MAX_PENDING_TRIALS_PG`: with a custom searcher Tune holds one pending trial at a time, so on a
      cluster trials would start one after another (a second or more each); the queue's searcher hands out
      only what fits, so Tune may start all of those at once (a value the user set is kept).
    And Tune's log drops the traceback of a lost worker (`_LostWorkerTraceback`)."""
    wanted = {TUNE_OUTPUT_ENV: "0", PENDING_TRIALS_ENV: os.environ.get(PENDING_TRIALS_ENV, str(MAX_PENDING_TRIALS))}
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    tune_log, quiet = logging.getLogger("ray.tune.execution.tune_controller"), _LostWorkerTraceback()
    tune_log.addFilter(quiet)
    try:
        yield
    finally:
        tune_log.removeFilter(quiet)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the duration of a suite run: started (or joined) once, shut down at the end if we started it."""
    import ray

    started_here = connect_ray(address)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()
            if address is None:
                _loopback_only(False)  # a later session in this process may join a cluster


def connect_ray(address: str | None) -> bool:
    """Start a local Ray instance (address None) or join a cluster; True when we started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    check_address(address)
    if address is None:
        _loopback_only(True)
    try:
        ray.init(
            # "local" always starts a fresh instance: plain ray.init() would join whatever cluster was last
            # started with `ray start` on this machine, even a dead one
            address=address or "local",
            # a local instance listens on the loopback interface only (Ray has no authentication); a
            # cluster's own binding is set where it was started (see the README)
            **({"_node_ip_address": LOOPBACK} if address is None else {}),
            include_dashboard=False,
            configure_logging=True,
            logging_level="ERROR",
            log_to_driver=True,
            runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}},
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address!r}"
        raise LtbenchError(
            f"cannot start or reach {where}: {str(e).splitlines()[0]}; check --address "
            "(use 'auto' for a cluster started with 'ray start --head' on this machine)"
        ) from e
    return True


_saved_mode: dict[str, Any] = {}


def _loopback_only(on: bool) -> None:
    """Make the local instance listen on 127.0.0.1 only (`on`), or undo that. Ray replaces a loopback node
    address with the machine's external one (so `_node_ip_address="127.0.0.1"` alone does not do it),
    except in its single-machine mode, which this switches on: its flag is read from the environment when
    ray is imported (hence both the variable, for Ray's own processes, and the constant, for this one)."""
    from ray._private import ray_constants

    if on:
        _saved_mode.setdefault("env", os.environ.get(SINGLE_MACHINE_ENV))
        _saved_mode.setdefault("flag", ray_constants.ENABLE_RAY_CLUSTER)
        os.environ[SINGLE_MACHINE_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    elif _saved_mode:
        env, ray_constants.ENABLE_RAY_CLUSTER = _saved_mode.pop("env"), _saved_mode.pop("flag")
        if env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = env


def check_address(address: str | None) -> None:
    """Fail in seconds, not minutes, when a host:port Ray address does not answer."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise LtbenchError(f"Ray address {address!r} is not host:port, 'auto' or a ray:// URI")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        raise LtbenchError(
            f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); start it with 'ray start --head' "
            "or fix --address"
        ) from e


def check_resources(trials: list[TrialConfig]) -> None:
    import ray

    available = ray.cluster_resources()
    for resource, ray_name in (("gpu", "GPU"), ("cpu", "CPU")):
        need = max(t.resources.get(resource, 0) for t in trials)
        have = available.get(ray_name, 0)
        if need > have:
            raise LtbenchError(
                f"each trial asks for {need:g} {ray_name} but the Ray cluster has {have:g}; "
                f"lower it with --set resources.{resource}={have:g}"
                + (" (or run where a GPU is present)" if resource == "gpu" else "")
            )


def run_queue(
    trainable: Callable[[dict[str, Any]], None],
    resources: Callable[[dict[str, Any]], Any],
    queue: TrialQueue,
    configs: dict[str, dict[str, Any]],
    callbacks: list[Any],
    name: str,
    storage_path: str,
    max_retries: int,
    storage_filesystem: Any = None,
) -> None:
    """One Tune run of every job in `queue` (each trial's config in `configs`), started as the queue
    releases them; `callbacks` must tell the queue when a trial ends. The makespan bench runs its simulated
    trials through this same function."""
    from ray import tune

    demands: dict[str, dict[str, float]] = {}

    def demand(key: str) -> dict[str, float]:
        """The trial's Ray resources, worked out once (the searcher sums them for every trial handed out)."""
        if key not in demands:
            demands[key] = dict(resources(configs[key]).required_resources)
        return demands[key]

    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        # reuse_actors: a worker process runs trial after trial, so each trial skips process start-up
        # and imports (seconds each); run_trial sets threads, seeds and state for every trial anew
        tune_config=tune.TuneConfig(
            search_alg=queue_searcher(queue, configs, demand),
            num_samples=-1,  # as many as the searcher hands out, until it says FINISHED
            trial_dirname_creator=lambda t: t.trial_id,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=max_retries),
            verbose=0,  # progress comes from the tracking callback and the suite-wide display
        ),
    )
    try:
        with _tune_environment():
            tuner.fit()
    finally:
        # Tune installs its own SIGINT handler for the length of fit() and leaves it behind; restore
        # Python's so that a Ctrl+C after the run (while the leaderboard is written) is not swallowed.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)


def run_with_tune(
    trials: list[TrialConfig],
    tracker: Tracker,
    results_dir: Path,
    address: str | None,
    verbose: int = 1,
    progress: SuiteProgress | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    barrier: bool = False,
    storage: Storage | None = None,
) -> ScheduleReport:
    """Run `trials` (all not yet finished: end-to-end trials, backbones and decoupled trials, in plan order)
    in one Tune run and return each one's outcome.

    A decoupled trial starts once its backbone has finished (at once when the backbone is not among
    `trials`: its result is on disk); when the backbone fails, the trial is FAILED with its reason without
    starting. `barrier` holds every decoupled trial until all the others have ended (the old two phases).
    A trial whose worker or node dies is retried up to `max_retries` times, resuming from its checkpoint.
    Trials live in `storage` (default `<results>/trials`), `<trial key>/` each, shared by all suites, so a
    trial finished under one suite is reused (not retrained) by any other suite that contains it. Tune's own
    files go beside them in a remote store (`<store>/ray`), else to `<results>/ray`. `progress` is the
    suite-wide display (one is made for these trials when none is given).
    """
    report = ScheduleReport()
    if not trials:
        return report
    cost = cost_model(results_dir / "bench.json")
    if progress is None:
        progress = trials_progress(trials, cost, live=False)
        progress.start()
    queue = TrialQueue(plan_jobs(trials, cost), barrier=barrier)
    storage = storage or Storage.open(results_dir / "trials")
    if storage.is_local:
        storage_path, storage_filesystem = str((results_dir / "ray").resolve()), None
    else:
        storage_filesystem, storage_path = storage.tune_storage()
    configs = {t.key: {"trial": t.as_dict(), "storage": storage.uri} for t in trials}
    by_key = {t.key: t for t in trials}
    with ray_session(address):
        check_resources(trials)
        callback = _make_callback(tracker, storage, report, progress, verbose, queue, by_key)
        run_queue(
            _train_trial,
            _resources,
            queue,
            configs,
            [callback],
            trials[0].suite,
            storage_path,
            max_retries,
            storage_filesystem,
        )
    if len(report.outcomes) < len(trials):
        # Tune handles SIGINT by stopping every trial and returning: the trials still open were interrupted
        settle_interrupted(trials, tracker, storage, report)
        raise Interrupted(f"{len(trials) - len(report.outcomes)} trials did not finish")
    return report


def trials_progress(
    trials: list[TrialConfig], cost: Callable[[TrialConfig], float], live: bool | None = None
) -> SuiteProgress:
    """The display of a run of `trials`: each with the epochs it trains, weighed by its estimated cost."""
    return SuiteProgress({t.key: trial_epochs(t) for t in trials}, {t.key: cost(t) for t in trials}, live=live)


def settle_interrupted(trials: list[TrialConfig], tracker: Tracker, storage: Storage, report: ScheduleReport) -> None:
    """After a Ctrl+C: a trial whose result is in the store is FINISHED (its worker can write `result.json`
    before the driver's callback hears of it); a trial whose run is still open is KILLED, and resumes into
    that run on a rerun."""
    ended = {o.key for o in report.outcomes}
    unsettled = [cfg for cfg in trials if cfg.key not in ended]
    stored = storage.keys_with(RESULT_FILE) if unsettled else set()  # one listing, not a request per trial
    for cfg in unsettled:
        if cfg.key in stored:
            files = storage.trial(cfg.key)
            tracker.guard(lambda c=cfg, f=files: tracker.finish(tracker.open_run(c), f))
            report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FINISHED"))
            continue
        run = tracker.guard(tracker.find_run, cfg.key)
        if run is not None and run.info.status == "RUNNING":
            tracker.guard(tracker.interrupt, run.info.run_id)
