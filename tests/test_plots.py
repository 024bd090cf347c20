"""Every report plot from a tiny real run (two seeds of `ce` through Ray Tune and MLflow), and the skip
notes when a run lacks what a plot needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.reports import plots as P
from harness.reports.report import ReportOutcome, build_report
from harness.reports.runs import finished, load_runs
from tests.test_reports_support import tiny_real_results

PLOTS = ("accuracy_vs_ratio", "shot_accuracy", "per_class_accuracy", "weight_norm", "feature_correlation",
         "training_curves")  # fmt: skip


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
    assert report.notes == []  # both runs have result.json and analysis.npz


def test_plots_skip_runs_without_analysis_with_a_note(report: ReportOutcome, tmp_path: Path) -> None:
    results = report.out_dir.parent
    done = finished(load_runs(None, results, [report.out_dir.name]))
    arts = {run_id: P.RunArtifacts(result=None, analysis=None) for run_id in done.run_id}
    outcome = P.PlotOutcome()
    colors = P.method_colors(list(done.method))
    P.weight_norm(done, arts, colors, tmp_path, outcome)
    P.feature_correlation(done, arts, tmp_path, outcome)
    P.per_class_accuracy(done, arts, colors, tmp_path, outcome)
    assert outcome.paths == [] and list(tmp_path.iterdir()) == []
    text = "\n".join(outcome.notes)
    assert "weight_norm: 2 run(s) of ce, tau-norm, crt, lws without analysis.npz skipped" in text
    assert "feature_correlation: skipped" in text and "per_class_accuracy: skipped" in text


def test_a_method_keeps_its_colour_whatever_else_is_plotted() -> None:
    alone, together = P.method_colors(["ce"]), P.method_colors(["lws", "ce", "la"])
    assert alone["ce"] == together["ce"]
    assert len(set(together.values())) == 3
