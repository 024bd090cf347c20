"""Cutout and the SimCLR-style view ops as device ops: `cutout:L`, `resized-crop:SMIN:SMAX`,
`resized-crop-pil:SMIN:SMAX`, `color-jitter:B:C:S:H:P`, `color-jitter-pil:B:C:S:H:P`, `grayscale:P`,
`grayscale-pil:P`, `blur:P:SMIN:SMAX`, and `rotate:D` (RIDE's and SADE's `RandomRotation(15)`, below).

- `cutout:L` is DeVries & Taylor's Cutout with one hole as PaCo's (and GLMC's copy of it) `Cutout(n_holes=1,
  length=L)`: a centre (y, x) uniform over the pixels, the square [y − L//2, y + L//2) × [x − L//2, x + L//2)
  clipped at the borders set to 0 (an odd L gives a hole of side L − 1, as there). PaCo applies it after
  ToTensor and before Normalize, so its 0 is a black pixel, which is what 0 on these uint8 images is. DeVries &
  Taylor's own code (uoguelph-mlrg/Cutout train.py at 287f934) applies it after Normalize, so there the hole is
  the dataset's mean colour; ltbench's ops run before normalisation, so that variant is not offered.
- `resized-crop:SMIN:SMAX` is torchvision's `RandomResizedCrop(size=image size, scale=(SMIN, SMAX),
  ratio=(3/4, 4/3))`, bilinear: up to 10 tries of an area fraction and a log-uniform aspect ratio per image, the
  first that fits, else the central crop of the image's own ratio clipped to the range; the box is resized back
  to the image size (antialiasing, torchvision's tensor default, changes nothing on an upsampling). All 10 tries
  are drawn for every image, so the draws do not depend on which try fits; torchvision's randint offsets are
  drawn here as floor(uniform · range).
- `resized-crop-pil:SMIN:SMAX` draws the same boxes and resizes them as PIL does (torchvision's PIL path,
  PaCo's case): Pillow's two fixed-point bilinear passes, rows first, rounded between (`augment_pil`), equal
  image by image; the tensor path differs from it by at most one level.
- `color-jitter:B:C:S:H:P` is `RandomApply([ColorJitter(B, C, S, H)], p=P)`: each jittered image takes its four
  adjustments in its own random order (torchvision's randperm), factors uniform in [max(0, 1 − B), 1 + B] etc.
  and a hue shift uniform in [−H, H]; a 0 switches that adjustment off. On 1-channel images saturation and hue
  change nothing, as in torchvision.
- `color-jitter-pil:B:C:S:H:P` is the same on PIL images, which is how PaCo's second view jitters: the draws
  of `color-jitter`, then PIL's enhancers (ImageEnhance.Brightness, Contrast, Color) and torchvision's PIL hue
  (PIL's 8-bit HSV, the hue moved by int(H·255) mod 256), transcribed in `augment_pil`, equal to torchvision's
  PIL path image by image.
- `grayscale:P` is `RandomGrayscale(p=P)`: the ITU-R 601-2 luma in every channel; a 1-channel image is itself.
  `grayscale-pil:P` is the same on PIL images (PaCo's case): PIL's integer luma, which differs by a level.
- `blur:P:SMIN:SMAX` is the SimCLR blur of PaCo's second view (`RandomApply([moco.loader.GaussianBlur([SMIN,
  SMAX])], p=P)`): σ uniform in [SMIN, SMAX], then PIL's `ImageFilter.GaussianBlur(radius=σ)`, three extended
  box blurs each way in PIL's fixed-point arithmetic (`augment_pil.gaussian_blur`), equal to PIL's
  image for image. torchvision's `GaussianBlur` (a sampled Gaussian kernel of a given size) is another filter.

PaCo applies RandomResizedCrop and ColorJitter to PIL images. `color-jitter` follows torchvision's tensor path;
on the same parameters the PIL path (`color-jitter-pil`) differs by a level in contrast and saturation (PIL's
integer luma and rounded mean) and in hue by up to ~15 levels on a few pixels (its 8-bit HSV; about one level
on average).

Each op draws all its images' parameters from the generator first, as CPU tensors, in the order written in it.
"""

from __future__ import annotations

import math

import torch

import harness.data.augment_kernels as K
import harness.data.augment_pil as PIL
from harness.data.augment import register_op


def probability_problem(p: float) -> str | None:
    return None if 0 <= p <= 1 else f"a probability must be in [0, 1], got {p:g}"


@register_op(
    "cutout",
    (16.0,),
    "cutout:L, one black square hole of side L (centre uniform, clipped at the borders)",
    check=lambda length: None if length >= 0 else f"the side must be >= 0, got {length:g}",
)
def cutout(images: torch.Tensor, generator: torch.Generator, length: float) -> torch.Tensor:
    h, w = images.shape[2:]
    half = int(length) // 2
    y = torch.randint(0, h, (len(images),), generator=generator)
    x = torch.randint(0, w, (len(images),), generator=generator)
    boxes = torch.stack(
        ((y - half).clamp(0, h), (y + half).clamp(0, h), (x - half).clamp(0, w), (x + half).clamp(0, w))
    )
    return K.paste_box(images, boxes.T, fill=0)


