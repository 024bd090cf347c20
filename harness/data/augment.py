"""Augmentation policies on the device: named ops composed with `+`, applied to whole uint8 batches.

A policy is a string such as `"crop:4+flip"` or `"crop:4+flip+autoaugment+cutout:16"`: ops in the order they
run, each `name` or `name:arg:arg` (numbers). Every op maps a uint8 batch (B, C, H, W) on any device to a uint8
batch of the same shape, and draws each image's parameters from a CPU `torch.Generator` (the epoch's, in the
trainer), in a fixed order, so a resumed trial replays exactly the images an uninterrupted one saw and the draws
are the same on every device. No op runs per-sample Python on the device: the draws are made as CPU tensors,
moved in one copy, and applied to the batch at once.

A method asks for extra views of its training images by policy (`Method.views`); `apply_policy` makes them.
Ops register into `AUGMENT_OPS` with `register_op`; this module holds the geometric basics (crop, flip), the
colour and policy ops (AutoAugment, RandAugment, Cutout, SimCLR's views) live beside it and register here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.core.errors import LtbenchError
from harness.core.registry import Registry

# an op: (uint8 images (B, C, H, W), the generator of its draws, its numeric arguments) -> uint8 images
AugmentOp = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class OpSpec:
    """A registered op: the function, and how many numeric arguments it takes (defaults fill the rest)."""

    fn: AugmentOp
    defaults: tuple[float, ...]
    help: str
    check: Callable[..., str | None] | None = None  # the arguments' problem in words, or None when they are fine


AUGMENT_OPS: Registry[OpSpec] = Registry("augmentation op")


def register_op(
    name: str, defaults: tuple[float, ...], help: str, check: Callable[..., str | None] | None = None
) -> Callable[[AugmentOp], AugmentOp]:
    """Decorator: register `fn(images, generator, *args)` as op `name` with its default arguments; `check(*args)`,
    if given, says what is wrong with a policy's arguments (checked when the policy is parsed)."""

    def add(fn: AugmentOp) -> AugmentOp:
        AUGMENT_OPS.register(name, OpSpec(fn, defaults, help, check))
        return fn

    return add


def parse_policy(policy: str) -> list[tuple[OpSpec, tuple[float, ...]]]:
    """Each op of `policy` with its full argument list; a clear one-line error for a bad policy."""
    if not isinstance(policy, str) or not policy.strip():
        raise LtbenchError(f"augmentation policy must be a non-empty string such as 'crop:4+flip', got {policy!r}")
    steps = []
    for part in policy.split("+"):
        name, *raw = part.strip().split(":")
        spec = AUGMENT_OPS.get(name)
        if len(raw) > len(spec.defaults):
            raise LtbenchError(
                f"augmentation op {name!r} in policy {policy!r} takes at most {len(spec.defaults)} "
                f"argument(s) ({spec.help}), got {len(raw)}"
            )
        try:
            given = tuple(float(a) for a in raw)
        except ValueError:
            raise LtbenchError(
                f"augmentation op {name!r} in policy {policy!r}: arguments must be numbers ({spec.help})"
            ) from None
        args = given + spec.defaults[len(given) :]
        problem = spec.check(*args) if spec.check else None
        if problem:
            raise LtbenchError(f"augmentation op {name!r} in policy {policy!r}: {problem} ({spec.help})")
        steps.append((spec, args))
    return steps


def check_policy(policy: str) -> None:
    """Raise `LtbenchError` unless `policy` names registered ops with valid arguments."""
    parse_policy(policy)


def apply_policy(policy: str, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`images` (uint8, B x C x H x W) augmented by `policy`, each image its own draws from `generator`."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"apply_policy needs a uint8 batch (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    for spec, args in parse_policy(policy):
        images = spec.fn(images, generator, *args)
    return images


def draw_offsets(batch: int, pad: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's crop offsets (rows, then columns) in [0, 2·pad], from `generator`."""
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    return dy, dx


def gather_pixels(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Pixel (rows[b, i], cols[b, j]) of image b at output (i, j), for all channels, in one gather."""
    b, c, h, w = images.shape
    out_h, out_w = rows.shape[1], cols.shape[1]
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, out_h * out_w).expand(b, c, out_h * out_w)
    return torch.gather(images.reshape(b, c, -1), 2, flat).view(b, c, out_h, out_w)


@register_op("crop", (4.0,), "crop:P, zero-pad by P pixels and crop back to size at a random offset")
def random_crop(images: torch.Tensor, generator: torch.Generator, pad: float) -> torch.Tensor:
    p = int(pad)
    if p <= 0:
        return images
    dy, dx = (d.to(images.device) for d in draw_offsets(len(images), p, generator))
    h, w = images.shape[2:]
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    rows = dy[:, None] + torch.arange(h, device=images.device)
    cols = dx[:, None] + torch.arange(w, device=images.device)
    return gather_pixels(padded, rows, cols)


@register_op("flip", (0.5,), "flip:P, mirror each image left-right with probability P")
def random_flip(images: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    mirror = (torch.rand(len(images), generator=generator) < p).to(images.device)
    return torch.where(mirror[:, None, None, None], images.flip(3), images)
