"""`ltbench report` after a run with `--set`, on real runs: it finds the runs the suite made without the
`--set` repeated, `--set` narrows them, it says which configuration it reports and how the runs were made,
and a results dir moved elsewhere still reports every plot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.reports.formatting import latex_escape
from harness.reports.plots import PLOT_NAMES
from tests.conftest import write_tiny_suite
from tests.fakes import write_fashion_mnist
from tests.reports.run_records import record_suite_run

pytestmark = pytest.mark.integration

RUN_SETS = ["recipe.epochs=1", "methods=[ce,la]"]


@pytest.fixture(scope="module")
def overridden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(results dir, suite file): the tiny suite (ce, 2 epochs, seeds 0 and 1) run with RUN_SETS."""
    base = tmp_path_factory.mktemp("overridden")
    data = base / "fashion"
    write_fashion_mnist(data, per_class=40, test_per_class=5)
    suite = write_tiny_suite(base / "tiny.yaml", data)
    results = base / "results"
    record_suite_run(results, suite, RUN_SETS)
    return results, suite


def test_a_plain_report_finds_the_runs_made_with_overrides(overridden, capsys) -> None:
    results, suite = overridden
    assert main(["report", str(suite), "--results-dir", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    # both methods of the 1-epoch run, every seed: nothing reported missing, no 2-epoch trial expected
    assert "| fashion-mnist-lt | 4 | ce |" in out and "| fashion-mnist-lt | 4 | la |" in out
    assert "| missing |" not in out and "Trials not finished" not in out and "Every row: 2 of 2 seeds finished." in out
    assert "reported: the run with --set recipe.epochs=1 --set methods=[ce,la] (4 trials" in out
    made = "recipe quick with batch_size=32, epochs=1, eval_every=1, epochs 1, model resnet-small-gray"
    assert made in out and "Overrides: --set recipe.epochs=1 --set methods=[ce,la]." in out
    board = results / "tiny"
    assert made in (board / "leaderboard.csv").read_text().splitlines()[0]
    assert latex_escape(made) in (board / "leaderboard.tex").read_text().split("\\caption{")[1].split("}")[0]


def test_set_narrows_the_recorded_runs(overridden, capsys) -> None:
    results, suite = overridden
    assert main(["report", str(suite), "--results-dir", str(results), "--no-plots", "--set", "methods=[la]"]) == 0
    out = capsys.readouterr().out
    assert "| fashion-mnist-lt | 4 | la |" in out and "| fashion-mnist-lt | 4 | ce |" not in out
    assert "narrowed by --set methods=[la] to 2" in out


def test_a_set_that_matches_no_run_writes_nothing(overridden, capsys) -> None:
    results, suite = overridden
    assert main(["report", str(suite), "--results-dir", str(results), "--no-plots"]) == 0
    before = (results / "tiny" / "leaderboard.md").read_text()
    capsys.readouterr()
    assert main(["report", str(suite), "--results-dir", str(results), "--set", "recipe.epochs=7"]) == 2
    err = capsys.readouterr().err
    assert "no recorded run of suite 'tiny' matches --set recipe.epochs=7" in err and "Traceback" not in err
    assert (results / "tiny" / "leaderboard.md").read_text() == before


def test_a_moved_results_dir_reports_every_plot(overridden, tmp_path: Path, capsys) -> None:
    results, suite = overridden
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(results, moved)
    hidden = results.with_name("results-away")
    os.rename(results, hidden)  # the original place is gone, as after `mv`
    try:
        assert main(["report", str(suite), "--results-dir", str(moved)]) == 0
        out = capsys.readouterr().out
    finally:
        os.rename(hidden, results)
    assert "without" not in out and "readable artifacts" not in out
    drawn = {p.stem for p in (moved / "tiny" / "plots").glob("*.png")}
    assert {"per_class_accuracy", "training_curves", "seed_spread", "shot_accuracy"} <= drawn <= set(PLOT_NAMES)
