"""Trial storage on a local directory and on real object-store APIs (S3 and Google Cloud Storage servers on
127.0.0.1, see tests/store_servers.py): round trips, a trial that resumes from the store's checkpoint on
another node, bad stores refused before anything is written. (A decoupled suite through Ray Tune and MLflow
whose every file lives in an S3 bucket: tests/execution/test_cluster.py.)"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.experiment.suite import build_suite
from harness.records import storage as storage_module
from harness.records.storage import SCRATCH_ENV, Storage
from tests.cli.test_commands import run_fails
from tests.conftest import write_tiny_suite
from tests.store_servers import GcsServer, S3Server
from tests.trial_runs import train


class Crash(Exception):
    """Stands for a node that dies right after an epoch's checkpoint reached the store."""


def crash_after(epoch: int):
    def report(row: dict) -> None:
        if row["epoch"] == epoch:
            raise Crash

    return report


def round_trip(storage: Storage, reopen: bool = True) -> None:
    """What every store does alike: write in local_dir, push, then read back from the store."""
    files = storage.trial("trial-a")
    files.local_dir.mkdir(parents=True, exist_ok=True)
    (files.local_dir / "result.json").write_text(json.dumps({"metrics": {"x": 1.5}}))
    (files.local_dir / "blob.bin").write_bytes(bytes(range(256)) * 100)
    files.push("blob.bin", "result.json")
    assert files.exists("result.json") and files.exists("blob.bin") and not files.exists("nothing.json")
    assert files.read_json("result.json") == {"metrics": {"x": 1.5}}
    assert files.read_bytes("blob.bin") == bytes(range(256)) * 100
    assert files.pull("result.json", "nothing.json") == ["result.json"]
    assert storage.keys_with("result.json") == {"trial-a"} and storage.keys_with("blob.bin") == {"trial-a"}
    if reopen:
        assert Storage.open(storage.uri).uri == storage.uri  # it travels to Ray workers as a string


def test_a_local_store_is_the_trials_directory_itself(tmp_path: Path) -> None:
    storage = Storage.open(tmp_path / "trials")
    assert storage.is_local and storage.uri == str((tmp_path / "trials").resolve())
    assert storage.trial("k").local_dir == tmp_path / "trials" / "k"
    round_trip(storage)
    assert Storage.open((tmp_path / "trials").as_uri()).uri == storage.uri  # file:// is the same local store
    storage.check()


def test_an_s3_store_round_trips_through_a_scratch_dir(s3: S3Server, tmp_path: Path) -> None:
    storage = Storage.open(s3.uri("round-trip"))
    assert not storage.is_local and storage.uri == s3.uri("round-trip")
    assert storage.location == "s3://ltbench/round-trip" and storage.endpoint_url == s3.endpoint_url
    assert Path(os.environ[SCRATCH_ENV]) in storage.trial("k").local_dir.parents  # node-local, not the store
    storage.check()
    round_trip(storage)
    assert s3.keys("round-trip") == ["trial-a/blob.bin", "trial-a/result.json"]  # the probe left nothing


def test_a_gcs_store_round_trips_through_a_scratch_dir(gcs: GcsServer) -> None:
    storage = gcs.storage("round-trip")
    assert not storage.is_local and storage.location == "gs://ltbench/round-trip"
    assert Path(os.environ[SCRATCH_ENV]) in storage.trial("k").local_dir.parents
    storage.check()
    round_trip(storage, reopen=False)  # its anonymous credentials travel in no URI
    assert gcs.keys("round-trip") == ["trial-a/blob.bin", "trial-a/result.json"]


def test_pull_takes_the_store_as_the_truth(
    store: S3Server | GcsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = store.storage("pull").trial("t")
    written.local_dir.mkdir(parents=True)
    (written.local_dir / "checkpoint.pt").write_bytes(b"epoch 2")
    written.push("checkpoint.pt")

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "other-node"))
    files = store.storage("pull").trial("t")
    assert files.local_dir != written.local_dir
    files.local_dir.mkdir(parents=True)
    (files.local_dir / "checkpoint.pt").write_bytes(b"epoch 1, stale")
    (files.local_dir / "checkpoint.pt.prev").write_bytes(b"older")
    assert files.pull("checkpoint.pt", "checkpoint.pt.prev") == ["checkpoint.pt"]
    assert (files.local_dir / "checkpoint.pt").read_bytes() == b"epoch 2"
    assert not (files.local_dir / "checkpoint.pt.prev").exists()  # the store has none: a stale copy goes

    # a finished trial's files never change: a copy matching the store's size and time is not fetched again
    copy = files.local_dir / "checkpoint.pt"
    before = copy.stat().st_ino
    assert files.pull("checkpoint.pt", reuse=True) == ["checkpoint.pt"] and copy.stat().st_ino == before
    (files.local_dir / "features.pt").write_bytes(b"being uploaded by another trial")
    assert files.pull("features.pt", reuse=True) == []
    assert (files.local_dir / "features.pt").is_file()  # left alone, not used


