"""One Tune run per `ltbench run`: the trial queue's searcher, the Tuner, and what happens on Ctrl+C.

One Tune run covers a whole `ltbench run`: end-to-end trials, shared stage-1 backbones and the decoupled
trials on them. Its search algorithm is a `QueueSearcher` over a `TrialQueue` (`harness.execution.trial_queue`),
which hands Tune a decoupled trial as soon as its own backbone has finished, the trial with the longest chain
of estimated work first (`harness.execution.costs`), whenever it fits in the cluster beside the trials already
handed out (so Tune starts trials in parallel without ever fixing their order early). Each trial is one Tune
trial of the worker's trainable (`harness.execution.worker`) with the suite's per-trial resources (`cpu`, and
`gpu`, fractions allowed to pack small trials on one GPU); `harness.execution.tune_events` turns Tune's events
into MLflow runs, queue updates and console lines. A trial's files live in its `Storage`
(`harness.records.storage`: the local results dir, or an object store that every node and the driver read),
never only on a worker's disk.

A trial's own exception (a diverged loss, a method's bug) is caught in the trainable and reported as a failed
final result: retrying it would fail again. Tune's `FailureConfig(max_failures=N)` then retries only what is
not the trial's fault, a worker process or node that died; the retry resumes from the trial's checkpoint.
The caller holds the Ray session (`harness.execution.ray_cluster`) and has checked the cluster's resources.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import Searcher

from harness.core.text import plural
from harness.core.trial import DEFAULT_MAX_RETRIES, TrialConfig
from harness.execution.costs import cost_model, image_equivalents
from harness.execution.outcomes import Interrupted, TrialOutcome, TrialOutcomes
from harness.execution.progress import SuiteProgress
from harness.execution.trial_queue import TrialQueue, plan_jobs
from harness.execution.tune_events import TuneEventBridge
from harness.execution.worker import Trainable, train_trial, trial_resources
from harness.experiment.plan import trial_epochs
from harness.records.artifacts import RESULT_FILE
from harness.records.disk_space import is_disk_full
from harness.records.lease import default_holder, driver_home
from harness.records.storage import Storage
from harness.records.tracker import Tracker

TUNE_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # how many trials Tune may start at once (it reads it per run)
TUNE_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"  # Tune's own CSV, JSON and TensorBoard files per trial

MAX_PENDING_TRIALS = 1000  # the searcher hands out only what fits, so this is not what limits them

CLUSTER_REFRESH_S = 5.0  # how often the searcher reads the cluster's resources again


class QueueSearcher(Searcher):
    """A Tune `Searcher` over `queue`: Tune asks it for trials, and gets the config (`configs[key]`) of the
    highest-priority trial that may start, None while none may, FINISHED once every trial has been handed out
    or has failed. The driver's event bridge tells the queue when a trial ends.

    A trial is handed out only when the cluster has room for it beside the trials already handed out (their
    `demand`, Ray resources, against the cluster's totals, read again every few seconds so that nodes that
    join or leave count). So Tune may hold many pending trials and start them in parallel, yet never holds a
    low-priority trial ahead of a trial that becomes ready later: the order stays the queue's.

    With `group_size` K > 1 a Tune trial carries up to K compatible trials (`TrialQueue.pop_group`), trained
    in one worker process: its config is the first trial's with `members`, and it asks for one trial's
    resources, held until the last of its trials has ended.
    """

    def __init__(
        self,
        queue: TrialQueue,
        configs: dict[str, dict[str, Any]],
        demand: Callable[[str], dict[str, float]],
        group_size: int = 1,
    ) -> None:
        super().__init__()
        self.queue, self.configs, self.demand, self.group_size = queue, configs, demand, group_size
        self.totals: dict[str, float] = {}  # the cluster's resources, as last read
        self.read_at = -float("inf")
        self.groups: dict[str, list[str]] = {}  # the first key of each Tune trial handed out -> all its keys

    def _fits(self, key: str) -> bool:
        if not self.queue.running:
            return True  # a trial larger than the cluster waits in Tune, as it would alone
        if time.monotonic() - self.read_at > CLUSTER_REFRESH_S:
            self.totals, self.read_at = ray.cluster_resources(), time.monotonic()
        self.groups = {lead: keys for lead, keys in self.groups.items() if self.queue.running.intersection(keys)}
        used: dict[str, float] = {}
        for lead in self.groups:
            for name, amount in self.demand(lead).items():
                used[name] = used.get(name, 0.0) + amount
        return all(used.get(n, 0.0) + a <= self.totals.get(n, 0.0) + 1e-9 for n, a in self.demand(key).items())

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        first = self.queue.first_ready()
        if first is None:
            return Searcher.FINISHED if self.queue.exhausted else None
        if not self._fits(first):
            return None
        keys = self.queue.pop_group(self.group_size)
        self.groups[keys[0]] = keys
        if len(keys) == 1:
            return self.configs[keys[0]]
        return {**self.configs[keys[0]], "members": [self.configs[k] for k in keys]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn here: the event bridge settles the queue, with the reason a failure needs."""


