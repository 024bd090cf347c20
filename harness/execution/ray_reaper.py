"""Stops the local Ray instance of a driver that died without shutting it down (kill -9, an OOM kill).

A driver that ends in any ordinary way (finished, Ctrl+C, SIGTERM, an exception) calls `ray.shutdown()`,
which stops the Ray processes it started. A driver killed with SIGKILL cannot: its GCS, raylet, agents and
idle workers lived on for about 2.5 minutes (their own timeouts), holding memory and, on a small machine,
CPU that the next run wants. So `connect_ray` starts this watcher beside a local instance, in its own
session so that a signal to the driver's process group does not reach it. It polls the driver (by pid and
start time, so a reused pid is not mistaken for it) and, once the driver is gone, stops every process whose
command line names the driver's Ray session (`session_<date>_<pid>`, unique to that instance), and the
workers below them: SIGTERM, then SIGKILL for what is left after `GRACE_S`. It imports only the standard
library.

Run as: python -m harness.execution.ray_reaper DRIVER_PID DRIVER_START_TICKS SESSION_NAME
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
SCAN_S = 2.0  # how often the session's process tree is noted while the driver lives
GRACE_S = 3.0


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then ppid, ...); None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def running(pid: int, ticks: int | None) -> bool:
    """Whether the process that started at `ticks` is still there and not a zombie (which is already dead)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == ticks


def session_processes(session: str, spare: int) -> list[int]:
    """Pids of the processes whose command line names `session`, and of every process below them (Ray's
    workers rename themselves `ray::...`, so only their raylet names the session), except `spare`."""
    named, children = set(), {}
    for entry in Path("/proc").glob("[0-9]*"):
        pid, fields = int(entry.name), stat_fields(int(entry.name))
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
        if session.encode() in command:
            named.add(pid)
    found, frontier = set(named), list(named)
    while frontier:
        below = [pid for pid in children.get(frontier.pop(), []) if pid not in found]
        found.update(below)
        frontier += below
    return sorted(found - {spare})


def stop(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def reap(driver: int, driver_start: int, session: str) -> int:
    """Wait for the driver to end, then stop what is left of its Ray session; the number of processes stopped.

    The session's process tree is noted every `SCAN_S` while the driver lives, each process with its start
    time: once the raylet is gone (it may go by itself when the driver dies) its agents and workers belong
    to init and say nothing of the session any more. A driver that shut the instance down and goes on
    (`ray.shutdown()` in a longer-lived process) needs no watcher: it returns as soon as the tree is gone."""
    known: dict[int, int | None] = {}
    last_scan = 0.0
    while start_ticks(driver) == driver_start:
        if time.monotonic() - last_scan > SCAN_S:
            known.update({pid: start_ticks(pid) for pid in session_processes(session, os.getpid()) if pid not in known})
            last_scan = time.monotonic()
            if known and not any(running(pid, ticks) for pid, ticks in known.items()):
                return 0  # the driver shut its instance down itself and lives on (a test, a notebook)
        time.sleep(POLL_S)
    known.update({pid: start_ticks(pid) for pid in session_processes(session, os.getpid()) if pid not in known})
    left = [pid for pid, ticks in known.items() if running(pid, ticks)]
    stop(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(running(pid, known[pid]) for pid in left):
        time.sleep(0.2)
    stop([pid for pid in left if running(pid, known[pid])], signal.SIGKILL)
    return len(left)


if __name__ == "__main__":
    driver_pid, driver_ticks, session_name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    reap(driver_pid, driver_ticks, session_name)
