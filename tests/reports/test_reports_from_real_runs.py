"""The report commands on a tiny real run: the runs frame read back from MLflow, `ltbench report`,
`ltbench tables` and `ltbench claims` through the CLI, and their numbers agreeing with each other."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.plugins.loading import load_methods
from harness.reports.runs import fetch_artifacts, load_runs, open_client
from tests.reports.run_records import FAILURE_REASON, tiny_real_results

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_real_results(tmp_path_factory)


def test_runs_frame_from_mlflow(real: tuple[Path, Path]) -> None:
    results, _ = real
    runs = load_runs(None, results, ["tiny"]).sort_values("seed")
    assert runs.seed.tolist() == [0, 1, 2] and runs.status.tolist() == ["FINISHED", "FINISHED", "FAILED"]
    assert runs.reason.tolist()[2] == FAILURE_REASON
    assert set(runs.method) == {"ce"} and set(runs.dataset) == {"fashion-mnist-lt"}
    assert set(runs.imbalance_ratio) == {4.0} and set(runs.model) == {"resnet-small-gray"}
    assert runs.config_key.nunique() == 1 and runs.trial_key.nunique() == 3  # seeds of one configuration
    done = runs[runs.status == "FINISHED"]
    assert done.test_top1.between(0, 1).all() and done.val_mean_class_acc.between(0, 1).all()
    assert (done.variants == "").all()
    run_id = done.run_id.iloc[0]
    result = fetch_artifacts(open_client(None, results), [run_id])[run_id].result
    assert len(result["per_class_acc"]["test"]) == 10 and len(result["history"]) == 2
    assert load_runs(None, results).suite.unique().tolist() == ["tiny"]


def test_report_command(real: tuple[Path, Path], capsys) -> None:
    results, suite = real
    assert main(["report", str(suite), "--results-dir", str(results), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "| fashion-mnist-lt | 4 | ce |" in out and "Every row: 2 of 3 seeds finished." in out
    assert "fashion-mnist-lt-r4-ce-s2" in out and f"FAILED: {FAILURE_REASON}" in out
    folder = results / "tiny"
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.tex", "trials.csv"):
        assert (folder / name).is_file()
    assert "\\toprule" in (folder / "leaderboard.tex").read_text()
    trials = pd.read_csv(folder / "trials.csv")
    assert trials.status.tolist() == ["FINISHED", "FINISHED", "FAILED"]


def test_tables_agree_with_the_leaderboard(real: tuple[Path, Path], capsys) -> None:
    results, suite = real
    assert main(["report", str(suite), "--results-dir", str(results), "--no-plots"]) == 0
    assert main(["tables", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    # a row per registered method x 5 columns
    cells = 5 * len(load_methods().names())
    assert f"fashion_mnist_lt_grid: 4 of {cells} cells with ltbench runs, 0 with a published number" in out
    board = pd.read_csv(results / "tiny" / "leaderboard.csv", comment="#").iloc[0]
    grid = pd.read_csv(results / "tables" / "fashion_mnist_lt_grid.csv", comment="#").set_index(["row", "column"])
    cell = grid.loc[("ce", "r=4 All")]
    assert cell.n == 2 and cell.ltbench_mean == pytest.approx(board.All_mean, abs=1e-4)
    assert cell.ltbench_std == pytest.approx(board.All_std, abs=1e-4)
    assert grid.loc[("la", "r=4 All")].status == "missing"
    made = "Runs made with: fashion-mnist-lt: recipe quick with batch_size=32, epochs=2, eval_every=1, epochs 2,"
    assert made in (results / "tables" / "fashion_mnist_lt_grid.md").read_text()
    assert (results / "tables" / "fashion_mnist_lt_grid.csv").read_text().startswith(f"# {made}")
    menon = (results / "tables" / "menon2021_table3.md").read_text()
    assert "| ERM | 27.16 (unverified) | missing | — |" in menon


def test_claims_command_on_a_ce_only_run(real: tuple[Path, Path], capsys) -> None:
    results, _ = real
    assert main(["claims", "tiny", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "[inconclusive] LA loss (la) beats ERM (ce)" in out
    assert "no context where both la and ce finished runs" in out
