"""Faults, round two: a tracking server that goes away, corrupt checkpoints, two drivers on one results
directory, edited method code, metrics as MLflow expects them, and Ray listening on loopback only."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.execution import run_suite as runner
from harness.experiment.suite import build_suite
from harness.records.results_dir import LOCK_FILE, exclusive_run
from harness.records.storage import Storage
from harness.records.tracker import COMMIT_TAG, TRIAL_KEY_TAG, Tracker
from harness.records.tracking_uri import TRACKING_RETRY_ENV, default_tracking_uri
from tests.conftest import write_tiny_suite
from tests.execution.test_ray_reaper import alive
from tests.execution.test_sweeps import (
    checkpoint_epoch,
    descendants,
    free_port,
    ltbench,
    process_title,
    start,
    wait_for,
)
from tests.plugin_packages import Gate, install_plugin
from tests.trial_runs import train

RAY_BOOKKEEPING = {
    "done", "pid", "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "hostname", "node_ip", "date", "trial_id", "experiment_tag",
}  # fmt: skip


def slow_suite(tmp_path: Path, data_root: Path, epochs: int = 6, **changes) -> Path:
    """Two trials of a few seconds each, so a test can act while they train."""
    recipe = {"base": "quick", "epochs": epochs, "batch_size": 8, "eval_every": 1}
    return write_tiny_suite(tmp_path / "s.yaml", data_root, recipe=recipe, **changes)


def mlflow_runs(uri: str, results: Path, experiment: str = "tiny") -> dict[str, list]:
    tracker = Tracker(uri, experiment, results)
    out: dict[str, list] = {}
    for run in tracker.runs():
        out.setdefault(run.data.tags[TRIAL_KEY_TAG], []).append(run)
    return out


def assert_each_trial_logged_once(uri: str, results: Path, keys: set[str], epochs: int) -> None:
    tracker = Tracker(uri, "tiny", results)
    runs = mlflow_runs(uri, results)
    assert set(runs) == keys
    for runs_of_key in runs.values():
        assert [r.info.status for r in runs_of_key] == ["FINISHED"]
        history = tracker.client.get_metric_history(runs_of_key[0].info.run_id, "curves/train_loss")
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))  # every epoch, each once


# -- 1. the tracking server goes away ------------------------------------------------------------------


class TrackingServer:
    """A real MLflow server process on one port and store, which a test can kill and start again."""

    def __init__(self, root: Path) -> None:
        self.port, self.root = free_port(), root
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        store = f"sqlite:///{self.root / 'server.db'}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.tracking_server", str(self.port), store, str(self.root / "artifacts")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=120, what="the tracking server")

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def tracking_server(tmp_path: Path):
    server = TrackingServer(tmp_path / "server")
    server.root.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.kill()


def run_through_an_outage(
    tmp_path: Path, data_root: Path, server: TrackingServer, retry_s: str, back_at_once: bool
) -> tuple[subprocess.Popen, str, list[str], dict[str, str], set[str]]:
    """Start a driver logging to `server`, kill the server after a first epoch (and start it again at once
    if `back_at_once`), and wait for the driver to end: (driver, its output, argv, env, trial keys)."""
    suite_file = slow_suite(tmp_path, data_root)
    keys = {t.key for t in build_suite(str(suite_file)).trials}
    results = tmp_path / "r"
    env = {**os.environ, TRACKING_RETRY_ENV: retry_s}
    argv = ["run", str(suite_file), "--results-dir", str(results), "--tracking-uri", server.uri, "--quiet"]
    driver = start(*argv, env=env)
    try:
        wait_for(lambda: any(checkpoint_epoch(results / "trials" / k) >= 1 for k in keys), what="a first epoch")
        server.kill()
        if back_at_once:
            server.start()
        out, _ = driver.communicate(timeout=300)
    finally:
        driver.kill()
    return driver, out, argv, env, keys


def test_a_tracking_server_that_goes_away_does_not_stop_training(
    tmp_path: Path, fake_fashion_root: Path, tracking_server: TrackingServer
) -> None:
    began = time.monotonic()
    driver, out, argv, env, keys = run_through_an_outage(tmp_path, fake_fashion_root, tracking_server, "3", False)
    assert driver.returncode == 3, out[-3000:]
    assert time.monotonic() - began < 200
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1] == (
        f"ltbench: error: the MLflow tracking server {tracking_server.uri} stopped answering and was not back "
        "within 3 s; the trials' results are kept on disk: start the server again and rerun the same command "
        "to log them (nothing is retrained)"
    )
    results = tmp_path / "r"
    assert all((results / "trials" / k / "result.json").is_file() for k in keys)  # training went on

    tracking_server.start()
    rerun = ltbench(*argv, env=env)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "2 trials, 2 already finished, 0 run" in rerun.stdout  # logged from disk, not retrained
    assert_each_trial_logged_once(tracking_server.uri, results, keys, epochs=6)


def test_a_stopping_worker_prints_no_traceback_but_other_ignored_errors_still_show() -> None:
    """Ray stops a worker with SIGTERM, which its worker turns into SystemExit; landing in a weakref callback,
    that printed a traceback on the driver's terminal. The trainable's hook drops only that report."""
    script = """
