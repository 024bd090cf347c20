"""(g) load: simulated trials through the real `ltbench run` machinery, and the integrity check it relies on."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.load import LoadOptions, MemoryWatch, epoch_integrity
from harness.core.errors import LtbenchError
from harness.records.mlflow_names import epoch_metric
from tests.fakes import write_fashion_mnist


def fake_store(path: Path, runs: dict[str, tuple[str, list[int]]]) -> Path:
    """The two MLflow tables `epoch_integrity` reads, with each run's status and logged train-loss steps."""
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (run_uuid TEXT, status TEXT)")
        con.execute("CREATE TABLE metrics (run_uuid TEXT, key TEXT, step INTEGER)")
        for run, (status, steps) in runs.items():
            con.execute("INSERT INTO runs VALUES (?, ?)", (run, status))
            for step in steps:
                con.execute("INSERT INTO metrics VALUES (?, ?, ?)", (run, epoch_metric("train_loss"), step))
                con.execute("INSERT INTO metrics VALUES (?, ?, ?)", (run, epoch_metric("lr"), step))
    return path


def test_epoch_integrity_counts_finished_runs_and_lost_and_doubled_epochs(tmp_path: Path) -> None:
    db = fake_store(
        tmp_path / "m.db",
        {"a": ("FINISHED", [1, 2, 3]), "b": ("FINISHED", [1, 2, 2, 3]), "c": ("RUNNING", [1])},
    )
    assert epoch_integrity(db, epochs=3) == (2, 2, 1)
    assert epoch_integrity(fake_store(tmp_path / "ok.db", {"a": ("FINISHED", [1, 2])}), epochs=2) == (1, 0, 0)


def test_memory_growth_is_the_slope_after_the_first_tenth() -> None:
    watch = MemoryWatch(lambda: 0)
    # start-up jump before 10 trials finished, then 0.5 MB a trial
    watch.samples = [(0, 100.0), (5, 300.0), (10, 305.0), (50, 325.0), (100, 350.0)]
    assert watch.kb_per_trial(100) == pytest.approx(512.0)
    watch.samples = [(0, 100.0)]
    assert watch.kb_per_trial(100) != watch.kb_per_trial(100)  # NaN: too few samples to fit


@pytest.mark.parametrize("trials", [0, 39, 41])
def test_a_trial_count_the_grid_cannot_make_is_refused(trials: int) -> None:
    with pytest.raises(LtbenchError, match="multiple of 40"):
        LoadOptions(trials=trials).check()


def test_the_load_runs_one_trial_per_cpu_unless_told() -> None:
    assert LoadOptions(trials=40).slots == len(os.sched_getaffinity(0))
    assert LoadOptions(trials=40, concurrency=3).slots == 3
    with pytest.raises(LtbenchError, match="--load-concurrency must be 1 or more"):
        LoadOptions(trials=40, concurrency=0).check()


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough fake images per class for the load suite's cap (500) and validation split (20)."""
    root = tmp_path_factory.mktemp("fashion-load")
    write_fashion_mnist(root, per_class=520, test_per_class=1)
    return root


@pytest.mark.integration
def test_forty_simulated_trials_through_the_real_driver_lose_no_epoch(tmp_path: Path, fashion_root: Path) -> None:
    results = tmp_path / "results"
    command = [sys.executable, "-m", "harness.cli", "bench", "--load", "40", "--load-epochs", "3"]
    command += ["--load-epoch-seconds", "0.05", "--data-root", str(fashion_root)]  # one slot per CPU
    done = subprocess.run([*command, "--results-dir", str(results)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((results / "load.json").read_text())["load"]
    assert (figures["finished_runs"], figures["epochs_missing"], figures["epochs_twice"]) == (40, 0, 0)
    assert figures["mlflow_rows"]["runs"] == 40 and figures["mlflow_rows"]["metrics"] > 40 * 3
    assert figures["report_s"] > 0 and figures["driver_cpu_s"] > 0
    assert "what limits first: " in done.stdout
    assert sorted(p.name for p in results.iterdir()) == ["load.json"]  # the load run's own results are gone
