"""Recipe precision (fp32 | bf16 | auto) and channels_last: validation, resolution, and that the trainer
really runs bf16 autocast and NHWC tensors when asked, and nothing of the kind by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.errors import LtbenchError
from harness.data import LTData
from harness.data.base import ArraySplit
from harness.data.pipeline import TensorBatches
from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.plugins.loading import build_method
from harness.plugins.method import MethodContext
from harness.records.storage import Storage
from harness.training.loop import Learner, predict, train_epoch
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.precision import FP32, memory_format, resolve_precision
from harness.training.recipes import RECIPES, Recipe
from tests.conftest import write_tiny_suite
from tests.fakes import write_cifar10
from tests.trial_runs import setup_of, train

CPU = torch.device("cpu")


# -- recipe fields -------------------------------------------------------------------------------------------


def test_invalid_precision_lists_the_choices() -> None:
    with pytest.raises(LtbenchError, match="unknown precision 'fp16'; valid precisions: auto, bf16, fp32"):
        Recipe(epochs=1, batch_size=8, lr=0.1, precision="fp16")


def test_invalid_precision_from_a_suite_override_is_a_user_error() -> None:
    with pytest.raises(LtbenchError, match="valid precisions"):
        build_suite("quick", ["recipe.precision=half"])


def test_channels_last_must_be_a_bool() -> None:
    with pytest.raises(LtbenchError, match="channels_last must be true or false"):
        Recipe(epochs=1, batch_size=8, lr=0.1, channels_last="yes")  # type: ignore[arg-type]


def test_defaults_and_the_cuda_recipes() -> None:
    """Every official code trains in fp32: so do the CIFAR recipes; ImageNet-LT at 224 px keeps bf16 autocast."""
    assert (RECIPES.get("quick").precision, RECIPES.get("quick").channels_last) == ("fp32", False)
    for name in ("cifar-lt", "wb-stage1", "lort-stage1", "menon2021-cifar", "menon2021-cifar100-code"):
        assert RECIPES.get(name).precision == "fp32", name
    for name in ("cifar-lt", "imagenet-lt"):
        assert RECIPES.get(name).channels_last
    assert RECIPES.get("imagenet-lt").precision == "auto"


def test_precision_and_layout_enter_the_trial_key() -> None:
    base = build_suite("quick", ["seeds=[0]"]).trials[0]
    bf16 = build_suite("quick", ["seeds=[0]", "recipe.precision=bf16"]).trials[0]
    nhwc = build_suite("quick", ["seeds=[0]", "recipe.channels_last=true"]).trials[0]
    assert len({base.key, bf16.key, nhwc.key}) == 3


# -- resolution ---------------------------------------------------------------------------------------------


def test_auto_is_fp32_on_cpu_and_bf16_is_honoured() -> None:
    assert resolve_precision("auto", CPU).name == "fp32"
    assert resolve_precision("fp32", CPU).name == "fp32"
    bf16 = resolve_precision("bf16", CPU)
    assert bf16.name == "bf16" and bf16.dtype == torch.bfloat16
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu")
    with FP32.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(LtbenchError, match="valid precisions"):
        resolve_precision("int8", CPU)


def test_memory_format_of_a_recipe() -> None:
    recipe = Recipe(epochs=1, batch_size=8, lr=0.1)
    assert memory_format(recipe) is torch.preserve_format
    assert memory_format(recipe.override(channels_last=True)) is torch.channels_last


# -- the trainer under bf16 / channels_last ---------------------------------------------------------------


def _tiny(channels: int = 3, n: int = 48) -> tuple[LTData, ArraySplit]:
    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 256, (n, channels, 12, 12), dtype=np.uint8), np.arange(n) % 4)
    data = LTData("tiny", 4, [n // 4] * 4, split, split, split, (0.5,) * channels, (0.25,) * channels)
    return data, split


class DtypeProbe:
    """Forward hook recording the output dtype of a module and whether autocast was on at the time."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seen: list[tuple[torch.dtype, bool]] = []
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        self.seen.append((output.dtype, torch.is_autocast_enabled("cpu")))


