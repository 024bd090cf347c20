"""Sweeps that survive: kill -9 of a trial, Ctrl+C of the driver, failing trials, a Ray cluster, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.execution.outcomes import TrialOutcomes
from harness.execution.progress import SuiteProgress
from harness.execution.trial_messages import failed_message
from harness.execution.trial_queue import TrialQueue, plan_jobs
from harness.execution.tune_driver import settle_interrupted
from harness.execution.tune_events import TuneEventBridge
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.records.mlflow_names import epoch_metric
from harness.records.storage import Storage
from harness.records.tracker import TRIAL_KEY_TAG, Tracker
from harness.records.tracking_uri import default_tracking_uri
from tests.conftest import write_tiny_suite
from tests.plugin_packages import install_plugin
from tests.trial_runs import train

pytestmark = pytest.mark.integration  # Ray Tune and MLflow: `make test-unit` leaves it out

FAULTY_PLUGIN = """
import math
import torch
from harness.plugins.method import Method, register_method


@register_method
class Boom(Method):
    name = "boom"
    description = "raises in its first step (a test plugin)"

    def loss(self, logits, targets):
        raise RuntimeError("boom: this method always fails")


@register_method
class NanLoss(Method):
    name = "nanloss"
    description = "returns a NaN loss (a test plugin)"

    def loss(self, logits, targets):
        return (logits * float("nan")).sum()
