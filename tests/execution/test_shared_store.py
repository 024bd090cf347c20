"""Two drivers with their own results dirs and one shared `--storage` (the README's cluster set-up, run from
two terminals): each trial is trained once, by whichever driver leased it first; the other waits, says so,
and logs the finished result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records.storage import Storage
from tests.conftest import write_tiny_suite
from tests.execution.test_sweeps import runs_by_key, wait_for
from tests.plugin_packages import Gate
from tests.store_servers import S3Server

EPOCHS = 3
WAITING = "is being trained by ltbench run (pid"  # what driver 2 says of a trial driver 1 holds


def two_drivers_at_once(suite_file: Path, storage: str, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """Driver 1 starts; driver 2 starts as soon as driver 1 holds a trial's lease (two Ray instances starting
    at the same instant on a small machine can time out). Driver 1's trials are held at their second epoch
    (the `gated` test method) until driver 2 says it waits for them, so both surely run at once."""
    gate = Gate(tmp_path)
    env = {**gate.env, "LTBENCH_LEASE_RENEW_S": "3"}
    logs = [tmp_path / f"driver-{i}.log" for i in (1, 2)]

    def start(i: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "harness.cli", "run", str(suite_file), "--quiet", "--storage", storage]
        command += ["--results-dir", str(tmp_path / f"results-{i}")]
        with logs[i - 1].open("w") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)

    drivers = [start(1)]
    try:
        wait_for(lambda: bool(Storage.open(storage).keys_with("lease.json")), timeout=600, what="a first lease")
        drivers.append(start(2))
        wait_for(lambda: WAITING in logs[1].read_text(), timeout=600, what="driver 2 to wait for driver 1")
    finally:
        gate.open()
        for driver in drivers:
            try:
                driver.wait(timeout=900)
            finally:
                driver.kill()
    return [
        subprocess.CompletedProcess(d.args, d.returncode, log.read_text(), "")
        for d, log in zip(drivers, logs, strict=True)
    ]


def check_each_trial_trained_once(done: list[subprocess.CompletedProcess], store: Storage, tmp_path: Path) -> None:
    for d in done:
        assert d.returncode == 0, d.stdout[-3000:] + d.stderr[-3000:]
    said = "\n".join(d.stdout + d.stderr for d in done)
    assert WAITING in said and "waiting for it to finish" in said
    keys = store.keys_with("result.json")
    assert len(keys) == 2
    for key in keys:
        result = json.loads(store.trial(key).read_bytes("result.json"))
        assert [row["epoch"] for row in result["history"]] == list(range(1, EPOCHS + 1))
        assert not store.trial(key).exists("lease.json")
    for i in (1, 2):  # both drivers' MLflow stores hold both trials, finished, once
        runs = runs_by_key(tmp_path / f"results-{i}", "tiny")
        assert sorted(keys) == sorted(runs) and all(
            len(r) == 1 and r[0].info.status == "FINISHED" for r in runs.values()
        )


@pytest.mark.integration
@pytest.mark.timeout(900)  # two Ray instances on one small machine
def test_two_drivers_on_one_local_store_train_each_trial_once(tmp_path: Path, fake_fashion_root: Path) -> None:
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        methods=["gated"],
        recipe={"base": "quick", "epochs": EPOCHS, "batch_size": 16, "eval_every": 1},
    )
    store = tmp_path / "shared-store"
    done = two_drivers_at_once(suite_file, str(store), tmp_path)
    check_each_trial_trained_once(done, Storage.open(store), tmp_path)


@pytest.mark.integration
@pytest.mark.timeout(900)  # two Ray instances on one small machine
def test_two_drivers_on_one_s3_store_train_each_trial_once(
    s3: S3Server, tmp_path: Path, fake_fashion_root: Path
) -> None:
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        methods=["gated"],
        recipe={"base": "quick", "epochs": EPOCHS, "batch_size": 16, "eval_every": 1},
    )
    done = two_drivers_at_once(suite_file, s3.uri("two-drivers"), tmp_path)
    check_each_trial_trained_once(done, s3.storage("two-drivers"), tmp_path)
