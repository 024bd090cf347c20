"""A full disk is recognised in every disguise it reaches ltbench in, and said in one line: by the trial (its
own failure, never a lost worker to retry) and by the driver (exit 4, no traceback)."""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import DISK_FULL_EXIT, main
from harness.execution import run_suite, worker
from harness.execution.trial_messages import read_message
from harness.records.disk_space import disk_full_message, is_disk_full
from tests.conftest import write_tiny_suite
from tests.execution.test_sweeps import checkpoint_epoch, wait_for
from tests.plugin_packages import Gate


def chained(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as e:
            raise outer from e
    except Exception as e:
        return e


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError(
            "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file: "
            "No space left on device"
        ),  # fmt: skip
        sqlite3.OperationalError("database or disk is full"),
        chained(RuntimeError("Tune failed to save the experiment state"), OSError(errno.ENOSPC, "full")),
    ],
)
def test_a_full_disk_is_recognised(error: Exception) -> None:
    assert is_disk_full(error)


@pytest.mark.parametrize("error", [OSError(errno.EACCES, "Permission denied"), ValueError("nan loss"), None])
def test_other_errors_are_not_a_full_disk(error: Exception | None) -> None:
    assert not is_disk_full(error)


def test_the_message_names_the_filesystem_its_space_and_the_need(tmp_path: Path) -> None:
    line = disk_full_message(tmp_path / "results" / "not-yet", need_bytes=50 * 2**20)
    assert line.startswith("the filesystem at /") and f"(holding {tmp_path}/results/not-yet) is full: " in line
    assert " MB free of " in line and "a trial here needs about 50.0 MB more" in line and "\n" not in line


def test_a_trial_that_fills_the_disk_fails_with_one_line_not_a_lost_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[dict[str, Any]] = []

    def fill_the_disk(*args: object, **kwargs: object) -> Iterator[None]:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: No space left on device")
        yield  # a step generator, as `trial_steps` is

    monkeypatch.setattr(worker, "trial_steps", fill_the_disk)
    monkeypatch.setattr(worker.tune, "report", reported.append)
    monkeypatch.setattr(worker.ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda s: "n"})())
    trial = {"suite": "s", "dataset": "fashion-mnist-lt", "imbalance_ratio": 4.0, "method": "ce", "seed": 0,
             "model": "resnet-small-gray", "recipe": {}, "data": {}}  # fmt: skip
    worker.train_trial({"trial": trial, "storage": str(tmp_path / "store"), "lease_holder": "test"})
    assert len(reported) == 1
    message = read_message(reported[0])
    assert message is not None and message.kind == "failed"
    assert message.payload.startswith("the filesystem at /") and " is full: " in message.payload


def test_the_driver_stops_on_a_full_disk_with_one_line_and_exit_4(
    tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def sqlite_full(*args: object, **kwargs: object) -> None:
        raise RuntimeError("(sqlite3.OperationalError) database or disk is full") from sqlite3.OperationalError(
            "database or disk is full"
        )

    monkeypatch.setattr(run_suite, "ray_session", lambda address: contextlib.nullcontext())
    monkeypatch.setattr(run_suite, "check_resources", lambda trials: None)
    monkeypatch.setattr(run_suite, "_run_unfinished", sqlite_full)
    assert main(["run", str(tiny_suite), "--results-dir", str(tmp_path / "r")]) == DISK_FULL_EXIT
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ltbench: error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("ltbench: error: the filesystem at /")
    assert "rerun the same command: finished trials are kept" in errors[0]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs of the test's own (mounting one needs root, which CI has)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root can): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the filesystem has no byte left."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**20)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    with contextlib.suppress(OSError), path.open("ab") as f:  # the last partial megabyte
        while True:
            f.write(b"\0" * 4096)
            f.flush()


@pytest.mark.integration
def test_a_disk_that_fills_mid_trial_stops_the_run_in_one_line_and_a_rerun_resumes(
    tmp_path: Path, fake_fashion_root: Path, small_tmpfs: Path
) -> None:
    gate = Gate(tmp_path)  # the trial waits after epoch 1 while the test fills the disk
    recipe = {"base": "quick", "epochs": 3, "batch_size": 16, "eval_every": 1}
    suite_file = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["gated"], seeds=[0], recipe=recipe)
    results = small_tmpfs / "r"
    command = [sys.executable, "-m", "harness.cli", "run", str(suite_file), "--results-dir", str(results), "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gate.env)
    try:
        wait_for(lambda: any(checkpoint_epoch(d) >= 1 for d in (results / "trials").glob("*")), what="an epoch")
        fill(small_tmpfs / "filler")
        gate.open()
        out, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
    said = out + err
    assert driver.returncode in (1, DISK_FULL_EXIT), said[-3000:]
    assert "Traceback" not in said and "is full: " in said, said[-3000:]
    assert "worker was lost" not in said  # a full disk is never retried as a lost worker

    (small_tmpfs / "filler").unlink()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env=gate.env)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    (trial,) = [d for d in (results / "trials").iterdir() if d.is_dir()]
    result = json.loads((trial / "result.json").read_text())
    assert [row["epoch"] for row in result["history"]] == [1, 2, 3]
    assert [a["start_epoch"] for a in result["attempts"]] == [0, 1]  # resumed from the epoch before the disk filled