"""


def ltbench(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_for(condition, timeout: float = 180.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def runs_by_key(results: Path, experiment: str) -> dict[str, list]:
    tracker = Tracker(default_tracking_uri(results), experiment, results)
    out: dict[str, list] = {}
    for run in tracker.runs():
        out.setdefault(run.data.tags[TRIAL_KEY_TAG], []).append(run)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Processes below `root` in the process tree (this driver's Ray workers, not anybody else's)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, ppid in parent.items() if ppid == current]
        found += children
        frontier += children
    return found


def checkpoint_epoch(trial_dir: Path) -> int:
    import torch

    path = trial_dir / "checkpoint.pt"
    try:
        return int(torch.load(path, weights_only=False)["epoch"]) + 1 if path.is_file() else 0
    except Exception:  # being replaced at this instant
        return 0


def test_sigkill_of_a_trial_resumes_to_identical_metrics(tmp_path: Path, fake_fashion_root: Path) -> None:
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        seeds=[0],
        recipe={"base": "quick", "epochs": 6, "batch_size": 8, "eval_every": 1},
    )
    cfg = build_suite(str(suite_file)).trials[0]
    results = tmp_path / "r"
    trial_dir = results / "trials" / cfg.key
    # no retries: the killed trial fails, and a rerun resumes it (test_retries.py covers retrying at once)
    driver = start("run", str(suite_file), "--results-dir", str(results), "--quiet", "--max-retries", "0")
    try:
        wait_for(lambda: checkpoint_epoch(trial_dir) >= 2, what="two finished epochs")
        workers = [pid for pid in descendants(driver.pid) if process_title(pid).startswith("ray::ImplicitFunc")]
        assert workers, "no Ray trial process found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        out, _ = driver.communicate(timeout=180)
    finally:
        driver.kill()
    assert driver.returncode == 1, out[-3000:]
    assert "1 failed" in out
    killed_at = checkpoint_epoch(trial_dir)
    assert 2 <= killed_at < 6 and not (trial_dir / "result.json").exists()

    rerun = ltbench("run", str(suite_file), "--results-dir", str(results), "--quiet")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    runs = runs_by_key(results, "tiny")[cfg.key]
    assert [r.info.status for r in runs] == ["FINISHED"]  # resumed into the same run: no duplicate
    history = json.loads((trial_dir / "result.json").read_text())["history"]
    assert len(history) == 6

    straight = train(cfg, Storage.open(tmp_path / "straight"))
    resumed = json.loads((trial_dir / "result.json").read_text())
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(straight["metrics"], sort_keys=True)


def test_sigint_of_the_driver_keeps_finished_trials_and_four_concurrent_trials_lose_nothing(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        seeds=[0, 1, 2, 3, 4, 5, 6, 7],
        recipe={"base": "quick", "epochs": 3, "batch_size": 16, "eval_every": 1},
        resources={"cpu": 0.5, "gpu": 0},  # four trials at once on two cores, all logging to one SQLite store
    )
    results = tmp_path / "r"
    driver = start("run", str(suite_file), "--results-dir", str(results))
    try:
        wait_for(lambda: len(list((results / "trials").glob("*/result.json"))) >= 4, what="four finished trials")
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=180)
    finally:
        driver.kill()
    assert driver.returncode == 130, out[-3000:]
    before = runs_by_key(results, "tiny")
    finished = {k for k, runs in before.items() if any(r.info.status == "FINISHED" for r in runs)}
    assert 4 <= len(finished) < 8
    assert all(len(runs) == 1 for runs in before.values())

    rerun = ltbench("run", str(suite_file), "--results-dir", str(results), "--quiet")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"8 trials, {len(finished)} already finished, {8 - len(finished)} run" in rerun.stdout
    after = runs_by_key(results, "tiny")
    assert len(after) == 8 and all(len(runs) == 1 and runs[0].info.status == "FINISHED" for runs in after.values())
    tracker = Tracker(default_tracking_uri(results), "tiny", results)
    for runs in after.values():  # every epoch of every trial reached MLflow
        steps = [m.step for m in tracker.client.get_metric_history(runs[0].info.run_id, epoch_metric("train_loss"))]
        assert sorted(steps) == [1, 2, 3]  # each epoch exactly once


def test_an_interrupt_finishes_trials_whose_result_reached_disk_before_the_driver_heard(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    """The race behind a flaky Ctrl+C: a worker writes result.json, then SIGINT stops Tune before the
    driver's callback logs the trial. Its run must end FINISHED (not KILLED), and a trial still training
    must end KILLED."""
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, seeds=[0, 1, 2])
    done, running, never_started = build_suite(str(suite_file)).trials
    results = tmp_path / "r"
    storage = Storage.open(results / "trials")
    train(done, storage)
    tracker = Tracker(default_tracking_uri(results), "tiny", results)
    done_run, running_run = tracker.open_run(done), tracker.open_run(running)  # both RUNNING, as Tune left them

    report = TrialOutcomes()
    settle_interrupted([done, running, never_started], tracker, storage, report)

    assert [(o.key, o.status) for o in report.outcomes] == [(done.key, "FINISHED")]
    assert tracker.client.get_run(done_run).info.status == "FINISHED"
    steps = [m.step for m in tracker.client.get_metric_history(done_run, epoch_metric("train_loss"))]
    assert sorted(steps) == [1, 2]  # its epochs, which the driver never saw, are logged from its history
    assert tracker.client.get_run(running_run).info.status == "KILLED"
    assert tracker.find_run(never_started.key) is None


def test_a_failed_backbone_fails_its_decoupled_trials_with_its_reason(tmp_path: Path, fake_fashion_root: Path) -> None:
    """A decoupled trial whose shared stage-1 backbone failed is never started: it is FAILED in MLflow at
    once, with the backbone's reason, and the trials on a healthy backbone are released."""
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["ce", "crt", "lws"])
    plan = make_plan(build_suite(str(suite_file)).trials)
    trials = plan.trials
    broken_backbone = next(t for t in plan.end_to_end if t.seed == 0)
    results = tmp_path / "r"
    tracker = Tracker(default_tracking_uri(results), "tiny", results)
    queue = TrialQueue(plan_jobs(trials, lambda cfg: 1.0, plan.backbone_of))
    report = TrialOutcomes()
    progress = SuiteProgress({t.key: 1 for t in trials}, stream=io.StringIO(), live=False)
    callback = TuneEventBridge(
        tracker, Storage.open(results / "trials"), report, progress, 0, queue, {t.key: t for t in trials}
    )
    assert {queue.pop(), queue.pop()} == {t.key for t in plan.end_to_end}
    # the backbone's own exception, as the trainable reports it
    failed_trial = SimpleNamespace(
        trial_id="t0",
        config={"key": broken_backbone.key, "trial": broken_backbone.as_dict()},
        last_result=failed_message(broken_backbone.key, "CUDA out of memory"),
    )
    callback.on_trial_result(0, [], failed_trial, failed_trial.last_result)
    callback.on_trial_complete(0, [], failed_trial)

    orphans = [t for t in plan.decoupled if t.seed == 0]
    reason = f"its stage-1 backbone {broken_backbone.label()} failed: CUDA out of memory"
    assert len(orphans) == 2
    assert sorted((o.key, o.status, o.reason) for o in report.failed) == sorted(
        [(broken_backbone.key, "FAILED", "CUDA out of memory")] + [(t.key, "FAILED", reason) for t in orphans]
    )
    for t in orphans:
        run = tracker.find_run(t.key)
        assert run.info.status == "FAILED" and run.data.tags["ltbench.failure"] == reason
    assert queue.ready() == []  # the healthy backbone still trains: its trials wait for it, nothing else left
    healthy = next(t for t in plan.end_to_end if t.seed != 0)
    queue.mark_finished(healthy.key)
    assert sorted(queue.ready()) == sorted(t.key for t in plan.decoupled if t.seed != 0)


