"""(e) Makespan: how long a suite takes on a cluster with and without a barrier between the phases.

The `cifar-lt` plan (end-to-end trials, shared backbones, decoupled trials) runs on a simulated cluster of
G GPUs, each holding `packing` trials at once (the suite asks 0.25 GPU per trial: 4). Trial durations are
the cost model's (`harness.execution.costs`, seconds on the reference GPU; a packed trial is assumed to run at its
unpacked speed, which is why small models are packed). Three figures per cluster size, in hours:
  barrier      no decoupled trial starts before every end-to-end trial and backbone has ended (before);
  no barrier   each decoupled trial starts once its own backbone has finished, critical path first (now);
  lower bound  max(the longest chain of work, total trial-seconds / slots): no schedule does better.

Two ways to get them, driving the very same `TrialQueue` (`harness.execution.trial_queue`):
  `simulate`  an exact discrete-event simulation: instant, used by the tests and `ltbench bench`;
  `ray_run`   a real Ray Tune run through `harness.execution.tune_driver.run_queue` (the Searcher and Tuner that
              `ltbench run` uses) on fake GPUs declared to Ray, each trial sleeping its duration times
              `time_scale` (`harness.bench.simulated_trial`); its makespan against the simulation's at the same
              scale is Ray's scheduling overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.bench.common import Figure, Section
from harness.execution.costs import cost_model
from harness.execution.trial_queue import Job, Schedule, TrialQueue, plan_jobs, simulate
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite

SUITE = "cifar-lt"
GPU_COUNTS = (8, 64)
TITLE = "(e) makespan of the cifar-lt plan on a simulated cluster: barrier vs no barrier (cost-model hours)"
HOUR = 3600.0


def suite_jobs(suite: str = SUITE, bench_json: Path | None = None) -> tuple[list[Job], int]:
    """The suite's plan as jobs with cost-model durations, and its trials per GPU (1 / the GPU share)."""
    trials = build_suite(suite).trials
    plan = make_plan(trials)
    share = float(trials[0].resources.get("gpu", 1) or 1)
    return plan_jobs(plan.trials, cost_model(bench_json), plan.backbone_of), max(1, round(1 / share))


def lower_bound(jobs: list[Job], slots: int) -> float:
    """max(the longest chain of work, total work / slots)."""
    queue = TrialQueue(jobs)
    return max(max(queue.priority.values(), default=0.0), sum(j.cost for j in jobs) / slots)


