"""How many trials train together in one worker process: `--group-size K`, the suite's `group_size`, or auto.

A group (`harness.training.group`) interleaves its trials' steps in one process. On a GPU that can keep a
launch-bound chip busier than one trial per process; on a CPU every step is already compute-bound, so a
group only shares one trial's CPUs among several trials. `auto` therefore takes the group size that
`ltbench bench` measured to pay on this kind of device (its `grouping` section in `results/bench.json`: at
least GROUPING_PAYS times one trial's throughput), and 1 where nothing was measured or nothing pays.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from harness.core.trial import TrialConfig
from harness.execution.trial_queue import group_signature

AUTO = "auto"
GROUPING_SECTION = "grouping"
# A group must train at least this much faster than one trial per process to be worth it: below that the
# gain is within what load on a shared machine changes between two measurements.
GROUPING_PAYS = 1.10


def runs_today(detail: dict) -> bool:
    """Whether a bench figure measured the path a grouped run takes by default: eager steps (the captured
    step is opt-in), on the default stream (per-trial streams are opt-in), trials stepping in turn (the
    trainer does not fuse them). A figure written before a detail existed counts as that detail's default."""
    return (
        detail.get("step") == "eager"
        and detail.get("streams", "default") == "default"
        and detail.get("fusion", "none") == "none"
    )


def measured_group_sizes(bench_json: Path | None) -> dict[tuple[str, str], tuple[int, float]]:
    """Per (device type, model): the group size `ltbench bench` measured fastest and its throughput ratio
    against one trial per process, from its grouping section; {} without one."""
    if bench_json is None:
        return {}
    try:
        doc = json.loads(bench_json.read_text())
        figures = doc["sections"][GROUPING_SECTION]["figures"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    best: dict[tuple[str, str], tuple[int, float]] = {}
    for figure in figures:
        detail = figure.get("detail", {})
        if figure.get("unit") != "images/s" or "group_size" not in detail or not runs_today(detail):
            continue
        where = (str(detail.get("device_type")), str(detail.get("model")))
        if where not in best or figure["ratio"] > best[where][1]:
            best[where] = (int(detail["group_size"]), float(figure["ratio"]))
    return best


def device_type(cfg: TrialConfig) -> str:
    """Where the trial's steps run: a trial given a GPU share runs on CUDA (device auto or cuda)."""
    return "cuda" if cfg.resources.get("gpu", 0) and cfg.device != "cpu" else "cpu"


def resolve_group_size(choice: int | str, trials: list[TrialConfig], bench_json: Path | None) -> tuple[int, str]:
    """The group size a run uses and why: a number is taken as given; `auto` is the measured size that pays
    for the suite's first model and device, else 1."""
    if choice != AUTO:
        return int(choice), "as asked"
    if not trials:
        return 1, "auto: no trials"
    where = (device_type(trials[0]), trials[0].model)
    measured = measured_group_sizes(bench_json).get(where)
    if measured is None:
        return 1, f"auto: grouping not measured for {where[1]} on {where[0]} (ltbench bench measures it)"
    size, ratio = measured
    if size > 1 and ratio >= GROUPING_PAYS:
        return size, f"auto: {size} per process measured {ratio:.2f}x one per process ({bench_json})"
    return 1, f"auto: grouping measured no gain for {where[1]} on {where[0]} (best {ratio:.2f}x at {size})"


def group_lines(trials: list[TrialConfig], backbone_of: dict[str, str], size: int, why: str) -> list[str]:
    """The dry run's account of grouping: how many worker processes the trials take."""
    signatures = Counter(group_signature(t) for t in trials if t.key not in backbone_of)
    alone = sum(t.key in backbone_of for t in trials)
    processes = sum(math.ceil(n / size) for n in signatures.values()) + alone
    sets = f"{len(signatures)} set{'s' if len(signatures) != 1 else ''} of compatible end-to-end trials"
    return [
        f"grouping: {size} trial{'s' if size > 1 else ''} per worker process ({why}); {len(trials)} trials in "
        f"{processes} worker processes ({sets}" + (f", {alone} decoupled trials alone" if alone else "") + ")"
    ]
