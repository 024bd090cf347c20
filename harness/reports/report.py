"""The report commands end to end: MLflow -> runs frame -> leaderboard, plots, paper tables, claims.

`ltbench report SUITE` writes results/<suite>/leaderboard.{csv,md,tex}, trials.csv and plots/ (PNG + PDF;
`--no-plots` skips them). `ltbench tables [SUITE...]` writes results/tables/. `ltbench claims [SUITE...]`
prints the claims check and writes it to results/claims.md. The last two read every suite's runs unless
suites are named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.experiment.suite import build_suite
from harness.plugins.loading import load_methods
from harness.reports.claims import FAILS, ClaimResult, check_claims, render, render_markdown
from harness.reports.layouts import all_specs
from harness.reports.leaderboard import write_leaderboard
from harness.reports.naming import ordered_methods
from harness.reports.plots import write_plots
from harness.reports.published import PUBLISHED_DIR, load_published
from harness.reports.runs import load_runs, open_client, suite_experiment_name
from harness.reports.tables import RenderedTable, TablesOutcome, render_tables, write_tables


@dataclass
class ReportOutcome:
    leaderboard_md: str
    out_dir: Path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_report(
    name: str,
    overrides: list[str] | None,
    tracking_uri: str | None,
    results_dir: Path,
    plots: bool = True,
) -> ReportOutcome:
    """Leaderboard (and plots) of one suite as configured now, from its MLflow runs."""
    suite = build_suite(name, overrides)
    runs = load_runs(tracking_uri, results_dir, [suite.name], missing_ok=True)
    out_dir = results_dir / suite.name
    _, _, text = write_leaderboard(runs, suite.trials, out_dir, f"Leaderboard: {suite.name}")
    outcome = ReportOutcome(text, out_dir)
    if plots:
        keys = {t.key for t in suite.trials}
        mine = runs[runs.trial_key.isin(keys)] if len(runs) else runs
        plotted = write_plots(mine, open_client(tracking_uri, results_dir), out_dir / "plots")
        outcome.plots, outcome.notes = plotted.paths, plotted.notes
    return outcome


def _experiments(suites: list[str] | None) -> list[str] | None:
    return [suite_experiment_name(s) for s in suites] if suites else None


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
    results = check_claims(load_runs(tracking_uri, results_dir, experiments))
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "claims.md"
    path.write_text(render_markdown(results, experiments))
    return ClaimsOutcome(render(results), path, results)
