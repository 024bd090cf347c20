"""The Ray instance a run uses: a local one bound to the loopback interface, or an existing cluster.

The local instance binds to 127.0.0.1: Ray has no authentication, and its ports must not be reachable from
the network. `check_resources` fails before anything starts when a trial asks for more than the cluster has.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.core.errors import LtbenchError
from harness.core.trial import TrialConfig
from harness.execution.ray_reaper import start_ticks

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, on any OS
# Ray starts its workers at nice 15 so that its own daemons stay responsive; on a shared workstation any
# normal-priority process then starves the trials (seen: trials at 5% CPU beside one other job). The local
# instance's workers run at this niceness instead: 0, normal priority, unless the variable says otherwise
# (e.g. 15, Ray's own default, to yield to everyone else). A cluster keeps what it was started with.
WORKER_NICENESS_ENV = "LTBENCH_WORKER_NICENESS"
DEFAULT_WORKER_NICENESS = 0


def worker_niceness() -> int:
    """The niceness of a local instance's workers: $LTBENCH_WORKER_NICENESS (0 to 19), else 0."""
    raw = os.environ.get(WORKER_NICENESS_ENV, str(DEFAULT_WORKER_NICENESS)).strip()
    if not raw.isdigit() or int(raw) > 19:
        raise LtbenchError(
            f"{WORKER_NICENESS_ENV} must be a whole number from 0 (normal priority) to 19 (lowest), got {raw!r}"
        )
    return int(raw)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the duration of a suite run: started (or joined) once, shut down at the end if we started it."""
    import ray

    started_here = connect_ray(address)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()
            if address is None:
                _loopback_only(False)  # a later session in this process may join a cluster


def connect_ray(address: str | None) -> bool:
    """Start a local Ray instance (address None) or join a cluster; True when we started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    check_address(address)
    niceness = worker_niceness() if address is None else None
    if address is None:
        _loopback_only(True)
    try:
        ray.init(
            # "local" always starts a fresh instance: plain ray.init() would join whatever cluster was last
            # started with `ray start` on this machine, even a dead one
            address=address or "local",
            # a local instance listens on the loopback interface only (Ray has no authentication); a
            # cluster's own binding is set where it was started (see the README)
            **({"_node_ip_address": LOOPBACK} if address is None else {}),
            # a local instance's workers at normal priority (see WORKER_NICENESS_ENV)
            **({"_system_config": {"worker_niceness": niceness}} if niceness is not None else {}),
            include_dashboard=False,
            configure_logging=True,
            logging_level="ERROR",
            log_to_driver=True,
            runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}},
        )
    except Exception as e:  # ConnectionError, RuntimeError, ValueError, and a bare Exception on a start timeout
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address!r}"
        raise LtbenchError(
            f"cannot start or reach {where}: {str(e).splitlines()[0]}; check --address "
            "(use 'auto' for a cluster started with 'ray start --head' on this machine)"
        ) from e
    if address is None:
        watch_for_driver_death()
    return True


def watch_for_driver_death() -> None:
    """Start `harness.execution.ray_reaper` beside the local instance just started: if this process is killed
    without shutting Ray down, the reaper stops the instance's processes at once instead of minutes later."""
    from ray._private import worker

    node = worker._global_node
    ticks = start_ticks(os.getpid())
    if node is None or ticks is None:  # not Linux's /proc, or no local node: nothing to watch with
        return
    subprocess.Popen(
        [sys.executable, "-m", "harness.execution.ray_reaper", str(os.getpid()), str(ticks), node.session_name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl+C or a kill of the driver's process group leaves it be
    )


_saved_mode: dict[str, Any] = {}


def _loopback_only(on: bool) -> None:
    """Make the local instance listen on 127.0.0.1 only (`on`), or undo that. Ray replaces a loopback node
    address with the machine's external one (so `_node_ip_address="127.0.0.1"` alone does not do it),
    except in its single-machine mode, which this switches on: its flag is read from the environment when
    ray is imported (hence both the variable, for Ray's own processes, and the constant, for this one)."""
    from ray._private import ray_constants

    if on:
        _saved_mode.setdefault("env", os.environ.get(SINGLE_MACHINE_ENV))
        _saved_mode.setdefault("flag", ray_constants.ENABLE_RAY_CLUSTER)
        os.environ[SINGLE_MACHINE_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    elif _saved_mode:
        env, ray_constants.ENABLE_RAY_CLUSTER = _saved_mode.pop("env"), _saved_mode.pop("flag")
        if env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = env


def check_address(address: str | None) -> None:
    """Fail in seconds, not minutes, when a host:port Ray address does not answer."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise LtbenchError(f"Ray address {address!r} is not host:port, 'auto' or a ray:// URI")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        raise LtbenchError(
            f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); start it with 'ray start --head' "
            "or fix --address"
        ) from e


def check_resources(trials: list[TrialConfig]) -> None:
    import ray

    available = ray.cluster_resources()
    for resource, ray_name in (("gpu", "GPU"), ("cpu", "CPU")):
        need = max(t.resources.get(resource, 0) for t in trials)
        have = available.get(ray_name, 0)
        if need > have:
            raise LtbenchError(
                f"each trial asks for {need:g} {ray_name} but the Ray cluster has {have:g}; "
                f"lower it with --set resources.{resource}={have:g}"
                + (" (or run where a GPU is present)" if resource == "gpu" else "")
            )
