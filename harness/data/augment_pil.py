"""PIL's image arithmetic on whole uint8 batches, per image: what the official PIL-based augmentations compute.

PaCo's and GLMC's CIFAR10Policy and PaCo's SimCLR blur run on PIL images; these functions transcribe the
Pillow C code (src/libImaging at python-pillow/Pillow 4e5f09f: Geometry.c's bicubic affine transform,
BoxBlur.c's Gaussian blur, Blend.c, Filter.c's 3x3 filter, Convert.c's luma; ImageEnhance, ImageOps and
ImageStat in Python) operation for operation, in the same integer, float32 or float64 steps, so a batch comes
out equal to what PIL makes of each image (tests/data/test_augment_official.py, test_augment_ops.py). Like
harness/data/augment_kernels.py, every function takes one parameter per image and no per-image Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf

import harness.data.augment_kernels as K


def luma(images: torch.Tensor) -> torch.Tensor:
    """PIL's RGB → L (Convert.c `L24`): (19595·r + 38470·g + 7471·b + 2^15) >> 16; a 1-channel image as is."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.long().unbind(dim=1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8).unsqueeze(1)


def blend(degenerate: torch.Tensor, images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """PIL's `Image.blend(degenerate, image, alpha)` (Blend.c): in1 + alpha·(in2 − in1) in float32, clipped and
    truncated; what every `ImageEnhance` enhancer returns for `enhance(alpha)`."""
    a = K.column(alpha, images)
    low = degenerate.float()
    return (low + a * (images.float() - low)).clamp(0, 255).to(torch.uint8)


def brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(torch.zeros_like(images), images, factor)


def color(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Color: blend with the image's L in every channel (a 1-channel image is unchanged)."""
    return blend(luma(images).expand_as(images), images, factor)


def contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Contrast: blend with a flat image of the L mean rounded to an integer (ImageStat's mean,
    int(mean + 0.5); the sums of integers are exact in float64)."""
    grey = luma(images).long()
    mean = grey.sum(dim=(1, 2, 3), keepdim=True).double() / grey[0].numel()
    flat = torch.floor(mean + 0.5).to(torch.uint8).expand_as(images)
    return blend(flat, images, factor)


SMOOTH = (torch.tensor([1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float32) / 13.0).tolist()


def smooth(images: torch.Tensor) -> torch.Tensor:
    """ImageFilter.SMOOTH (Filter.c's 3x3 filter, weights float32(k)/13): inside a one-pixel border that is
    copied, 0.5 + the three rows' sums (row below first, each ((a·k0 + b·k1) + c·k2) in float32), truncated."""
    h, w = images.shape[2:]
    if h < 3 or w < 3:
        return images
    x = images.float()

    def row(dy: int, k: list[float]) -> torch.Tensor:
        line = x[:, :, 1 + dy : h - 1 + dy]
        return line[..., :-2] * k[0] + line[..., 1:-1] * k[1] + line[..., 2:] * k[2]

    total = torch.full_like(x[:, :, 1:-1, 1:-1], 0.5)
    total = total + row(1, SMOOTH[0:3])
    total = total + row(0, SMOOTH[3:6])
    total = total + row(-1, SMOOTH[6:9])
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = total.clamp(0, 255).to(torch.uint8)
    return out


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(smooth(images), images, factor)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast: per channel, int(v·scale + offset) with scale = 255/(hi − lo), offset = −lo·scale
    in float64, clamped; a channel with hi <= lo is unchanged."""
    lo = images.amin(dim=(2, 3), keepdim=True).double()
    hi = images.amax(dim=(2, 3), keepdim=True).double()
    flat = hi <= lo
    scale = 255.0 / torch.where(flat, 1.0, hi - lo)
    offset = -lo * scale
    stretched = torch.trunc(images.double() * scale + offset).clamp(0, 255).to(torch.uint8)
    return torch.where(flat, images, stretched)


def cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """PIL's cubic through four samples at offset d in [0, 1) from v2 (its `BICUBIC` macro: the a = −1 kernel),
    in its order of float64 operations."""
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def bicubic_affine(images: torch.Tensor, coeffs: torch.Tensor, fill: float) -> torch.Tensor:
    """PIL's `Image.transform(size, AFFINE, coeffs, BICUBIC, fillcolor=fill)` per image (`coeffs` (B, 6) float64
    on the device: output pixel (x, y) samples the input at (a·(x+½) + b·(y+½) + c, d·(x+½) + e·(y+½) + f)),
    transcribing libImaging/Geometry.c: a sample outside the image is the fill, else PIL's cubic (a = −1, not
    torch's −0.75) over the 4×4 neighbours clamped to the image, in float64, clipped and truncated to uint8."""
    b, c, h, w = images.shape
    dev = images.device
    a = coeffs.to(dev, torch.float64).view(b, 6, 1, 1)
    ys = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5).view(1, h, 1)
    xs = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5).view(1, 1, w)
    xin = a[:, 0] * xs + a[:, 1] * ys + a[:, 2]
    yin = a[:, 3] * xs + a[:, 4] * ys + a[:, 5]
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xin), torch.floor(yin)
    dx, dy = (xin - x0)[:, None], (yin - y0)[:, None]
    cols = [(x0.long() - 1 + k).clamp(0, w - 1) for k in range(4)]
    rows = [(y0.long() - 1 + k).clamp(0, h - 1) for k in range(4)]
    flat = images.double().reshape(b, c, h * w)

    def at(r: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, (r * w + col).view(b, 1, h * w).expand(b, c, -1)).view(b, c, h, w)

    lines = [cubic(*(at(r, col) for col in cols), dx) for r in rows]
    v = cubic(*lines, dy).clamp(0, 255).to(torch.uint8)
    return torch.where(inside[:, None], v, torch.tensor(fill, device=dev).to(torch.uint8))


