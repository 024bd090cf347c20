"""Horizontal fusion: K CIFAR ResNets as one network compute what the K compute apart (forward, gradients,
SGD steps, BatchNorm statistics), and come apart again unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from harness.models import build_model
from harness.models.fused import fuse, member_states, stacked_cross_entropy

K, BATCH = 3, 8


def _members(name: str = "resnet-small-gray", classes: int = 5, channels: int = 1) -> list:
    models = []
    for seed in range(K):
        torch.manual_seed(seed)  # each member its own initialisation
        models.append(build_model(name, classes, channels))
    return models


def _batches(channels: int, size: int, classes: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(K, BATCH, channels, size, size, generator=g), torch.randint(0, classes, (K, BATCH), generator=g))
        for _ in range(steps)
    ]


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    return torch.allclose(a, b, rtol=rtol, atol=rtol * float(b.abs().max()))


def test_fused_scores_and_gradients_are_each_members_own() -> None:
    """Scores in float32 (a ReLU input within rounding of zero changes a score by rounding only); gradients
    in float64, since there such an input flips the ReLU's derivative between any two kernels (seen: one
    float32 weight's gradient 1e-4 apart with other torch threads)."""
    members = _members()
    ((images, targets),) = _batches(1, 28, 5, 1)
    scores = fuse(members)(images)
    assert scores.shape == (K, BATCH, 5)
    for k, model in enumerate(members):
        assert _close(scores[k].detach(), model(images[k]).detach(), 1e-5)

    members = [m.double() for m in members]
    fused = fuse(members)
    stacked_cross_entropy(fused(images.double()), targets).backward()
    grads = member_states_of_grads(fused)
    for k, model in enumerate(members):
        F.cross_entropy(model(images[k].double()), targets[k]).backward()
        for name, p in model.named_parameters():
            assert _close(grads[k][name], p.grad, 1e-9), name


def member_states_of_grads(fused) -> list[dict[str, torch.Tensor]]:
    """Each member's gradients, split as `member_states` splits parameters."""
    holder = copy.deepcopy(fused)
    with torch.no_grad():
        for p, q in zip(holder.parameters(), fused.parameters(), strict=True):
            p.copy_(q.grad)
    return member_states(holder)


def _train_both(
    members: list, fused, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float = 0.1
) -> list[dict[str, torch.Tensor]]:
    """SGD (momentum, weight decay) on the fused network and on each member alone over `batches`; returns the
    fused network's member states (the members themselves end trained alone)."""
    sgd = dict(lr=lr, momentum=0.9, weight_decay=2e-4)
    fused_opt = torch.optim.SGD(fused.parameters(), **sgd)
    alone_opts = [torch.optim.SGD(m.parameters(), **sgd) for m in members]
    for images, targets in batches:
        fused_opt.zero_grad()
        stacked_cross_entropy(fused(images), targets).backward()
        fused_opt.step()
        for k, (model, opt) in enumerate(zip(members, alone_opts, strict=True)):
            opt.zero_grad()
            F.cross_entropy(model(images[k]), targets[k]).backward()
            opt.step()
    return member_states(fused)


def _assert_members_equal(states: list[dict[str, torch.Tensor]], members: list, rtol: float) -> None:
    for k, state in enumerate(states):
        alone = members[k].state_dict()
        assert state.keys() == alone.keys()
        for key, value in alone.items():
            if value.is_floating_point():
                assert _close(state[key], value, rtol), (k, key)
            else:
                assert torch.equal(state[key], value), (k, key)


@pytest.mark.parametrize("name,channels,size", [("resnet-small-gray", 1, 28), ("resnet32", 3, 32)])
def test_sgd_on_the_fused_network_trains_each_member_as_alone(name: str, channels: int, size: int) -> None:
    """Five SGD steps (momentum, weight decay) in train mode: parameters, momentum-driven updates and
    BatchNorm running statistics of every member equal to its own run's up to rounding. In float64: in
    float32 a ReLU whose input lies within rounding of zero can flip between the two runs (seen: one member's
    gradients 2% apart at the third step from one such unit), which says nothing about the fusion; in float64
    a flip is out of reach, and any mixing of members would still show at full size."""
    members = [m.double() for m in _members(name, 10, channels)]
    batches = [(images.double(), targets) for images, targets in _batches(channels, size, 10, 5)]
    _assert_members_equal(_train_both(members, fuse(members), batches), members, 1e-9)


def test_members_come_apart_exactly_and_load_into_their_own_models() -> None:
    members = _members()
    states = member_states(fuse(members))
    for model, state in zip(members, states, strict=True):
        fresh = build_model("resnet-small-gray", 5, 1)
        fresh.load_state_dict(state)
        for key, value in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key


def test_fusion_refuses_what_it_cannot_fuse() -> None:
    with pytest.raises(ValueError, match="share depth"):
        fuse([build_model("resnet-small-gray", 5, 1), build_model("resnet-small-gray", 7, 1)])
    with pytest.raises(TypeError, match="CIFAR ResNets with a linear head"):
        fuse([build_model("resnet50", 5, 3)])
    normed = build_model("resnet32", 5, 3)
    normed.head = torch.nn.Identity()  # a method's own head (e.g. LDAM's normalised one) is not fused
    with pytest.raises(TypeError, match="linear head"):
        fuse([build_model("resnet32", 5, 3), normed])
    with pytest.raises(ValueError, match="group of 3"):
        fuse(_members())(torch.zeros(2, BATCH, 1, 28, 28))


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_on_cuda_the_fused_network_trains_each_member_as_alone(channels_last: bool) -> None:
    """ResNet-32 on CUDA (cuDNN's grouped convolutions), in both layouts the recipes train in: twenty float64
    steps equal to each member's own up to rounding. In float64 and at lr 0.01 because the comparison is of
    the computation, not of the dynamics: in float32 a ReLU input within rounding of zero flips between any
    two kernels (seen on the CPU: ResNet-32's BatchNorm shifts 0.3% apart after one step), and at lr 0.1 on
    random labels and batches of 8 any rounding difference grows ~1,000x every five steps (float64 on the
    CPU: 2e-13 after 5 steps, 5e-7 after 20); at 0.01 twenty steps stay at 3e-14."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    cuda = torch.device("cuda")
    members = [m.double().to(cuda, memory_format=layout) for m in _members("resnet32", 10, 3)]
    batches = [(x.double().to(cuda), y.to(cuda)) for x, y in _batches(3, 32, 10, 20)]
    fused = fuse(members).to(memory_format=layout)
    _assert_members_equal(_train_both(members, fused, batches, lr=0.01), members, 1e-9)
