"""(g) Load: many simulated trials through the real driver, queue, Tune and MLflow, and what gives first.

`ltbench bench --load N` writes a suite of N end-to-end Fashion-MNIST-LT trials and runs it with `run_suite`,
exactly as `ltbench run` does (results-dir lock, Ray, the queue, the Tune driver, the event bridge to
MLflow's SQLite store, the leaderboard), except that `simulated_training` (`harness.bench.simulated_trial`)
stands in for the trainer: each epoch sleeps, then reports a row of random numbers. Its results dir is
the bench's own, under a temporary folder, deleted afterwards. Then it times `ltbench report` on the N runs
and reads the SQLite store back to check that every trial is FINISHED with each epoch logged exactly once.

Unlike sections (a)-(f) these are absolute figures of this machine, since the driver is what is measured:
its CPU seconds and memory per trial, MLflow rows written per second, epoch events per second, the report's
seconds. `limits` names what ran out first: the driver's core (its CPU time near the wall time), or the
trials themselves (the run about as long as its epochs slept).
"""

from __future__ import annotations

import os
import resource
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.bench.common import cpu_model
from harness.bench.simulated_trial import simulated_training
from harness.core.errors import LtbenchError
from harness.core.text import plural
from harness.execution.run_suite import run_suite
from harness.records.artifacts import RESULT_FILE
from harness.records.mlflow_names import epoch_metric
from harness.records.provenance import git_commit, package_versions
from harness.reports.report import build_report

# 10 end-to-end methods x 4 ratios: 40 trials a seed (decoupled methods would add backbones to the count)
LOAD_METHODS = ("ce", "cb", "ce-drw", "focal", "la", "ldam-drw", "balanced-softmax", "mixup", "cw", "cw-b3rs")
LOAD_RATIOS = (10, 50, 100, 200)
TRIALS_PER_SEED = len(LOAD_METHODS) * len(LOAD_RATIOS)
MLFLOW_TABLES = ("runs", "metrics", "latest_metrics", "params", "tags", "inputs", "input_tags", "datasets")


@dataclass(frozen=True)
class LoadOptions:
    """N trials (a multiple of 40), each `epochs` epochs of `epoch_seconds`, `concurrency` of them at once."""

    trials: int = 5000
    epochs: int = 4
    epoch_seconds: float = 0.1
    concurrency: int | None = None  # one per CPU of this process (`slots`)
    data_root: str | None = None
    plots: bool = True  # also time `ltbench report` with its plots (it draws them by default)

    @property
    def slots(self) -> int:
        """Trials at once. One per CPU by default: with more slots than cores and trials shorter than a Ray
        worker's start (seconds on a busy machine), Tune hands a finished trial's worker to a trial whose own
        worker is still starting and kills that one, so most workers started are thrown away."""
        return len(os.sched_getaffinity(0)) if self.concurrency is None else self.concurrency

    def check(self) -> None:
        if self.trials < TRIALS_PER_SEED or self.trials % TRIALS_PER_SEED:
            raise LtbenchError(f"--load takes a multiple of {TRIALS_PER_SEED} trials, got {self.trials}")
        if self.epochs < 1 or self.epoch_seconds < 0 or self.slots < 1:
            raise LtbenchError("--load-epochs and --load-concurrency must be 1 or more, --load-epoch-seconds >= 0")


