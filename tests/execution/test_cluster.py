"""A Ray cluster whose nodes share no filesystem, only an S3 store (moto's server on 127.0.0.1).

Three Ray nodes run on this machine (`ray.cluster_utils.Cluster`): a head that runs no trials and two worker
nodes, each with its own scratch directory (`LTBENCH_SCRATCH`, set in the node's raylet environment, which
its worker processes inherit). The driver (`ltbench run --address ... --storage s3://...`) has its own
results directory that no worker is told about. So the only path the nodes and the driver share is the S3
endpoint: a trial that reads anything another process wrote must have read it from the store.

One test, since starting the cluster is the slow part: a decoupled suite runs to the end while one node is
killed in the middle of a backbone's training. The trial is retried on the surviving node and resumes from
the checkpoint it last uploaded; its decoupled trials then load it from the store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.records.artifacts import (
    ANALYSIS_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FEATURE_CACHE,
    MANIFEST_FILE,
    PER_CLASS_FILE,
    RESULT_FILE,
)
from harness.records.storage import SCRATCH_ENV, Storage
from harness.records.tracker import ARTIFACTS_FOLDER, Tracker
from harness.records.tracking_uri import default_tracking_uri
from tests.conftest import write_tiny_suite
from tests.execution.test_sweeps import runs_by_key, start, wait_for
from tests.fakes import write_fashion_mnist
from tests.store_servers import S3Server

pytestmark = pytest.mark.integration

# Ray notices a dead node after `threshold` missed health checks; its defaults take about half a minute.
FAST_NODE_FAILURE = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}
EPOCHS = 6


@dataclass
class WorkerNode:
    name: str
    handle: Any  # ray._private.node.Node
    scratch: Path


@pytest.fixture
def cluster(tmp_path: Path, s3: S3Server) -> Iterator[tuple[Any, list[WorkerNode]]]:
    """A head with no CPUs (trials never run there) and two one-CPU worker nodes with separate scratch dirs.
    Requesting `s3` first puts the AWS credentials into the environment the nodes start with."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_NODE_FAILURE},
    )
    try:
        nodes = []
        for name in ("node-a", "node-b"):
            scratch = tmp_path / name
            handle = cluster.add_node(num_cpus=1, env_vars={SCRATCH_ENV: str(scratch)})
            nodes.append(WorkerNode(name, handle, scratch))
        cluster.wait_for_nodes()
        yield cluster, nodes
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def slower_fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough fake images that an epoch lasts about a second here, so a node can be killed mid-trial."""
    root = tmp_path_factory.mktemp("fashion-large")
    write_fashion_mnist(root, per_class=300, test_per_class=5)
    return root


def _checkpoint(store: Storage, key: str) -> dict[str, Any] | None:
    files = store.trial(key)
    if not files.exists(CHECKPOINT_FILE):
        return None
    return torch.load(io.BytesIO(files.read_bytes(CHECKPOINT_FILE)), map_location="cpu", weights_only=False)


def test_a_node_killed_mid_trial_costs_only_the_epochs_since_the_stored_checkpoint(
    tmp_path: Path, s3: S3Server, cluster, slower_fashion_root: Path
) -> None:
    ray_cluster, nodes = cluster
    suite_file = write_tiny_suite(
        tmp_path / "suite.yaml",
        slower_fashion_root,
        methods=["ce", "crt", "ncm"],
        seeds=[0, 1],
        recipe={"base": "quick", "epochs": EPOCHS, "batch_size": 64, "eval_every": EPOCHS},
        data={"root": str(slower_fashion_root), "max_per_class": 300, "val_per_class": 5},
    )
    trials = build_suite(str(suite_file)).trials
    plan = make_plan(trials)
    victim = next(t for t in plan.end_to_end if t.seed == 0)  # the seed-0 backbone
    uri = s3.uri("cluster")
    store = Storage.open(uri)
    driver_dir = tmp_path / "driver"
    argv = ["run", str(suite_file), "--address", ray_cluster.address, "--storage", uri]
    argv += ["--results-dir", str(driver_dir), "--quiet"]
    driver = start(*argv)
    try:
        # kill the victim's node once it has stored a checkpoint and has epochs left to lose
        def mid_trial() -> bool:
            state = _checkpoint(store, victim.key)
            return state is not None and 1 <= state["epoch"] + 1 < EPOCHS - 2

        wait_for(mid_trial, timeout=120, what="the backbone's first stored checkpoint")
        state = _checkpoint(store, victim.key)
        assert state is not None
        dead_id = state["attempts"][-1]["node"]
        dead = next(n for n in nodes if n.handle.node_id == dead_id)
        ray_cluster.remove_node(dead.handle, allow_graceful=False)
        output, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-4000:]

    # every trial finished, and its files are in the store
    finished = store.keys_with(RESULT_FILE)
    assert finished == {t.key for t in plan.trials}
    # the killed trial ran again on the other node from the checkpoint it had uploaded
    attempts = store.trial(victim.key).read_json(RESULT_FILE)["attempts"]
    survivor = next(n for n in nodes if n is not dead)
    assert [a["node"] for a in attempts] == [dead_id, survivor.handle.node_id], attempts
    assert attempts[1]["start_epoch"] >= 1
    assert f"{victim.label()}: its worker was lost" in output and "retrying from its checkpoint (attempt 2)" in output
    assert "Trial task failed" not in output  # Tune's traceback: the line above says it
    history = store.trial(victim.key).read_json(RESULT_FILE)["history"]
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    # every file a trial writes is in the bucket, and none on the driver's disk
    keys = s3.keys("cluster")
    for cfg in plan.trials:
        assert f"{cfg.key}/{RESULT_FILE}" in keys and f"{cfg.key}/{MANIFEST_FILE}" in keys
    for cfg in plan.end_to_end:
        assert f"{cfg.key}/{CHECKPOINT_FILE}" in keys and f"{cfg.key}/{FEATURE_CACHE}" in keys  # NCM's cache
    assert not (driver_dir / "trials").exists() and not list(driver_dir.rglob(RESULT_FILE))
    assert any(k.startswith("ray/") for k in keys)  # Tune's experiment files
    # each node worked in its own scratch dir, and kept no trial of its own once it was uploaded
    survivor_scratch = {p.parent.name for p in survivor.scratch.rglob(CHECKPOINT_FILE)}
    assert survivor_scratch <= {t.key for t in plan.end_to_end}  # only backbones its stage-two trials loaded
    assert not list(survivor.scratch.rglob(RESULT_FILE))
    # each decoupled trial of seed 0 started after its backbone's first node had died
    for cfg in plan.decoupled:
        ran_on = store.trial(cfg.key).read_json(RESULT_FILE)["attempts"][-1]["node"]
        assert ran_on in {n.handle.node_id for n in nodes}
        if cfg.seed == 0:
            assert ran_on == survivor.handle.node_id
    # MLflow: one run per trial, the retried one included; artifacts in the bucket beside the trials
    runs = runs_by_key(driver_dir, "tiny")
    assert {key: [r.info.status for r in found] for key, found in runs.items()} == {
        t.key: ["FINISHED"] for t in plan.trials
    }
    tracker = Tracker(default_tracking_uri(driver_dir), "tiny", driver_dir)
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.artifact_location == f"s3://{s3.bucket}/cluster/{ARTIFACTS_FOLDER}"
    artifacts = [k for k in keys if k.startswith(ARTIFACTS_FOLDER + "/")]
    for name in (RESULT_FILE, MANIFEST_FILE, ANALYSIS_FILE, PER_CLASS_FILE, CONFIG_FILE):
        assert sum(k.endswith("/" + name) for k in artifacts) == 6, name
    assert "Leaderboard" in (driver_dir / "tiny" / "leaderboard.md").read_text()

    # a rerun finds every trial in the store and trains (and uploads) nothing
    again, _ = start(*argv).communicate(timeout=240)
    assert "6 trials, 6 already finished, 0 run" in again, again[-3000:]
    assert s3.keys("cluster") == keys
