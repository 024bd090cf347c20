"""A training step captured once as a CUDA graph and replayed, with an eager step wherever capture cannot go.

ResNet-32 at batch 128 is launch-bound on a modern GPU: the host spends longer issuing a step's few hundred
small kernels than the GPU spends running them. A CUDA graph (`torch.cuda.graph`) records the step's
kernels once and replays them with one launch. `CapturedStep` is a `StepFn` (`harness.training.loop`) that
does exactly what `training_step` does, in this order: the forward pass under the trial's precision, the
method's loss on float32 scores, backward, the recipe's SGD step, `after_step`, the learning-rate schedule.

How it stays the same step:
- the first WARMUP_STEPS full batches run eagerly, on a side stream (as PyTorch's capture recipe asks: lazy
  state such as the momentum buffers and cuDNN's choices exist before capture); they are real steps;
- the images and labels are copied into the graph's static input tensors before each replay;
- the learning rate is read from a device tensor that is filled from the schedule before each replay; the
  schedule itself (`scheduler.step()`) runs on the host after the replay, as in the eager step, so the
  optimiser's `param_groups` hold plain floats and the checkpoint keeps today's format;
- the update is the recipe's SGD; inside the graph it runs as torch's fused SGD kernel, the one SGD path
  that reads a learning rate from a device tensor without a host sync (the foreach path calls `.item()`).
  Fused and foreach SGD compute the same update with different kernels: equal within float rounding, not
  bit for bit (the `gpu` tests bound it at 1e-5 relative over 20 steps);
- a step that cannot be replayed runs eagerly for that step only, counted with its reason: a batch of
  another shape (the epoch's partial last batch), a device other than CUDA, or a capture that failed (a
  method whose loss syncs with the host, an `eigh`); after a failed capture every step is eager.

Differences from the issue's full design, said here until a GPU run has measured them: the batch gather and
augmentation run eagerly before the step (only their output is copied in), and the trials of a group replay
on the default stream. The captured step is OFF by default: `LTBENCH_STEP=graph` turns it on for the
trainer (see docs/throughput.md), and each result records under `effective.step` what ran.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import torch

from harness.training.loop import Learner, StepFn, training_step

STEP_ENV = "LTBENCH_STEP"
STEP_MODES = ("eager", "graph")
WARMUP_STEPS = 3


def step_mode() -> str:
    """The trainer's step: $LTBENCH_STEP, 'eager' (default) or 'graph'."""
    mode = os.environ.get(STEP_ENV, "eager").strip() or "eager"
    if mode not in STEP_MODES:
        raise ValueError(f"{STEP_ENV} must be one of {', '.join(STEP_MODES)}, got {mode!r}")
    return mode


class CapturedStep:
    """A `StepFn` that replays one CUDA graph of a `Learner`'s step for every full batch (one instance per
    learner: the graph holds its model's and optimiser's tensors)."""

    def __init__(self, warmup_steps: int = WARMUP_STEPS) -> None:
        self.warmup_steps = warmup_steps
        self.warmed = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None  # why capture failed, once it has
        self.shape: tuple[int, ...] | None = None
        self.static: dict[str, Any] = {}
        self.graph_steps = 0
        self.eager_steps: Counter[str] = Counter()

    def __call__(self, learner: Learner, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        why = self._eager_reason(images)
        if why is not None:
            self.eager_steps[why] += 1
            return training_step(learner, images, targets)
        if self.graph is None:
            if self.warmed < self.warmup_steps:
                self.warmed += 1
                self.eager_steps["warm-up before capture"] += 1
                return self._side_stream_step(learner, images, targets)
            try:
                self._capture(learner, images, targets)
            except Exception as e:  # a host sync or an op that cannot be captured: eager from now on
                self.failed = f"capture failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                self.graph = None
                learner.optimizer.zero_grad(set_to_none=True)
                self.eager_steps[self.failed] += 1
                return training_step(learner, images, targets)
        return self._replay(learner, images, targets)

    def _eager_reason(self, images: torch.Tensor) -> str | None:
        if images.device.type != "cuda":
            return "not on a CUDA device"
        if self.failed is not None:
            return self.failed
        if self.shape is None:
            self.shape = tuple(images.shape)  # the first batch of an epoch is full
        if tuple(images.shape) != self.shape:
            return "a batch of another shape (the epoch's partial last batch)"
        return None

    def _side_stream_step(self, learner: Learner, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream(images.device)
        side.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(side):
            loss = training_step(learner, images, targets)
        torch.cuda.current_stream(images.device).wait_stream(side)
        return loss

    def _capture(self, learner: Learner, images: torch.Tensor, targets: torch.Tensor) -> None:
        """Record forward, loss, backward, the fused SGD step and `after_step` (not the schedule: it runs
        on the host). Capture records kernels without running them, so `_replay` then runs this step."""
        device = images.device
        torch.cuda.synchronize(device)
        static = {"images": images.clone(), "targets": targets.clone()}
        groups = learner.optimizer.param_groups
        static["lr"] = [torch.tensor(float(g["lr"]), device=device) for g in groups]
        floats = [g["lr"] for g in groups]
        fused = [g.get("fused") for g in groups]
        learner.optimizer.zero_grad(set_to_none=True)  # backward allocates the graph's own gradients
        graph = torch.cuda.CUDAGraph()
        try:
            for group, lr in zip(groups, static["lr"], strict=True):
                group["lr"], group["fused"] = lr, True
            with torch.cuda.graph(graph):
                with learner.precision.autocast():
                    logits = learner.model(static["images"])
                loss = learner.loss(logits.float(), static["targets"])
                loss.backward()
                learner.optimizer.step()
                if learner.after_step is not None:
                    learner.after_step()
                static["loss"] = loss.detach()
        finally:
            for group, lr, was_fused in zip(groups, floats, fused, strict=True):
                group["lr"], group["fused"] = lr, was_fused
        self.graph, self.static = graph, static

    def _replay(self, learner: Learner, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        static = self.static
        static["images"].copy_(images, non_blocking=True)
        static["targets"].copy_(targets, non_blocking=True)
        for group, lr in zip(learner.optimizer.param_groups, static["lr"], strict=True):
            lr.fill_(float(group["lr"]))
        assert self.graph is not None
        self.graph.replay()
        learner.scheduler.step()
        self.graph_steps += 1
        return static["loss"].clone()

    def record(self) -> dict[str, Any]:
        """What ran, for the result's `effective.step` (and MLflow's `ran.step.*` params, whose names allow
        no reasons): graph replays, eager steps, and why each eager step ran ('reason (count); ...')."""
        return {
            "mode": "graph",
            "graph_steps": self.graph_steps,
            "eager_steps": sum(self.eager_steps.values()),
            "eager_why": "; ".join(f"{why} ({n})" for why, n in self.eager_steps.items()),
        }


def make_step(device: torch.device) -> StepFn:
    """The trainer's step on `device`: `training_step`, or a `CapturedStep` where $LTBENCH_STEP asks for
    graphs (eager on a CPU all the same, each step counted with that reason)."""
    return CapturedStep() if step_mode() == "graph" else training_step


def step_record(step: StepFn) -> dict[str, Any]:
    """`effective.step` of a result: {'mode': 'eager'}, or a `CapturedStep`'s record."""
    return step.record() if isinstance(step, CapturedStep) else {"mode": "eager"}
