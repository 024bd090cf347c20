"""A worker's messages to the driver: what the trainer sent arrives unchanged, and Tune sees no number of it."""

from __future__ import annotations

import math
import os
from numbers import Number

import numpy as np
import pytest
import torch
from ray.tune.utils import flatten_dict

from harness.execution.trial_messages import epoch_message, failed_message, final_message, read_message
from harness.execution.tune_driver import TUNE_LOGGERS_ENV, _tune_environment


def test_an_epoch_row_arrives_as_the_trainer_sent_it_numpy_and_torch_scalars_as_python_numbers() -> None:
    row = {"epoch": np.int64(3), "train_loss": float("nan"), "lr": torch.tensor(0.05), "test_top1": np.float32(0.5)}
    message = read_message(epoch_message("k1", row))
    assert message is not None and (message.kind, message.key) == ("epoch", "k1")
    assert message.payload["epoch"] == 3 and isinstance(message.payload["epoch"], int)
    assert math.isnan(message.payload["train_loss"])
    assert message.payload["lr"] == pytest.approx(0.05) and message.payload["test_top1"] == 0.5


def test_final_and_failed_messages_and_a_report_that_carries_none() -> None:
    final = read_message(final_message("k2", {"test_top1": 0.25}))
    assert final is not None and final.kind == "final" and final.payload == {"test_top1": 0.25}
    failed = read_message(failed_message("k3", "loss is NaN at epoch 2"))
    assert failed is not None and (failed.kind, failed.payload) == ("failed", "loss is NaN at epoch 2")
    assert read_message({"began": 1.0, "ended": 2.0}) is None  # the makespan bench's sleeps


def test_tune_finds_no_number_to_keep_statistics_of() -> None:
    """Tune runs its max/min/mean/last-n statistics over every number of a flattened report, for the whole
    run; the trainer's numbers must reach it only inside the message's string."""
    row = {"epoch": 1, "train_loss": 0.3, "per_split": {"val_top1": 0.2, "test_top1": 0.1}}
    for message in (epoch_message("k", row), final_message("k", {"test_top1": 0.1}), failed_message("k", "x")):
        assert not [name for name, value in flatten_dict(message).items() if isinstance(value, Number)]


def test_an_object_that_is_not_a_number_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="holds object, which is not a number"):
        epoch_message("k", {"where": object()})


def test_tune_writes_no_per_trial_logs_of_its_own_unless_the_user_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TUNE_LOGGERS_ENV, raising=False)
    with _tune_environment():
        assert os.environ[TUNE_LOGGERS_ENV] == "1"
    assert TUNE_LOGGERS_ENV not in os.environ
    monkeypatch.setenv(TUNE_LOGGERS_ENV, "0")
    with _tune_environment():
        assert os.environ[TUNE_LOGGERS_ENV] == "0"
