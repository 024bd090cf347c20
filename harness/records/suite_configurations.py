"""What each `ltbench run` of a suite asked for, kept in the results dir, so reports find the runs it made.

A suite run with `--set recipe.epochs=2 --set methods=[ce]` makes other trials (other keys) than the suite as
written. `ltbench report quick` must report those runs without the user repeating every `--set`, so the driver
records, before it trains anything, each configuration it ran: its `--set` assignments and every trial it
planned (finished or not, so trials that never started are still reported as missing). The record lives in
`<results>/<suite>/configurations.json`, beside the leaderboard, and moves with the results dir.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import LtbenchError
from harness.core.files import atomic_write_bytes
from harness.core.trial import TrialConfig

CONFIGURATIONS_FILE = "configurations.json"
NO_OVERRIDES = "none"


def overrides_text(overrides: list[str]) -> str:
    """How a run's `--set` assignments are tagged on its MLflow runs and printed: '--set a=1 --set b=2', or
    'none'."""
    return " ".join(f"--set {o}" for o in overrides) if overrides else NO_OVERRIDES


@dataclass
class SuiteConfiguration:
    """One way a suite was run: its `--set` assignments, its planned trials, and when it last ran."""

    overrides: list[str]
    trials: list[TrialConfig]
    last_run: str  # UTC, YYYY-MM-DD HH:MM:SS

    def describe(self) -> str:
        sets = overrides_text(self.overrides) if self.overrides else "no --set"
        return f"{sets} ({len(self.trials)} trials, last run {self.last_run} UTC)"


def configurations_path(results_dir: Path, suite: str) -> Path:
    return results_dir / suite / CONFIGURATIONS_FILE


def recorded_configurations(results_dir: Path, suite: str) -> list[SuiteConfiguration]:
    """The configurations `ltbench run` recorded for `suite` in this results dir, oldest first; [] when none."""
    path = configurations_path(results_dir, suite)
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
        return [
            SuiteConfiguration(list(e["overrides"]), [TrialConfig.from_dict(t) for t in e["trials"]], e["last_run"])
            for e in entries
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise LtbenchError(
            f"{path} is not a record ltbench can read ({e}); remove it and report with the run's --set options"
        ) from None


def remember_configuration(results_dir: Path, suite: str, overrides: list[str], trials: list[TrialConfig]) -> None:
    """Record (or refresh) the configuration a run is about to train; the same `--set` list replaces its entry."""
    kept = [c for c in recorded_configurations(results_dir, suite) if c.overrides != list(overrides)]
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    kept.append(SuiteConfiguration(list(overrides), list(trials), now))
    entries = [
        {"overrides": c.overrides, "last_run": c.last_run, "trials": [t.as_dict() for t in c.trials]} for c in kept
    ]
    path = configurations_path(results_dir, suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(entries, indent=1, default=str) + "\n").encode())
