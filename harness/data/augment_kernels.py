"""Per-image image operations on whole uint8 batches: the arithmetic of torchvision's tensor transforms, batched.

Each function takes a uint8 batch (B, C, H, W), C = 1 or 3, on any device and one parameter per image (a CPU
tensor, moved in one copy), and returns a uint8 batch. The arithmetic is torchvision's tensor path
(`torchvision.transforms.functional` on a uint8 tensor) step for step, in the same dtype and order, so an image
comes out equal to what torchvision makes of it with the same parameter; tests/data/test_augment_kernels.py checks
each against torchvision. Where the result cannot be bit-equal the function says why.

The affine warps take their 2x3 inverse matrices from `inverse_affine`, torchvision's own formula evaluated in
Python floats (as torchvision does) once per distinct parameter in the batch, never per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nnf

from harness.data.augment import gather_pixels

# ITU-R 601-2 luma with torchvision's coefficients (rgb_to_grayscale on tensors)
LUMA = (0.2989, 0.587, 0.114)


def column(values: torch.Tensor, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A per-image CPU parameter (B,) as a (B, 1, 1, 1) tensor of `dtype` on the images' device."""
    return values.to(dtype).view(-1, 1, 1, 1).to(images.device)


def blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend`: ratio·images + (1 − ratio)·other, clamped, truncated to uint8.

    `ratio` is float64 per image; like torchvision (a Python float times a uint8 tensor) each coefficient is
    rounded to float32 after (1 − ratio) is formed in double precision."""
    r = column(ratio, images)
    s = column(1.0 - ratio.double(), images)
    return (r * images.float() + s * other.float()).clamp(0, 255).to(torch.uint8)


def luma(images: torch.Tensor) -> torch.Tensor:
    """Grayscale (B, 1, H, W) uint8 as torchvision's rgb_to_grayscale; a 1-channel batch is returned as is."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).to(torch.uint8).unsqueeze(1)


def brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, torch.zeros_like(images), factor)


def saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_saturation; a 1-channel image is unchanged (as torchvision, matching PIL)."""
    if images.shape[1] == 1:
        return images
    return blend(images, luma(images), factor)


def contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_contrast: blend with the image's mean gray (float32; the sums of integers are exact
    in float32 at these sizes, so the batched mean equals the per-image one)."""
    mean = luma(images).float().mean(dim=(1, 2, 3), keepdim=True)
    return blend(images, mean, factor)


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_sharpness: blend with the image smoothed by [[1,1,1],[1,5,1],[1,1,1]]/13 inside a
    one-pixel border. The smoothing sums integers and divides by 13 (torchvision convolves with float32 weights):
    k/13 is never within float error of a half, so both round to the same integer."""
    h, w = images.shape[2:]
    if h <= 2 or w <= 2:
        return images
    x = images.float()
    total = sum(x[:, :, i : i + h - 2, j : j + w - 2] for i in range(3) for j in range(3))
    smooth = torch.round((total + 4.0 * x[:, :, 1:-1, 1:-1]) / 13.0).to(torch.uint8)
    degenerate = images.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return blend(images, degenerate, factor)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits of every channel (bits in 0..8, per image)."""
    mask = (256 - torch.pow(2, 8 - bits.long())) & 255
    return images & column(mask, images, torch.uint8)


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert every value >= threshold (threshold float per image, compared in float32 as torchvision does)."""
    return torch.where(images.float() >= column(threshold, images), 255 - images, images)


def invert(images: torch.Tensor) -> torch.Tensor:
    return 255 - images


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """torchvision's autocontrast: stretch each channel of each image to 0..255 (a flat channel is unchanged)."""
    lo = images.amin(dim=(2, 3), keepdim=True).float()
    hi = images.amax(dim=(2, 3), keepdim=True).float()
    scale = 255 / (hi - lo)
    flat = ~torch.isfinite(scale)
    lo = torch.where(flat, 0.0, lo)
    scale = torch.where(flat, 1.0, scale)
    return ((images - lo) * scale).clamp(0, 255).to(torch.uint8)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """torchvision's equalize, all channels of all images at once: each channel's cumulative histogram (counts of
    values <= v, by a search in the sorted values: deterministic on every device, unlike a scatter), its step =
    (pixels − the count of its highest value) // 255 and the look-up table (cumsum + step // 2) // step shifted
    by one; a channel whose step is 0 is unchanged. Integer arithmetic only."""
    b, c, h, w = images.shape
    flat = images.reshape(b * c, h * w).long()
    levels = torch.arange(256, device=images.device).expand(b * c, 256).contiguous()
    cumulative = torch.searchsorted(flat.sort(dim=1).values, levels, right=True)
    hist = cumulative - nnf.pad(cumulative, (1, 0))[:, :-1]
    top = flat.amax(dim=1, keepdim=True)
    step = torch.div(h * w - hist.gather(1, top), 255, rounding_mode="floor")
    safe = step.clamp(min=1)
    lut = torch.div(cumulative + torch.div(step, 2, rounding_mode="floor"), safe, rounding_mode="floor")
    lut = nnf.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = torch.where(step == 0, flat, lut.gather(1, flat))
    return out.to(torch.uint8).view(b, c, h, w)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's _rgb2hsv on float images in [0, 1] (B, 3, H, W), same operations in the same order."""
    r, g, b = x.unbind(dim=1)
    maxc = x.max(dim=1).values
    minc = x.min(dim=1).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """torchvision's _hsv2rgb (it sums one-hot products, which is exact; a gather picks the same values)."""
    h, s, v = x.unbind(dim=1)
    i = torch.floor(h * 6.0)
    f = (h * 6.0) - i
    sector = (i.to(torch.int32) % 6).long()
    p = torch.clamp(v * (1.0 - s), 0.0, 1.0)
    q = torch.clamp(v * (1.0 - s * f), 0.0, 1.0)
    t = torch.clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    return rgb_of_sector(sector, v, p, q, t)


def rgb_of_sector(
    sector: torch.Tensor, v: torch.Tensor, p: torch.Tensor, q: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The HSV → RGB case table (B, 3, H, W): for hue sector 0-5 (int64, B x H x W) each channel is one of v, p,
    q, t, as every HSV conversion defines it (torchvision's and PIL's alike)."""
    choices = torch.stack(
        (
            torch.stack((v, q, p, p, t, v), dim=1),
            torch.stack((t, v, v, q, p, p), dim=1),
            torch.stack((p, p, t, v, v, q), dim=1),
        ),
        dim=1,
    )  # (B, 3 channels, 6 sectors, H, W)
    index = sector[:, None, None].expand(-1, 3, 1, -1, -1)
    return choices.gather(2, index).squeeze(2)


def hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue: rotate the hue by `shift` (in [-0.5, 0.5]) turns; a 1-channel image is unchanged."""
    if images.shape[1] == 1:
        return images
    hsv = rgb_to_hsv(images.float() / 255.0)
    h = (hsv[:, 0] + column(shift, images)[:, 0]) % 1.0
    rgb = hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))
    return rgb.mul(255 + 1.0 - 1e-3).to(torch.uint8)


def inverse_affine(
    angle: float, translate: tuple[float, float], shear: tuple[float, float], center: tuple[float, float]
) -> list[float]:
    """torchvision's `_get_inverse_affine_matrix` at scale 1 (angles in degrees; `center` relative to the image
    centre): the matrix taking an output pixel to the input pixel it samples, in Python floats like torchvision."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def by_group(
    images: torch.Tensor,
    groups: torch.Tensor,
    params: torch.Tensor,
    transform: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Each image through its group's transform, each group's images as one sub-batch: images sorted by group
    (CPU `groups` (B,) int64), `transform(group, sub_batch, its params on the device, its rows on the CPU)` per
    non-empty group, put back in place. `params` (B,) float64 on the CPU travel to the device with the sort order
    in one copy. Each image is computed once, by its own op, rather than every op on the whole batch."""
    order = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=int(groups.max()) + 1 if len(groups) else 1).tolist()
    moved = torch.stack((order.double(), params.double()[order])).to(images.device)
    index = moved[0].long()
    pieces = images.index_select(0, index).split(counts)
    piece_params = moved[1].split(counts)
    rows = order.split(counts)
    done = [transform(g, piece, piece_params[g], rows[g]) if counts[g] else piece for g, piece in enumerate(pieces)]
    return torch.empty_like(images).index_copy_(0, index, torch.cat(done))


def warp(images: torch.Tensor, thetas: torch.Tensor, mode: str = "nearest", fill: float | None = None) -> torch.Tensor:
    """Each image resampled through its own inverse affine matrix (`thetas`, (B, 2, 3) float32 on the CPU), on
    torchvision's pixel grid (`_gen_affine_grid`) with grid_sample (zeros outside; `fill` paints the outside a
    constant, by the same ones-channel mask torchvision uses). `mode` nearest, bilinear or bicubic; rounded back
    to uint8 (clamped first: bicubic overshoots)."""
    b, c, h, w = images.shape
    theta = thetas.to(images.device, torch.float32)
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1, steps=w, device=images.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1, steps=h, device=images.device)
    base = torch.empty(1, h, w, 3, device=images.device)
    base[..., 0].copy_(xs)
    base[..., 1].copy_(ys[:, None])
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=images.device)
    # base · scaled as three products and two sums, each its own kernel: no TF32 matmul and no fused
    # multiply-add on any device (a batched matmul would take TF32 on a GPU where that is switched on)
    scaled = scaled.view(b, 1, 1, 3, 2)
    grid = base[..., 0:1] * scaled[..., 0, :] + base[..., 1:2] * scaled[..., 1, :] + scaled[..., 2, :]
    x = images.float()
    if fill is not None:
        x = torch.cat((x, torch.ones_like(x[:, :1])), dim=1)
    out = nnf.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if fill is not None:
        mask = out[:, -1:].expand(-1, c, -1, -1)
        out = out[:, :-1]
        out = torch.where(mask < 0.5, fill, out) if mode == "nearest" else out * mask + (1.0 - mask) * fill
    return torch.round(out).clamp(0, 255).to(torch.uint8)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box (top, left, height, width; (B, 4) int64 on the CPU, inside the image) resized back to the
    image size, bilinear with align_corners=False and the source index clamped to the box, as torch's interpolate
    does for an upsampling (a box is never larger than the image, so antialiasing, torchvision's tensor default,
    changes nothing; the float operations differ in order, so a pixel may differ by one)."""
    b, c, h, w = images.shape
    top, left, bh, bw = boxes.to(images.device).unbind(1)  # one copy

    def axis(start: torch.Tensor, size: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # torch's area_pixel_compute_source_index: (i + 0.5)·(in/out) − 0.5, clamped at 0; the upper
        # neighbour is clamped to the box
        scale = (size.float() / out)[:, None]
        src = ((torch.arange(out, device=images.device) + 0.5) * scale - 0.5).clamp(min=0)
        lo = src.long()
        hi = torch.minimum(lo + 1, size[:, None] - 1)
        return start[:, None] + lo, start[:, None] + hi, src - lo

    r0, r1, ly = axis(top, bh, h)
    c0, c1, lx = axis(left, bw, w)
    x = images.float()
    ly, lx = ly[:, None, :, None], lx[:, None, None, :]
    upper = gather_pixels(x, r0, c0) * (1 - lx) + gather_pixels(x, r0, c1) * lx
    lower = gather_pixels(x, r1, c0) * (1 - lx) + gather_pixels(x, r1, c1) * lx
    return torch.round(upper * (1 - ly) + lower * ly).clamp(0, 255).to(torch.uint8)


def paste_box(images: torch.Tensor, boxes: torch.Tensor, fill: int = 0) -> torch.Tensor:
    """Each image with its box (y1, y2, x1, x2; (B, 4) on the CPU, half-open, possibly empty) set to `fill`."""
    h, w = images.shape[2:]
    y1, y2, x1, x2 = (v.view(-1, 1, 1, 1) for v in boxes.to(images.device).unbind(1))  # one copy
    rows = torch.arange(h, device=images.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, 1, w)
    inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
    return torch.where(inside, torch.tensor(fill, dtype=torch.uint8, device=images.device), images)
