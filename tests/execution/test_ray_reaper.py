"""The reaper stops a dead driver's Ray session, workers included, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.execution.ray_reaper import SCAN_S, reap, running, session_processes, start_ticks

# a process that sleeps; as "parent" it first starts a child that sleeps too and, like Ray's agents, ignores
# SIGTERM (a raylet and its agent: once the raylet is gone, nothing about the agent names the session)
SLEEPER = """
import subprocess, sys, time
if sys.argv[2] == "parent":
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    subprocess.Popen([sys.executable, "-c", child])
time.sleep(120)
"""


def sleeper(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLEEPER, *args])


def alive(pid: int) -> bool:
    return running(pid, start_ticks(pid))


def test_a_dead_drivers_session_and_its_children_are_stopped_and_others_spared(tmp_path: Path) -> None:
    session = f"session_test_{os.getpid()}_{time.time_ns()}"
    raylet = sleeper(f"--session-name={session}", "parent")  # names the session; its child (a worker) does not
    other = sleeper("--session-name=session_someone_else", "alone")
    driver = sleeper("driver", "alone")
    try:
        deadline = time.monotonic() + 30
        while len(session_processes(session, os.getpid())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        tree = session_processes(session, os.getpid())
        assert raylet.pid in tree and len(tree) == 2, tree  # the raylet and the worker below it
        ticks = start_ticks(driver.pid)
        assert ticks is not None
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert reap(driver.pid, ticks, session) == 2
        raylet.wait(timeout=10)
        deadline = time.monotonic() + 10  # a SIGKILL is delivered, not waited for
        while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in tree)
        assert other.poll() is None  # another session's process is left alone
    finally:
        for p in (raylet, other, driver):
            p.kill()
            p.wait()


def test_a_reused_pid_is_not_the_driver() -> None:
    """The driver is known by pid and start time: a live process with another start time is not it."""
    me = start_ticks(os.getpid())
    assert me is not None
    started = time.monotonic()
    assert reap(os.getpid(), me + 1, f"session_nobody_{time.time_ns()}") == 0
    assert time.monotonic() - started < 10


def test_a_driver_that_shut_its_instance_down_itself_releases_its_watcher() -> None:
    """`ray.shutdown()` in a process that lives on (a test run, a notebook): the watcher ends with the tree."""
    session = f"session_test_{os.getpid()}_{time.time_ns()}"
    raylet = sleeper(f"--session-name={session}", "alone")
    stopped: list[int] = []
    watcher = threading.Thread(
        target=lambda: stopped.append(reap(os.getpid(), start_ticks(os.getpid()), session)), daemon=True
    )
    try:
        deadline = time.monotonic() + 30
        while not session_processes(session, os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher.start()
        time.sleep(SCAN_S + 1)  # the watcher has noted the raylet
        assert watcher.is_alive()
        raylet.kill()  # what ray.shutdown() does to the instance
        raylet.wait()
        watcher.join(timeout=4 * SCAN_S)
        assert not watcher.is_alive() and stopped == [0]
    finally:
        raylet.kill()
        raylet.wait()
