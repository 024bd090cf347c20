"""One Tune run per `ltbench run`, on real Ray: a decoupled trial starts while another backbone still trains,
a trial whose worker dies is retried from its checkpoint, and a trial's own exception is not retried."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.experiment.suite import build_suite
from harness.records.artifacts import RESULT_FILE
from harness.records.storage import Storage
from harness.records.tracker import TRIAL_KEY_TAG
from tests.conftest import write_tiny_suite
from tests.execution.test_sweeps import ltbench, runs_by_key
from tests.plugin_packages import install_plugin

pytestmark = pytest.mark.integration  # Ray Tune and MLflow: `make test-unit` leaves it out

ATTEMPTS_ENV = "LTBENCH_TEST_ATTEMPTS"
DYING_PLUGIN = """
import os
import signal
from pathlib import Path

from harness.plugins.method import Method, register_method


def note(name, epoch):
    with open(Path(os.environ["LTBENCH_TEST_ATTEMPTS"]) / (name + ".log"), "a") as f:
        f.write(f"{epoch}\\n")


@register_method
class DiesOnce(Method):
    name = "dies-once"
    description = "its worker kills itself (SIGKILL) at the start of epoch 2 of its first attempt (a test plugin)"

    def on_epoch_start(self, epoch, num_epochs):
        note(self.name, epoch)
        marker = Path(os.environ["LTBENCH_TEST_ATTEMPTS"]) / "killed"
        if epoch == 2 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


@register_method
class Raises(Method):
    name = "raises"
    description = "raises in its first step (a test plugin)"

    def on_epoch_start(self, epoch, num_epochs):
        note(self.name, epoch)

    def loss(self, logits, targets):
        raise RuntimeError("raises: a bug in the method")
"""


def test_a_decoupled_trial_starts_while_another_backbone_still_trains(tmp_path: Path, fake_fashion_root: Path) -> None:
    # two backbones on two CPU slots, one several times longer (ratio 1 keeps every image, ratio 10 few; enough epochs
    # that training, not a worker's start-up, sets the lengths): the head
    # on the short one starts as soon as it ends, while the long one still trains
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        methods=["ce", "tau-norm"],
        seeds=[0],
        imbalance_ratios=[1, 10],
        recipe={"base": "quick", "epochs": 48, "batch_size": 8, "eval_every": 48},
    )
    results = tmp_path / "r"
    done = ltbench("run", str(suite_file), "--results-dir", str(results), "--quiet")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 trials, 0 already finished, 4 run, 0 failed" in done.stdout
    runs = {key: found[0] for key, found in runs_by_key(results, "tiny").items()}
    trials = {t.key: t for t in build_suite(str(suite_file)).trials}
    spans = {
        f"{trials[k].method}{trials[k].imbalance_ratio:g}": (r.info.start_time, r.info.end_time)
        for k, r in runs.items()
    }
    assert spans["tau-norm10"][0] >= spans["ce10"][1]  # never before its own backbone has finished
    assert spans["tau-norm1"][0] >= spans["ce1"][1]
    assert spans["tau-norm10"][0] < spans["ce1"][1], spans  # no barrier: the long backbone still trains


def test_a_lost_worker_is_retried_from_its_checkpoint_and_a_trials_own_error_is_not(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    site, attempts = tmp_path / "site", tmp_path / "attempts"
    attempts.mkdir()
    install_plugin(site, "dying-methods", "dying_methods", DYING_PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(site), ATTEMPTS_ENV: str(attempts)}
    suite_file = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        methods=["dies-once", "raises"],
        seeds=[0],
        recipe={"base": "quick", "epochs": 4, "batch_size": 16, "eval_every": 1},
    )
    results = tmp_path / "r"
    done = ltbench("run", str(suite_file), "--results-dir", str(results), "--quiet", env=env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 trials, 0 already finished, 2 run, 1 failed" in done.stdout
    assert "FAILED fashion-mnist-lt-r4-raises-s0: RuntimeError: raises: a bug in the method" in done.stdout
    assert "fashion-mnist-lt-r4-dies-once-s0: its worker was lost" in done.stdout
    # epochs 0 and 1 (checkpointed), killed at the start of 2, resumed at 2 from the checkpoint, not at 0
    assert (attempts / "dies-once.log").read_text().split() == ["0", "1", "2", "2", "3"]
    assert (attempts / "raises.log").read_text().split() == ["0"]  # attempted exactly once
    runs = {found[0].data.params["method"]: found for found in runs_by_key(results, "tiny").values()}
    dies_key = runs["dies-once"][0].data.tags[TRIAL_KEY_TAG]  # the plugin is not importable in this process
    record = Storage.open(results / "trials").trial(dies_key).read_json(RESULT_FILE)
    assert [a["start_epoch"] for a in record["attempts"]] == [0, 2]  # as result.json tells it
    assert [r.info.status for r in runs["dies-once"]] == ["FINISHED"]  # one run across both attempts
    assert [r.info.status for r in runs["raises"]] == ["FAILED"]
