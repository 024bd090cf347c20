"""How trials are grouped into worker processes: the queue's groups, the searcher's configs and resources,
`auto` from bench.json, the suite key and `--group-size`, and the dry run's cost and grouping lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.execution.grouping import GROUPING_SECTION, resolve_group_size
from harness.execution.run_suite import dry_run
from harness.execution.trial_queue import Job, TrialQueue, plan_jobs
from harness.execution.tune_driver import LiveTrialsScheduler, QueueSearcher
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from tests.conftest import write_tiny_suite


def test_a_group_is_the_first_ready_job_and_the_next_ready_jobs_of_its_group() -> None:
    queue = TrialQueue(
        [
            Job("x1", 5.0, group="x"),
            Job("y1", 9.0, group="y"),
            Job("x2", 3.0, group="x"),
            Job("x3", 4.0, group="x"),
            Job("solo", 8.0),
            Job("x4", 1.0, group="x"),
        ]
    )
    assert queue.pop_group(3) == ["y1"]  # the highest priority first, and nothing else shares its group
    assert queue.pop_group(3) == ["solo"]  # no group: alone
    assert queue.pop_group(3) == ["x1", "x3", "x2"]  # then its mates in priority order, up to the size
    assert queue.pop_group(1) == ["x4"] and queue.pop_group(3) == []
    assert queue.running == {"y1", "solo", "x1", "x2", "x3", "x4"}


def test_end_to_end_trials_of_one_dataset_model_and_recipe_group_and_decoupled_trials_go_alone(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    suite = write_tiny_suite(
        tmp_path / "s.yaml", fake_fashion_root, methods=["ce", "la", "crt"], imbalance_ratios=[4, 10]
    )
    plan = make_plan(build_suite(str(suite)).trials)
    jobs = {j.key: j for j in plan_jobs(plan.trials, lambda cfg: 1.0, plan.backbone_of)}
    trials = {t.key: t for t in plan.trials}
    groups = {}
    for key, job in jobs.items():
        assert (job.group is None) == (key in plan.backbone_of)
        if job.group is not None:
            groups.setdefault(job.group, set()).add(trials[key].imbalance_ratio)
    assert sorted(map(sorted, groups.values())) == [[4.0], [10.0]]  # one group per ratio, all seeds and methods


def test_the_searcher_hands_out_a_group_as_one_tune_trial_holding_one_trials_resources() -> None:
    queue = TrialQueue([Job("a", 3.0, group="g"), Job("b", 2.0, group="g"), Job("c", 1.0, group="g")])
    configs = {k: {"key": k, "trial": {"resources": {"cpu": 1}}} for k in "abc"}
    searcher = QueueSearcher(queue, configs, lambda key: {"CPU": 1.0}, group_size=2)
    searcher.totals, searcher.read_at = {"CPU": 1.0}, float("inf")  # one CPU, never read again
    first = searcher.suggest("t1")
    assert first["key"] == "a" and [m["key"] for m in first["members"]] == ["a", "b"]
    assert searcher.suggest("t2") is None  # the group holds the only CPU
    queue.mark_finished("a")
    assert searcher.suggest("t3") is None  # ... until its last trial has ended
    queue.mark_finished("b")
    assert searcher.suggest("t4") == configs["c"]  # a group of one is the trial's own config


def grouping_bench(path: Path, device_type: str, model: str, ratios: dict[int, float], **mode: str) -> Path:
    """A bench.json whose grouping section measured `ratios` (K -> ratio) eagerly, or in another `mode`
    (step, streams, fusion)."""
    figures = [
        {"unit": "images/s", "ratio": ratio, "detail": {"device_type": device_type, "model": model, "group_size": k}}
        for k, ratio in ratios.items()
    ]
    for figure in figures:
        figure["detail"].update({"step": "eager", "streams": "default", "fusion": "none", **mode})
    path.write_text(json.dumps({"sections": {GROUPING_SECTION: {"figures": figures}}}))
    return path


def test_auto_takes_the_measured_size_only_where_grouping_pays(tmp_path: Path, fake_fashion_root: Path) -> None:
    trials = build_suite(str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root))).trials
    model = trials[0].model
    assert resolve_group_size("auto", trials, tmp_path / "missing.json")[0] == 1
    pays = grouping_bench(tmp_path / "pays.json", "cpu", model, {1: 1.0, 2: 1.3, 4: 1.6})
    assert resolve_group_size("auto", trials, pays)[0] == 4
    slower = grouping_bench(tmp_path / "slower.json", "cpu", model, {1: 1.0, 2: 0.97, 4: 0.93})
    assert resolve_group_size("auto", trials, slower)[0] == 1
    elsewhere = grouping_bench(tmp_path / "gpu.json", "cuda", model, {1: 1.0, 8: 3.0})  # measured on a GPU
    assert resolve_group_size("auto", trials, elsewhere)[0] == 1
    assert resolve_group_size(3, trials, pays) == (3, "as asked")


@pytest.mark.parametrize(
    "mode", [{"step": "graph"}, {"streams": "per trial"}, {"fusion": "fused"}], ids=["captured", "streams", "fused"]
)
def test_auto_counts_only_the_path_a_grouped_run_takes(tmp_path: Path, fake_fashion_root: Path, mode: dict) -> None:
    """A gain measured with captured steps, per-trial streams or fusion is not one a run gets by default."""
    trials = build_suite(str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root))).trials
    other = grouping_bench(tmp_path / "other.json", "cpu", trials[0].model, {1: 1.0, 4: 2.0}, **mode)
    assert resolve_group_size("auto", trials, other)[0] == 1


def test_group_size_is_a_suite_key_checked_before_anything_runs(tmp_path: Path, fake_fashion_root: Path) -> None:
    assert build_suite(str(write_tiny_suite(tmp_path / "a.yaml", fake_fashion_root))).group_size == "auto"
    assert build_suite(str(write_tiny_suite(tmp_path / "b.yaml", fake_fashion_root, group_size=4))).group_size == 4
    for bad in (0, -2, 1.5, "many", True):
        with pytest.raises(LtbenchError, match="group_size must be a positive whole number or 'auto'"):
            build_suite(str(write_tiny_suite(tmp_path / "c.yaml", fake_fashion_root, group_size=bad)))


def test_the_dry_run_gives_cost_its_source_and_the_grouping(tmp_path: Path, fake_fashion_root: Path) -> None:
    suite = str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["ce", "la", "crt"]))
    text = dry_run(suite, results_dir=tmp_path / "results", group_size="2")
    assert "GPU-hours" in text and "h wall on one GPU holding 1 trial at once" in text
    assert "calibrated defaults" in text and "asks for no GPU" in text
    # ce and la x 2 seeds end to end (one set: 4 trials in 2 processes), crt's 2 stage-two trials alone
    assert "grouping: 2 trials per worker process (as asked); 6 trials in 4 worker processes" in text
    measured = tmp_path / "measured"
    measured.mkdir()
    bench = {"settings": {"device": "cuda"}, "sections": {"trainer": {"figures": []}}}
    bench["sections"]["trainer"]["figures"] = [
        {"unit": "images/s", "value": 1e9, "detail": {"model": build_suite(suite).trials[0].model}}
    ]
    (measured / "bench.json").write_text(json.dumps(bench))
    assert "throughputs measured by ltbench bench" in dry_run(suite, results_dir=measured)
    with pytest.raises(LtbenchError, match="--group-size must be a positive whole number"):
        dry_run(suite, results_dir=tmp_path / "results", group_size="0")


def test_the_scheduler_picks_the_first_waiting_trial_among_those_not_ended() -> None:
    from ray.tune.experiment import Trial

    class Stub:  # what the scheduler reads of a Tune trial: its status (and it is hashable, as Trial is)
        status = Trial.PENDING

    scheduler = LiveTrialsScheduler()
    a, b, c, d = (Stub() for _ in range(4))
    for trial in (a, b, c, d):
        scheduler.on_trial_add(None, trial)
    a.status = b.status = Trial.RUNNING
    assert scheduler.choose_trial_to_run(None) is c  # FIFO: the first pending trial
    scheduler.on_trial_complete(None, a, {})
    scheduler.on_trial_error(None, c)
    scheduler.on_trial_remove(None, d)
    assert list(scheduler.live) == [b]  # ended trials leave the set: no scan over them at every step
    assert scheduler.choose_trial_to_run(None) is None
    b.status = Trial.PAUSED
    assert scheduler.choose_trial_to_run(None) is b  # then the first paused one, as FIFO
