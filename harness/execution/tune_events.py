"""The driver's bridge from Tune's trial events to MLflow runs, the trial queue and the console.

Only the driver writes to MLflow (workers report through Ray), so the embedded SQLite store has one writer
whatever the concurrency. Each epoch's row travels as one JSON string (`harness.execution.trial_messages`),
apart from the keys Ray adds to every report (`pid`, `done`, `time_total_s`, ...), so only the trainer's own
numbers become MLflow metrics, and Tune keeps no running statistics of them. Every
MLflow write goes through `Tracker.guard`, so a tracking server that stops answering never stops the trials.
"""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

from harness.core.trial import TrialConfig
from harness.execution.outcomes import TrialOutcome, TrialOutcomes
from harness.execution.progress import SuiteProgress, epoch_line, finished_line
from harness.execution.trial_messages import read_message
from harness.execution.trial_queue import TrialQueue
from harness.records.storage import Storage
from harness.records.tracker import Tracker


def _error_reason(trial) -> str:
    """The last line of the trial's error (the exception message), for MLflow and the summary."""
    text = ""
    if getattr(trial, "error_file", None) and os.path.isfile(trial.error_file):
        with open(trial.error_file) as f:
            text = f.read()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed without an error message"


class TuneEventBridge(Callback):
    """Tune events -> MLflow runs, the trial queue, the progress display and the run's outcomes.

    `trials` maps each key to its config, so an event never rebuilds a `TrialConfig` from Tune's copy. A
    Tune trial carries one trial or a group (`members` in its config, `harness.execution.worker`); every
    report names its trial's `key`, and each trial is settled (finished or failed) once, when its own final
    report arrives, so one trial of a group ends while the others go on. When the Tune trial ends, any of
    its trials not settled yet fail with the reason.
    """

    def __init__(
        self,
        tracker: Tracker,
        storage: Storage,
        report: TrialOutcomes,
        progress: SuiteProgress,
        verbose: int,
        queue: TrialQueue,
        trials: dict[str, TrialConfig],
    ) -> None:
        self.tracker, self.storage, self.report, self.progress = tracker, storage, report, progress
        self.verbose, self.queue, self.trials = verbose, queue, trials
        self.run_ids: dict[str, str] = {}  # trial key -> MLflow run, until the trial ends
        self.settled: set[str] = set()

    def _keys(self, trial: Any) -> list[str]:
        """The keys of the trials that the Tune trial carries."""
        return [m["key"] for m in trial.config.get("members") or [trial.config]]

    def _run_id(self, key: str) -> str | None:
        """The trial's run, opened on first need (None while the tracking server is away)."""
        if key not in self.run_ids:
            run_id = self.tracker.guard(self.tracker.open_run, self.trials[key])
            if run_id is None:
                return None
            self.run_ids[key] = run_id
        return self.run_ids[key]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        for key in self._keys(trial):
            if key not in self.settled:
                self._run_id(key)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        message = read_message(result)
        if message is None or message.key in self.settled:  # a retried group reports its finished trials again
            return
        if message.kind == "epoch":
            self._epoch(message.key, message.payload)
        elif message.kind == "final":
            self._finished(message.key, message.payload)
        elif message.kind == "failed":  # the trial's own exception, caught in the trainable
            self._failed(message.key, str(message.payload))

    def _epoch(self, key: str, row: dict[str, Any]) -> None:
        cfg = self.trials[key]
        run_id = self._run_id(key)
        if run_id is not None:
            self.tracker.guard(self.tracker.log_epoch, run_id, row)
        self.progress.epoch(key, row["epoch"])
        if self.verbose:
            self.progress.line(epoch_line(cfg, row, self.progress.planned(key)))

    def _finished(self, key: str, result: dict[str, Any]) -> None:
        cfg = self.trials[key]
        run_id = self._run_id(key)
        if run_id is not None:  # else the run is made from the trial's files when the server is back
            self.tracker.guard(self.tracker.record_result, run_id, self.storage.trial(key))
        self.run_ids.pop(key, None)
        self.settled.add(key)
        self.report.outcomes.append(TrialOutcome(key, cfg.label(), "FINISHED"))
        self.queue.mark_finished(key)
        self.progress.trial_done(key)
        self.progress.line(finished_line(self.progress, cfg, result))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        for key in self._keys(trial):
            if key not in self.settled:
                self._failed(key, "its worker ended without reporting the trial's result")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        """The trial's worker died more often than the retries allow."""
        for key in self._keys(trial):
            if key not in self.settled:
                self._failed(key, _error_reason(trial))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        labels = ", ".join(self.trials[k].label() for k in self._keys(trial) if k not in self.settled)
        self.progress.line(
            f"  {labels}: its worker was lost ({_error_reason(trial)}); retrying from its "
            f"checkpoint (attempt {trial.num_failures + 1})"
        )

    def _failed(self, key: str, reason: str) -> None:
        cfg = self.trials[key]
        run_id = self._run_id(key)
        if run_id is not None:
            self.tracker.guard(self.tracker.fail, run_id, reason)
        self.run_ids.pop(key, None)
        self.settled.add(key)
        self.report.outcomes.append(TrialOutcome(key, cfg.label(), "FAILED", reason))
        orphans = self.queue.mark_failed(key, reason)
        self.progress.trial_failed(key, cfg.label(), reason)
        self._fail_unstarted(orphans)

    def _fail_unstarted(self, orphans: list[tuple[str, str]]) -> None:
        """Trials whose backbone failed: FAILED at once with its reason, never started."""
        for key, reason in orphans:
            cfg = self.trials[key]
            self.settled.add(key)
            self.tracker.guard(lambda c=cfg, r=reason: self.tracker.fail(self.tracker.open_run(c), r))
            self.report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FAILED", reason))
            self.progress.trial_failed(cfg.key, cfg.label(), reason)
