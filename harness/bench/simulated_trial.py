"""Trainables that stand in for training, for the benches that measure ltbench's machinery, not a model.

`sleep_trial` is the makespan bench's: it sleeps for its trial's estimated duration. `simulated_training` is
the load bench's: it stands in for `harness.execution.worker.train_trial` in a real `ltbench run` (driver,
queue, Tune, MLflow, store), reporting each epoch's row and writing a `result.json` of the trainer's schema,
with random accuracies, after sleeping `epoch_seconds` an epoch. Both leave torch out, so that each of the
many Ray workers a bench runs stays small. Their numbers mean nothing: a load run's results dir is the
bench's own and is deleted after it.
"""

from __future__ import annotations

import random
import time
from typing import Any

from harness.execution.trial_messages import epoch_message, final_message

SIMULATED_DEVICE = "simulated (no training)"


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


def simulated_training(config: dict[str, Any], epoch_seconds: float = 0.0) -> None:
    """Each trial the Tune trial carries (one, or a group's `members`), one after another: its epochs'
    reports, then its result in the store and its `final` report, as the trainer would make them."""
    from ray import tune

    from harness.core.files import atomic_write_json
    from harness.records.artifacts import MANIFEST_FILE, RESULT_FILE
    from harness.records.storage import Storage

    for member in config.get("members") or [config]:
        trial, key = member["trial"], member["key"]
        files = Storage.open(member["storage"]).trial(key)
        rng = random.Random(key)
        history = []
        for epoch in range(1, int(trial["recipe"]["epochs"]) + 1):
            time.sleep(epoch_seconds)
            row = {"epoch": epoch, "train_loss": 2.3 / epoch, "lr": 0.1, "epoch_seconds": epoch_seconds}
            row.update(_accuracies(rng, ("val", "test")))
            row["time"] = time.time()
            history.append(row)
            tune.report(epoch_message(key, row))
        files.local_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(files.local_dir / MANIFEST_FILE, {"train": list(range(100)), "val": []})
        metrics = {k: v for k, v in history[-1].items() if k.startswith(("val_", "test_"))}
        counts = [100] * 10
        result = {
            "trial_key": key,
            "metrics": metrics,
            "variants": {},
            "per_class_acc": {s: [rng.random() for _ in counts] for s in ("val", "test")},
            "class_counts": counts,
            "train_counts": counts,
            "history": history,
            "device": SIMULATED_DEVICE,
            "effective": {"simulated": True},
            "versions": {},
            "attempts": 1,
        }
        atomic_write_json(files.local_dir / RESULT_FILE, result)
        files.push(MANIFEST_FILE, RESULT_FILE)
        tune.report(final_message(key, metrics))


def _accuracies(rng: random.Random, splits: tuple[str, ...]) -> dict[str, float]:
    """Random numbers under the names the trainer's evaluation gives them (`test_top1`, `val_few_acc`, ...)."""
    names = ("top1", "mean_class_acc", "many_acc", "medium_acc", "few_acc")
    return {f"{split}_{name}": rng.random() for split in splits for name in names}
