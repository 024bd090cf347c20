"""Every report plot from a tiny real run (two seeds of `ce` logged to MLflow), and the skip notes when a run
lacks what a plot needs. Layout properties are measured in tests/reports/test_plot_style.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.reports import plots as P
from harness.reports.report import ReportOutcome, build_report
from harness.reports.runs import RunArtifacts, finished, load_runs
from tests.reports.run_records import tiny_real_results

# the tiny suite runs one ratio (no accuracy-vs-ratio plot) and only ce (no ce-vs-cw feature correlation)
PLOTS = ("shot_accuracy", "per_class_accuracy", "weight_norm", "training_curves", "seed_spread")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportOutcome:
    results, suite = tiny_real_results(tmp_path_factory)
    return build_report(str(suite), [], None, results, plots=True)


def test_every_plot_is_written_as_png_and_pdf(report: ReportOutcome) -> None:
    from matplotlib.image import imread

    folder = report.out_dir / "plots"
    for name in PLOTS:
        png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
        assert png.is_file() and pdf.is_file(), (name, report.notes)
        height, width = imread(png).shape[:2]
        assert height > 200 and width > 400
        assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in report.plots) == sorted(f"{n}{s}" for n in PLOTS for s in (".png", ".pdf"))
    # both runs have result.json and analysis.npz; only the plots this suite cannot fill are explained
    assert report.notes == [
        "accuracy_vs_ratio: skipped, no dataset has runs at two or more imbalance ratios",
        "feature_correlation: skipped, it compares ce with cw and no dataset x ratio has a correlation matrix of both",
    ]
    assert not (folder / "accuracy_vs_ratio.png").exists() and not (folder / "feature_correlation.png").exists()


def test_plots_skip_runs_without_analysis_with_a_note(report: ReportOutcome, tmp_path: Path) -> None:
    results = report.out_dir.parent
    done = finished(load_runs(None, results, [report.out_dir.name]))
    arts = {run_id: RunArtifacts(result=None, analysis=None) for run_id in done.run_id}
    figures, notes = P.draw_plots(done, arts)
    assert list(figures) == ["shot_accuracy", "seed_spread"]  # the plots drawn from the runs frame alone
    text = "\n".join(notes)
    assert "weight_norm: 2 run(s) of ce, tau-norm, crt, lws without analysis.npz skipped" in text
    assert "feature_correlation: skipped" in text and "per_class_accuracy: skipped" in text


def test_a_method_keeps_its_colour_whatever_else_is_plotted() -> None:
    alone, together = P.method_colors(["ce"]), P.method_colors(["lws", "ce", "la"])
    assert alone["ce"] == together["ce"]
    assert len(set(together.values())) == 3