@pytest.fixture
def ray_head(tmp_path: Path):
    """A one-node Ray cluster started with `ray start --head`, its workers able to import the test plugin."""
    plugin_dir = tmp_path / "plugin"
    install_plugin(plugin_dir, "faulty-methods", "faulty_methods", FAULTY_PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    ray = str(Path(sys.executable).with_name("ray"))
    up = subprocess.run(
        # a free port, not Ray's default 6379: another Ray head on this machine may hold that
        [
            ray,
            "start",
            "--head",
            f"--port={free_port()}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert up.returncode == 0, up.stderr[-2000:]
    session = Path("/tmp/ray/session_latest").resolve().name  # this cluster's processes carry its name
    registration = Path("/tmp/ray/ray_current_cluster")  # what `--address auto` reads
    address = registration.read_text() if registration.is_file() else None
    try:
        yield env
    finally:
        # Stop this cluster only ('ray stop' would stop every Ray instance on the machine). Its workers
        # exit with their raylet.
        for stat in Path("/proc").glob("[0-9]*"):
            if session in process_title(int(stat.name)):
                with contextlib.suppress(OSError):
                    os.kill(int(stat.name), signal.SIGKILL)
        if address is not None and registration.is_file() and registration.read_text() == address:
            registration.unlink()


def test_failing_trials_are_isolated_on_a_ray_cluster(tmp_path: Path, fake_fashion_root: Path, ray_head) -> None:
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["ce", "boom", "nanloss"], seeds=[0])
    results = tmp_path / "r"
    done = ltbench("run", str(suite_file), "--address", "auto", "--results-dir", str(results), "--quiet", env=ray_head)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 trials, 0 already finished, 3 run, 2 failed" in done.stdout
    assert "FAILED fashion-mnist-lt-r4-boom-s0: RuntimeError: boom: this method always fails" in done.stdout
    assert (
        "FAILED fashion-mnist-lt-r4-nanloss-s0: harness.training.trainer.TrialDiverged: training loss became nan"
        in (done.stdout)
    )
    statuses = {runs[0].data.params["method"]: runs[0] for runs in runs_by_key(results, "tiny").values()}
    assert statuses["ce"].info.status == "FINISHED"
    assert statuses["boom"].info.status == "FAILED" and "boom" in statuses["boom"].data.tags["ltbench.failure"]
    board = (results / "tiny" / "leaderboard.md").read_text()
    assert "| fashion-mnist-lt | 4 | ce |" in board
    assert "## Trials not finished (2 of 3)" in board and "nanloss" in board


def test_a_gpu_asked_for_where_there_is_none(tmp_path: Path, tiny_suite: Path) -> None:
    results = tmp_path / "r"
    done = ltbench("run", str(tiny_suite), "--set", "resources.gpu=1", "--results-dir", str(results))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "ltbench: error: each trial asks for 1 GPU but the Ray cluster has 0; lower it with --set "
        "resources.gpu=0 (or run where a GPU is present)"
    )
    assert not results.exists()  # nothing written: no trials, no mlflow.db, no lock file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking server http://127.0.0.1:9"),
        (["--address", "127.0.0.1:9"], "cannot reach the Ray cluster at '127.0.0.1:9'"),
    ],
)
def test_unreachable_services_fail_fast(tmp_path: Path, tiny_suite: Path, args: list[str], message: str) -> None:
    started = time.monotonic()
    done = ltbench("run", str(tiny_suite), *args, "--results-dir", str(tmp_path))
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
