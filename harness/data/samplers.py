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
|             | that class's own shuffled cycle; an epoch is int(N / batch) batches (Kang's loop stops there) |
| b3rs | reconstruction of Zhang's group-based relatively balanced batch sampler (see `B3RSSampler`) |
| bet | reconstruction of Zhang's batch embedded training (see `BETSampler`) |
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from harness.errors import LtbenchError
from harness.registry import Registry


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
    int(N / batch) steps whatever the sampler, so an epoch here is int(N / batch) full batches.
    """

    per_class = 4

    def epoch_length(self) -> int:
        return max(1, len(self.labels) // self.batch_size) * self.batch_size

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        classes = torch.nonzero(self.present).flatten()
        members = [torch.nonzero(self.labels == c).flatten() for c in classes.tolist()]
        cursors = [len(m) for m in members]  # exhausted: reshuffle on first use
        orders = list(members)
        class_cycle: list[int] = []
        out = []
        total = self.epoch_length()
        while len(out) < total:
            if not class_cycle:
                class_cycle = torch.randperm(len(classes), generator=generator).tolist()
            c = class_cycle.pop()
            for _ in range(self.per_class):
                if cursors[c] >= len(orders[c]):
                    orders[c] = members[c][torch.randperm(len(members[c]), generator=generator)]
                    cursors[c] = 0
                out.append(int(orders[c][cursors[c]]))
                cursors[c] += 1
        return torch.tensor(out[:total], dtype=torch.int64)


class B3RSSampler(Sampler):
    """Reconstruction of B3RS (Zhang, arXiv 2112.05958): group-based relatively balanced batches.

    The paper's exact rule (its Eqs. 4-5) is unknown. Reconstruction, every choice a hyperparameter: sort
    classes by size, split them into `groups` contiguous groups of (nearly) equal class count; each batch gives
    group g a share of slots ∝ N_g^q (N_g its images, 0 < q < 1: between instance- and class-balanced), with
    at least one slot for every group; each slot is an image drawn uniformly inside its group.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, batch_size: int, groups: int = 3, q: float = 0.5) -> None:
        super().__init__(labels, num_classes, batch_size)
        if groups < 1 or not 0 <= q <= 1:
            raise LtbenchError(f"b3rs needs groups >= 1 and 0 <= q <= 1, got groups={groups}, q={q}")
        order = torch.argsort(self.class_counts, descending=True, stable=True)
        order = order[self.present[order]]
        self.groups = [g for g in torch.tensor_split(order, min(groups, len(order))) if len(g)]
        self.group_members = [torch.nonzero(torch.isin(self.labels, g)).flatten() for g in self.groups]
        sizes = torch.tensor([len(m) for m in self.group_members], dtype=torch.float64)
        self.group_share = sizes**q / (sizes**q).sum()

    def slots_per_batch(self, batch_size: int) -> list[int]:
        """Largest-remainder apportionment of `batch_size` slots to groups, each group at least one."""
        g = len(self.groups)
        if batch_size < g:
            raise LtbenchError(f"b3rs needs a batch of at least {g} images (one per group), got {batch_size}")
        raw = self.group_share * (batch_size - g)
        slots = torch.floor(raw).long() + 1
        remainder = batch_size - int(slots.sum())
        for i in torch.argsort(raw - torch.floor(raw), descending=True, stable=True)[:remainder].tolist():
            slots[i] += 1
        return slots.tolist()

    def draw_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        parts = []
        for members, k in zip(self.group_members, self.slots_per_batch(batch_size), strict=True):
            parts.append(members[torch.randint(len(members), (k,), generator=generator)])
        batch = torch.cat(parts)
        return batch[torch.randperm(len(batch), generator=generator)]

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        n_batches = -(-len(self.labels) // self.batch_size)
        return torch.cat([self.draw_batch(self.batch_size, generator) for _ in range(n_batches)])


class BETSampler(B3RSSampler):
    """Reconstruction of BET (batch embedded training; Zhang, arXiv 2112.05958).

    The public reviews describe BET only as "a simple technique to control the frequency of [B3RS]"; its
    mechanism is unknown. Reconstruction: every batch is an instance-sampled batch in which a fraction
    `embed_fraction` of the slots is replaced by a B3RS-drawn sub-batch; whitening statistics and the loss are
    computed on the whole mixed batch. The instance part walks a fresh permutation, so an epoch still shows
    about (1 - embed_fraction) of the images once each.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        groups: int = 3,
        q: float = 0.5,
        embed_fraction: float = 0.5,
    ) -> None:
        super().__init__(labels, num_classes, batch_size, groups, q)
        if not 0 < embed_fraction < 1:
            raise LtbenchError(f"bet needs 0 < embed_fraction < 1, got {embed_fraction}")
        self.embedded = max(len(self.groups), round(embed_fraction * batch_size))
        self.embedded = min(self.embedded, batch_size - 1)

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        n_batches = -(-len(self.labels) // self.batch_size)
        instance = torch.randperm(len(self.labels), generator=generator)
        plain = self.batch_size - self.embedded
        batches = []
        for b in range(n_batches):
            start = (b * plain) % len(instance)
            head = instance[start : start + plain]
            if len(head) < plain:
                head = torch.cat([head, instance[: plain - len(head)]])
            batches.append(torch.cat([head, self.draw_batch(self.embedded, generator)]))
        return torch.cat(batches)


SamplerFactory = Callable[..., Sampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
SAMPLERS.register("instance", InstanceSampler)
SAMPLERS.register("square-root", lambda labels, c, b, **kw: ClassPowerSampler(labels, c, b, 0.5, **kw))
SAMPLERS.register("class-balanced", lambda labels, c, b, **kw: ClassPowerSampler(labels, c, b, 0.0, **kw))
SAMPLERS.register("progressive", ProgressiveSampler)
SAMPLERS.register("class-aware", ClassAwareSampler)
SAMPLERS.register("b3rs", B3RSSampler)
SAMPLERS.register("bet", BETSampler)


def make_sampler(name: str, labels: np.ndarray, num_classes: int, batch_size: int, **options: object) -> Sampler:
    return SAMPLERS.get(name)(labels, num_classes, batch_size, **options)
