"""`cifar10-policy` against the official PIL CIFAR10Policy's sub-ops (PaCo/LT/autoaug.py at fe56535, GLMC's copy):
each of our sub-ops on a batch against PIL's on each image, same magnitude and sign."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as tvf
from PIL import Image, ImageEnhance, ImageOps

import harness.data.augment_policies as P

FILL = (128, 128, 128)


def official(img: Image.Image, name: str, m: float) -> Image.Image:
    """Transcription of SubPolicy's `func` in PaCo/LT/autoaug.py, the random sign already in `m`."""
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, m, 0, 0, 1, 0), Image.BICUBIC, fillcolor=FILL)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, m, 1, 0), Image.BICUBIC, fillcolor=FILL)
    if name == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, m, 0, 1, 0), fillcolor=FILL)
    if name == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, m), fillcolor=FILL)
    if name == "Rotate":
        rot = img.convert("RGBA").rotate(m)
        return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)
    enhance = {
        "Color": ImageEnhance.Color,
        "Contrast": ImageEnhance.Contrast,
        "Sharpness": ImageEnhance.Sharpness,
        "Brightness": ImageEnhance.Brightness,
    }
    if name in enhance:
        return enhance[name](img).enhance(1 + m)
    if name == "Posterize":
        return ImageOps.posterize(img, int(m))
    if name == "Solarize":
        return ImageOps.solarize(img, m)
    return {"AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize, "Invert": ImageOps.invert}[name](img)


def images() -> torch.Tensor:
    """Four smooth images (structure a geometric op moves) and four of noise."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    f = torch.rand(4, 3, 2, generator=g) * 0.4 + 0.1
    wave = 127.5 + 120 * torch.sin(f[..., 0, None, None] * yy + f[..., 1, None, None] * xx)
    noise = torch.randint(0, 256, (4, 3, 32, 32), generator=g)
    return torch.cat((wave.round(), noise)).to(torch.uint8)


@pytest.mark.parametrize("name", P.OPS[1:])
def test_each_official_sub_op_is_pils(name: str) -> None:
    x = images()
    magnitudes = P.official_magnitudes(32, 32)
    for bin_ in (2, 9):
        for sign in (1, -1) if name in P.SIGNED and name != "Rotate" else (1,):
            m = magnitudes[name][bin_] * sign if name in magnitudes else 0.0
            ops = torch.full((len(x),), P.OP_INDEX[name])
            ours = P.apply_subops(x, ops, torch.full((len(x),), m, dtype=torch.float64), P.OFFICIAL)
            # PIL's translation (1, 0, c) samples x + c: torchvision's translation by −c
            pil_m = -m if name.startswith("Translate") else m
            theirs = torch.stack([tvf.pil_to_tensor(official(tvf.to_pil_image(i), name, pil_m)) for i in x])
            assert torch.equal(ours, theirs), (name, bin_, sign, (ours.int() - theirs.int()).abs().max())