def test_a_trial_resumes_on_another_node_from_the_stores_checkpoint(
    store: S3Server | GcsServer, tmp_path: Path, fake_fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, seeds=[0], recipe={"base": "quick", "epochs": 3})
    cfg = build_suite(str(suite)).trials[0]
    straight = train(cfg, Storage.open(tmp_path / "straight"))

    def on_node(node: str, report=None) -> dict:
        monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / node))  # nodes share no path, only the store
        return train(cfg, store.storage("resume"), report=report, node=node)

    with pytest.raises(Crash):
        on_node("node-b", crash_after(1))
    with pytest.raises(Crash):
        on_node("node-a", crash_after(2))
    assert store.keys("resume") == [f"{cfg.key}/checkpoint.pt"]  # the checkpoint only: result.json comes last
    # node-b's scratch still holds its own epoch-1 checkpoint; the store's epoch 2 wins
    resumed = on_node("node-b")

    assert resumed["attempts"] == [
        {"node": "node-b", "start_epoch": 0},
        {"node": "node-a", "start_epoch": 1},
        {"node": "node-b", "start_epoch": 2},
    ]
    assert straight["attempts"] == [{"node": "", "start_epoch": 0}]
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(straight["metrics"], sort_keys=True)
    names = ["analysis.npz", "checkpoint.pt", "manifest.json", "result.json"]
    assert store.keys("resume") == [f"{cfg.key}/{n}" for n in names]
    assert store.storage("resume").trial(cfg.key).read_json("result.json")["attempts"] == resumed["attempts"]


def test_bad_stores_are_refused_before_anything_is_written(
    s3: S3Server, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dead = f"s3://ltbench/x?endpoint_override=127.0.0.1:{free_port_of(s3)}&scheme=http"
    cases = {
        "foo://bucket/x": "--storage 'foo://bucket/x' cannot be opened (Unrecognized filesystem type",
        "s3://": "--storage 's3://' names no bucket",
        s3.uri("x", bucket="no-such-bucket"): "--storage s3://no-such-bucket/x: cannot write there (",
        dead: "--storage s3://ltbench/x: cannot write there (",
        "/proc/ltbench-trials": "--storage /proc/ltbench-trials: /proc is not writable",
    }
    for uri, message in cases.items():
        line = run_fails(["run", str(tiny_suite), "--storage", uri], tmp_path / "r", capsys)
        assert message in line, line
    assert "NO_SUCH_BUCKET" in run_fails(
        ["run", str(tiny_suite), "--storage", s3.uri("x", bucket="no-such-bucket")], tmp_path / "r", capsys
    )
    with pytest.raises(LtbenchError, match="cannot be opened"):
        Storage.open("s3://b/x?no_such_option=1")


def test_an_endpoint_that_never_answers_fails_the_probe_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections but never replies held the default S3 client for about 100 s; the
    probe gives up after its own timeout (two attempts of `PROBE_TIMEOUT_S`, 1 s here)."""
    monkeypatch.setattr(storage_module, "PROBE_TIMEOUT_S", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        began = time.monotonic()
        with pytest.raises(LtbenchError, match="cannot write there .*Timeout was reached"):
            Storage.open(f"s3://b/x?endpoint_override=127.0.0.1:{silent.getsockname()[1]}&scheme=http").check()
        assert time.monotonic() - began < 30


def free_port_of(s3: S3Server) -> int:
    """A port nothing listens on (not the S3 server's)."""
    from tests.store_servers import free_port

    port = free_port()
    assert port != s3.port
    return port


# A decoupled suite through Ray Tune and MLflow with --storage s3://... (every file in the bucket, none on the
# driver's disk, MLflow's artifacts in the bucket, a rerun that trains nothing): tests/execution/test_cluster.py, on a
# cluster of two nodes with no shared path.