@dataclass
class LoadFigures:
    trials: int
    epochs: int
    epoch_seconds: float
    concurrency: int
    wall_s: float
    slept_bound_s: float  # the run's length if the machinery cost nothing
    driver_cpu_s: float
    driver_cpu_ms_per_trial: float
    driver_busy: float  # driver CPU seconds / wall seconds: 1.0 is one core flat out
    driver_rss_start_mb: float
    driver_rss_peak_mb: float
    driver_kb_per_trial: float  # the driver's memory growth per finished trial (`MemoryWatch.kb_per_trial`)
    epoch_events_per_s: float
    mlflow_rows: dict[str, int]
    mlflow_rows_per_s: float
    mlflow_db_mb: float
    report_s: float  # `ltbench report --no-plots`
    report_with_plots_s: float | None  # `ltbench report`
    finished_runs: int
    epochs_missing: int
    epochs_twice: int
    limits: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_load_suite(path: Path, options: LoadOptions) -> Path:
    suite = {
        "name": "load",
        "description": f"{options.trials} simulated trials for `ltbench bench --load` (nothing is trained)",
        "datasets": ["fashion-mnist-lt"],
        "imbalance_ratios": list(LOAD_RATIOS),
        "methods": list(LOAD_METHODS),
        "seeds": list(range(options.trials // TRIALS_PER_SEED)),
        "recipe": {"base": "quick", "epochs": options.epochs, "eval_every": 1},
        "resources": {"cpu": round(len(os.sched_getaffinity(0)) / options.slots, 4), "gpu": 0},
        "group_size": 1,
        # no image is read: a small cap lets a small copy of the files (the tests' fakes) pass the data check
        "data": {"max_per_class": 500, "val_per_class": 20},
    }
    if options.data_root:
        suite["data"]["root"] = options.data_root
    path.write_text(yaml.safe_dump(suite))
    return path


class MemoryWatch:
    """This process's resident memory against the trials finished so far (`finished()`), sampled every
    `every_s` on a thread. `kb_per_trial` is the slope of a least-squares line through the samples taken
    after the first tenth of the trials finished, so the start-up (Ray, MLflow, imports) is not counted."""

    def __init__(self, finished: Callable[[], int], every_s: float = 2.0) -> None:
        self.finished = finished
        self.start_mb = self.peak_mb = rss_mb()
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(every_s,), daemon=True)

    def _sample(self) -> None:
        mb = rss_mb()
        self.peak_mb = max(self.peak_mb, mb)
        self.samples.append((self.finished(), mb))

    def _watch(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self._sample()

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def kb_per_trial(self, trials: int) -> float:
        points = [(n, mb) for n, mb in self.samples if n >= trials / 10]
        if len({n for n, _ in points}) < 2:
            return float("nan")
        mean_n = sum(n for n, _ in points) / len(points)
        mean_mb = sum(mb for _, mb in points) / len(points)
        covariance = sum((n - mean_n) * (mb - mean_mb) for n, mb in points)
        variance = sum((n - mean_n) ** 2 for n, _ in points)
        return 1024 * covariance / variance


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def table_rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in MLFLOW_TABLES}


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def epoch_integrity(db: Path, epochs: int) -> tuple[int, int, int]:
    """(FINISHED runs, epochs missing, epochs logged more than once) over every run's train-loss curve."""
    loss = epoch_metric("train_loss")
    with sqlite3.connect(db) as con:
        finished = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
        per_step = con.execute(
            "SELECT run_uuid, step, COUNT(*) FROM metrics WHERE key = ? GROUP BY run_uuid, step", (loss,)
        ).fetchall()
        runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    twice = sum(n - 1 for _, _, n in per_step if n > 1)
    missing = runs * epochs - sum(1 for _, step, _ in per_step if 1 <= step <= epochs)
    return finished, missing, twice


def measure_load(options: LoadOptions, log: Callable[[str], None]) -> LoadFigures:
    options.check()
    with tempfile.TemporaryDirectory(prefix="ltbench-load-") as tmp:
        results = Path(tmp) / "results"
        suite = str(write_load_suite(Path(tmp) / "load.yaml", options))
        log(f"(g) load: {plural(options.trials, 'simulated trial')} of {plural(options.epochs, 'epoch')} through "
            f"ltbench run, {options.slots} at once")  # fmt: skip
        trainable = _with_epoch_seconds(options.epoch_seconds)
        cpu_before, started = cpu_seconds(), time.perf_counter()
        trial_dirs = results / "trials"
        with MemoryWatch(lambda: sum(1 for _ in trial_dirs.glob(f"*/{RESULT_FILE}"))) as memory:
            summary = run_suite(suite, results_dir=results, verbose=0, trainable=trainable)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
        if summary.failed:
            raise LtbenchError(f"the load run had failed trials, first: {summary.failed[0][1]}")
        db = results / "mlflow.db"
        rows = table_rows(db)
        log(f"(g) load: ran in {wall:.0f} s; timing ltbench report on {plural(options.trials, 'run')}")
        report_s = timed(lambda: build_report(suite, None, None, results, plots=False))
        plots_s = timed(lambda: build_report(suite, None, None, results, plots=True)) if options.plots else None
        finished, missing, twice = epoch_integrity(db, options.epochs)
        db_mb = db.stat().st_size / 2**20
    bound = options.trials * options.epochs * options.epoch_seconds / options.slots
    busy = cpu / wall
    if busy > 0.8:
        limits = f"the driver's CPU ({busy:.0%} of one core busy over the run)"
    elif wall < 1.5 * bound:
        limits = f"the trials themselves (the run took {wall / bound:.2f}x the time its epochs slept)"
    else:
        limits = f"neither the driver ({busy:.0%} busy) nor the trials' sleep: Ray's scheduling and workers"
    return LoadFigures(
        trials=options.trials,
        epochs=options.epochs,
        epoch_seconds=options.epoch_seconds,
        concurrency=options.slots,
        wall_s=round(wall, 1),
        slept_bound_s=round(bound, 1),
        driver_cpu_s=round(cpu, 1),
        driver_cpu_ms_per_trial=round(1000 * cpu / options.trials, 1),
        driver_busy=round(busy, 3),
        driver_rss_start_mb=round(memory.start_mb, 1),
        driver_rss_peak_mb=round(memory.peak_mb, 1),
        driver_kb_per_trial=round(memory.kb_per_trial(options.trials), 1),
        epoch_events_per_s=round(options.trials * options.epochs / wall, 1),
        mlflow_rows=rows,
        mlflow_rows_per_s=round(sum(rows.values()) / wall, 1),
        mlflow_db_mb=round(db_mb, 1),
        report_s=round(report_s, 1),
        report_with_plots_s=None if plots_s is None else round(plots_s, 1),
        finished_runs=finished,
        epochs_missing=missing,
        epochs_twice=twice,
        limits=limits,
    )


def run_environment() -> dict[str, Any]:
    """What the figures were measured on and with: they are this machine's, not ratios."""
    return {
        "cpu_model": cpu_model(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "commit": git_commit(),
        **package_versions(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _with_epoch_seconds(epoch_seconds: float) -> Any:
    """The simulated trainable with its epoch length bound in (Tune hands a trainable only its config)."""
    from ray import tune

    return tune.with_parameters(simulated_training, epoch_seconds=epoch_seconds)


def format_load(figures: LoadFigures) -> str:
    f = figures
    lines = [
        f"(g) load: {f.trials} simulated trials x {f.epochs} epochs of {f.epoch_seconds} s, {f.concurrency} at once",
        f"  wall {f.wall_s} s (sleep alone: {f.slept_bound_s} s); {f.epoch_events_per_s} epoch events/s",
        f"  driver: {f.driver_cpu_s} CPU s ({f.driver_cpu_ms_per_trial} ms a trial, {f.driver_busy:.0%} of a core); "
        f"RSS {f.driver_rss_start_mb} -> {f.driver_rss_peak_mb} MB ({f.driver_kb_per_trial} KB a trial)",
        f"  MLflow: {sum(f.mlflow_rows.values())} rows ({f.mlflow_rows_per_s}/s), mlflow.db {f.mlflow_db_mb} MB",
        f"  ltbench report on {f.trials} runs: {f.report_s} s without plots, {f.report_with_plots_s} s with",
        f"  integrity: {f.finished_runs}/{f.trials} runs FINISHED, {f.epochs_missing} epochs missing, "
        f"{f.epochs_twice} logged twice",
        f"  what limits first: {f.limits}",
    ]
    return "\n".join(lines)
