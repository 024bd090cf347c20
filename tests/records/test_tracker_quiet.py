"""A run's console carries ltbench's lines only: MLflow's INFO lines (creating its tables) are not printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.records.tracker import Tracker
from harness.records.tracking_uri import default_tracking_uri


def test_a_new_store_prints_no_mlflow_info_lines(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    Tracker(default_tracking_uri(tmp_path), "quick", tmp_path)
    out, err = capfd.readouterr()
    assert "INFO mlflow" not in out + err and "Creating initial MLflow database tables" not in out + err
    assert (tmp_path / "mlflow.db").is_file()