PIL_BLUR_PASSES = 3  # ImageFilter.GaussianBlur: image.gaussian_blur(radius) with its default 3 passes


def box_radius(sigma: torch.Tensor) -> torch.Tensor:
    """PIL's `_gaussian_blur_radius(sigma, 3)` (libImaging/BoxBlur.c): the extended box's float radius whose
    3 passes have the Gaussian's variance, in the C code's float32 and float64 steps."""
    s = sigma.to(torch.float32)
    sigma2 = s * s / PIL_BLUR_PASSES
    big_l = torch.sqrt(12.0 * sigma2.double() + 1.0).float()
    small_l = torch.floor((big_l.double() - 1.0) / 2.0).float()
    a = (2 * small_l + 1) * (small_l * (small_l + 1) - 3 * sigma2)
    a = a / (6 * (sigma2 - (small_l + 1) * (small_l + 1)))
    return small_l + a


def box_pass(lines: torch.Tensor, radius: torch.Tensor, ww: torch.Tensor, fw: torch.Tensor) -> torch.Tensor:
    """One pass of PIL's `ImagingLineBoxBlur` over int64 lines (N, L), each its own integer radius r, weights ww
    (of the 2r + 1 inner pixels) and fw (of the two next ones), the line extended by its edge pixels: the
    weighted window sum in 24-bit fixed point, rounded. Prefix sums make every window one subtraction."""
    n, length = lines.shape
    reach = int(radius.max()) + 1
    padded = lines[:, torch.arange(-reach, length + reach, device=lines.device).clamp(0, length - 1)]
    sums = nnf.pad(padded.cumsum(1), (1, 0))
    centre = torch.arange(length, device=lines.device) + reach
    lo, hi = centre - radius[:, None], centre + radius[:, None] + 1
    window = sums.gather(1, hi) - sums.gather(1, lo)
    bulk = window * ww[:, None] + (padded.gather(1, lo - 1) + padded.gather(1, hi)) * fw[:, None]
    return (bulk + (1 << 23)) >> 24


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """PIL's `ImageFilter.GaussianBlur(radius=sigma)` per image (`sigma` (B,) on the CPU): three extended box
    passes along the rows, then three along the columns, integer arithmetic as libImaging/BoxBlur.c, so equal
    to PIL's image for image."""
    b, c, h, w = images.shape
    radius = box_radius(sigma)
    r = radius.long()  # (int)floatRadius: the radius is >= 0
    ww = ((1 << 24) / (radius * 2 + 1)).long()  # float32 division, truncated, as the C code
    fw = ((1 << 24) - (r * 2 + 1) * ww) // 2
    r, ww, fw = torch.stack((r, ww, fw)).to(images.device)
    x = images.long()
    for axis_len, lines_per_image in ((w, c * h), (h, c * w)):
        rows = x.reshape(b * lines_per_image, axis_len)
        params = [p.repeat_interleave(lines_per_image) for p in (r, ww, fw)]
        for _ in range(PIL_BLUR_PASSES):
            rows = box_pass(rows, *params)
        x = rows.view(b, c, -1, axis_len).transpose(2, 3)  # the next axis along the rows (PIL transposes)
    return x.to(torch.uint8).contiguous()


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round() for x >= 0: halves go up (torch.round goes to even)."""
    down = torch.floor(x)
    return down + (x - down >= 0.5).to(x.dtype)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """PIL's RGB → HSV (Convert.c `rgb2hsv_row`, after colorsys): 8-bit H, S, V (int64, (B, 3, H, W)), its
    float32 and float64 steps as in the C code."""
    r, g, b = images.long().unbind(dim=1)
    maxc = torch.maximum(r, torch.maximum(g, b))
    minc = torch.minimum(r, torch.minimum(g, b))
    flat = maxc == minc
    cr = torch.where(flat, 1, maxc - minc).float()
    s = cr / maxc.clamp(min=1).float()
    rc, gc, bc = ((maxc - r).float() / cr, (maxc - g).float() / cr, (maxc - b).float() / cr)
    # h = bc − gc in float32; 2.0 + rc − bc and 4.0 + gc − rc in double, stored as float
    h = torch.where(
        r == maxc,
        (bc - gc).double(),
        torch.where(g == maxc, (2.0 + rc.double()) - bc.double(), (4.0 + gc.double()) - rc.double()),
    ).float()
    h = torch.fmod(h.double() / 6.0 + 1.0, 1.0).float()
    uh = torch.where(flat, 0, torch.trunc(h.double() * 255.0).long().clamp(0, 255))
    us = torch.where(flat, 0, torch.trunc(s.double() * 255.0).long().clamp(0, 255))
    return torch.stack((uh, us, maxc), dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """PIL's HSV → RGB (Convert.c `hsv2rgb`) on 8-bit H, S, V (int64): uint8 (B, 3, H, W)."""
    h, s, v = hsv.unbind(dim=1)
    sector = torch.floor(h.double() * 6.0 / 255.0)
    f = (h.double() * 6.0 / 255.0 - sector).float()
    fs = (s.double() / 255.0).float()
    vd = v.double()
    p = round_half_away(vd * (1.0 - fs.double())).clamp(0, 255).long()
    q = round_half_away(vd * (1.0 - (fs * f).double())).clamp(0, 255).long()
    t = round_half_away(vd * (1.0 - fs.double() * (1.0 - f.double()))).clamp(0, 255).long()
    rgb = K.rgb_of_sector(sector.long() % 6, v, p, q, t)
    return torch.where((s == 0)[:, None], v[:, None].expand_as(rgb), rgb).to(torch.uint8)


def hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue on a PIL image: to PIL's 8-bit HSV, H += int32(shift·255) as uint8 (wrapping),
    back to RGB; a 1-channel image is unchanged."""
    if images.shape[1] == 1:
        return images
    hsv = rgb_to_hsv(images)
    step = torch.trunc(shift.double() * 255).long() % 256
    h = (hsv[:, 0] + K.column(step, images, torch.long)[:, 0]) % 256
    return hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


PRECISION_BITS = 22  # Resample.c: 32 − 8 − 2


def upsample_taps(size: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample.c's `precompute_coeffs` + `normalize_coeffs_8bpc` for a bilinear enlargement of a line of
    `size[b]` pixels to `out` (never a reduction here, so the support is 1 and at most 3 taps): each output's
    3 tap positions (B, out, 3) and their fixed-point weights, 0 past the taps PIL uses."""
    scale = (size.double() / out)[:, None, None]
    center = (torch.arange(out, dtype=torch.float64, device=size.device)[None, :, None] + 0.5) * scale
    first = torch.trunc(center - 1.0 + 0.5).clamp(min=0)
    count = torch.minimum(torch.trunc(center + 1.0 + 0.5), size.double()[:, None, None]) - first
    taps = torch.arange(3, dtype=torch.float64, device=size.device)
    x = ((taps + first) - center) + 0.5
    weight = torch.where((taps < count) & (x.abs() < 1.0), 1.0 - x.abs(), 0.0)
    total = weight.sum(-1, keepdim=True)
    weight = torch.where(total != 0, weight / total, weight)
    scaled = weight * (1 << PRECISION_BITS)
    fixed = torch.where(weight < 0, torch.trunc(-0.5 + scaled), torch.trunc(0.5 + scaled)).long()
    index = torch.minimum(taps.long() + first.long(), size[:, None, None] - 1)
    return index, fixed


def resample_rows(lines: torch.Tensor, start: torch.Tensor, index: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """One `ImagingResampleHorizontal_8bpc` pass along the last axis of int64 images (B, C, R, L): output x of
    image b sums lines[..., start[b] + index[b, x, t]] · fixed[b, x, t] from a half, shifted back and clipped."""
    b, c, r, _ = lines.shape
    out = index.shape[1]
    where = (start[:, None, None] + index).view(b, 1, 1, out * 3).expand(b, c, r, -1)
    picked = lines.gather(3, where).view(b, c, r, out, 3)
    total = (picked * fixed.view(b, 1, 1, out, 3)).sum(-1) + (1 << (PRECISION_BITS - 1))
    return (total >> PRECISION_BITS).clamp(0, 255)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """torchvision's `resized_crop` of a PIL image (crop, then `Image.resize(size, BILINEAR)`): each box (top,
    left, height, width; (B, 4) on the CPU) enlarged back to the image size in Pillow's two fixed-point passes,
    along the rows first (rounded to 8 bits between the passes, as PIL does)."""
    b, c, h, w = images.shape
    top, left, bh, bw = boxes.to(images.device).unbind(1)
    col_index, col_fixed = upsample_taps(bw, w)
    row_index, row_fixed = upsample_taps(bh, h)
    across = resample_rows(images.long(), left, col_index, col_fixed)  # (B, C, H, W): every row, resized
    down = resample_rows(across.transpose(2, 3), top, row_index, row_fixed)
    return down.transpose(2, 3).to(torch.uint8).contiguous()
