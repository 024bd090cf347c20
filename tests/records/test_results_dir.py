"""The run lock leaves no file behind a run refused after taking it (a failed resource check), whether or not
the results dir existed before; a run that wrote something keeps its lock file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.records.results_dir import LOCK_FILE, exclusive_run


@pytest.mark.parametrize("existed", [False, True])
def test_a_run_refused_inside_the_lock_leaves_the_results_dir_as_it_was(tmp_path: Path, existed: bool) -> None:
    results = tmp_path / "results"
    if existed:
        results.mkdir()
        (results / "mlflow.db").write_bytes(b"earlier runs")
    with pytest.raises(LtbenchError), exclusive_run(results):
        assert (results / LOCK_FILE).is_file()
        raise LtbenchError("each trial asks for 3 GPU but the Ray cluster has 0")
    assert results.exists() == existed
    if existed:
        assert sorted(p.name for p in results.iterdir()) == ["mlflow.db"]


def test_a_run_that_wrote_keeps_its_lock_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    with exclusive_run(results):
        (results / "mlflow.db").write_bytes(b"a run")
    assert (results / LOCK_FILE).is_file()
