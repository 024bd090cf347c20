"""Which trials may start now, and in which order: the release policy of one `ltbench run`.

End-to-end trials and shared stage-1 backbones may start at once; a decoupled trial may start as soon as
its own backbone has FINISHED (not when every backbone has), so the GPUs that finish early backbones pick up
their stage-two trials while other backbones still train. When a backbone fails, the trials that need it
fail at once, with its reason. Among the trials that may start, the one with the longest chain of work
ahead of it goes first (critical-path priority): a trial's own estimated cost plus the longest chain of
trials that wait for it, so a backbone with expensive dependents starts before a lone end-to-end trial.

`barrier=True` is the old behaviour, kept for the "before" of the makespan bench: no decoupled trial starts
before every end-to-end trial and backbone has ended.

This module knows no Ray, and the queue no trial contents: jobs are keys with a cost and an optional
prerequisite (`plan_jobs` makes them from trials). The Tune searcher (`harness.execution.tune_driver`) and the event
simulation (`harness.bench.makespan`) drive the same object.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from harness.core.trial import TrialConfig, canonical_json

BACKBONE_FAILED = "its stage-1 backbone {label} failed: {reason}"


@dataclass(frozen=True)
class Job:
    """A trial to schedule: its estimated cost (seconds) and the key of the trial it waits for, if any
    (`after`: a decoupled trial's backbone; None, or a key not in the queue, when it need not wait)."""

    key: str
    cost: float
    after: str | None = None
    label: str = ""
    group: str | None = None  # jobs with the same value may train together in one process; None: alone


class TrialQueue:
    """The release policy over `jobs` (in plan order, which breaks ties between equal priorities)."""

    def __init__(self, jobs: Iterable[Job], barrier: bool = False) -> None:
        self.jobs = {job.key: job for job in jobs}
        self.barrier = barrier
        # a prerequisite outside the queue is already done (a backbone whose result is on disk)
        self.waits_for = {k: j.after for k, j in self.jobs.items() if j.after is not None and j.after in self.jobs}
        self.dependents: dict[str, list[str]] = {}
        for key, after in self.waits_for.items():
            self.dependents.setdefault(after, []).append(key)
        self.order = {key: i for i, key in enumerate(self.jobs)}
        self.priority = {key: self._chain(key) for key in self.jobs}
        # every job, highest priority first (priorities never change), and how many at its head have started
        # or failed: `ready()` walks the rest, so each call costs the jobs waiting, not a sort of the suite
        self.ranked = sorted(self.jobs, key=lambda k: (-self.priority[k], self.order[k]))
        self.ranked_done = 0
        self.unstarted = set(self.jobs)  # neither handed out nor failed
        self.running: set[str] = set()
        self.finished: set[str] = set()
        self.failed: dict[str, str] = {}
        # barrier mode: the end-to-end jobs and backbones that have not ended yet hold every decoupled job
        self.barrier_holds = {k for k in self.jobs if self.jobs[k].after is None}

    def _chain(self, key: str) -> float:
        """The job's cost plus the longest chain of jobs waiting for it."""
        return self.jobs[key].cost + max((self._chain(d) for d in self.dependents.get(key, [])), default=0.0)

    def _releasable(self, key: str) -> bool:
        job = self.jobs[key]
        if self.barrier and job.after is not None and self.barrier_holds:
            return False
        before = self.waits_for.get(key)
        return before is None or before in self.finished

    def _waiting(self) -> Iterator[str]:
        """The unstarted keys, highest priority first."""
        while self.ranked_done < len(self.ranked) and self.ranked[self.ranked_done] not in self.unstarted:
            self.ranked_done += 1
        return (k for k in itertools.islice(self.ranked, self.ranked_done, None) if k in self.unstarted)

    def ready(self) -> list[str]:
        """Keys that may start now, highest priority first."""
        return [k for k in self._waiting() if self._releasable(k)]

    def first_ready(self) -> str | None:
        """The highest-priority key that may start now (what `ready()[0]` is, without listing the rest)."""
        return next((k for k in self._waiting() if self._releasable(k)), None)

    def pop(self, key: str | None = None) -> str | None:
        """Hand out the highest-priority ready job, or `key` (one of `ready()`): it is running from now on.
        None if no job is ready."""
        if key is None:
            key = self.first_ready()
            if key is None:
                return None
        elif not (key in self.unstarted and self._releasable(key)):
            raise KeyError(f"{key} is not ready to start")
        self.unstarted.discard(key)
        self.running.add(key)
        return key

    def pop_group(self, size: int) -> list[str]:
        """Hand out the highest-priority ready job and, up to `size` jobs in all, the next ready jobs (in
        priority order) of its `group`: they train together in one process. [] if no job is ready."""
        first = self.first_ready()
        if first is None:
            return []
        group = self.jobs[first].group
        mates = [k for k in self.ready()[1:] if group is not None and self.jobs[k].group == group] if size > 1 else []
        keys = [first, *mates[: size - 1]]
        for key in keys:
            self.pop(key)
        return keys

    @property
    def exhausted(self) -> bool:
        """Every job has been handed out or has failed: nothing more will ever be ready."""
        return not self.unstarted

    @property
    def done(self) -> bool:
        return self.exhausted and not self.running

    def mark_finished(self, key: str) -> None:
        self._end(key)
        self.finished.add(key)

    def mark_failed(self, key: str, reason: str) -> list[tuple[str, str]]:
        """The job failed: every job still waiting for it fails now with its reason. Returns (key, reason)
        of those dependents."""
        self._end(key)
        self.failed[key] = reason
        orphans = []
        job = self.jobs[key]
        for dependent in self.dependents.get(key, []):
            if dependent in self.unstarted:
                why = BACKBONE_FAILED.format(label=job.label or key, reason=reason)
                self.unstarted.discard(dependent)
                self.failed[dependent] = why
                orphans.append((dependent, why))
        return orphans

    def _end(self, key: str) -> None:
        if key not in self.jobs:
            raise KeyError(f"{key} is not a job of this queue")
        self.running.discard(key)
        self.unstarted.discard(key)
        self.barrier_holds.discard(key)


def group_signature(cfg: TrialConfig) -> str:
    """What trials must share to train together in one process: dataset, ratio, data options, model,
    recipe, resources and device (any methods and seeds). The process's settings (threads, precision,
    cuDNN flags) and the batch pipeline's shape are then the same for every trial of the group."""
    identity = cfg.identity()
    return canonical_json(
        {
            **{name: identity[name] for name in ("dataset", "imbalance_ratio", "data", "model", "recipe")},
            "resources": cfg.resources,
            "device": cfg.device,
        }
    )


def plan_jobs(
    trials: list[TrialConfig], cost: Callable[[TrialConfig], float], backbone_of: Mapping[str, str]
) -> list[Job]:
    """The jobs of `trials` (a run's unfinished trials, in plan order): each decoupled trial waits for its
    stage-1 backbone, `backbone_of[key]` from the plan (for nothing when that backbone is not among `trials`:
    its result is in the store). End-to-end trials (backbones included) may be grouped by their
    `group_signature`; a decoupled trial's stage two (short, on its own backbone) trains alone."""
    return [
        Job(
            cfg.key,
            cost(cfg),
            backbone_of.get(cfg.key),
            cfg.label(),
            None if cfg.key in backbone_of else group_signature(cfg),
        )
        for cfg in trials
    ]


@dataclass
class Schedule:
    """When each trial started and ended (seconds from the start), and the makespan."""

    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return max(self.ended.values(), default=0.0)


def simulate(jobs: list[Job], slots: int, barrier: bool) -> Schedule:
    """Run `jobs` on `slots` identical slots, each job as soon as the queue releases it and a slot is free."""
    queue = TrialQueue(jobs, barrier=barrier)
    cost = {j.key: j.cost for j in jobs}
    schedule, running, now = Schedule(), [], 0.0
    while True:
        while len(running) < slots and (key := queue.pop()) is not None:
            schedule.started[key] = now
            heapq.heappush(running, (now + cost[key], key))
        if not running:
            return schedule
        now, key = heapq.heappop(running)
        schedule.ended[key] = now
        queue.mark_finished(key)
