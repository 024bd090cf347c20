"""(b) trainer overhead, bf16 against fp32, and (d) achieved FLOP/s against this machine's matmul FLOP/s.

(b) times `train_epoch` (sampler, batch pipeline, method loss, LR schedule, optimiser) with the case's
real model, batch size, precision and layout, against a bare hand-written loop over the same device-resident
uint8 tensor: `randperm`, index, the same crop/flip kernel with offsets drawn on the device, normalise,
forward, cross-entropy, backward, SGD step, and nothing else. Both start from the same initial weights, so
the ratio is what the harness's machinery costs. The bare loop is also timed in bf16 and fp32 to measure
what bf16 autocast buys on this device.

(d) counts the FLOPs of one training step (forward and backward) with `FlopCounterMode` and multiplies by
the steps per second measured in (b); the reference is a large dense matmul timed here, the best case for
this machine's arithmetic units, so the ratio is the fraction of reachable FLOP/s the trainer uses.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from harness.bench.cases import BenchCase
from harness.bench.common import Figure, compare
from harness.data.pipeline import Normaliser, TensorBatches, apply_crop_flip
from harness.data.samplers import make_sampler
from harness.models import build_model
from harness.plugins.loading import build_method
from harness.plugins.method import Method, MethodContext
from harness.training.loop import Learner, epoch_generator, train_epoch
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.precision import Precision, cuda_bf16_supported, memory_format, resolve_precision

TRAINER_TARGET = 0.95
BF16_TARGET = 1.5


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 autocast runs here, and how we know: a GPU must report native bf16; on a CPU autocast
    must actually produce bf16 from a convolution and a matmul (it then runs natively where the CPU has
    AVX512-BF16 or AMX, emulated otherwise; the measured ratio tells which)."""
    if device.type == "cuda":
        if cuda_bf16_supported(device):
            return True, "CUDA device with native bf16"
        return False, f"not supported: {torch.cuda.get_device_name(device)} has no bf16"
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv = F.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3))
            matmul = torch.randn(8, 8) @ torch.randn(8, 8)
    except RuntimeError as e:
        return False, f"not supported: CPU autocast bf16 failed ({e})"
    if conv.dtype == matmul.dtype == torch.bfloat16:
        return True, "CPU autocast bf16 produces bf16 convolutions and matmuls"
    return False, "not supported: CPU autocast left convolutions or matmuls in float32"


def harness_loop(
    model: torch.nn.Module, method: Method, batches: TensorBatches, case: BenchCase, precision: Precision
) -> Callable[[], int]:
    """One epoch of ltbench's `train_epoch` per call, as `run_trial` drives it; returns images."""
    recipe = case.recipe
    labels = batches.labels.cpu().numpy()
    sampler = make_sampler("instance", labels, case.data.num_classes, recipe.batch_size)
    optimizer = make_optimizer(model.parameters(), recipe)
    scheduler = make_scheduler(optimizer, recipe, math.ceil(len(labels) / recipe.batch_size))
    learner = Learner(model, method.loss, optimizer, scheduler, precision)
    epochs = itertools.count(1)

    def epoch() -> int:
        e = next(epochs)
        generator = epoch_generator(0, e)
        indices = sampler.epoch_indices(e, recipe.epochs, generator)
        train_epoch(learner, batches, indices, recipe.batch_size, generator)
        return len(indices)

    return epoch


def bare_loop(
    initial: torch.nn.Module, batches: TensorBatches, case: BenchCase, device: torch.device, bf16: bool
) -> Callable[[], int]:
    """One epoch of a hand-written training loop on `batches`' device tensors; returns images trained."""
    recipe = case.recipe
    model = copy.deepcopy(initial).to(device, memory_format=memory_format(recipe))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    images, labels = batches.images, batches.labels
    normalise = Normaliser(case.data, device, recipe.channels_last)
    n, size, pad = len(labels), recipe.batch_size, case.pad

    def epoch() -> int:
        model.train()
        order = torch.randperm(n, device=device)
        for start in range(0, n, size):
            idx = order[start : start + size]
            b = len(idx)
            draws = torch.stack(
                [
                    torch.randint(0, 2 * pad + 1, (b,), device=device),
                    torch.randint(0, 2 * pad + 1, (b,), device=device),
                    torch.randint(0, 2 if case.flip else 1, (b,), device=device),
                ]
            )
            x = normalise(apply_crop_flip(images[idx], draws, pad))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return n

    return epoch


