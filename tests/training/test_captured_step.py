"""The CUDA-graph step (`harness.training.captured`) against the eager step, and each epoch's GPU figures.

The `gpu` tests need CUDA and are skipped elsewhere (docs/gpu-checks.md runs them on a GPU); the others
check on a CPU that the captured step falls back to the eager step exactly, and how it is switched on.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.records.storage import Storage
from harness.training.captured import STEP_ENV, WARMUP_STEPS, CapturedStep, make_step, step_mode, step_record
from harness.training.loop import Learner, training_step
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.precision import resolve_precision
from harness.training.recipes import RECIPES
from tests.conftest import write_tiny_suite
from tests.training.test_trainer import tiny_trial
from tests.trial_runs import train

STEPS = 20
BATCH = 128


def learner_on(device: torch.device, model: torch.nn.Module, precision: str = "fp32", loss=F.cross_entropy) -> Learner:
    """The cifar-lt recipe's SGD (momentum, weight decay) and its warm-up, so the lr changes every step."""
    recipe = RECIPES.get("cifar-lt")
    optimizer = make_optimizer(model.parameters(), recipe)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch=10)
    return Learner(model, loss, optimizer, scheduler, resolve_precision(precision, device))


def batches(device: torch.device, count: int, last: int = BATCH) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    sizes = [BATCH] * (count - 1) + [last]
    images = [torch.randn(n, 3, 32, 32, generator=generator) for n in sizes]
    targets = [torch.randint(0, 10, (n,), generator=generator) for n in sizes]
    return [(x.to(device), y.to(device)) for x, y in zip(images, targets, strict=True)]


def train_steps(learner: Learner, step, data) -> list[float]:
    return [float(step(learner, images, targets)) for images, targets in data]


def assert_close_states(a: Learner, b: Learner, rtol: float) -> None:
    """Parameters, BatchNorm statistics (the model's state) and momentum buffers."""
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        torch.testing.assert_close(x.float(), y.float(), rtol=rtol, atol=1e-6, msg=name)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(
            a.optimizer.state[p]["momentum_buffer"], b.optimizer.state[q]["momentum_buffer"], rtol=rtol, atol=1e-6
        )


def twin_learners(device: torch.device, precision: str = "fp32", loss=F.cross_entropy) -> tuple[Learner, Learner]:
    torch.manual_seed(0)
    model = build_model("resnet32", 10, 3).to(device)
    return learner_on(device, model, precision, loss), learner_on(device, copy.deepcopy(model), precision, loss)


def test_on_a_cpu_the_captured_step_is_the_eager_step_and_says_why() -> None:
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model("resnet-small-gray", 10, 1)
    eager, captured = learner_on(cpu, model), learner_on(cpu, copy.deepcopy(model))
    generator = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 1, 28, 28, generator=generator), torch.randint(0, 10, (16,), generator=generator))] * 3
    step = CapturedStep()
    assert train_steps(eager, training_step, data) == train_steps(captured, step, data)
    for x, y in zip(eager.model.state_dict().values(), captured.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert step_record(step) == {
        "mode": "graph",
        "graph_steps": 0,
        "eager_steps": 3,
        "eager_why": "not on a CUDA device (3)",
    }


def test_the_step_is_eager_by_default_and_graph_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STEP_ENV, raising=False)
    assert step_mode() == "eager" and make_step(torch.device("cpu")) is training_step
    assert step_record(training_step) == {"mode": "eager"}
    monkeypatch.setenv(STEP_ENV, "graph")
    assert isinstance(make_step(torch.device("cpu")), CapturedStep)
    monkeypatch.setenv(STEP_ENV, "compiled")
    with pytest.raises(ValueError, match="LTBENCH_STEP must be one of eager, graph, got 'compiled'"):
        step_mode()


def test_a_cpu_trial_records_its_eager_step_and_throughput_but_no_gpu_figures(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    result = train(tiny_trial(tmp_path, fake_fashion_root), Storage.open(tmp_path / "t"))
    assert result["effective"]["step"] == {"mode": "eager"}
    for row in result["history"]:
        assert row["train_images_per_s"] > 0 and not any(k.startswith("gpu_") for k in row)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_captured_step_equals_the_eager_step_over_twenty_steps(precision: str) -> None:
    cuda = torch.device("cuda")
    eager, captured = twin_learners(cuda, precision)
    data = batches(cuda, STEPS)
    step = CapturedStep()
    eager_losses = train_steps(eager, training_step, data)
    captured_losses = train_steps(captured, step, data)
    assert step.graph_steps == STEPS - WARMUP_STEPS  # the rest were replays, not eager steps
    assert step_record(step)["eager_why"] == f"warm-up before capture ({WARMUP_STEPS})"
    torch.testing.assert_close(torch.tensor(captured_losses), torch.tensor(eager_losses), rtol=1e-5, atol=1e-6)
    assert_close_states(captured, eager, rtol=1e-5)
    assert [g["lr"] for g in captured.optimizer.param_groups] == [g["lr"] for g in eager.optimizer.param_groups]
    assert all(isinstance(g["lr"], float) for g in captured.optimizer.param_groups)  # checkpoint format kept


@pytest.mark.gpu
def test_a_partial_batch_runs_eagerly_and_is_counted() -> None:
    cuda = torch.device("cuda")
    eager, captured = twin_learners(cuda)
    data = batches(cuda, 8, last=40)
    step = CapturedStep()
    train_steps(eager, training_step, data)
    train_steps(captured, step, data)
    assert step.graph_steps == 8 - WARMUP_STEPS - 1
    assert step.eager_steps["a batch of another shape (the epoch's partial last batch)"] == 1
    assert_close_states(captured, eager, rtol=1e-5)


@pytest.mark.gpu
def test_a_loss_that_syncs_with_the_host_falls_back_to_eager_steps() -> None:
    def syncing_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scale = float(logits.detach().abs().max().item() > -1)  # a host read: not capturable
        return F.cross_entropy(logits, targets) * scale

    cuda = torch.device("cuda")
    eager, captured = twin_learners(cuda, loss=syncing_loss)
    data = batches(cuda, 8)
    step = CapturedStep()
    eager_losses = train_steps(eager, training_step, data)
    assert train_steps(captured, step, data) == eager_losses  # the same eager kernels: bit for bit
    assert step.graph_steps == 0 and step.failed is not None and step.failed.startswith("capture failed")
    assert sum(step.eager_steps.values()) == 8


@pytest.mark.gpu
def test_a_cuda_trial_logs_gpu_memory_and_utilisation_and_its_graph_steps(
    tmp_path: Path, fake_fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STEP_ENV, "graph")
    suite = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, device="cuda", resources={"cpu": 1, "gpu": 1})
    cfg = build_suite(str(suite)).trials[0]
    result = train(cfg, Storage.open(tmp_path / "t"))
    assert result["effective"]["step"]["mode"] == "graph" and result["effective"]["step"]["graph_steps"] > 0
    for row in result["history"]:
        assert row["gpu_memory_gib"] > 0 and 0 <= row["gpu_utilization_pct"] <= 100
