"""RIDE: its loss against a transcription of the official RIDELoss, its network, its DRW switch."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import MethodContext, MultiExpertModel, TrainingBatch
from harness.models import build_model
from harness.plugins.method import parse_params
from methods.ride import RIDE, diversity_temperature_weights, ride_loss

COUNTS = [500.0, 200.0, 90.0, 40.0, 12.0, 5.0]


def official_ride_loss(
    output_logits,
    logits,
    target,
    cls_num_list,
    epoch,
    reweight_epoch=160,
    s=30,
    max_m=0.5,
    base_diversity_temperature=1.0,
    additional_diversity_factor=-0.45,
    reweight_factor=0.05,
):
    """Transcribed from frank-xwang/RIDE-LongTailRecognition @ ab8be5c, model/loss.py RIDELoss (__init__,
    _hook_before_epoch(epoch) with the trainer's 1-based epoch, get_final_output, forward), CPU tensors."""
    m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
    m_list = torch.tensor(m_list * (max_m / np.max(m_list)), dtype=torch.float)
    betas = [0, 0.9999]
    effective_num = 1.0 - np.power(betas[1], cls_num_list)
    w = (1.0 - betas[1]) / np.array(effective_num)
    w = w / np.sum(w) * len(cls_num_list)
    per_cls_weights_enabled = torch.tensor(w, dtype=torch.float)
    prior = np.array(cls_num_list) / np.sum(cls_num_list)
    dw = len(prior) * prior * reweight_factor + 1 - reweight_factor
    dw = dw / np.max(dw)
    per_cls_weights_enabled_diversity = torch.tensor(dw, dtype=torch.float)
    if epoch > reweight_epoch:
        per_cls_weights_base, per_cls_weights_diversity = per_cls_weights_enabled, per_cls_weights_enabled_diversity
    else:
        per_cls_weights_base, per_cls_weights_diversity = None, None
    loss = 0
    for logits_item in logits:
        ride_loss_logits = output_logits if additional_diversity_factor == 0 else logits_item
        x = ride_loss_logits
        index = torch.zeros_like(x, dtype=torch.uint8)
        index.scatter_(1, target.data.view(-1, 1), 1)
        batch_m = torch.matmul(m_list[None, :], index.float().transpose(0, 1)).view((-1, 1))
        final_output = torch.where(index.bool(), x - batch_m * s, x)
        loss += F.cross_entropy(final_output, target, weight=per_cls_weights_base)
        if per_cls_weights_diversity is not None:
            diversity_temperature = base_diversity_temperature * per_cls_weights_diversity.view((1, -1))
            temperature_mean = diversity_temperature.mean().item()
        else:
            diversity_temperature = temperature_mean = base_diversity_temperature
        output_dist = F.log_softmax(logits_item / diversity_temperature, dim=1)
        mean_output_dist = F.softmax(output_logits / diversity_temperature, dim=1)
        loss += (
            additional_diversity_factor
            * temperature_mean
            * temperature_mean
            * F.kl_div(output_dist, mean_output_dist, reduction="batchmean")
        )
    return loss


def fixed_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    logits = (torch.rand(8, 3, len(COUNTS), generator=g) * 2 - 1) * 30  # B x E x C, s·cos-sized
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 5, 0])
    return logits, targets


def method(**params) -> RIDE:
    return RIDE(parse_params(RIDE, params), MethodContext(len(COUNTS), torch.tensor(COUNTS, dtype=torch.float64)))


def step_loss(ride: RIDE, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    class Fixed(MultiExpertModel):
        def expert_logits(self, x):  # the fixed logits stand in for the network's
            return logits

    model = Fixed.__new__(Fixed)
    images = torch.zeros(len(targets))
    batch = TrainingBatch(model, images, targets, torch.Generator(), 0, 200, contextlib.nullcontext, (images,))
    return ride.training_step(batch)


def test_before_drw_the_loss_is_the_official_one() -> None:
    logits, targets = fixed_inputs()
    ride = method()
    ride.on_epoch_start(100, 200)  # 0-based epoch 100 is the official epoch 101
    expected = official_ride_loss(logits.mean(1), list(logits.unbind(1)), targets, COUNTS, epoch=101)
    torch.testing.assert_close(step_loss(ride, logits, targets), expected)


def test_from_the_drw_epoch_weights_and_temperatures_follow_the_official_switch() -> None:
    logits, targets = fixed_inputs()
    ride = method()
    ride.on_epoch_start(160, 200)  # 0-based 160 = the official 161, the first with `epoch > 160`
    expected = official_ride_loss(logits.mean(1), list(logits.unbind(1)), targets, COUNTS, epoch=161)
    torch.testing.assert_close(step_loss(ride, logits, targets), expected)
    before = official_ride_loss(logits.mean(1), list(logits.unbind(1)), targets, COUNTS, epoch=160)
    assert not torch.isclose(expected, before)  # the switch changes the loss: the test can tell


def test_without_diversity_the_ce_part_uses_the_mean_logits_as_the_official() -> None:
    logits, targets = fixed_inputs()
    got = ride_loss(logits, targets, method().margins, 30.0, 0.0, 1.0)
    expected = official_ride_loss(
        logits.mean(1), list(logits.unbind(1)), targets, COUNTS, epoch=1, additional_diversity_factor=0.0
    )
    torch.testing.assert_close(got, expected)


def test_diversity_weights_and_the_network() -> None:
    w = diversity_temperature_weights(torch.tensor(COUNTS, dtype=torch.float64), 0.05)
    assert w.max() == 1 and w.argmax() == 0 and (w > 0).all()
    ride = method(num_experts=4)
    model = ride.build_model(build_model("resnet32", len(COUNTS), 3))
    assert isinstance(model, MultiExpertModel) and model.num_experts == 4
