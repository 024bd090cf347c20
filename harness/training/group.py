"""Several trials in one process: their training steps interleaved, each trial exactly as it would run alone.

A group is a list of trials, each given as its step generator (`harness.training.trainer.trial_steps`). The
group advances them in turn, one training step each, until every one has ended. Interleaving keeps the
process's device busy with several small models at once (on a GPU, a launch-bound ResNet-32 step leaves the
chip mostly idle), while each trial keeps everything that makes it itself: its key and files, its model,
optimiser, sampler and augmentation generators (all its own objects), its per-epoch checkpoint in the usual
format (so it resumes alone or in another group), its reports and its attempts.

The one state trials would otherwise share is the process's global random generators (torch's CPU and CUDA
generators, numpy's, Python's): a trial seeds them when it is built, its model's initialisation and any
method that draws from them read them, and its checkpoint saves them. So each trial's global RNG states are
swapped in before its step and saved after it, and a trial sees exactly the random stream it sees alone:
on a CPU a grouped trial's metrics and checkpoints equal its solo run's bit for bit (tested).

On a GPU the trials of a group may each step on a CUDA stream of their own (`$LTBENCH_GROUP_STREAMS=1`), so
that one trial's kernels can run while the host issues the next trial's: everything a trial does, from building
its data and model to writing its result, runs under its stream, so no tensor crosses streams. It is OFF by
default until a GPU run has shown it equal to the default stream and faster (docs/gpu-checks.md); a trial
records which stream it ran on (`ran.cuda_stream`).

A trial that raises (a diverged loss, a method's bug) ends alone: `on_failed` hears of it and the others go
on. Process-wide settings (`torch.set_num_threads`, cuDNN flags) are the same for every trial of a group,
since the queue groups only trials with the same dataset, data options, model, recipe and resources.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from harness.training.checkpoint import restore_rng_states, rng_states

STREAMS_ENV = "LTBENCH_GROUP_STREAMS"

TrialSteps = Generator[None, None, dict[str, Any]]


@dataclass
class _Member:
    key: str
    steps: TrialSteps
    rng: dict[str, Any] | None = None  # its global RNG states while another member steps
    stream: Any = None  # its own torch.cuda.Stream, where the group steps on streams

    def on_its_stream(self) -> AbstractContextManager[Any]:
        return nullcontext() if self.stream is None else torch.cuda.stream(self.stream)


def streams_wanted() -> bool:
    """Whether a group's trials step on CUDA streams of their own: $LTBENCH_GROUP_STREAMS=1 (default off)."""
    return os.environ.get(STREAMS_ENV, "0") == "1"


def run_group(
    trials: dict[str, TrialSteps],
    on_done: Callable[[str, dict[str, Any]], None],
    on_failed: Callable[[str, Exception], None],
    streams: bool | None = None,
) -> None:
    """Advance every trial of `trials` (key -> step generator) one step in turn until each has ended;
    `on_done(key, result)` or `on_failed(key, error)` is called once per trial, as it ends. A group of one
    runs exactly as the trial alone (no state is swapped, no stream of its own). `streams` (default
    $LTBENCH_GROUP_STREAMS) gives each trial its own CUDA stream where CUDA is available."""
    members = [_Member(key, steps) for key, steps in trials.items()]
    swap = len(members) > 1
    if swap and (streams_wanted() if streams is None else streams) and torch.cuda.is_available():
        for member in members:
            member.stream = torch.cuda.Stream()
    while members:
        for member in list(members):
            if swap and member.rng is not None:
                restore_rng_states(member.rng)
            try:
                with member.on_its_stream():
                    next(member.steps)
            except StopIteration as stop:
                members.remove(member)
                on_done(member.key, stop.value)
                continue
            except Exception as error:
                members.remove(member)
                on_failed(member.key, error)
                continue
            if swap:
                member.rng = rng_states()