import weakref
from harness.execution.worker import quiet_exit_on_sigterm
quiet_exit_on_sigterm()
class Thing: pass
def stop(_): raise SystemExit(1)
def bug(_): raise ValueError("a real bug")
for callback in (stop, bug):
    thing = Thing(); ref = weakref.ref(thing, callback); del thing
print("still running")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "still running", done.stderr
    assert "SystemExit" not in done.stderr
    assert "ValueError: a real bug" in done.stderr and "Exception ignored" in done.stderr


def test_a_tracking_server_back_before_the_end_loses_nothing(
    tmp_path: Path, fake_fashion_root: Path, tracking_server: TrackingServer
) -> None:
    driver, out, _, _, keys = run_through_an_outage(tmp_path, fake_fashion_root, tracking_server, "120", True)
    assert driver.returncode == 0, out[-3000:]
    assert "stopped answering" in out and "2 trials, 0 already finished, 2 run, 0 failed" in out
    assert_each_trial_logged_once(tracking_server.uri, tmp_path / "r", keys, epochs=6)


# -- 2. a corrupt checkpoint -----------------------------------------------------------------------------


class Stopped(Exception):
    """Stands for a trial killed right after an epoch's checkpoint."""


@pytest.mark.parametrize("corrupt", ["newest", "both"])
def test_a_corrupt_checkpoint_is_moved_aside_and_the_trial_resumes(
    corrupt: str, tmp_path: Path, fake_fashion_root: Path, capsys: pytest.CaptureFixture
) -> None:
    suite_file = slow_suite(tmp_path, fake_fashion_root, epochs=4, seeds=[0])
    cfg = build_suite(str(suite_file)).trials[0]
    straight = train(cfg, Storage.open(tmp_path / "straight"))
    trial_dir = tmp_path / "t" / cfg.key

    def stop_after_three(row: dict) -> None:
        if row["epoch"] == 3:
            raise Stopped

    with pytest.raises(Stopped):
        train(cfg, Storage.open(tmp_path / "t"), report=stop_after_three)
    damaged = [trial_dir / "checkpoint.pt"] + ([trial_dir / "checkpoint.pt.prev"] if corrupt == "both" else [])
    for path in damaged:  # a crash mid-write or a full disk leaves a short file
        path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()

    resumed = train(cfg, Storage.open(tmp_path / "t"))

    err = capsys.readouterr().err
    for path in damaged:
        assert f"ltbench: warning: checkpoint {path} cannot be read" in err and "moved aside to" in err
        assert len(list(trial_dir.glob(f"{path.name}.corrupt-*"))) == 1
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3, 4]
    same = json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(straight["metrics"], sort_keys=True)
    assert same  # resumed from epoch 2's state (or from scratch), the run is the uninterrupted one
    assert not (trial_dir / "checkpoint.pt.prev").exists()  # a finished trial keeps one checkpoint


# -- 5. results are never reused from different code ----------------------------------------------------