TRIES = 10
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def crop_boxes(batch: int, h: int, w: int, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop's box (top, left, height, width) per image, (B, 4) int64: draws the area fractions
    (B, 10), then the log aspect ratios (B, 10), then the two offset uniforms (B, 2)."""
    area = h * w
    target = area * (
        scale[0] + (scale[1] - scale[0]) * torch.rand(batch, TRIES, generator=generator, dtype=torch.float64)
    )
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(batch, TRIES, generator=generator, dtype=torch.float64))
    offsets = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    bw = torch.round(torch.sqrt(target * aspect)).long()
    bh = torch.round(torch.sqrt(target / aspect)).long()
    fits = (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)
    first = torch.where(fits.any(1), fits.long().argmax(1), -1)
    # fallback: the central crop of the image's own aspect ratio clipped to RATIO
    ratio = w / h
    if ratio < RATIO[0]:
        fw, fh = w, int(round(w / RATIO[0]))
    elif ratio > RATIO[1]:
        fw, fh = int(round(h * RATIO[1])), h
    else:
        fw, fh = w, h
    pick = first.clamp(min=0)[:, None]
    bh = torch.where(first >= 0, bh.gather(1, pick)[:, 0], fh)
    bw = torch.where(first >= 0, bw.gather(1, pick)[:, 0], fw)
    top = torch.where(first >= 0, (offsets[:, 0] * (h - bh + 1)).long().clamp(max=h - bh), (h - fh) // 2)
    left = torch.where(first >= 0, (offsets[:, 1] * (w - bw + 1)).long().clamp(max=w - bw), (w - fw) // 2)
    return torch.stack((top, left, bh, bw), 1)


@register_op(
    "resized-crop",
    (0.08, 1.0),
    "resized-crop:SMIN:SMAX, RandomResizedCrop to the image size, area in [SMIN, SMAX]",
    check=lambda lo, hi: None if 0 < lo <= hi <= 1 else f"needs 0 < SMIN <= SMAX <= 1, got {lo:g}:{hi:g}",
)
def random_resized_crop(images: torch.Tensor, generator: torch.Generator, smin: float, smax: float) -> torch.Tensor:
    h, w = images.shape[2:]
    return K.resized_crop(images, crop_boxes(len(images), h, w, (smin, smax), generator))


@register_op(
    "resized-crop-pil",
    (0.08, 1.0),
    "resized-crop-pil:SMIN:SMAX, resized-crop as torchvision does it to PIL images (PaCo's second view)",
    check=lambda lo, hi: None if 0 < lo <= hi <= 1 else f"needs 0 < SMIN <= SMAX <= 1, got {lo:g}:{hi:g}",
)
def random_resized_crop_pil(images: torch.Tensor, generator: torch.Generator, smin: float, smax: float) -> torch.Tensor:
    h, w = images.shape[2:]
    return PIL.resized_crop(images, crop_boxes(len(images), h, w, (smin, smax), generator))


def jitter_draws(
    batch: int, ranges: list[tuple[float, float] | None], p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whether each image is jittered (B,), its order of the four adjustments (B, 4) and its four factors
    (B, 4) float64: drawn in that order (the orders as argsort of uniforms, a uniform random permutation)."""
    apply = torch.rand(batch, generator=generator) < p
    order = torch.rand(batch, 4, generator=generator).argsort(1)
    u = torch.rand(batch, 4, generator=generator, dtype=torch.float64)
    lows = torch.tensor([r[0] if r else 0.0 for r in ranges], dtype=torch.float64)
    highs = torch.tensor([r[1] if r else 0.0 for r in ranges], dtype=torch.float64)
    return apply, order, lows + (highs - lows) * u


def jitter_ranges(b: float, c: float, s: float, hue: float) -> list[tuple[float, float] | None]:
    """ColorJitter's ranges: [max(0, 1 − v), 1 + v] for the factors, [−H, H] for the hue; None when off."""
    factors = [(max(0.0, 1.0 - v), 1.0 + v) if v > 0 else None for v in (b, c, s)]
    return [*factors, (-hue, hue) if hue > 0 else None]


KERNELS = (K.brightness, K.contrast, K.saturation, K.hue)  # ColorJitter's fn_idx 0..3, on tensors
PIL_KERNELS = (PIL.brightness, PIL.contrast, PIL.color, PIL.hue)  # the same on PIL images


def jitter_problem(b: float, c: float, s: float, hue: float, p: float) -> str | None:
    if min(b, c, s) < 0 or not 0 <= hue <= 0.5:
        return "needs B, C, S >= 0 and 0 <= H <= 0.5"
    return probability_problem(p)


def jitter(images: torch.Tensor, generator: torch.Generator, args: tuple[float, ...], kernels: tuple) -> torch.Tensor:
    """RandomApply([ColorJitter(B, C, S, H)], p=P) with these four adjustments: each slot of each image's order
    groups the images by the adjustment they take there."""
    b, c, s, hue, p = args
    ranges = jitter_ranges(b, c, s, hue)
    apply, order, factors = jitter_draws(len(images), ranges, p, generator)
    active = [fn if r is not None else None for fn, r in zip(kernels, ranges, strict=True)]
    rows = torch.arange(len(images))
    for slot in range(4):
        fn_id = order[:, slot]
        # group 4: an image not jittered, or whose adjustment in this slot is switched off
        off = ~apply | torch.tensor([k is None for k in active])[fn_id]
        groups = torch.where(off, 4, fn_id)

        def run(g: int, piece: torch.Tensor, factor: torch.Tensor, _rows: torch.Tensor) -> torch.Tensor:
            return piece if g == 4 else active[g](piece, factor)

        images = K.by_group(images, groups, factors[rows, fn_id], run)
    return images


@register_op(
    "color-jitter",
    (0.4, 0.4, 0.4, 0.1, 0.8),
    "color-jitter:B:C:S:H:P, RandomApply([ColorJitter(B, C, S, H)], p=P), the four in a random order per image",
    check=jitter_problem,
)
def color_jitter(images: torch.Tensor, generator: torch.Generator, *args: float) -> torch.Tensor:
    return jitter(images, generator, args, KERNELS)


@register_op(
    "color-jitter-pil",
    (0.4, 0.4, 0.4, 0.1, 0.8),
    "color-jitter-pil:B:C:S:H:P, color-jitter as torchvision does it to PIL images (PaCo's second view)",
    check=jitter_problem,
)
def color_jitter_pil(images: torch.Tensor, generator: torch.Generator, *args: float) -> torch.Tensor:
    return jitter(images, generator, args, PIL_KERNELS)


@register_op(
    "grayscale", (0.2,), "grayscale:P, RandomGrayscale(p=P): the luma in every channel", check=probability_problem
)
def random_grayscale(images: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    grey = (torch.rand(len(images), generator=generator) < p).to(images.device)
    return torch.where(grey[:, None, None, None], K.luma(images).expand_as(images), images)


@register_op(
    "blur",
    (0.5, 0.1, 2.0),
    "blur:P:SMIN:SMAX, RandomApply([GaussianBlur(sigma uniform in [SMIN, SMAX])], p=P) with PIL's Gaussian blur",
    check=lambda p, lo, hi: (
        probability_problem(p) or (None if 0 < lo <= hi else f"needs 0 < SMIN <= SMAX, got {lo:g}:{hi:g}")
    ),
)
def random_blur(images: torch.Tensor, generator: torch.Generator, p: float, lo: float, hi: float) -> torch.Tensor:
    apply = torch.rand(len(images), generator=generator) < p
    sigma = lo + (hi - lo) * torch.rand(len(images), generator=generator, dtype=torch.float64)

    def run(g: int, piece: torch.Tensor, _sigma: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return PIL.gaussian_blur(piece, sigma[rows]) if g == 1 else piece

    return K.by_group(images, apply.long(), sigma, run)


@register_op(
    "grayscale-pil",
    (0.2,),
    "grayscale-pil:P, grayscale as torchvision does it to PIL images (PIL's integer luma)",
    check=probability_problem,
)
def random_grayscale_pil(images: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    grey = (torch.rand(len(images), generator=generator) < p).to(images.device)
    return torch.where(grey[:, None, None, None], PIL.luma(images).expand_as(images), images)


@register_op(
    "rotate",
    (15.0,),
    "rotate:D, torchvision's RandomRotation(D): an angle uniform in [-D, D], nearest neighbour, black outside",
)
def random_rotation(images: torch.Tensor, generator: torch.Generator, degrees: float) -> torch.Tensor:
    """RandomRotation(D) of RIDE's and SADE's CIFAR training loaders (`expand` off, about the centre, fill 0):
    each image's angle a ~ U(-D, D) from the generator, then torchvision's tensor rotation, whose inverse matrix
    for a pure rotation by a is [cos a, -sin a, 0; sin a, cos a, 0] about the centre (`inverse_affine` at
    angle -a, here for the whole batch at once)."""
    angles = (torch.rand(len(images), generator=generator, dtype=torch.float64) * 2 - 1) * degrees
    rot = torch.deg2rad(-angles)  # torchvision's F.rotate passes -angle to its inverse affine matrix
    zero = torch.zeros_like(rot)
    thetas = torch.stack((rot.cos(), rot.sin(), zero, -rot.sin(), rot.cos(), zero), dim=1).view(-1, 2, 3)
    return K.warp(images, thetas.float(), "nearest")