def ray_run(
    jobs: list[Job], gpus: int, packing: int, time_scale: float, barrier: bool = False, cpus_per_trial: float = 1.0
) -> Schedule:
    """The jobs through a real Ray Tune run on `gpus` fake GPUs (`packing` trials each), durations scaled by
    `time_scale`, with or without the `barrier`; times in the returned schedule are scaled back to cost-model
    seconds."""
    import tempfile

    import ray
    from ray.tune import Callback

    from harness.bench.simulated_trial import simulated_resources, sleep_trial
    from harness.execution.ray_cluster import LOOPBACK, _loopback_only
    from harness.execution.tune_driver import run_queue

    queue = TrialQueue(jobs, barrier=barrier)
    configs = {
        j.key: {"key": j.key, "seconds": j.cost * time_scale, "cpu": cpus_per_trial, "gpu": 1 / packing} for j in jobs
    }
    schedule = Schedule()

    class Settle(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            key, result = trial.config["key"], trial.last_result
            schedule.started[key], schedule.ended[key] = result["began"], result["ended"]
            queue.mark_finished(key)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            queue.mark_failed(trial.config["key"], "simulated trial failed")

    _loopback_only(True)
    ray.init(
        address="local",
        num_cpus=int(gpus * packing * cpus_per_trial),
        num_gpus=gpus,
        _node_ip_address=LOOPBACK,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,  # idle reused workers print Ray's SIGTERM traceback when the run shuts down
    )
    try:
        began = time.time()
        with tempfile.TemporaryDirectory(prefix="ltbench-makespan-") as tmp:
            run_queue(
                sleep_trial, simulated_resources, queue, configs, [Settle()], "makespan", str(Path(tmp).resolve()), 0
            )
    finally:
        ray.shutdown()
        _loopback_only(False)
    schedule.started = {k: (t - began) / time_scale for k, t in schedule.started.items()}
    schedule.ended = {k: (t - began) / time_scale for k, t in schedule.ended.items()}
    return schedule


def _figures(jobs: list[Job], gpus: int, packing: int, run: Callable[[bool], float], how: str) -> list[Figure]:
    slots = gpus * packing
    barrier, free = run(True), run(False)
    bound = lower_bound(jobs, slots)
    detail: dict[str, Any] = {
        "how": how,
        "gpus": gpus,
        "trials_per_gpu": packing,
        "trials": len(jobs),
        "barrier_hours": barrier / HOUR,
        "no_barrier_hours": free / HOUR,
        "lower_bound_hours": bound / HOUR,
        "barrier_over_bound": barrier / bound,
        "no_barrier_over_bound": free / bound,
    }
    where = f"{gpus} GPUs x {packing}"
    return [
        hours_figure(
            f"{where}: no barrier vs barrier, {how}",
            (free, "makespan, no barrier (critical path first)"),
            (barrier, "makespan, barrier between the phases"),
            detail,
        ),
        hours_figure(
            f"{where}: lower bound vs no barrier, {how}",
            (free, "makespan, no barrier"),
            (bound, "lower bound max(critical path, work / slots)"),
            detail,
        ),
    ]


def hours_figure(case: str, value: tuple[float, str], baseline: tuple[float, str], detail: dict[str, Any]) -> Figure:
    """A makespan figure: (seconds, what it is) of the value and of its baseline, shown in hours; the ratio
    is baseline / value, so above 1 means the value's schedule is shorter."""
    return Figure(
        case=case,
        value=value[0] / HOUR,
        baseline=baseline[0] / HOUR,
        ratio=baseline[0] / value[0],
        unit="hours",
        value_name=value[1],
        baseline_name=baseline[1],
        detail=detail,
    )


def measure(
    gpu_counts: tuple[int, ...] = GPU_COUNTS,
    ray_gpus: int | None = None,
    packing: int | None = None,
    time_scale: float = 0.01,
    max_trials: int | None = None,
    bench_json: Path | None = None,
    log: Callable[[str], None] = print,
) -> Section:
    """The event simulation on each of `gpu_counts`; with `ray_gpus`, also a real Ray run on that many fake
    GPUs (`packing` trials each, default the suite's) of the plan's first `max_trials` end-to-end trials
    and backbones with the decoupled trials on them (default: the whole plan)."""
    section = Section("makespan", TITLE)
    jobs, suite_packing = suite_jobs(bench_json=bench_json)
    packing = packing or suite_packing
    for gpus in gpu_counts:
        section.figures += _figures(
            jobs,
            gpus,
            suite_packing,
            lambda barrier, g=gpus: simulate(jobs, g * suite_packing, barrier).makespan,
            "simulated",
        )
    if ray_gpus:
        first = [j for j in jobs if j.after is None][:max_trials]
        kept = {j.key for j in first}
        subset = first + [j for j in jobs if j.after in kept]
        slots = ray_gpus * packing
        log(f"(e) makespan on Ray: {len(subset)} trials, {ray_gpus} fake GPUs x {packing}, time scale {time_scale:g}")
        for barrier in (True, False):
            started = time.perf_counter()
            measured = ray_run(subset, ray_gpus, packing, time_scale, barrier).makespan
            wall = time.perf_counter() - started
            simulated = simulate(subset, slots, barrier).makespan
            bound = lower_bound(subset, slots)
            how = "barrier" if barrier else "no barrier"
            log(f"  {how}: {measured / HOUR:.3f} h on Ray, {simulated / HOUR:.3f} h simulated ({wall:.0f} s)")
            section.figures.append(
                hours_figure(
                    f"{ray_gpus} GPUs x {packing}, {len(subset)} trials, {how}: Ray vs simulated",
                    (measured, f"makespan on Ray (sleeping trials at time scale {time_scale:g})"),
                    (simulated, "makespan of the event simulation"),
                    {
                        "time_scale": time_scale,
                        "wall_seconds": wall,
                        "overhead": measured / simulated - 1,
                        "lower_bound_hours": bound / HOUR,
                        "barrier": barrier,
                    },
                )
            )
    section.notes["cost model"] = (
        "trial durations are harness.execution.costs estimates on the reference GPU at the suite's packing"
    )
    return section
