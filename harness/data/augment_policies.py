"""AutoAugment (CIFAR-10 policy) and RandAugment as device ops: `autoaugment`, `cifar10-policy`, `randaugment:N:M`.

`autoaugment` is torchvision's `AutoAugment(AutoAugmentPolicy.CIFAR10)` on uint8 tensors (nearest interpolation,
zero fill), image for image: the same 25 sub-policies, magnitudes (10 bins, translations 150/331 of the image
size truncated to whole pixels, shears as atan angles about the top-left corner, signs) and the arithmetic of
torchvision's tensor functions (harness/data/augment_kernels.py). `randaugment:N:M` is torchvision's
`RandAugment(num_ops=N, magnitude=M, num_magnitude_bins=31)`: N ops, each uniform over its 14 (Identity
included), magnitude bin M of 31 with a random sign.

`cifar10-policy` is the PIL `CIFAR10Policy` that PaCo (dvlab-research/Parametric-Contrastive-Learning,
PaCo/LT/autoaug.py at fe56535) and GLMC (ynu-yangpeng/GLMC, GLMC-2023/utils/autoaug.py at 2c0261c, a copy)
use, itself DeepVoltaire's port of the AutoAugment paper's policy. Its 25 sub-policies, probabilities and
magnitude bins are torchvision's, but it differs in ways that change images:
  - the outside of a shear, translation or rotation is gray (128, 128, 128), not black;
  - a rotation always turns counter-clockwise (`img.rotate(magnitude)`, no random sign);
  - a translation moves by 150/331·bin/9 of the image size in fractional pixels (nearest), not truncated;
  - a shear is resampled bicubic, PIL's (its a = −1 kernel over edge-clamped neighbours, transcribed in
    `augment_pil.bicubic_affine`), not nearest;
  - solarize thresholds are linspace(256, 0, 10), not linspace(255, 0, 10);
  - the colour enhancers are PIL's (its integer luma, its contrast mean rounded to an integer, its SMOOTH
    filter and blend; `augment_pil`), which differ from torchvision's tensor ones by a level here and there.
Every sub-op equals PIL's image for image (tests/data/test_augment_official.py). Left as torchvision's, the same
in distribution: a sub-op runs when its uniform is <= p (official: random() < p), and the draws come from the
generator, not Python's `random`. PaCo applies it to CIFAR-100-LT's first view; GLMC's CIFAR loader in
that commit does not use it (random crop and flip only).

Each image's draws come from the op's generator as CPU tensors in a fixed order: AutoAugment draws every
image's sub-policy, then the two probabilities, then the two signs; RandAugment every image's N op indices, then
its N signs. Then, for each of the (two or N) steps, the images are grouped by the sub-op they drew and each
group goes through its sub-op as one sub-batch (`augment_kernels.by_group`: one copy of the order and the
magnitudes to the device); an affine sub-op builds one matrix per distinct magnitude, never one per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import harness.data.augment_kernels as K
import harness.data.augment_pil as PIL
from harness.data.augment import register_op

OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
OP_INDEX = {name: i for i, name in enumerate(OPS)}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")

# AutoAugment's CIFAR-10 policy: 25 sub-policies of two (op, probability, magnitude bin); torchvision's
# AutoAugmentPolicy.CIFAR10, identical in ops, probabilities and bins to PaCo's/GLMC's CIFAR10Policy
CIFAR10_POLICY = (
    (("Invert", 0.1, 0), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 0), ("Equalize", 0.9, 0)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 0), ("Equalize", 0.5, 0)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 0), ("AutoContrast", 0.4, 0)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 0)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 0), ("Equalize", 0.6, 0)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 0)),
    (("AutoContrast", 0.8, 0), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 0)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 0), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 0), ("Invert", 0.1, 0)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 0)),
)
RANDAUGMENT_OPS = OPS[:-1]  # torchvision's RandAugment space: no Invert
SIGNED = frozenset(GEOMETRIC + ("Brightness", "Color", "Contrast", "Sharpness"))


def torchvision_magnitudes(bins: int, h: int, w: int) -> dict[str, list[float]]:
    """torchvision's magnitude of each bin per op (`_augmentation_space`), in its float32 values as Python floats."""
    colour = torch.linspace(0.0, 0.9, bins).tolist()
    return {
        "ShearX": torch.linspace(0.0, 0.3, bins).tolist(),
        "ShearY": torch.linspace(0.0, 0.3, bins).tolist(),
        "TranslateX": torch.linspace(0.0, 150.0 / 331.0 * w, bins).tolist(),
        "TranslateY": torch.linspace(0.0, 150.0 / 331.0 * h, bins).tolist(),
        "Rotate": torch.linspace(0.0, 30.0, bins).tolist(),
        "Brightness": colour,
        "Color": colour,
        "Contrast": colour,
        "Sharpness": colour,
        "Posterize": (8 - (torch.arange(bins) / ((bins - 1) / 4)).round().int()).tolist(),
        "Solarize": torch.linspace(255.0, 0.0, bins).tolist(),
    }


