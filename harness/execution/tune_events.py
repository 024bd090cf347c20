"""The driver's bridge from Tune's trial events to MLflow runs, the trial queue and the console.

Only the driver writes to MLflow (workers report through Ray), so the embedded SQLite store has one writer
whatever the concurrency. Each epoch's row travels nested under `row`, apart from the keys Ray adds to every
report (`pid`, `done`, `time_total_s`, ...), so only the trainer's own numbers become MLflow metrics. Every
MLflow write goes through `Tracker.guard`, so a tracking server that stops answering never stops the trials.
"""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

from harness.core.trial import TrialConfig
from harness.execution.outcomes import TrialOutcome, TrialOutcomes
from harness.execution.progress import SuiteProgress, epoch_line, finished_line
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

    `trials` maps each key to its config, so an event never rebuilds a `TrialConfig` from Tune's copy.
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
        self.run_ids: dict[str, str] = {}  # Tune trial id -> MLflow run, until the trial ends

    def _cfg(self, trial: Any) -> TrialConfig:
        return self.trials[trial.config["key"]]

    def _run_id(self, trial: Any) -> str | None:
        """The trial's run, opened on first need (None while the tracking server is away)."""
        if trial.trial_id not in self.run_ids:
            run_id = self.tracker.guard(self.tracker.open_run, self._cfg(trial))
            if run_id is None:
                return None
            self.run_ids[trial.trial_id] = run_id
        return self.run_ids[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("kind") != "epoch":
            return
        row, cfg = result["row"], self._cfg(trial)
        run_id = self._run_id(trial)
        if run_id is not None:
            self.tracker.guard(self.tracker.log_epoch, run_id, row)
        self.progress.epoch(cfg.key, row["epoch"])
        if self.verbose:
            self.progress.line(epoch_line(cfg, row, self.progress.planned(cfg.key)))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        if result.get("kind") == "failed":  # the trial's own exception, caught in the trainable
            self._failed(trial, str(result.get("reason", "")))
            return
        cfg = self._cfg(trial)
        run_id = self._run_id(trial)
        if run_id is not None:  # else the run is made from the trial's files when the server is back
            self.tracker.guard(self.tracker.record_result, run_id, self.storage.trial(cfg.key))
        self.run_ids.pop(trial.trial_id, None)
        self.report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FINISHED"))
        self.queue.mark_finished(cfg.key)
        self.progress.trial_done(cfg.key)
        self.progress.line(finished_line(self.progress, cfg, result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        """The trial's worker died more often than the retries allow."""
        self._failed(trial, _error_reason(trial))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.progress.line(
            f"  {self._cfg(trial).label()}: its worker was lost ({_error_reason(trial)}); retrying from its "
            f"checkpoint (attempt {trial.num_failures + 1})"
        )

    def _failed(self, trial: Any, reason: str) -> None:
        cfg = self._cfg(trial)
        run_id = self._run_id(trial)
        if run_id is not None:
            self.tracker.guard(self.tracker.fail, run_id, reason)
        self.run_ids.pop(trial.trial_id, None)
        self.report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FAILED", reason))
        orphans = self.queue.mark_failed(cfg.key, reason)
        self.progress.trial_failed(cfg.key, cfg.label(), reason)
        self._fail_unstarted(orphans)

    def _fail_unstarted(self, orphans: list[tuple[str, str]]) -> None:
        """Trials whose backbone failed: FAILED at once with its reason, never started."""
        for key, reason in orphans:
            cfg = self.trials[key]
            self.tracker.guard(lambda c=cfg, r=reason: self.tracker.fail(self.tracker.open_run(c), r))
            self.report.outcomes.append(TrialOutcome(cfg.key, cfg.label(), "FAILED", reason))
            self.progress.trial_failed(cfg.key, cfg.label(), reason)
