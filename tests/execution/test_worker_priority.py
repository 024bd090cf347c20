"""A local Ray instance's workers run at normal priority (Ray's default is nice 15), or at the niceness
$LTBENCH_WORKER_NICENESS asks for; a bad value is one line before anything starts."""

from __future__ import annotations

import os

import pytest

from harness.core.errors import LtbenchError
from harness.execution.ray_cluster import WORKER_NICENESS_ENV, ray_session, worker_niceness


def worker_nice_level() -> int:
    import ray

    return ray.get(ray.remote(lambda: os.nice(0)).remote())


@pytest.mark.integration
def test_a_local_instances_workers_run_at_normal_priority_unless_asked_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = os.nice(0)  # a worker cannot be less nice than the driver that started it
    monkeypatch.delenv(WORKER_NICENESS_ENV, raising=False)
    with ray_session(None):
        assert worker_nice_level() == own
    monkeypatch.setenv(WORKER_NICENESS_ENV, "19")
    with ray_session(None):
        assert worker_nice_level() == 19


@pytest.mark.parametrize("value", ["-1", "20", "high", ""])
def test_a_bad_niceness_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(WORKER_NICENESS_ENV, value)
    with pytest.raises(LtbenchError, match="must be a whole number from 0 .normal priority. to 19"):
        worker_niceness()
