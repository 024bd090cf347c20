"""Training samplers: each epoch, a sequence of training-set indices that the trainer cuts into batches.

Samplers work on labels only and draw from a `torch.Generator` seeded per epoch by the trainer, so an epoch's
order depends on (seed, epoch) alone and a resumed trial replays exactly what an uninterrupted one would.
Any method names one by its registry name (`ltbench methods` shows each method's default).

| name | rule (Kang et al. 2020 unless noted) |
|---|---|
| instance | every image once per epoch: p_j ∝ n_j |
| square-root | p_j ∝ n_j^(1/2) |
| class-balanced | p_j ∝ n_j^0 = 1/C |
| progressive | p_j(t) = (1 - t/(T-1)) p_j^IB + (t/(T-1)) p_j^CB, t = 0..T-1 the epoch: class-balanced at the last |
| class-aware | Kang's ClassAwareSampler: a class from a shuffled cycle, then 4 consecutive images of it from |
|             | that class's own shuffled cycle; an epoch is int(N / batch) batches (Kang's loop stops there); |
|             | the cycles carry on across epochs (Kang's `RandomCycleIter`s live as long as the sampler) |

A sampler with state across epochs gives it through `state_dict` / `load_state_dict`; the trainer keeps it in
the checkpoint, so a resumed trial draws what an uninterrupted one would.

A method may bring its own sampler: subclass `Sampler` and register it with `@register_sampler("name")`
(from `harness.api`); `b3rs` and `bet` are registered that way by `methods/channel_whitening.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from harness.core.registry import Registry


class Sampler:
    """Base class. `epoch_indices` returns a 1-D int64 tensor of indices into the training split."""

    def __init__(self, labels: np.ndarray, num_classes: int, batch_size: int) -> None:
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.class_counts = torch.bincount(self.labels, minlength=num_classes).double()
        self.present = self.class_counts > 0

    def epoch_length(self) -> int:
        """Number of draws per epoch (the trainer's steps per epoch follow from it)."""
        return len(self.labels)

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What the sampler carries from one epoch to the next (nothing, for most samplers)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` gave (a resumed trial)."""

    def draw_by_class_probability(self, p_class: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws with replacement: class j with probability p_j, then one of its images uniformly."""
        per_image = (p_class / self.class_counts.clamp(min=1))[self.labels]
        return torch.multinomial(per_image, n, replacement=True, generator=generator)

    def power_probabilities(self, q: float) -> torch.Tensor:
        weights = torch.where(self.present, self.class_counts.clamp(min=1) ** q, torch.zeros((), dtype=torch.float64))
        return weights / weights.sum()


class InstanceSampler(Sampler):
    """Instance-balanced: every image once per epoch, in random order (p_j ∝ n_j)."""

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=generator)


class ClassPowerSampler(Sampler):
    """p_j = n_j^q / Σ_i n_i^q (q=1 instance, q=1/2 square-root, q=0 class-balanced); N draws per epoch."""

    def __init__(self, labels: np.ndarray, num_classes: int, batch_size: int, q: float) -> None:
        super().__init__(labels, num_classes, batch_size)
        self.q = q

    def class_probabilities(self, epoch: int, num_epochs: int) -> torch.Tensor:
        return self.power_probabilities(self.q)

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        return self.draw_by_class_probability(self.class_probabilities(epoch, num_epochs), len(self.labels), generator)


class ProgressiveSampler(Sampler):
    """Progressively balanced: interpolates from instance- to class-balanced over the epochs, reaching
    class-balanced at the last epoch (Kang et al.'s code: linspace(0, 1, epochs))."""

    def class_probabilities(self, epoch: int, num_epochs: int) -> torch.Tensor:
        t = epoch / (num_epochs - 1) if num_epochs > 1 else 1.0
        return (1 - t) * self.power_probabilities(1.0) + t * self.power_probabilities(0.0)

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        return self.draw_by_class_probability(self.class_probabilities(epoch, num_epochs), len(self.labels), generator)


class ClassAwareSampler(Sampler):
    """Kang et al.'s class-aware sampler (from Shen et al. 2016): classes in a reshuffled cycle, and for each
    class drawn, `per_class` consecutive images from that class's own reshuffled cycle.

    Its nominal length in Kang's code is n_max x C draws, but their training loop stops every epoch after
    int(N / batch) steps whatever the sampler, so an epoch here is int(N / batch) full batches. As Kang's
    `RandomCycleIter`s, the class cycle and each class's image cycle carry on from one epoch into the next (a
    cycle is reshuffled only when it is used up), so over the epochs every image of a class comes up equally
    often; the new shuffles draw from the epoch's generator.
    """

    per_class = 4

    def __init__(self, labels: np.ndarray, num_classes: int, batch_size: int) -> None:
        super().__init__(labels, num_classes, batch_size)
        self.classes = torch.nonzero(self.present).flatten()
        self.members = [torch.nonzero(self.labels == c).flatten() for c in self.classes.tolist()]
        self.class_cycle: list[int] = []  # classes still to come in the current cycle (popped from the end)
        self.orders = list(self.members)  # each class's current image cycle
        self.cursors = [len(m) for m in self.members]  # used up: reshuffled on first use

    def epoch_length(self) -> int:
        return max(1, len(self.labels) // self.batch_size) * self.batch_size

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        out: list[int] = []
        total = self.epoch_length()
        while len(out) < total:
            if not self.class_cycle:
                self.class_cycle = torch.randperm(len(self.classes), generator=generator).tolist()
            c = self.class_cycle.pop()
            for _ in range(self.per_class):
                if self.cursors[c] >= len(self.orders[c]):
                    self.orders[c] = self.members[c][torch.randperm(len(self.members[c]), generator=generator)]
                    self.cursors[c] = 0
                out.append(int(self.orders[c][self.cursors[c]]))
                self.cursors[c] += 1
        return torch.tensor(out[:total], dtype=torch.int64)

    def state_dict(self) -> dict:
        return {"class_cycle": list(self.class_cycle), "orders": list(self.orders), "cursors": list(self.cursors)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.class_cycle = list(state["class_cycle"])
            self.orders = list(state["orders"])
            self.cursors = list(state["cursors"])


SamplerFactory = Callable[..., Sampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
SAMPLERS.register("instance", InstanceSampler)
SAMPLERS.register("square-root", lambda labels, c, b, **kw: ClassPowerSampler(labels, c, b, 0.5, **kw))
SAMPLERS.register("class-balanced", lambda labels, c, b, **kw: ClassPowerSampler(labels, c, b, 0.0, **kw))
SAMPLERS.register("progressive", ProgressiveSampler)
SAMPLERS.register("class-aware", ClassAwareSampler)


def register_sampler(name: str) -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator: register a sampler class (or factory) under `name`; a duplicate name is an error.

    The factory is called as `factory(labels, num_classes, batch_size, **options)`, the options coming from
    the method's `sampler_options()`.
    """

    def register(factory: SamplerFactory) -> SamplerFactory:
        SAMPLERS.register(name, factory)
        return factory

    return register


def make_sampler(name: str, labels: np.ndarray, num_classes: int, batch_size: int, **options: object) -> Sampler:
    """Build the sampler `name` (a method plugin's own sampler is registered when its plugin is loaded)."""
    return SAMPLERS.get(name)(labels, num_classes, batch_size, **options)