def official_magnitudes(h: int, w: int) -> dict[str, list[float]]:
    """The PIL CIFAR10Policy's `ranges` (numpy float64 linspaces), translations already times the image size."""
    ten = [i / 9 for i in range(10)]
    return {
        "ShearX": [0.3 * t for t in ten],
        "ShearY": [0.3 * t for t in ten],
        "TranslateX": [150 / 331 * t * w for t in ten],
        "TranslateY": [150 / 331 * t * h for t in ten],
        "Rotate": [30 * t for t in ten],
        **{name: [0.9 * t for t in ten] for name in ("Brightness", "Color", "Contrast", "Sharpness")},
        "Posterize": [float(round(8 - 4 * t)) for t in ten],
        "Solarize": [256 - 256 * t for t in ten],
    }


@dataclass(frozen=True)
class Style:
    """How a policy's sub-ops compute: the outside's fill (None: black, torchvision's zero padding), the shear's
    resampling (torchvision's nearest warp, or PIL's bicubic transform), whether translations are truncated to
    whole pixels, and whether the colour enhancers are PIL's arithmetic or torchvision's."""

    fill: float | None
    shear_mode: str
    whole_pixel_translate: bool
    pil_colour: bool = False  # Brightness, Color, Contrast, Sharpness, AutoContrast in PIL's arithmetic

    def theta(self, op: str, m: float, h: int, w: int) -> list[float]:
        """The inverse affine matrix of sub-op `op` at signed magnitude `m` (torchvision's conventions)."""
        corner = (-w * 0.5, -h * 0.5)  # shears are about the top-left corner, in both codes
        if op in ("ShearX", "ShearY"):
            angle = math.degrees(math.atan(m))
            shear = (angle, 0.0) if op == "ShearX" else (0.0, angle)
            return K.inverse_affine(0.0, (0.0, 0.0), shear, corner)
        if op in ("TranslateX", "TranslateY"):
            t = float(int(m)) if self.whole_pixel_translate else m
            return K.inverse_affine(0.0, (t, 0.0) if op == "TranslateX" else (0.0, t), (0.0, 0.0), (0.0, 0.0))
        return K.inverse_affine(-m, (0.0, 0.0), (0.0, 0.0), (0.0, 0.0))  # Rotate: F.rotate negates the angle


TORCHVISION = Style(fill=None, shear_mode="nearest", whole_pixel_translate=True)
OFFICIAL = Style(fill=128.0, shear_mode="pil-bicubic", whole_pixel_translate=False, pil_colour=True)


COLOUR = {
    "Identity": lambda x, _v: x,
    "Brightness": lambda x, v: K.brightness(x, 1.0 + v),
    "Color": lambda x, v: K.saturation(x, 1.0 + v),
    "Contrast": lambda x, v: K.contrast(x, 1.0 + v),
    "Sharpness": lambda x, v: K.sharpness(x, 1.0 + v),
    "Posterize": lambda x, v: K.posterize(x, v.long()),
    "Solarize": lambda x, v: K.solarize(x, v),
    "AutoContrast": lambda x, _v: K.autocontrast(x),
    "Equalize": lambda x, _v: K.equalize(x),
    "Invert": lambda x, _v: K.invert(x),
}
# the sub-ops whose PIL arithmetic differs from torchvision's tensor one (the others are the same integer maps)
PIL_COLOUR = {
    **COLOUR,
    "Brightness": lambda x, v: PIL.brightness(x, 1.0 + v),
    "Color": lambda x, v: PIL.color(x, 1.0 + v),
    "Contrast": lambda x, v: PIL.contrast(x, 1.0 + v),
    "Sharpness": lambda x, v: PIL.sharpness(x, 1.0 + v),
    "AutoContrast": lambda x, _v: PIL.autocontrast(x),
}