class LiveTrialsScheduler(FIFOScheduler):
    """Tune's FIFO scheduler without its scan of every trial of the run at each controller step: it keeps the
    trials that have not ended, in the order they were added, and picks the first pending one (then the
    first paused one), as FIFO does. The load bench found the scan at 9% of the driver's time 2,000 trials
    into a run, growing with every trial (docs/benchmarks.md). A trial Tune retries stays in the set; one that
    ends leaves it. The choice is only Tune's first candidate: Tune also starts every other pending trial
    that fits, so a trial missing here would still start."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[Trial, None] = {}  # an ordered set

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.live[trial] = None

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.live.pop(trial, None)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.live.pop(trial, None)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.live.pop(trial, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in self.live:
                if trial.status == status:
                    return trial
        return None


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
      only what fits, so Tune may start all of those at once (a value the user set is kept);
    - `TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`: Tune's driver would write each trial's every report again as
      CSV, JSON and TensorBoard files (five files, ~22 KB a trial, uploaded too where the store is remote),
      all of it already in MLflow; without them the load bench's driver spends ~20% less CPU a trial
      (docs/benchmarks.md). `=0` set by the user brings them back.
    And Tune's log drops the traceback of a lost worker (`_LostWorkerTraceback`)."""
    wanted = {
        TUNE_OUTPUT_ENV: "0",
        PENDING_TRIALS_ENV: os.environ.get(PENDING_TRIALS_ENV, str(MAX_PENDING_TRIALS)),
        TUNE_LOGGERS_ENV: os.environ.get(TUNE_LOGGERS_ENV, "1"),
    }
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


