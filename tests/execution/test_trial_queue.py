"""The release policy of one `ltbench run` (no barrier, critical path first), the cost model, and the
makespan of a plan in the event simulation."""

from __future__ import annotations

import pytest

from harness.bench.makespan import lower_bound, simulate, suite_jobs
from harness.execution.costs import image_equivalents, trial_seconds
from harness.execution.trial_queue import Job, TrialQueue
from harness.experiment.suite import build_suite

# A hand-made plan: backbones A (10 s) and B (4 s); a (1 s) and a2 (7 s) wait for A, b (9 s) for B;
# e is a lone end-to-end trial of 12 s. Chains: A 10+7 = 17, B 4+9 = 13, e 12, a2 7, b 9, a 1.
HAND = [
    Job("e", 12.0),
    Job("A", 10.0, label="backbone A"),
    Job("B", 4.0),
    Job("a", 1.0, after="A"),
    Job("a2", 7.0, after="A"),
    Job("b", 9.0, after="B"),
]


def test_ready_trials_in_critical_path_order_and_decoupled_ones_after_their_own_backbone() -> None:
    queue = TrialQueue(HAND)
    assert queue.priority == {"e": 12, "A": 17, "B": 13, "a": 1, "a2": 7, "b": 9}
    assert queue.ready() == ["A", "B", "e"]  # the longest chain first, not plan order
    assert [queue.pop(), queue.pop()] == ["A", "B"]
    queue.mark_finished("B")
    assert queue.ready() == ["e", "b"]  # b is released while A still trains: no barrier
    assert queue.pop() == "e" and queue.pop() == "b" and queue.pop() is None  # a, a2 wait for A
    assert not queue.exhausted
    queue.mark_finished("A")
    assert queue.ready() == ["a2", "a"]
    queue.pop(), queue.pop()
    assert queue.exhausted and not queue.done
    for key in ("e", "b", "a", "a2"):
        queue.mark_finished(key)
    assert queue.done


def test_barrier_mode_holds_decoupled_trials_until_every_first_phase_trial_has_ended() -> None:
    queue = TrialQueue(HAND, barrier=True)
    for _ in range(3):
        queue.pop()
    queue.mark_finished("B")
    queue.mark_finished("A")
    assert queue.ready() == []  # e still runs
    queue.mark_failed("e", "diverged")
    assert queue.ready() == ["b", "a2", "a"]


def test_a_failed_backbone_fails_its_waiting_trials_at_once_with_its_reason() -> None:
    queue = TrialQueue(HAND)
    assert queue.pop() == "A"
    orphans = queue.mark_failed("A", "CUDA out of memory")
    reason = "its stage-1 backbone backbone A failed: CUDA out of memory"
    assert orphans == [("a", reason), ("a2", reason)]
    assert queue.failed == {"A": "CUDA out of memory", "a": reason, "a2": reason}
    assert queue.ready() == ["B", "e"]
    assert queue.mark_failed("B", "x") == [("b", "its stage-1 backbone B failed: x")]


def test_a_backbone_outside_the_queue_is_done_already() -> None:
    queue = TrialQueue([Job("a", 1.0, after="on-disk"), Job("e", 5.0)], barrier=True)
    assert queue.ready() == ["e"]  # barrier: still after the end-to-end trials
    assert TrialQueue([Job("a", 1.0, after="on-disk")]).ready() == ["a"]


