"""A results dir moved elsewhere: MLflow's absolute artifact URIs are pointed at its own `mlartifacts/`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.records.relocation import artifacts_uri, relocate_artifacts
from harness.records.tracking_uri import default_tracking_uri


def _store_with_one_artifact(results: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=default_tracking_uri(results))
    experiment = client.create_experiment("tiny", artifact_location=artifacts_uri(results))
    run_id = client.create_run(experiment).info.run_id
    client.log_dict(run_id, {"answer": 42}, "result.json")
    return run_id


def test_a_moved_results_dir_reads_its_own_artifacts(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    original = tmp_path / "a" / "results"
    original.mkdir(parents=True)
    run_id = _store_with_one_artifact(original)
    moved = tmp_path / "b c" / "results"  # a space: URIs are percent-encoded
    moved.parent.mkdir()
    shutil.move(original, moved)

    assert relocate_artifacts(moved) == [artifacts_uri(original)]
    client = MlflowClient(tracking_uri=default_tracking_uri(moved))
    assert client.get_run(run_id).info.artifact_uri.startswith(artifacts_uri(moved) + "/")
    path = client.download_artifacts(run_id, "result.json", str(tmp_path / "out"))
    assert json.loads(Path(path).read_text()) == {"answer": 42}
    assert relocate_artifacts(moved) == []  # in place now: nothing to do


def test_a_store_in_place_is_left_alone(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _store_with_one_artifact(results)
    before = (results / "mlflow.db").read_bytes()
    assert relocate_artifacts(results) == []
    assert (results / "mlflow.db").read_bytes() == before
    assert relocate_artifacts(tmp_path / "nothing-here") == []