@pytest.mark.parametrize(
    ("choice", "dtype", "autocast"), [("fp32", torch.float32, False), ("bf16", torch.bfloat16, True)]
)
def test_training_step_and_prediction_run_in_the_chosen_precision(choice, dtype, autocast) -> None:
    data, split = _tiny()
    torch.manual_seed(0)
    model = build_model("resnet-small-gray", 4, 3)
    recipe = Recipe(epochs=1, batch_size=16, lr=0.05)
    method = build_method("ce", {}, MethodContext(4, torch.ones(4)))
    batches = TensorBatches(split, data, CPU, 2, True)
    optimizer = make_optimizer(model.parameters(), recipe)
    scheduler = make_scheduler(optimizer, recipe, 3)
    precision = resolve_precision(choice, CPU)
    conv, head = DtypeProbe(model.backbone.conv1), DtypeProbe(model.head)

    learner = Learner(model, method.loss, optimizer, scheduler, precision)
    loss = train_epoch(learner, batches, torch.arange(48), 16, torch.Generator())
    assert np.isfinite(loss)
    assert conv.seen == [(dtype, autocast)] * 3 and head.seen == [(dtype, autocast)] * 3
    # weights and their update stay float32 whatever the forward precision
    assert all(p.dtype == torch.float32 for p in model.parameters())

    preds, labels = predict(model, method.predict, batches, precision)
    assert conv.seen[3:] == [(dtype, autocast)] and preds.shape == labels.shape == (48,)


def test_channels_last_batches_are_nhwc_and_equal_to_nchw_ones() -> None:
    data, split = _tiny(channels=3)
    nchw = TensorBatches(split, data, CPU, 2, True)
    nhwc = TensorBatches(split, data, CPU, 2, True, channels_last=True)
    indices = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    a = list(nchw.train_batches(indices, 16, torch.Generator().manual_seed(2)))
    b = list(nhwc.train_batches(indices, 16, torch.Generator().manual_seed(2)))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xb.is_contiguous(memory_format=torch.channels_last) and not xa.is_contiguous(
            memory_format=torch.channels_last
        )
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    (x, _), *_ = nhwc.eval_batches(16)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_trial_setup_puts_model_and_batches_in_channels_last(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "c", per_class=12, test_per_class=1)
    suite = write_tiny_suite(
        tmp_path / "s.yaml",
        tmp_path / "c",
        datasets=["cifar10-lt"],
        model="resnet32",
        recipe={"base": "cifar-lt", "epochs": 1, "batch_size": 16},
        data={"root": str(tmp_path / "c"), "max_per_class": 12, "val_per_class": 1},
    )
    setup = setup_of(build_suite(str(suite)).trials[0])
    assert setup.recipe.channels_last
    assert setup.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images, _ = next(iter(setup.splits["test"].eval_batches(8)))
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_bf16_trial_is_close_to_fp32_but_not_identical(tmp_path: Path, fake_fashion_root: Path) -> None:
    results = {}
    for choice in ("fp32", "bf16"):
        recipe = {"base": "quick", "epochs": 2, "batch_size": 32, "precision": choice}
        suite = write_tiny_suite(tmp_path / f"{choice}.yaml", fake_fashion_root, recipe=recipe)
        results[choice] = train(build_suite(str(suite)).trials[0], Storage.open(tmp_path / choice))
    fp32 = [h["train_loss"] for h in results["fp32"]["history"]]
    bf16 = [h["train_loss"] for h in results["bf16"]["history"]]
    assert fp32 != bf16  # bf16 really ran
    assert abs(bf16[0] - fp32[0]) < 0.02 * abs(fp32[0])  # ... and only rounding separates the first epochs
