"""GLMC: its loss, mixed batches and re-weighting against a transcription of the official code on fixed inputs,
the cumulative weight per epoch, the re-weighted sampler, the model's heads and one training step."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.api import CutBox, MethodContext, PairedBatch, TrainingBatch, beta_draw, cutmix, cutmix_box, paste_box
from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.records.storage import Storage
from harness.training.trainer import run_trial
from methods.glmc import (
    GLMC,
    GLMCModel,
    Outputs,
    ResampleSampler,
    class_weights,
    cumulative_weight,
    glmc_loss,
    glmc_mix,
)
from tests.conftest import write_tiny_suite
from tests.trial_runs import assert_resumes_exactly

COUNTS = [500, 120, 30, 5]


# -- transcriptions of the official code (ynu-yangpeng/GLMC @ 2c0261c) ------------------------------------------
def official_update_weight(cls_num_list, label_weighting):
    """Trainer.update_weight (without .cuda())."""
    per_cls_weights = 1.0 / (np.array(cls_num_list) ** label_weighting)
    per_cls_weights = per_cls_weights / np.sum(per_cls_weights) * len(cls_num_list)
    return torch.FloatTensor(per_cls_weights)


def official_rand_bbox(size, lam, cx, cy):
    """utils/util.py rand_bbox, with its two np.random.randint draws (cx over size[2], cy over size[3]) given."""
    W = size[2]
    H = size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = np.ceil(W * cut_rat).astype(int)
    cut_h = np.ceil(H * cut_rat).astype(int)
    bbx1 = np.clip(cx - cut_w // 2, 0, W)
    bby1 = np.clip(cy - cut_h // 2, 0, H)
    bbx2 = np.clip(cx + cut_w // 2, 0, W)
    bby2 = np.clip(cy + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


def official_glmc_mixed(org1, org2, invs1, invs2, label_org, label_invs, label_org_w, label_invs_w, lam, cx, cy):
    """utils/util.py GLMC_mixed with its λ and box centre given (the official draws them from numpy)."""
    org2 = org2.clone()  # the official pastes in place into its own CUDA copy of the batch
    mixup_x = lam * org1 + (1 - lam) * invs1
    mixup_y = lam * label_org + (1 - lam) * label_invs
    mixup_y_w = lam * label_org_w + (1 - lam) * label_invs_w
    bbx1, bby1, bbx2, bby2 = official_rand_bbox(org2.size(), lam, cx, cy)
    org2[:, :, bbx1:bbx2, bby1:bby2] = invs2[:, :, bbx1:bbx2, bby1:bby2]
    lam_cutmix = lam
    cutmix_y = lam_cutmix * label_org + (1 - lam_cutmix) * label_invs
    cutmix_y_w = lam_cutmix * label_org_w + (1 - lam_cutmix) * label_invs_w
    return mixup_x, org2, mixup_y, cutmix_y, mixup_y_w, cutmix_y_w


def official_simsiam(p, z):
    """Trainer.SimSiamLoss, version 'simplified'."""
    z = z.detach()
    return -F.cosine_similarity(p, z, dim=-1).mean()


def official_one_hots(target_org, target_invs, per_cls_weights, num_classes):
    """The one-hot targets and their weighted copies, as Trainer.train builds them."""
    one_hot_org = torch.zeros(target_org.size(0), num_classes).scatter_(1, target_org.view(-1, 1), 1)
    one_hot_org_w = per_cls_weights * one_hot_org
    one_hot_invs = torch.zeros(target_invs.size(0), num_classes).scatter_(1, target_invs.view(-1, 1), 1)
    one_hot_invs_w = per_cls_weights * one_hot_invs
    return one_hot_org, one_hot_invs, one_hot_org_w, one_hot_invs_w


def official_loss(out1, out2, mixup_y, mixcut_y, mixup_y_w, cutmix_y_w, epoch, epochs, contrast_weight):
    """Trainer.train's loss from the model's outputs (output, output_cb, z, p) of the two mixed batches."""
    alpha = 1 - (epoch / epochs) ** 2
    output_1, output_cb_1, z1, p1 = out1
    output_2, output_cb_2, z2, p2 = out2
    contrastive_loss = official_simsiam(p1, z2) + official_simsiam(p2, z1)
    loss_mix = -torch.mean(torch.sum(F.log_softmax(output_1, dim=1) * mixup_y, dim=1))
    loss_cut = -torch.mean(torch.sum(F.log_softmax(output_2, dim=1) * mixcut_y, dim=1))
    loss_mix_w = -torch.mean(torch.sum(F.log_softmax(output_cb_1, dim=1) * mixup_y_w, dim=1))
    loss_cut_w = -torch.mean(torch.sum(F.log_softmax(output_cb_2, dim=1) * cutmix_y_w, dim=1))
    balance_loss = loss_mix + loss_cut
    rebalance_loss = loss_mix_w + loss_cut_w
    return alpha * balance_loss + (1 - alpha) * rebalance_loss + contrast_weight * contrastive_loss


# -- the pieces ------------------------------------------------------------------------------------------------
def test_class_weights_are_the_official_ones() -> None:
    for power in (1.2, 1.0, 0.0):
        ours = class_weights(torch.tensor(COUNTS, dtype=torch.float32), power)
        assert torch.allclose(ours, official_update_weight(COUNTS, power), rtol=1e-6)
    assert class_weights(torch.tensor(COUNTS, dtype=torch.float32), 1.2).sum().item() == pytest.approx(4.0)


def test_cumulative_weight_moves_from_the_instance_to_the_rebalanced_branch() -> None:
    shares = [cumulative_weight(e, 200) for e in range(200)]
    assert shares[0] == 1.0 and shares[100] == 0.75 and shares[199] == pytest.approx(1 - (199 / 200) ** 2)
    assert all(a > b for a, b in zip(shares, shares[1:], strict=False))  # the instance share only falls


def random_views(seed: int, batch: int = 6, size: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=generator) for _ in range(4)]


def test_mixed_batch_matches_the_official_glmc_mixed() -> None:
    x1, x2, p1, p2 = random_views(0)
    y, y_bar = torch.tensor([0, 1, 2, 3, 0, 0]), torch.tensor([3, 3, 2, 1, 0, 2])
    weights = class_weights(torch.tensor(COUNTS, dtype=torch.float32), 1.2)
    mix = glmc_mix((x1, x2), (p1, p2), y, y_bar, weights, 1.0, torch.Generator().manual_seed(5))
    # the same draws, in the same order: λ, then the box centre's row (size[2]) and column (size[3])
    replay = torch.Generator().manual_seed(5)
    lam = beta_draw(1.0, replay)
    cx, cy = int(torch.randint(8, (1,), generator=replay)), int(torch.randint(8, (1,), generator=replay))
    hots = official_one_hots(y, y_bar, official_update_weight(COUNTS, 1.2), 4)
    mix_x, cut_x, mixup_y, cutmix_y, mixup_y_w, cutmix_y_w = official_glmc_mixed(x1, x2, p1, p2, *hots, lam, cx, cy)
    assert mix.lam == lam and 0 < lam < 1
    assert torch.allclose(mix.global_images, mix_x) and torch.equal(mix.local_images, cut_x)
    assert torch.allclose(mix.targets, mixup_y) and torch.allclose(mix.targets, cutmix_y)
    assert torch.allclose(mix.weighted_targets, mixup_y_w) and torch.allclose(mix.weighted_targets, cutmix_y_w)
    # the local batch is x2 outside the box and the paired view inside it; its targets keep the drawn λ
    box = mix.box
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[box.top : box.bottom, box.left : box.right] = True
    assert inside.any() and not inside.all()
    assert torch.equal(mix.local_images[..., inside], p2[..., inside])
    assert torch.equal(mix.local_images[..., ~inside], x2[..., ~inside])
    assert torch.allclose(mix.targets.sum(dim=1), torch.ones(6))  # λ + (1 - λ), not the pasted area


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.75, 0.99, 1.0])
def test_cutmix_box_follows_the_official_rand_bbox(lam: float) -> None:
    for seed in range(20):
        box = cutmix_box(7, 9, lam, torch.Generator().manual_seed(seed))
        replay = torch.Generator().manual_seed(seed)
        cx, cy = int(torch.randint(7, (1,), generator=replay)), int(torch.randint(9, (1,), generator=replay))
        bbx1, bby1, bbx2, bby2 = official_rand_bbox((1, 3, 7, 9), lam, cx, cy)
        assert (box.top, box.left, box.bottom, box.right) == (bbx1, bby1, bbx2, bby2)


def test_cutmix_box_area_and_paste() -> None:
    box = CutBox(top=2, bottom=6, left=2, right=6)  # λ = 0.75 on 8 x 8 around (4, 4): sides ⌈8·0.5⌉ = 4
    assert box.area_fraction(8, 8) == 0.25
    images, others = torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    pasted = paste_box(images, others, box)
    assert pasted.sum().item() == 2 * 16 and pasted[:, :, 2:6, 2:6].eq(1).all() and images.eq(0).all()


def test_cutmix_of_a_batch_weights_its_targets_by_the_area_left() -> None:
    images = torch.arange(4 * 64, dtype=torch.float32).view(4, 1, 8, 8)
    targets = torch.tensor([0, 1, 2, 3])
    mixed = cutmix(images, targets, 1.0, torch.Generator().manual_seed(2))
    order = mixed.targets_b  # targets are 0..3, so y[p] is the permutation itself
    moved = order != torch.arange(4)  # an image the permutation leaves in place is pasted into itself
    assert moved.any()
    kept = (mixed.images == images)[moved].float().mean().item()  # every pixel differs between two images here
    assert 0 < mixed.lam < 1 and mixed.lam == pytest.approx(kept)
    assert torch.equal(cutmix(images, targets, 1.0, torch.Generator().manual_seed(2)).images, mixed.images)
    pasted = mixed.images != images
    assert torch.equal(mixed.images[pasted], images[order][pasted])


def test_loss_matches_the_official_training_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    y, y_bar = torch.tensor([0, 1, 2, 3, 0, 0]), torch.tensor([3, 3, 2, 1, 0, 2])
    weights = class_weights(torch.tensor(COUNTS, dtype=torch.float32), 1.2)
    x1, x2, p1, p2 = random_views(3)
    mix = glmc_mix((x1, x2), (p1, p2), y, y_bar, weights, 1.0, torch.Generator().manual_seed(9))
    heads = [torch.randn(6, k, generator=generator) * 2 for k in (4, 4, 5, 5, 4, 4, 5, 5)]
    out1, out2 = heads[:4], heads[4:]
    hots = official_one_hots(y, y_bar, official_update_weight(COUNTS, 1.2), 4)
    _, _, mixup_y, cutmix_y, mixup_y_w, cutmix_y_w = official_glmc_mixed(x1, x2, p1, p2, *hots, mix.lam, 0, 0)
    for epoch, contrast in ((0, 4.0), (57, 1.0), (199, 6.0)):
        ours = glmc_loss(Outputs(*out1), Outputs(*out2), mix.targets, mix.weighted_targets,
                         cumulative_weight(epoch, 200), contrast)  # fmt: skip
        official = official_loss(out1, out2, mixup_y, cutmix_y, mixup_y_w, cutmix_y_w, epoch, 200, contrast)
        assert ours.item() == pytest.approx(official.item(), rel=1e-6)


def test_consistency_stops_the_gradient_at_the_projections() -> None:
    generator = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(5, 8, generator=generator, requires_grad=True) for _ in range(2))
    p1, p2 = (torch.randn(5, 8, generator=generator, requires_grad=True) for _ in range(2))
    logits = torch.zeros(5, 3)
    soft = torch.full((5, 3), 1 / 3)
    glmc_loss(Outputs(logits, logits, z1, p1), Outputs(logits, logits, z2, p2), soft, soft, 1.0, 4.0).backward()
    assert z1.grad is None and z2.grad is None  # sg(z)
    assert p1.grad is not None and p1.grad.abs().sum() > 0


def test_resample_sampler_draws_as_the_official_weighted_sampler() -> None:
    labels = np.repeat(np.arange(4), COUNTS)
    for q in (0.0, 0.2, 1.0):
        sampler = ResampleSampler(labels, 4, 64, q=q)
        # official main.py: image weight cls_weight[t] with cls_weight = n^-q normalised; WeightedRandomSampler
        cls_weight = 1.0 / (np.array(COUNTS) ** q)
        cls_weight = cls_weight / np.sum(cls_weight) * len(COUNTS)
        official = np.array([cls_weight[t] for t in labels])
        per_class = sampler.power_probabilities(1.0 - q)  # the class draw, then an image of it uniformly
        ours = (per_class / sampler.class_counts)[sampler.labels].numpy()
        assert np.allclose(ours, official / official.sum())
        drawn = sampler.epoch_indices(0, 1, torch.Generator().manual_seed(4))
        assert len(drawn) == len(labels)
        assert torch.equal(drawn, sampler.epoch_indices(0, 1, torch.Generator().manual_seed(4)))


def test_model_predicts_with_the_rebalanced_head() -> None:
    base = build_model("resnet-small-gray", 5, 1)
    method = GLMC(GLMC.Params(), MethodContext(5, torch.tensor([40.0, 20, 10, 5, 2])))
    model = method.build_model(base)
    assert isinstance(model, GLMCModel) and model.backbone is base.backbone
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    out = model.train_outputs(x)
    assert torch.equal(model(x), out.balanced_logits)  # the official test: fc_cb alone
    assert torch.equal(model(x), model.head(model.features(x)))
    assert out.logits.shape == (3, 5) and out.z.shape == (3, 128) and out.p.shape == (3, 128)


def fake_batch(model: GLMCModel, epoch: int, seed: int = 0) -> TrainingBatch:
    """What the engine hands `training_step`: a batch, its second view, the paired batch with its view."""
    generator = torch.Generator().manual_seed(seed)
    images = [torch.randn(8, 1, 28, 28, generator=generator) for _ in range(4)]
    targets = [torch.randint(0, 5, (8,), generator=generator) for _ in range(2)]
    paired = PairedBatch(images[2], targets[1], (images[3],))
    step_generator = torch.Generator().manual_seed(seed + 1)
    return TrainingBatch(model, images[0], targets[0], step_generator, epoch, 10, contextlib.nullcontext,
                         (images[1],), paired)  # fmt: skip


def test_training_step_is_the_official_loss_and_the_rebalanced_head_starts_idle() -> None:
    torch.manual_seed(0)
    method = GLMC(GLMC.Params(), MethodContext(5, torch.tensor([40.0, 20, 10, 5, 2])))
    model = method.build_model(build_model("resnet-small-gray", 5, 1))
    model.train()
    batch = fake_batch(model, epoch=0)
    loss = method.training_step(batch)
    mix = glmc_mix(
        (batch.images, batch.views[0]), (batch.paired.images, batch.paired.views[0]), batch.targets,
        batch.paired.targets, method.weights, 1.0, torch.Generator().manual_seed(1),
    )  # fmt: skip
    expected = glmc_loss(model.train_outputs(mix.global_images), model.train_outputs(mix.local_images),
                         mix.targets, mix.weighted_targets, 1.0, 4.0)  # fmt: skip
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    # epoch 0: a = 1, so the re-balanced classifier gets no gradient yet; the instance one does
    assert model.head.weight.grad.abs().sum() == 0 and model.instance_head.weight.grad.abs().sum() > 0
    model.zero_grad()
    method.training_step(fake_batch(model, epoch=5)).backward()
    assert model.head.weight.grad.abs().sum() > 0


class RecordedGLMC(GLMC):
    """GLMC recording the batches the engine hands it."""

    batches: list[TrainingBatch] = []

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        type(self).batches.append(batch)
        return super().training_step(batch)


def glmc_trial(tmp_path: Path, root: Path, **params: object):
    recipe = {"base": "quick", "epochs": 3, "batch_size": 32, "eval_every": 1}
    suite = write_tiny_suite(tmp_path / "s.yaml", root, methods=["glmc"], seeds=[0], recipe=recipe,
                             method_params={"glmc": {"second_view": "crop:2+flip", **params}})  # fmt: skip
    return build_suite(str(suite)).trials[0]


def test_a_glmc_trial_gets_its_views_and_paired_stream_and_resumes_exactly(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    cfg = glmc_trial(tmp_path, fake_fashion_root, resample_weighting=1.0)
    RecordedGLMC.batches = []
    straight = run_trial(cfg, Storage.open(tmp_path / "a"), RecordedGLMC)
    batch = RecordedGLMC.batches[0]
    assert len(batch.views) == 1 and batch.views[0].shape == batch.images.shape == batch.paired.images.shape
    assert batch.paired.views[0].shape == batch.images.shape
    # q = 1: the paired stream is class-balanced (the official WeightedRandomSampler with weights 1/n)
    main = torch.cat([b.targets for b in RecordedGLMC.batches])
    paired = torch.cat([b.paired.targets for b in RecordedGLMC.batches])
    assert torch.bincount(paired).min() > torch.bincount(main).min()
    assert all(np.isfinite(h["train_loss"]) for h in straight["history"])

    assert_resumes_exactly(cfg, GLMC, tmp_path, straight)
