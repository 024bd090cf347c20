"""`ltbench run --group-size K` on real Ray: one worker process trains a group, each trial keeps its MLflow
run, its per-epoch metrics and its result, and a trial that produces NaN fails alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.experiment.suite import build_suite
from harness.records.artifacts import RESULT_FILE
from harness.records.mlflow_names import epoch_metric
from harness.records.storage import Storage
from harness.records.tracking_uri import default_tracking_uri
from tests.conftest import write_tiny_suite
from tests.execution.test_sweeps import FAULTY_PLUGIN, ltbench, runs_by_key
from tests.plugin_packages import install_plugin
from tests.trial_runs import train

pytestmark = pytest.mark.integration  # Ray Tune and MLflow: `make test-unit` leaves it out


def test_a_group_of_three_trains_in_one_worker_and_its_nan_trial_fails_alone(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    site = tmp_path / "site"
    install_plugin(site, "faulty-methods", "faulty_methods", FAULTY_PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(site)}
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["ce", "la", "nanloss"], seeds=[0])
    results = tmp_path / "r"
    done = ltbench("run", str(suite_file), "--results-dir", str(results), "--quiet", "--group-size", "3", env=env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 trials, 0 already finished, 3 run, 1 failed" in done.stdout
    assert "FAILED fashion-mnist-lt-r4-nanloss-s0: harness.training.trainer.TrialDiverged" in done.stdout
    # one Tune trial (one worker process) carried all three
    assert len([d for d in (results / "ray" / "tiny").iterdir() if d.is_dir()]) == 1

    runs = runs_by_key(results, "tiny")
    client = MlflowClient(default_tracking_uri(results))
    store = Storage.open(results / "trials")
    statuses = {found[0].data.params["method"]: [r.info.status for r in found] for found in runs.values()}
    assert statuses == {"ce": ["FINISHED"], "la": ["FINISHED"], "nanloss": ["FAILED"]}
    # the same trials without the plugin (not importable in this process): the keys do not depend on the suite
    builtin = write_tiny_suite(tmp_path / "b.yaml", fake_fashion_root, methods=["ce", "la"], seeds=[0])
    for cfg in build_suite(str(builtin)).trials:
        (run,) = runs[cfg.key]
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, epoch_metric("train_loss"))
        assert sorted(m.step for m in history) == [1, 2]  # its own epochs, in its own run
        assert [m.step for m in client.get_metric_history(run.info.run_id, epoch_metric("train_images_per_s"))] == [
            1,
            2,
        ]
        grouped = store.trial(cfg.key).read_json(RESULT_FILE)
        alone = train(cfg, Storage.open(tmp_path / "alone"))
        assert json.dumps(grouped["metrics"], sort_keys=True) == json.dumps(alone["metrics"], sort_keys=True)
