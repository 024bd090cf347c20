"""Which trials `ltbench report SUITE` covers: the ones the suite's runs actually made, narrowed by `--set`.

`ltbench run` records each configuration it ran (`records.suite_configurations`). A report without `--set`
covers every recorded configuration, newest first, except one that would put a second configuration of the
same dataset x ratio x method x seed into the leaderboard (averaging a 2-epoch run with a 12-epoch one): that
one is left out and named, with the `--set` that reports it. A report with `--set` applies those assignments
on top of each recorded configuration and keeps the recorded trials that still match, so `--set methods=[ce]`
narrows a run made with `--set recipe.epochs=2` without repeating it, and the run made with exactly the
`--set` given comes first (repeating a run's `--set` reports that run). A results dir without a record (made
before ltbench kept one) reports the suite as configured now, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import LtbenchError
from harness.core.trial import TrialConfig, canonical_json
from harness.experiment.suite import build_suite
from harness.records.suite_configurations import (
    SuiteConfiguration,
    configurations_path,
    overrides_text,
    recorded_configurations,
)


@dataclass
class ReportedTrials:
    trials: list[TrialConfig]
    reported: list[str]  # one line per configuration reported
    left_out: list[str] = field(default_factory=list)  # configurations not reported, and how to report them


def _slot(trial: TrialConfig) -> tuple[Any, ...]:
    """Where a trial lands in a leaderboard: two trials in one slot would be averaged together."""
    return (trial.dataset, trial.imbalance_ratio, trial.method, canonical_json(trial.method_params), trial.seed)


def _without_code(trial: TrialConfig) -> str:
    """A trial's identity without its method's code digest: a method file edited since the run still matches."""
    identity = trial.identity()
    identity.pop("method_code")
    return canonical_json(identity)


def _narrowed(name: str, configuration: SuiteConfiguration, overrides: list[str]) -> list[TrialConfig]:
    wanted = {_without_code(t) for t in build_suite(name, configuration.overrides + overrides).trials}
    return [t for t in configuration.trials if _without_code(t) in wanted]


def trials_to_report(name: str, suite_name: str, overrides: list[str], results_dir: Path) -> ReportedTrials:
    """The trials a report of suite `name` (whose experiment is `suite_name`) covers; see the module doc."""
    recorded = recorded_configurations(results_dir, suite_name)
    if not recorded:
        trials = build_suite(name, overrides).trials
        where = configurations_path(results_dir, suite_name)
        sets = f" with {overrides_text(overrides)}" if overrides else ""
        return ReportedTrials(trials, [f"the suite as configured now{sets} (no record of its runs at {where})"])
    candidates = [(c, _narrowed(name, c, overrides) if overrides else c.trials) for c in reversed(recorded)]
    candidates = [(c, trials) for c, trials in candidates if trials]
    # the run made with exactly these --set comes first: repeating a run's --set always reports that run
    candidates.sort(key=lambda candidate: set(candidate[0].overrides) != set(overrides))
    if not candidates:
        listed = "; ".join(c.describe() for c in recorded)
        raise LtbenchError(
            f"no recorded run of suite {suite_name!r} matches {overrides_text(overrides)}; its runs were: {listed}. "
            "Drop or change --set (it narrows what was run; it cannot ask for runs that were not made)"
        )
    chosen: dict[str, TrialConfig] = {}
    slots: set[tuple[Any, ...]] = set()
    outcome = ReportedTrials([], [])
    for configuration, trials in candidates:
        if any(_slot(t) in slots for t in trials):
            how = (
                f"ltbench report {name} {overrides_text(configuration.overrides)}"
                if configuration.overrides
                else f"rerun ltbench run {name} (nothing is retrained; it becomes the newest)"
            )
            outcome.left_out.append(
                f"not reported: the run with {configuration.describe()}, another configuration of the same "
                f"trials; to report it: {how}"
            )
            continue
        slots.update(_slot(t) for t in trials)
        chosen.update((t.key, t) for t in trials)
        narrowed = f", narrowed by {overrides_text(overrides)} to {len(trials)}" if overrides else ""
        outcome.reported.append(f"the run with {configuration.describe()}{narrowed}")
    outcome.trials = list(chosen.values())
    return outcome
