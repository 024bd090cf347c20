"""What `ltbench run` prints while it works: one suite-wide progress display with an ETA, stage-two epochs
out of their own total, and warnings about empty shot buckets before anything runs."""

from __future__ import annotations

import io
import pickle

import pytest

from harness.core.trial import TrialConfig
from harness.data.profile import bucket_sizes, exp_profile, largest_cap_with_every_bucket
from harness.execution.progress import SuiteProgress, epoch_line, format_duration
from harness.execution.run_suite import dry_run
from harness.experiment.coverage import empty_bucket_warnings
from harness.experiment.plan import make_plan, trial_epochs
from harness.experiment.suite import build_suite


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quick_trials(*overrides: str) -> list[TrialConfig]:
    return build_suite("quick", ["seeds=[0]", "imbalance_ratios=[100]", *overrides]).trials


def test_one_count_over_all_trials_with_an_eta_weighed_by_estimated_cost() -> None:
    clock, out = Clock(), io.StringIO()
    # two backbones of 4 epochs (estimated 40 s each), a 2-epoch head (4 s) and a head with no epochs (2 s)
    epochs = {"a": 4, "b": 4, "c": 2, "d": 0}
    progress = SuiteProgress(epochs, {"a": 40, "b": 40, "c": 4, "d": 2}, stream=out, live=False, every=1e9, clock=clock)
    progress.start()
    assert progress.eta() is None and "ETA --" in progress.status()
    for epoch in (1, 2, 3, 4):
        clock.now += 10
        progress.epoch("a", epoch)
    # 40 units of work took 40 s: b's 40, c's 4 and d's 2 left at that pace
    assert progress.eta() == pytest.approx(46)
    progress.trial_done("a")
    clock.now += 10
    progress.epoch("b", 1)  # 50 units in 50 s
    assert progress.status() == "1/4 trials | 50s elapsed | ETA 36s"
    clock.now += 1
    progress.epoch("c", 1)  # a stage-two epoch is a small share of the work: the ETA hardly moves
    assert progress.eta() == pytest.approx((86 - 52) * 51 / 52)
    progress.trial_done("c")
    progress.trial_done("b")
    progress.trial_failed("d", "d-label", "boom")
    assert progress.status().startswith("4/4 trials (1 failed) | ")
    assert progress.eta() == 0
    progress.close()
    lines = out.getvalue().splitlines()
    assert "[4/4] d-label FAILED: boom" in lines
    assert lines[-1].startswith("progress: 4/4 trials")


def test_a_log_gets_periodic_plain_lines_and_a_terminal_a_bar() -> None:
    clock, log = Clock(), io.StringIO()
    progress = SuiteProgress({"a": 100}, stream=log, live=False, every=30, clock=clock)
    progress.start()
    for epoch in range(1, 101):
        clock.now += 3
        progress.epoch("a", epoch)
    progress.close()
    plain = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and all(line.startswith("progress: ") for line in plain)
    assert 9 <= len(plain) <= 12  # 300 s at one line per 30 s, not one per epoch

    tty = io.StringIO()
    bar = SuiteProgress({"a": 2}, stream=tty, live=True)
    bar.start()
    bar.epoch("a", 1)
    bar.line("  a epoch 1/2 loss 0.5")
    bar.close()
    text = tty.getvalue()
    assert "\r\x1b[2K  a epoch 1/2 loss 0.5\n" in text  # the message replaces the bar's line...
    assert "\r\x1b[2K[############............] 0/1 trials" in text  # ...and the half-full bar is redrawn
    assert not bar._ticker.is_alive()


def test_tune_can_pickle_the_display_with_its_callback() -> None:
    progress = SuiteProgress({"a": 2}, stream=io.StringIO(), live=True)
    revived = pickle.loads(pickle.dumps(progress))
    progress.close()
    assert revived.total == 1 and revived.live is False


def test_format_duration() -> None:
    assert [format_duration(s) for s in (42, 185, 7620)] == ["42s", "3m05s", "2h07m"]


def test_stage_two_trials_count_their_own_epochs() -> None:
    trials = {t.method: t for t in quick_trials("methods=[ce,crt,lws,lort,tau-norm]")}
    assert trials["ce"].recipe["epochs"] == 12
    assert {m: trial_epochs(t) for m, t in trials.items()} == {"ce": 12, "crt": 10, "lws": 5, "lort": 20, "tau-norm": 0}
    row = {"epoch": 20, "train_loss": 3.27, "val_mean_class_acc": 0.45}
    assert " epoch 20/20 loss 3.2700 | val mean-class 45.00" in epoch_line(trials["lort"], row, 20)
    assert " epoch 10/10 " in epoch_line(trials["crt"], {"epoch": 10, "train_loss": 1.0}, 10)
    # a method that trains more than its `epochs` says so, never "epoch 11/10"
    assert " epoch 11 loss" in epoch_line(trials["crt"], {"epoch": 11, "train_loss": 1.0}, 10)
    overridden = quick_trials("methods=[lort]", "method_params.lort.epochs=3")
    assert [trial_epochs(t) for t in make_plan(overridden).decoupled] == [3]


def test_the_suggested_cap_is_the_largest_that_fills_every_bucket() -> None:
    assert largest_cap_with_every_bucket(6000, 10, 50) == 999
    assert all(bucket_sizes(exp_profile(999, 10, 50)).values())
    assert not all(bucket_sizes(exp_profile(1000, 10, 50)).values())
    assert largest_cap_with_every_bucket(6000, 10, 5) is None  # many > 100 and few < 20 need r > 5
    assert largest_cap_with_every_bucket(1000, 10, 100) == 1000


def test_empty_buckets_are_warned_about_naming_the_fix() -> None:
    (line,) = empty_bucket_warnings(quick_trials("imbalance_ratios=[50]", "data.max_per_class=null"))
    assert line.startswith("warning: fashion-mnist-lt r=50: no medium-shot or few-shot class")
    assert "Medium and Few will read n/a" in line and "--set data.max_per_class=999" in line
    assert empty_bucket_warnings(quick_trials()) == []  # r=100 with the quick suite's cap: all three
    (r5,) = empty_bucket_warnings(quick_trials("imbalance_ratios=[5]"))
    assert "no data.max_per_class fills every bucket at r=5" in r5
    text = dry_run("quick", ["imbalance_ratios=[50]", "data.max_per_class=null"])
    assert text.splitlines()[-1] == line
