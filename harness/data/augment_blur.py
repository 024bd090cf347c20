"""Gaussian blur as a device op, as PIL blurs: `gaussian-blur:P:SMIN:SMAX`.

`RandomApply([GaussianBlur([SMIN, SMAX])], p=P)` of MoCo v2 and SimCLR (PaCo's key view, `moco/loader.py`): each
image, with probability P, is blurred by PIL's `ImageFilter.GaussianBlur(radius=σ)` with σ uniform in
[SMIN, SMAX]. PIL does not convolve with a Gaussian: it runs three box blurs of a fractional radius
(Gwosdek et al.'s extended box blur, `_gaussian_blur_radius` in Pillow's BoxBlur.c) along the rows, then three
along the columns, each in 24-bit fixed point rounded back to 8 bits, with the borders clamped to the edge
pixel. This op repeats that arithmetic exactly, image for image (tested against PIL), on whole uint8 batches:
each pass is a few shifted integer sums weighted per image, so no per-image Python runs.

Draws, from the op's generator as CPU tensors: every image's apply flag (uniform < P), then every image's σ.
"""

from __future__ import annotations

import torch

from harness.data.augment import register_op

PASSES = 3  # PIL's ImagingGaussianBlur runs three box blurs per axis
ONE = 1 << 24  # PIL's fixed-point unit


def box_radius(sigma: torch.Tensor) -> torch.Tensor:
    """PIL's `_gaussian_blur_radius(σ, 3)` in float32: the fractional box radius of three passes."""
    s = sigma.float()
    sigma2 = s * s / PASSES
    length = torch.sqrt(12.0 * sigma2 + 1.0)
    whole = torch.floor((length - 1.0) / 2.0)
    frac = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2)
    frac = frac / (6 * (sigma2 - (whole + 1) * (whole + 1)))
    return whole + frac


def box_weights(radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: the integer radius l, the fixed-point weight of each of the 2l+1 inner pixels, and that of
    each of the two outer pixels at ±(l+1) (Pillow's ImagingHorizontalBoxBlur `ww` and `fw`)."""
    whole = radius.long()
    inner = (ONE / (radius * 2 + 1)).long()  # (UINT32)(1 << 24) / (floatRadius * 2 + 1), a float32 division
    outer = (ONE - (whole * 2 + 1) * inner) // 2
    return whole, inner, outer


def blur_rows(images: torch.Tensor, whole: torch.Tensor, inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """One box-blur pass along the last axis of int64 `images` (B, C, H, W), each image its own weights."""
    reach = int(whole.max()) + 1
    columns = torch.arange(images.shape[-1], device=images.device)
    acc = torch.zeros_like(images)
    for d in range(-reach, reach + 1):
        weight = torch.where(whole >= abs(d), inner, torch.where(whole + 1 == abs(d), outer, 0))
        shifted = images[..., (columns + d).clamp(0, len(columns) - 1)]  # past a border: the edge pixel
        acc += weight[:, None, None, None] * shifted
    return (acc + (1 << 23)) >> 24


@register_op(
    "gaussian-blur",
    (0.5, 0.1, 2.0),
    "gaussian-blur:P:SMIN:SMAX, RandomApply([GaussianBlur(σ ~ U[SMIN, SMAX])], p=P), PIL's box approximation",
)
def gaussian_blur(images: torch.Tensor, generator: torch.Generator, p: float, smin: float, smax: float) -> torch.Tensor:
    batch = len(images)
    apply = torch.rand(batch, generator=generator) < p
    sigma = smin + (smax - smin) * torch.rand(batch, generator=generator, dtype=torch.float64)
    if not apply.any():
        return images
    whole, inner, outer = (t.to(images.device) for t in box_weights(box_radius(sigma)))
    out = images.long()
    for _ in range(PASSES):
        out = blur_rows(out, whole, inner, outer)
    out = out.transpose(2, 3)
    for _ in range(PASSES):
        out = blur_rows(out, whole, inner, outer)
    blurred = out.transpose(2, 3).to(torch.uint8)
    return torch.where(apply.to(images.device)[:, None, None, None], blurred, images)
