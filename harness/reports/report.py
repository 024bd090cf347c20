"""The report commands end to end: MLflow -> runs frame -> leaderboard, plots, paper tables, claims.

`ltbench report SUITE` writes results/<suite>/leaderboard.{csv,md,tex}, trials.csv and plots/ (PNG + PDF;
`--no-plots` skips them) for the runs the suite made (`suite_trials`; `--set` narrows them).
`ltbench tables [SUITE...]` writes results/tables/. `ltbench claims [SUITE...]` prints the claims check and
writes it to results/claims.md. The last two read every suite's runs unless suites are named. A command that
finds no finished run says so, exits 2 and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.core.errors import LtbenchError
from harness.plugins.loading import load_methods
from harness.reports.claims import FAILS, ClaimResult, check_claims, render, render_markdown
from harness.reports.layouts import all_specs
from harness.reports.leaderboard import reported_runs, write_leaderboard
from harness.reports.naming import ordered_methods
from harness.reports.plots import write_plots
from harness.reports.published import PUBLISHED_DIR, load_published
from harness.reports.runs import finished, load_runs, open_client, suite_experiment_name
from harness.reports.suite_trials import trials_to_report
from harness.reports.tables import RenderedTable, TablesOutcome, render_tables, write_tables


@dataclass
class ReportOutcome:
    leaderboard_md: str
    out_dir: Path
    reported: list[str]  # which configuration(s) of the suite the leaderboard reports, one line each
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _store(tracking_uri: str | None, results_dir: Path) -> str:
    return tracking_uri or str(results_dir / "mlflow.db")


class NothingToReport(LtbenchError):
    """A report command found no finished run to report; it wrote nothing."""


def nothing_to_report(what: str, tracking_uri: str | None, results_dir: Path, command: str) -> NothingToReport:
    """The one-line error of a report command that found no finished run: nothing is written."""
    return NothingToReport(
        f"nothing to report: no finished run of {what} in {_store(tracking_uri, results_dir)}; nothing was "
        f"written. Run it first ({command}), or point --results-dir / --tracking-uri at the store that has its runs"
    )


def build_report(
    name: str,
    overrides: list[str] | None,
    tracking_uri: str | None,
    results_dir: Path,
    plots: bool = True,
) -> ReportOutcome:
    """Leaderboard (and plots) of the runs suite `name` made (`suite_trials`), narrowed by `overrides`.

    With no finished run to report, nothing is written (an existing leaderboard and its plots stay)."""
    experiment = suite_experiment_name(name)
    chosen = trials_to_report(name, experiment, list(overrides or []), results_dir)
    runs = load_runs(tracking_uri, results_dir, [experiment], missing_ok=True)
    if reported_runs(runs, chosen.trials).empty:
        command = " ".join(["ltbench run", name, *(f"--set {o}" for o in overrides or [])])
        raise nothing_to_report(f"suite {experiment!r}", tracking_uri, results_dir, command)
    out_dir = results_dir / experiment
    _, _, text = write_leaderboard(runs, chosen.trials, out_dir, f"Leaderboard: {experiment}")
    outcome = ReportOutcome(text, out_dir, chosen.reported, notes=list(chosen.left_out))
    if plots:
        mine = runs[runs.trial_key.isin({t.key for t in chosen.trials})]
        plotted = write_plots(mine, open_client(tracking_uri, results_dir), out_dir / "plots")
        outcome.plots = plotted.paths
        outcome.notes += plotted.notes
    return outcome


def _experiments(suites: list[str] | None) -> list[str] | None:
    return [suite_experiment_name(s) for s in suites] if suites else None


def _named(suites: list[str] | None) -> str:
    return "suite " + ", ".join(repr(s) for s in suites) if suites else "any suite"


def render_all_tables(runs: pd.DataFrame, published_dir: Path = PUBLISHED_DIR) -> list[RenderedTable]:
    """Every table of `ltbench tables` from `runs`, in memory (nothing written)."""
    published = load_published(published_dir)
    methods = ordered_methods(load_methods().names())  # every grid lists each registered method
    known = set(methods) | set(runs.method.dropna())
    return render_tables(all_specs(runs, published, methods), runs, published, known)


def build_tables(
    suites: list[str] | None,
    tracking_uri: str | None,
    results_dir: Path,
    published_dir: Path = PUBLISHED_DIR,
) -> TablesOutcome:
    """The paper tables from the runs of the named suites (all suites when None) into results/tables/."""
    runs = load_runs(tracking_uri, results_dir, _experiments(suites))
    if finished(runs).empty:
        raise nothing_to_report(_named(suites), tracking_uri, results_dir, "ltbench run SUITE")
    return write_tables(render_all_tables(runs, published_dir), results_dir / "tables")


@dataclass
class ClaimsOutcome:
    text: str  # the rule, then each claim's verdict with its numbers
    path: Path  # claims.md
    results: list[ClaimResult]

    @property
    def any_fails(self) -> bool:
        return any(r.verdict == FAILS for r in self.results)


def build_claims(suites: list[str] | None, tracking_uri: str | None, results_dir: Path) -> ClaimsOutcome:
    """The claims check on the runs of the named suites (all suites when None), also written to claims.md."""
    experiments = _experiments(suites)
    runs = load_runs(tracking_uri, results_dir, experiments)
    if finished(runs).empty:
        raise nothing_to_report(_named(suites), tracking_uri, results_dir, "ltbench run SUITE")
    results = check_claims(runs)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "claims.md"
    path.write_text(render_markdown(results, experiments))
    return ClaimsOutcome(render(results), path, results)
