"""The trainable of the makespan bench's real Ray run: it sleeps for its trial's estimated duration.

It imports only `time` and `ray` (no torch, no harness), so that each of the hundreds of Ray workers a
simulated cluster runs stays small; its config carries everything it needs.
"""

from __future__ import annotations

import time
from typing import Any


def sleep_trial(config: dict[str, Any]) -> None:
    """Sleep `config["seconds"]` and report when the sleep really began and ended (wall clock)."""
    from ray import tune

    began = time.time()
    time.sleep(config["seconds"])
    tune.report({"began": began, "ended": time.time()})


def simulated_resources(config: dict[str, Any]) -> Any:
    """The trial's bundle: its CPUs and its share of a (declared, not real) GPU."""
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory([{"CPU": config["cpu"], "GPU": config["gpu"]}])
