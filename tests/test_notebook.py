"""notebooks/explore_results.ipynb runs top to bottom against a tiny real run and shows its results."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_reports_support import tiny_real_results

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "explore_results.ipynb"


def test_notebook_executes(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    results, suite = tiny_real_results(tmp_path_factory)
    # the kernel inherits this process's environment
    monkeypatch.setenv("LTBENCH_RESULTS", str(results))
    monkeypatch.setenv("LTBENCH_SUITE", str(suite))
    monkeypatch.delenv("LTBENCH_TRACKING_URI", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}
    )
    client.execute()  # raises CellExecutionError on any failing cell

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "3 runs in 1 suite(s)" in text
    assert "| fashion-mnist-lt | 4 | ce |" in text  # the leaderboard
    assert "# Menon et al. 2021, Table 3" in text and "# Fashion-MNIST-LT grid" in text  # the tables
    assert "Rule: within each context" in text  # the claims
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 6  # every plot
