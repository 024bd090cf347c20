"""`ltbench run`: suite -> trials (skipping finished ones) -> Ray Tune -> MLflow -> leaderboard."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.artifacts import RESULT_FILE
from harness.config import TrialConfig
from harness.data import DATASETS, DataOptions
from harness.plan import epoch_budget, make_plan, stage1_config
from harness.reports.leaderboard import write_leaderboard
from harness.reports.runs import runs_frame
from harness.scheduling import Interrupted, ScheduleReport, ray_session, run_with_tune
from harness.suite import Suite, build_suite
from harness.tracking import Tracker, default_tracking_uri


@dataclass
class RunSummary:
    suite: str
    total: int
    skipped: int
    ran: int
    failed: list[tuple[str, str]]
    missing: int
    leaderboard_md: str
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed and self.missing == 0


def check_data(trials: list[TrialConfig]) -> None:
    """Fail before any trial starts when a dataset's files are missing (on a cluster, the driver's view)."""
    seen = set()
    for trial in trials:
        options = DataOptions(**trial.data)
        if (trial.dataset, options) not in seen:
            seen.add((trial.dataset, options))
            DATASETS.get(trial.dataset).check_available(options)


def open_tracker(suite: Suite, results_dir: Path, tracking_uri: str | None) -> Tracker:
    results_dir.mkdir(parents=True, exist_ok=True)
    return Tracker(tracking_uri or default_tracking_uri(results_dir), suite.name, results_dir)


def run_suite(
    name: str,
    overrides: list[str] | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    results_dir: Path = Path("results"),
    verbose: int = 1,
) -> RunSummary:
    """Run every unfinished trial of the suite: shared backbones and end-to-end trials first, then the
    decoupled trials on their frozen backbones; then rebuild the leaderboard."""
    started = time.perf_counter()
    suite = build_suite(name, overrides)
    check_data(suite.trials)  # before anything is written: a bad input leaves no trace
    tracker = open_tracker(suite, results_dir, tracking_uri)
    finished = tracker.finished_keys()
    trials_root = results_dir / "trials"
    plan = make_plan(suite.trials)
    # a backbone counts as done only if its files are here: stage two loads them
    phase1 = [t for t in plan.phase1 if t.key not in finished or not (trials_root / t.key / RESULT_FILE).is_file()]
    phase2 = [t for t in plan.phase2 if t.key not in finished]

    failures: list[tuple[str, str]] = []
    try:
        with ray_session(address):
            first, second = _run_phases(phase1, phase2, tracker, results_dir, address, verbose, failures)
    except Interrupted:
        write_leaderboard(runs_frame(tracker), suite.trials, results_dir / suite.name, f"Leaderboard: {suite.name}")
        raise
    failures = [(o.label, o.reason) for o in first.failed + second.failed] + failures

    runs = runs_frame(tracker)
    _, status, text = write_leaderboard(runs, suite.trials, results_dir / suite.name, f"Leaderboard: {suite.name}")
    ran = {t.key for t in phase1 + phase2}
    return RunSummary(
        suite=suite.name,
        total=len(suite.trials),
        skipped=sum(t.key not in ran for t in suite.trials),
        ran=len(ran),
        failed=failures,
        missing=int((status.status != "FINISHED").sum()),
        leaderboard_md=text,
        seconds=time.perf_counter() - started,
    )


def _run_phases(
    phase1: list[TrialConfig],
    phase2: list[TrialConfig],
    tracker: Tracker,
    results_dir: Path,
    address: str | None,
    verbose: int,
    failures: list[tuple[str, str]],
) -> tuple[ScheduleReport, ScheduleReport]:
    """Phase 1 (end-to-end trials and shared backbones), then phase 2 (decoupled trials whose backbone
    finished; those whose backbone failed are marked FAILED with that reason)."""
    first = run_with_tune(phase1, tracker, results_dir, address, verbose)
    broken = {o.key: o.reason for o in first.failed}
    runnable = []
    for cfg in phase2:
        backbone = stage1_config(cfg)
        assert backbone is not None
        if backbone.key in broken:
            reason = f"its stage-1 backbone {backbone.label()} failed: {broken[backbone.key]}"
            tracker.fail(tracker.open_run(cfg), reason)
            failures.append((cfg.label(), reason))
        else:
            runnable.append(cfg)
    second = run_with_tune(runnable, tracker, results_dir, address, verbose)
    return first, second


def dry_run(name: str, overrides: list[str] | None = None) -> str:
    """The plan of a suite: shared stages, the trials that use each, and the epochs that sharing saves."""
    suite = build_suite(name, overrides)
    budget = epoch_budget(suite.trials)
    return (
        f"suite {suite.name}: {len(suite.trials)} trials\n{make_plan(suite.trials).describe()}\n"
        f"backbone epochs: {budget.shared_epochs} with stage sharing, {budget.retrain_epochs} if every "
        f"decoupled method retrained its backbone ({budget.saving:.2f}x); plus {budget.stage2_epochs} "
        "head-only stage-two epochs either way"
    )
