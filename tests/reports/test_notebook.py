"""notebooks/explore_results.ipynb runs top to bottom against a tiny real run, shows what the CLI does not
(class names, the bucket heat map, the spread over seeds) and writes nothing into the results folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.reports.run_records import tiny_real_results

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "explore_results.ipynb"
pytestmark = pytest.mark.integration


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes (the MLflow database only by name: SQLite may
    touch its header on a read)."""
    return {
        str(p.relative_to(folder)): "" if p.name == "mlflow.db" else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_notebook_executes_and_writes_nothing(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, suite = tiny_real_results(tmp_path_factory)
    before = snapshot(results)
    # the kernel inherits this process's environment
    monkeypatch.setenv("LTBENCH_RESULTS", str(results))
    monkeypatch.setenv("LTBENCH_SUITE", str(suite))
    monkeypatch.delenv("LTBENCH_TRACKING_URI", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    assert snapshot(results) == before

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        str(o.get("text", ""))
        + str(o.get("data", {}).get("text/markdown", ""))
        + str(o.get("data", {}).get("text/html", ""))
        for o in outputs
    )
    assert "3 runs in 1 suite(s)" in text
    assert "| fashion-mnist-lt | 4 | ce |" in text  # the leaderboard
    assert "T-shirt/top" in text and "Ankle boot" in text  # per-class accuracy by class name
    assert "# Menon et al. 2021, Table 3" in text and "# Fashion-MNIST-LT grid" in text  # the tables
    assert "Rule: within each context" in text  # the claims
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # seed spread, bucket heat map and the report's five plots (one ratio: no accuracy-vs-ratio plot)
    assert len(images) == 7
    assert "note: accuracy_vs_ratio: skipped" in text
