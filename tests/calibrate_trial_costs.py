"""Measure what the cost model (`harness/execution/costs.py`) assumes: real `run_trial` runs of the cifar-lt suite on a
GPU, alone and packed several to a GPU. Not a test (pytest does not collect it); run it on a GPU machine:

    LTDATA=/tmp/ltdata python -m tests.calibrate_trial_costs

It writes full-size fake CIFAR-10/100 files (random pixels in the real pickle format: speed does not depend
on the pixels) unless `$LTDATA` already holds them, then times each case in its own process (so each pays the
imports and data loading a fresh Ray worker pays) and prints one line per trial: wall seconds, seconds of each
epoch, peak GPU memory. `$EPOCHS` (default 5) sets the backbone epochs; `$PLAN` picks the cases. The figures
in docs/benchmarks.md came from this script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("LTDATA", "/tmp/ltdata"))
TRIALS = Path(os.environ.get("LTTRIALS", "/tmp/lttrials"))
CASES = "single,fp32,stage2,c100,cw,pack4,pack8"
STAGE_TWO = ("la-posthoc", "crt", "tau-norm", "lws", "ncm", "lort")


def _trial(dataset: str, ratio: int, method: str, seed: int, epochs: int, precision: str):
    from harness.experiment.suite import build_suite

    sets = [
        f"recipe.epochs={epochs}",
        f"recipe.precision={precision}",
        "recipe.eval_every=1000",  # only the final evaluation, as most epochs of a 200-epoch run
        f"data.root={ROOT}",
        f"seeds=[{seed}]",
        f"datasets=[{dataset}]",
        f"imbalance_ratios=[{ratio}]",
        f"methods=[{method}]",
    ]
    return build_suite("cifar-lt", sets).trials[0]


def run_one(args: list[str]) -> None:
    """In a child process: one trial, then its timing as a JSON line."""
    import torch

    from harness.records.storage import Storage
    from tests.trial_runs import train

    dataset, ratio, method, seed, epochs, precision = args
    cfg = _trial(dataset, int(ratio), method, int(seed), int(epochs), precision)
    started = time.perf_counter()
    result = train(cfg, Storage.open(TRIALS))
    row = {
        "method": method,
        "dataset": dataset,
        "ratio": int(ratio),
        "precision": result["effective"]["precision"],
        "train_images": sum(result["train_counts"]),
        "wall_s": time.perf_counter() - started,
        "epoch_s": [h["epoch_seconds"] for h in result["history"] if "epoch_seconds" in h],
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
    }
    print("ROW " + json.dumps(row), flush=True)


def _run(cases: list[tuple], tag: str) -> None:
    """Start every case at once (a packed GPU when there are several) and print their rows."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.calibrate_trial_costs", "one", *map(str, case)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for case in cases
    ]
    for proc in procs:
        out, _ = proc.communicate()
        rows = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]
        if proc.returncode or not rows:
            print(out[-3000:], flush=True)
        for row in rows:
            print(tag, json.dumps(row), flush=True)


def main() -> None:
    from tests.fakes import write_cifar10, write_cifar100

    if not (ROOT / "cifar-10-batches-py").is_dir():
        write_cifar10(ROOT, per_class=5000, test_per_class=1000)
        write_cifar100(ROOT, per_class=500, test_per_class=100)
    epochs = int(os.environ.get("EPOCHS", 5))
    plan = os.environ.get("PLAN", CASES).split(",")
    one = ("cifar10-lt", 100, "ce", 0, epochs)
    if "single" in plan:
        _run([(*one, "auto")], "single")
    if "fp32" in plan:
        _run([("cifar10-lt", 100, "ce", 1, epochs, "fp32")], "fp32")
    if "stage2" in plan:  # on the backbone of "single"
        for method in STAGE_TWO:
            _run([("cifar10-lt", 100, method, 0, epochs, "auto")], "stage2")
    if "c100" in plan:
        _run([("cifar100-lt", 100, "ce", 0, epochs, "auto")], "c100")
    if "cw" in plan:
        _run([("cifar10-lt", 100, "cw-b3rs-bet", 0, epochs, "auto")], "cw")
    for k, first_seed in ((4, 10), (8, 20)):  # seeds no other case trains, so every trial really runs
        if f"pack{k}" in plan:
            _run([("cifar10-lt", 100, "ce", first_seed + s, epochs, "auto") for s in range(k)], f"pack{k}")


if __name__ == "__main__":
    run_one(sys.argv[2:]) if sys.argv[1:2] == ["one"] else main()
