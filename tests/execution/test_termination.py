"""SIGTERM stops a run as Ctrl+C does: runs marked KILLED, one line, exit 143, and a rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.execution.termination import TERMINATED_EXIT, sigterm_as_interrupt, terminated
from tests.conftest import write_tiny_suite
from tests.execution.test_sweeps import runs_by_key, wait_for


def test_sigterm_inside_is_an_interrupt_and_the_handler_before_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here
    assert terminated()
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_reaches_tunes_handler_when_it_has_one() -> None:
    heard: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: heard.append(signum))
    try:
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, old)
    assert heard == [signal.SIGINT]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sigterm_of_the_driver_marks_runs_killed_exits_143_and_a_rerun_resumes(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        seeds=[0, 1],
        recipe={"base": "quick", "epochs": 20, "batch_size": 16, "eval_every": 1},
    )
    results = tmp_path / "r"
    command = [sys.executable, "-m", "harness.cli", "run", str(suite_file), "--results-dir", str(results), "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any((results / "trials").glob("*/checkpoint*")), what="a first checkpoint")
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=180)
    finally:
        driver.kill()
    assert driver.returncode == TERMINATED_EXIT, out[-3000:] + err[-3000:]
    assert err.strip().splitlines()[-1] == (
        "ltbench: terminated (SIGTERM); finished trials are kept, rerun the same command to resume"
    )
    assert "Traceback" not in err
    statuses = [r.info.status for runs in runs_by_key(results, "tiny").values() for r in runs]
    assert statuses and "RUNNING" not in statuses and "KILLED" in statuses

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    after = runs_by_key(results, "tiny")
    assert all(len(runs) == 1 and runs[0].info.status == "FINISHED" for runs in after.values())