def apply_subops(images: torch.Tensor, ops: torch.Tensor, values: torch.Tensor, style: Style) -> torch.Tensor:
    """Each image through its own sub-op `OPS[ops[b]]` at signed magnitude `values[b]` (CPU tensors (B,)); the
    images of one sub-op go through it together."""
    h, w = images.shape[2:]

    def run(op: int, piece: torch.Tensor, v: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        name = OPS[op]
        if name not in GEOMETRIC:
            return (PIL_COLOUR if style.pil_colour else COLOUR)[name](piece, v)
        if name.startswith("Shear") and style.shear_mode == "pil-bicubic":
            # PIL's (1, m, 0, 0, 1, 0) for ShearX, (1, 0, 0, m, 1, 0) for ShearY
            coeffs = torch.zeros(len(v), 6, dtype=torch.float64, device=v.device)
            coeffs[:, 0] = coeffs[:, 4] = 1.0
            coeffs[:, 1 if name == "ShearX" else 3] = v
            return PIL.bicubic_affine(piece, coeffs, style.fill or 0.0)
        # one matrix per distinct magnitude in the batch (a handful), never one per image
        distinct, where = torch.unique(values[rows], return_inverse=True)
        table = torch.tensor([style.theta(name, m, h, w) for m in distinct.tolist()], dtype=torch.float32)
        mode = style.shear_mode if name.startswith("Shear") else "nearest"
        return K.warp(piece, table[where].view(-1, 2, 3), mode, style.fill)

    return K.by_group(images, ops, values, run)


def policy_plan(
    batch: int, generator: torch.Generator, signed_rotate: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's two CIFAR-10 sub-ops (op index into `OPS`, Identity where its probability failed) and their
    magnitude bins times a sign (+1 or −1; ±1 for an unsigned op is ignored), both (B, 2), drawn in torchvision's
    order: the sub-policy, then the two probabilities, then the two signs (sign bit 0 negates, as torchvision)."""
    policy = torch.randint(len(CIFAR10_POLICY), (batch,), generator=generator)
    probs = torch.rand(batch, 2, generator=generator)
    signs = torch.randint(2, (batch, 2), generator=generator)
    table_ops = torch.tensor([[OP_INDEX[op] for op, _, _ in sub] for sub in CIFAR10_POLICY])
    table_p = torch.tensor([[p for _, p, _ in sub] for sub in CIFAR10_POLICY])
    table_bin = torch.tensor([[b for _, _, b in sub] for sub in CIFAR10_POLICY])
    runs = probs <= table_p[policy]
    ops = torch.where(runs, table_ops[policy], OP_INDEX["Identity"])
    sign = torch.where(signs == 0, -1, 1)
    if not signed_rotate:
        sign = torch.where(ops == OP_INDEX["Rotate"], 1, sign)
    return ops, table_bin[policy] * sign


def signed_values(ops: torch.Tensor, signed_bins: torch.Tensor, magnitudes: dict[str, list[float]]) -> torch.Tensor:
    """The signed magnitude of each (op, ±bin): the bin's magnitude, negated where the op is signed and the sign
    is negative; 0 for the parameterless ops."""
    rows = [magnitudes.get(name, [0.0] * len(magnitudes["Rotate"])) for name in OPS]
    table = torch.tensor(rows, dtype=torch.float64)
    value = table[ops, signed_bins.abs()]
    signed = torch.tensor([name in SIGNED for name in OPS])[ops]
    return torch.where(signed & (signed_bins < 0), -value, value)


def run_plan(images: torch.Tensor, ops: torch.Tensor, values: torch.Tensor, style: Style) -> torch.Tensor:
    for k in range(ops.shape[1]):
        images = apply_subops(images, ops[:, k], values[:, k], style)
    return images


@register_op("autoaugment", (), "autoaugment, torchvision's AutoAugment with its CIFAR-10 policy")
def autoaugment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    ops, bins = policy_plan(len(images), generator)
    values = signed_values(ops, bins, torchvision_magnitudes(10, *images.shape[2:]))
    return run_plan(images, ops, values, TORCHVISION)


@register_op("cifar10-policy", (), "cifar10-policy, the PIL CIFAR10Policy of PaCo/GLMC (gray fill, see docs)")
def cifar10_policy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # torchvision's draw order, a probability < p instead of <= p (measure zero), rotations unsigned
    ops, bins = policy_plan(len(images), generator, signed_rotate=False)
    values = signed_values(ops, bins, official_magnitudes(*images.shape[2:]))
    return run_plan(images, ops, values, OFFICIAL)


def randaugment_plan(batch: int, n: int, m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's n op indices (uniform over RandAugment's 14) and the bin m with a sign (bit 1 negates, as
    torchvision's RandAugment), both (B, n): all op indices first, then all signs."""
    ops = torch.randint(len(RANDAUGMENT_OPS), (batch, n), generator=generator)
    signs = torch.randint(2, (batch, n), generator=generator)
    return ops, torch.where(signs == 1, -m, m)


def randaugment_problem(n: float, m: float) -> str | None:
    if 0 <= m <= 30 and m == int(m) and n >= 0 and n == int(n):
        return None
    return f"needs whole numbers N >= 0 and 0 <= M <= 30, got {n:g}:{m:g}"


@register_op(
    "randaugment",
    (2.0, 9.0),
    "randaugment:N:M, torchvision's RandAugment: N ops at bin M of 31",
    check=randaugment_problem,
)
def randaugment(images: torch.Tensor, generator: torch.Generator, n: float, m: float) -> torch.Tensor:
    ops, bins = randaugment_plan(len(images), int(n), int(m), generator)
    values = signed_values(ops, bins, torchvision_magnitudes(31, *images.shape[2:]))
    return run_plan(images, ops, values, TORCHVISION)