def image_flops(model: torch.nn.Module, batches: TensorBatches, batch_size: int, precision: Precision) -> float:
    """FLOPs per image of a training step (forward and backward, counted on one batch; the SGD update is
    O(parameters), not O(images), and is not counted)."""
    generator = torch.Generator().manual_seed(0)
    indices = torch.arange(min(batch_size, len(batches)))
    images, targets = next(iter(batches.train_batches(indices, batch_size, generator)))
    model.train()
    with FlopCounterMode(display=False) as counter:
        with precision.autocast():
            logits = model(images)
        F.cross_entropy(logits.float(), targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(targets)


def matmul(device: torch.device, dtype: torch.dtype, n: int) -> Callable[[], int]:
    """One dense n x n matmul per call (2 n^3 FLOPs); returns 1 product."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def product() -> int:
        torch.mm(a, b)
        return 1

    return product


def measure(
    cases: list[BenchCase],
    device: torch.device,
    images: dict[str, int | None],
    rounds: int,
    min_seconds: float,
    matmul_n: int,
) -> dict[str, Any]:
    """Figures of sections (b), bf16 and (d), and the bf16 support note.

    Per case, each round times the harness, the bare loop in fp32 (and bf16 where usable) and the reference
    matmuls back to back, so every ratio, (d)'s included, pairs measurements taken moments apart.
    """
    bf16_ok, bf16_note = bf16_support(device)
    precisions = ["fp32", "bf16"] if bf16_ok else ["fp32"]
    matmul_flop = 2.0 * matmul_n**3
    trainer, bf16, flops = [], [], []
    for case in cases:
        recipe = case.recipe
        split = case.head(images.get(case.model))
        precision = resolve_precision(recipe.precision, device)
        num_classes = case.data.num_classes
        batches = TensorBatches(split, case.data, device, case.pad, case.flip, recipe.channels_last)
        counts = torch.bincount(torch.as_tensor(split.labels), minlength=num_classes).double()
        method = build_method("ce", {}, MethodContext(num_classes, counts))
        torch.manual_seed(0)
        initial = build_model(case.model, num_classes, case.in_channels)
        model = copy.deepcopy(initial).to(device, memory_format=memory_format(recipe))
        per_image = image_flops(copy.deepcopy(model), batches, recipe.batch_size, precision)

        runs = {"harness": harness_loop(model, method, batches, case, precision)}
        for name in precisions:
            runs[f"bare {name}"] = bare_loop(initial, batches, case, device, name == "bf16")
        for name in precisions:
            runs[f"matmul {name}"] = matmul(device, torch.bfloat16 if name == "bf16" else torch.float32, matmul_n)
        samples = compare(runs, device, rounds, min_seconds)
        setting = {
            "model": case.model,
            "precision": precision.name,
            "recipe_precision": recipe.precision,
            "channels_last": recipe.channels_last,
            "batch_size": recipe.batch_size,
            "images": len(split),
            "samples": samples,
        }
        trainer.append(
            Figure.paired(
                samples,
                "harness",
                f"bare {precision.name}",
                case=f"{case.name}, {case.model}, {precision.name}",
                unit="images/s",
                value_name="ltbench train_epoch",
                baseline_name=f"bare PyTorch loop, {precision.name}",
                target=TRAINER_TARGET,
                detail=setting,
            )
        )
        if bf16_ok:
            bf16.append(
                Figure.paired(
                    samples,
                    "bare bf16",
                    "bare fp32",
                    case=f"{case.name}, {case.model}",
                    unit="images/s",
                    value_name="bare loop, bf16 autocast",
                    baseline_name="bare loop, fp32",
                    target=BF16_TARGET,
                    detail={**setting, "precision": "bf16 vs fp32"},
                )
            )
        # (d): FLOP/s = counted FLOPs per image x images/s; the matmul's products/s x 2n^3 FLOPs. The
        # bare loop's bf16 FLOP/s is reported too where the trainer itself runs fp32.
        sides = {"harness": precision.name}
        if bf16_ok and precision.name == "fp32":
            sides["bare bf16"] = "bf16"
        for side, name in sides.items():
            scaled = {
                side: [per_image * x for x in samples[side]],
                "matmul": [matmul_flop * x for x in samples[f"matmul {name}"]],
            }
            flops.append(
                Figure.paired(
                    scaled,
                    side,
                    "matmul",
                    case=f"{case.name}, {case.model}, {name}" + (", bare loop" if side != "harness" else ""),
                    unit="FLOP/s",
                    value_name=f"{'ltbench training' if side == 'harness' else 'bare loop'}: counted FLOPs x "
                    "measured images/s",
                    baseline_name=f"dense {matmul_n}x{matmul_n} matmul, {name}",
                    detail={
                        **setting,
                        "precision": name,
                        "flops_per_image": per_image,
                        "flops_per_step": per_image * recipe.batch_size,
                    },
                )
            )
    return {"trainer": trainer, "bf16": bf16, "flops": flops, "bf16_note": bf16_note}