def dry_run_keys(suite_file: Path, env: dict[str, str]) -> set[str]:
    done = ltbench("run", str(suite_file), "--dry-run", "--verbose", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(re.findall(r"fashion-mnist-lt-r4-mine-s\d \(([0-9a-f]{16})\)", done.stdout))


def test_editing_a_plugins_loss_makes_new_trial_keys(tmp_path: Path, fake_fashion_root: Path) -> None:
    site = tmp_path / "site"
    source = (
        "import torch.nn.functional as F\nfrom harness.api import Method, register_method\n\n\n"
        "@register_method\nclass Mine(Method):\n    name = 'mine'\n    description = 'a test plugin'\n\n"
        "    def loss(self, logits, targets):\n        return F.cross_entropy(logits, targets)\n"
    )
    install_plugin(site, "my-methods", "my_methods", source)
    env = {**os.environ, "PYTHONPATH": str(site)}
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["mine"])
    before = dry_run_keys(suite_file, env)
    (site / "my_methods.py").write_text(
        source.replace("F.cross_entropy(logits, targets)", "F.nll_loss(logits, targets)")
    )
    after = dry_run_keys(suite_file, env)
    assert len(before) == len(after) == 2 and not before & after


# -- 6. one driver per results directory, and 7/8 on the way ------------------------------------------------