def test_event_simulation_makespans_computed_by_hand() -> None:
    # 2 slots. No barrier: t=0 A, B; t=4 B ends -> e (chain 12 beats b's 9; ends 16); t=10 A ends -> b
    # (9 beats a2's 7; ends 19); t=16 -> a2 (ends 23); t=19 -> a (ends 20). Makespan 23.
    free = simulate(HAND, slots=2, barrier=False)
    assert free.started == {"A": 0, "B": 0, "e": 4, "b": 10, "a2": 16, "a": 19}
    assert free.makespan == 23
    # Barrier: A, B at 0; e at 4 (ends 16); after 16: a2 (ends 23) and b (ends 25); a at 23 (ends 24).
    barrier = simulate(HAND, slots=2, barrier=True)
    assert barrier.started == {"A": 0, "B": 0, "e": 4, "a2": 16, "b": 16, "a": 23}
    assert barrier.makespan == 25
    # 3 slots: no barrier runs the chain A -> a2 in 17, the critical path (b at 4, a at 12 when e ends);
    # the barrier holds b, a2 and a until e ends at 12, and b then ends at 21
    assert simulate(HAND, slots=3, barrier=False).makespan == 17
    assert simulate(HAND, slots=3, barrier=True).makespan == 12 + 9
    assert lower_bound(HAND, 3) == max(17, 43 / 3)
    assert lower_bound(HAND, 1) == 43


@pytest.mark.parametrize("gpus", [8, 64])
def test_no_barrier_is_never_worse_than_the_barrier_nor_better_than_the_bound_on_cifar_lt(gpus: int) -> None:
    jobs, packing = suite_jobs("cifar-lt")
    assert len(jobs) == 264 and packing == 4
    slots = gpus * packing
    free, barrier = simulate(jobs, slots, False).makespan, simulate(jobs, slots, True).makespan
    assert lower_bound(jobs, slots) - 1e-6 <= free <= barrier
    if gpus == 8:
        assert free < barrier  # the last wave of backbones no longer idles the GPUs


def test_the_cost_model_follows_what_a_trial_computes() -> None:
    trials = {(t.method, t.dataset, t.imbalance_ratio): t for t in build_suite("cifar-lt", ["seeds=[0]"]).trials}
    ce10, ce100 = trials["ce", "cifar10-lt", 10], trials["ce", "cifar10-lt", 100]
    assert image_equivalents(ce10) > image_equivalents(ce100)  # more training images at ratio 10
    crt, lws, tau = (trials[m, "cifar10-lt", 100] for m in ("crt", "lws", "tau-norm"))
    # cRT: 10 epochs of augmented images through the backbone; LWS: 5; tau-norm: a search on cached features
    assert image_equivalents(crt) > image_equivalents(lws) > image_equivalents(tau)
    assert trial_seconds(ce100) > 5 * trial_seconds(crt)  # a 200-epoch backbone dwarfs a stage two


def test_a_method_whose_step_costs_more_passes_costs_that_much_more_training() -> None:
    from dataclasses import replace

    from harness.execution.costs import _sizes
    from harness.plugins.loading import load_methods
    from harness.plugins.method import METHODS

    load_methods()
    ce = build_suite("quick", ["seeds=[0]", "imbalance_ratios=[100]", "methods=[ce]"]).trials[0]
    heavy = type("ThreeViews", (METHODS.get("ce"),), {"name": "three-views-test", "step_cost": 3.0})
    METHODS.register(heavy.name, heavy)
    try:
        extra = image_equivalents(replace(ce, method=heavy.name)) - image_equivalents(ce)
        assert extra == pytest.approx(2 * ce.recipe["epochs"] * _sizes(ce)[0])  # two more passes an image
    finally:
        METHODS.unregister(heavy.name)


def test_the_dry_run_costs_each_method_and_the_parts_add_up() -> None:
    import re
    from pathlib import Path

    from harness.execution.estimate import cost_lines
    from harness.experiment.plan import make_plan

    plan = make_plan(build_suite("cifar-lt-2023", ["seeds=[0]"]).trials)
    lines = cost_lines(plan.trials, plan.backbone_of, Path("no-bench.json"))
    total = float(re.match(r"cost: ([\d.]+) GPU-hours", lines[0]).group(1))
    parts = dict(re.findall(r"(\w[\w-]*) ([\d.]+)", lines[1].split(": ", 1)[1]))
    assert set(parts) == {t.method for t in plan.trials}
    assert sum(map(float, parts.values())) == pytest.approx(total, abs=0.01 * len(parts))
    assert float(parts["mixup"]) > 10 * float(parts["mislas"])  # a 200-epoch backbone against a stage two
