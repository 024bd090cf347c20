"""What a suite will cost before it runs: the dry run's GPU-hours and wall time, and which figures they rest on.

Each trial's seconds come from the cost model (`harness.execution.costs`): seconds on one reference GPU at
the trial's own share of it, from `results/bench.json`'s measured throughputs where `ltbench bench --device
cuda` wrote them, else the calibrated defaults; the lines say which. GPU-hours are those seconds times the
GPU share each trial holds. The wall time replays the plan through the run's own release policy (the trial
queue: critical path first, stage two as soon as its backbone is done) on one GPU holding as many trials at
once as the suite's share allows (`resources.gpu: 0.25` is four), so it includes the waits of decoupled trials
on their backbones. A suite that asks for no GPU is costed on the reference GPU all the same, and the lines
say that a CPU takes far longer.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import LtbenchError
from harness.core.trial import TrialConfig
from harness.execution.costs import cost_model, measured_images_per_s
from harness.execution.trial_queue import plan_jobs, simulate


def cost_lines(trials: list[TrialConfig], backbone_of: dict[str, str], bench_json: Path) -> list[str]:
    """Estimated GPU-hours and wall time of `trials` (a plan's trials, backbones included) on one GPU."""
    if not trials:
        return ["cost: nothing to run"]
    measured = measured_images_per_s(bench_json)
    source = (
        f"throughputs measured by ltbench bench: {bench_json} ({', '.join(sorted(measured))})"
        if measured
        else f"the calibrated defaults of harness/execution/costs.py; {bench_json} has no GPU figures "
        "(`ltbench bench --device cuda` measures them)"
    )
    cost = cost_model(bench_json)
    try:
        jobs = plan_jobs(trials, cost, backbone_of)
    except LtbenchError as e:  # the sizes of a dataset whose split files are not here (ImageNet-LT's lists)
        return [f"cost: not estimated: {e}"]
    share = float(trials[0].resources.get("gpu", 0) or 0)
    per_gpu = max(1, round(1 / share)) if share else 1
    gpu_hours = sum(job.cost for job in jobs) / per_gpu / 3600
    wall_hours = simulate(jobs, per_gpu, barrier=False).makespan / 3600
    method_of = {cfg.key: cfg.method for cfg in trials}
    by_method: dict[str, float] = {}
    for job in jobs:
        by_method[method_of[job.key]] = by_method.get(method_of[job.key], 0.0) + job.cost / per_gpu / 3600
    lines = [
        f"cost: {gpu_hours:.2f} GPU-hours; {wall_hours:.2f} h wall on one GPU holding {per_gpu} "
        f"trial{'s' if per_gpu > 1 else ''} at once",
        "cost by method (GPU-hours): " + ", ".join(f"{m} {h:.2f}" for m, h in sorted(by_method.items())),
        f"cost: from {source}",
    ]
    if not share:
        lines.append(
            "cost: this suite asks for no GPU (resources.gpu: 0), so its trials run on CPUs, many times slower "
            "than these reference-GPU figures"
        )
    return lines