def test_the_run_lock_is_held_until_its_process_ends(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from harness.records.results_dir import "
         "exclusive_run\nwith exclusive_run(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = rf"is in use by another ltbench run \(pid {holder.pid} on "
        with pytest.raises(LtbenchError, match=refused), exclusive_run(tmp_path):
            pass
        holder.send_signal(signal.SIGKILL)  # however the holder ends, the kernel drops its lock
        holder.wait(timeout=30)
        with exclusive_run(tmp_path):
            assert f"pid {os.getpid()} on " in (tmp_path / LOCK_FILE).read_text()
    finally:
        holder.kill()


def listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every listening TCP socket owned by `pids`."""
    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    found = []
    for line in table.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append((line.split()[3], ",".join(re.findall(r'"([^"]+)"', line))))
    return found


def test_a_second_driver_exits_2_naming_the_first_and_runs_are_what_mlflow_expects(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    gate = Gate(tmp_path)  # the first driver's trials wait after their first epoch until the second has run
    suite_file = slow_suite(tmp_path, fake_fashion_root, methods=["gated"])
    results = tmp_path / "r"
    argv = ["run", str(suite_file), "--results-dir", str(results), "--quiet"]

    def trained() -> list[Path]:  # the trial dirs that hold a finished epoch's checkpoint
        return [d for d in (results / "trials").glob("*") if checkpoint_epoch(d) >= 1]

    first = start(*argv, env=gate.env)
    try:
        wait_for(lambda: bool(trained()), what="a first epoch")
        sockets = listening({first.pid, *descendants(first.pid)})
        second = ltbench(*argv, env=gate.env)
        gate.open()
        out, _ = first.communicate(timeout=300)
    finally:
        first.kill()
    # 6: the second driver is refused, naming the first; the first trains each trial once
    assert second.returncode == 2 and "Traceback" not in second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith(f"ltbench: error: {results} is in use by another ltbench run (pid {first.pid} on ")
    assert line.endswith("; wait for it to end, or use another --results-dir")
    assert first.returncode == 0, out[-3000:]
    keys = {d.name for d in trained()}
    assert len(keys) == 2
    uri = default_tracking_uri(results)
    assert_each_trial_logged_once(uri, results, keys, epochs=6)

    # 8: the local Ray instance (GCS, raylet, workers, agents) listens on loopback only
    assert sockets, "no listening socket found for the driver's Ray processes"
    exposed = [
        (address, name)
        for address, name in sockets
        if not re.match(r"^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):", address)
    ]
    assert not exposed, exposed

    # 7 and issue 11: real timestamps, no Ray bookkeeping, tags to filter by, the training data as an input
    tracker = Tracker(uri, "tiny", results)
    for (run,) in mlflow_runs(uri, results).values():
        assert not RAY_BOOKKEEPING & set(run.data.metrics), sorted(run.data.metrics)
        assert not any(name.endswith("_classes") for name in run.data.metrics)
        assert {run.data.tags[f"ltbench.classes.{b}"] for b in ("many", "medium", "few")} <= {str(n) for n in range(11)}
        tags = run.data.tags
        assert (tags["ltbench.dataset"], tags["ltbench.imbalance_ratio"], tags["ltbench.method"]) == (
            "fashion-mnist-lt", "4", "gated")  # fmt: skip
        assert tags["ltbench.seed"] in ("0", "1")
        (data,) = run.inputs.dataset_inputs
        assert data.dataset.name == "fashion-mnist-lt-r4-train" and len(data.dataset.digest) == 16
        stamps = [m.timestamp for m in tracker.client.get_metric_history(run.info.run_id, "curves/train_loss")]
        assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000_000  # epoch ends, in ms since 1970

    # 5: a rerun says when finished trials came from another harness commit
    some_run = next(iter(mlflow_runs(uri, results).values()))[0]
    tracker.client.set_tag(some_run.info.run_id, COMMIT_TAG, "0123456789abcdef")
    rerun = ltbench(*argv, env=gate.env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 trials, 2 already finished, 0 run" in rerun.stdout
    assert "note: 1 finished trials were trained by another harness commit (0123456789ab; this is " in rerun.stdout


# -- 6. kill -9 of the driver leaves no Ray process behind ------------------------------------------


def test_kill_9_of_the_driver_stops_its_ray_processes_in_seconds(tmp_path: Path, fake_fashion_root: Path) -> None:
    """Ray's own processes outlived a SIGKILLed driver by ~2.5 minutes; its reaper stops them at once."""
    gate = Gate(tmp_path)
    suite_file = slow_suite(tmp_path, fake_fashion_root, methods=["gated"], seeds=[0])
    results = tmp_path / "r"
    driver = start("run", str(suite_file), "--results-dir", str(results), "--quiet", env=gate.env)
    try:
        wait_for(lambda: any(checkpoint_epoch(d) >= 1 for d in (results / "trials").glob("*")), what="an epoch")
        ray = [pid for pid in descendants(driver.pid) if "ray_reaper" not in process_title(pid)]
        assert any("raylet" in process_title(pid) for pid in ray), [process_title(pid) for pid in ray]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        wait_for(lambda: not any(alive(pid) for pid in ray), timeout=30, what="the dead driver's Ray to stop")
    finally:
        gate.open()
        driver.kill()


# -- 7. metrics at their step and time, never an epoch twice ------------------------------------------


def test_a_restarted_stage_two_logs_each_epoch_once_with_its_real_time(tmp_path: Path, fake_fashion_root: Path) -> None:
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["crt"], seeds=[0])
    cfg = build_suite(str(suite_file)).trials[0]
    results = tmp_path / "r"
    tracker = Tracker(default_tracking_uri(results), "tiny", results)
    run_id = tracker.open_run(cfg)
    for epoch in (1, 2):  # the first attempt reports two epochs, then its driver is killed
        tracker.log_epoch(run_id, {"epoch": epoch, "train_loss": 1.0 / epoch, "time": 1_700_000_000.0 + epoch})

    again = Tracker(default_tracking_uri(results), "tiny", results)  # the rerun's driver
    assert again.open_run(cfg) == run_id
    for epoch in (1, 2, 3):  # stage two has no checkpoint: it runs every epoch again, with other values
        again.log_epoch(run_id, {"epoch": epoch, "train_loss": 5.0 / epoch, "time": 1_700_000_100.0 + epoch})

    history = again.client.get_metric_history(run_id, "curves/train_loss")
    assert sorted((m.step, m.timestamp) for m in history) == [
        (1, 1_700_000_001_000), (2, 1_700_000_002_000), (3, 1_700_000_103_000)
    ]  # fmt: skip


def test_other_commit_notes_count_only_this_suites_trials(tmp_path: Path, fake_fashion_root: Path) -> None:
    suite = build_suite(str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root)))
    a, b = (t.key for t in suite.trials)
    now = runner.git_commit()
    assert runner._other_commit_notes(suite, {a: now, b: now, "elsewhere": "feedbeef"}) == []
    (note,) = runner._other_commit_notes(suite, {a: "feedbeef" * 5, b: now})
    assert note.startswith("1 finished trials were trained by another harness commit (feedbeeffeed; this is ")