def run_queue(
    trainable: Trainable,
    resources: Callable[[dict[str, Any]], Any],
    queue: TrialQueue,
    configs: dict[str, dict[str, Any]],
    callbacks: list[Any],
    name: str,
    storage_path: str,
    max_retries: int,
    storage_filesystem: Any = None,
    group_size: int = 1,
) -> None:
    """One Tune run of every job in `queue` (each trial's config in `configs`), started as the queue
        releases them, up to `group_size` compatible trials per Tune trial; `callbacks` must tell the queue when a
    trial ends. The makespan bench runs its simulated
        trials through this same function."""
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
            search_alg=QueueSearcher(queue, configs, demand, group_size),
            scheduler=LiveTrialsScheduler(),
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
    backbone_of: dict[str, str],
    tracker: Tracker,
    storage: Storage,
    results_dir: Path,
    progress: SuiteProgress,
    verbose: int = 1,
    max_retries: int = DEFAULT_MAX_RETRIES,
    barrier: bool = False,
    group_size: int = 1,
    trainable: Trainable = train_trial,
) -> TrialOutcomes:
    """Run `trials` (all not yet finished: end-to-end trials, backbones and decoupled trials, in plan order)
    in one Tune run and return each one's outcome.

    `backbone_of` maps each decoupled trial's key to its backbone's (the plan's); the trial starts once that
    backbone has finished (at once when the backbone is not among `trials`: its result is in the store), and
    is FAILED with the backbone's reason, without starting, when the backbone fails. `barrier` holds every
    decoupled trial until all the others have ended (the old two phases). A trial whose worker or node dies
    is retried up to `max_retries` times, resuming from its checkpoint. Trials live in `storage`, `<trial
    key>/` each, shared by all suites, so a trial finished under one suite is reused (not retrained) by any
    other suite that contains it. Tune's own files go beside them in a remote store (`<store>/ray`), else to
    `<results>/ray`. `progress` is the suite-wide display. Up to `group_size` compatible trials train
    together in one worker process (`harness.training.group`). `trainable` is what each Ray worker runs
    (`harness.execution.worker.train_trial`; the load bench's simulated trials stand in for it).
    """
    report = TrialOutcomes()
    if not trials:
        return report
    queue = TrialQueue(plan_jobs(trials, cost_model(results_dir / "bench.json"), backbone_of), barrier=barrier)
    if storage.is_local:
        storage_path, storage_filesystem = str((results_dir / "ray").resolve()), None
    else:
        storage_filesystem, storage_path = storage.tune_storage()
    holder, home = default_holder(results_dir.resolve()), driver_home(results_dir)
    configs = {
        t.key: {
            "key": t.key,
            "trial": t.as_dict(),
            "storage": storage.uri,
            "backbone": backbone_of.get(t.key),
            "lease_holder": holder,  # named to another driver that finds the trial leased
            "lease_home": home,  # a lease of this results dir's is an attempt Ray gave up on: stale sooner
        }
        for t in trials
    }
    bridge = TuneEventBridge(tracker, storage, report, progress, verbose, queue, {t.key: t for t in trials})
    try:
        run_queue(
            trainable,
            trial_resources,
            queue,
            configs,
            [bridge],
            trials[0].suite,
            storage_path,
            max_retries,
            storage_filesystem,
            group_size,
        )
    except Exception as e:
        if is_disk_full(e):  # the run stops (run_suite says so in one line): its open runs end KILLED, resumable,
            with contextlib.suppress(Exception):  # where MLflow can still write (its store may be the full disk)
                settle_interrupted(trials, tracker, storage, report)
        raise
    if len(report.outcomes) < len(trials):
        # Tune handles SIGINT by stopping every trial and returning: the trials still open were interrupted
        settle_interrupted(trials, tracker, storage, report)
        raise Interrupted(f"{plural(len(trials) - len(report.outcomes), 'trial')} did not finish")
    return report


def trials_progress(trials: list[TrialConfig], live: bool | None = None) -> SuiteProgress:
    """The display of a run of `trials`: each with the epochs it trains, weighed by the work it computes
    (`image_equivalents`), which the pace measured on this machine turns into seconds.

    Not by `trial_seconds`: its fixed per-trial overhead is in seconds of the reference GPU and does not scale
    with the machine, so on a CPU it made a quick-suite stage-two trial weigh half a backbone where it costs a
    twentieth, and the ETA read about twice the real remaining time. Replayed on a real quick-suite run
    (tests/execution/test_progress.py), work alone holds the ETA within 25% of the real end from 20% done.
    """
    return SuiteProgress(
        {t.key: trial_epochs(t) for t in trials}, {t.key: image_equivalents(t) for t in trials}, live=live
    )


def settle_interrupted(trials: list[TrialConfig], tracker: Tracker, storage: Storage, report: TrialOutcomes) -> None:
    """After a Ctrl+C: a trial whose result is in the store is FINISHED (its worker can write `result.json`
    before the driver's callback hears of it); a trial whose run is still open is KILLED, and resumes into
    that run on a rerun."""
    ended = {o.key for o in report.outcomes}
    unsettled = [cfg for cfg in trials if cfg.key not in ended]
    stored = storage.keys_with(RESULT_FILE) if unsettled else set()  # one listing, not a request per trial
    for cfg in unsettled:
        if cfg.key in stored:
            files = storage.trial(cfg.key)
            tracker.guard(lambda c=cfg, f=files: tracker.record_result(tracker.open_run(c), f))
            report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FINISHED"))
            continue
        run = tracker.guard(tracker.find_run, cfg.key)
        if run is not None and run.info.status == "RUNNING":
            tracker.guard(tracker.interrupt, run.info.run_id)
