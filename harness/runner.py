"""`ltbench run`: suite -> trials (skipping finished ones) -> Ray Tune -> MLflow -> leaderboard."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import TrialConfig
from harness.data import DATASETS, DataOptions
from harness.reports.leaderboard import write_leaderboard
from harness.reports.runs import runs_frame
from harness.scheduling import run_with_tune
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
    started = time.perf_counter()
    suite = build_suite(name, overrides)
    tracker = open_tracker(suite, results_dir, tracking_uri)
    finished = tracker.finished_keys()
    todo = [t for t in suite.trials if t.key not in finished]
    check_data(todo)
    report = run_with_tune(todo, tracker, results_dir, address, verbose)
    runs = runs_frame(tracker)
    _, status, text = write_leaderboard(
        runs, suite.trials, results_dir / suite.name, f"Leaderboard: {suite.name}"
    )
    return RunSummary(
        suite=suite.name,
        total=len(suite.trials),
        skipped=len(suite.trials) - len(todo),
        ran=len(todo),
        failed=[(o.label, o.reason) for o in report.failed],
        missing=int((status.status != "FINISHED").sum()),
        leaderboard_md=text,
        seconds=time.perf_counter() - started,
    )


def report_suite(name: str, overrides: list[str] | None, tracking_uri: str | None, results_dir: Path) -> str:
    suite = build_suite(name, overrides)
    tracker = open_tracker(suite, results_dir, tracking_uri)
    _, _, text = write_leaderboard(
        runs_frame(tracker), suite.trials, results_dir / suite.name, f"Leaderboard: {suite.name}"
    )
    return text
