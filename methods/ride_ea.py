"""RIDE's expert assignment ("EA", Wang et al. ICLR 2021, section 3.3): a router trained on the frozen RIDE
experts that decides, image by image, whether the next expert is worth running.

Stage one is the `ride` method (its three experts, its recipe). Stage two, on its frozen network: for each
expert i < E a small router r_i reads that expert's pooled feature f_i (normalised) and the top-k (k = 30)
scores of the running mean of experts 0..i, and predicts whether adding expert i+1 helps:

    h_i = ReLU(W_i · f_i / ||f_i||)                         W_i: d -> 16, one per expert but the last
    p_i = w · [top_k(mean_{j<=i} z_j), h_i] + b             one linear layer shared by every router
    target_i = (ensemble of 0..i wrong) and (some larger ensemble 0..j, j > i, right)
    L = mean_i BCE-with-logits(p_i, target_i, pos_weight = 100)

At test time expert 0 scores every image; expert i joins for the images whose router said yes at every step so
far (sigmoid(p_{i-1}) > 0.5), and an image's prediction is the mean of the experts it used. The mean number of
experts per test image is logged as `experts_per_image`; the variant `all` (every expert on every image, the
`ride` prediction) is reported beside it.

Official code: frank-xwang/RIDE-LongTailRecognition @ ab8be5c (`model/ldam_drw_resnets/ea_resnet_cifar.py`,
`configs/config_imbalance_cifar100_ride_ea.json`: top_choices_num 30, pos_weight 100, the shared
`expert_help_pred_fc`, hidden width 16; 5 epochs, batch 512, SGD lr 0.01 Nesterov momentum 0.9, wd 5e-4, cosine
(T_max 5) per epoch, the class-balanced loader; the experts frozen, their BatchNorm in eval mode).

Differences from the official code:
- ltbench's network computes every expert for every image and then combines the ones the router chose: the
  predictions are those of the official sequential routing, the saving in computation is not realised;
- SGD without Nesterov momentum (stage two's optimiser); the class-balanced sampler draws a class uniformly,
  then one of its images, N draws an epoch (the official `BalancedSampler` walks each class's shuffled list);
- training images are cropped and flipped, not also rotated (`RandomRotation(15)`);
- the official code keeps the best test epoch; ltbench the last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import Method, StageTwo, StageTwoResult, param, register_method


class ExpertRouter(nn.Module):
    """The frozen experts' heads plus RIDE's routers; in training mode the output is every expert's mean (the
    routers' inputs and predictions are kept for the loss), in evaluation mode each image's routed mean."""

    def __init__(self, experts: nn.Module, top_k: int, hidden: int = 16) -> None:
        super().__init__()
        self.experts = experts
        for p in self.experts.parameters():
            p.requires_grad_(False)
        n, dim = len(experts.heads), experts.expert_dim
        self.top_k = top_k
        self.hidden = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(n - 1))
        self.decide = nn.Linear(hidden + top_k, 1)
        for layer in [*self.hidden, self.decide]:
            nn.init.kaiming_normal_(layer.weight)  # the official `_weights_init` covers every nn.Linear
        self.pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_used: torch.Tensor | None = None

    def router_parameters(self) -> list[nn.Parameter]:
        return [*self.hidden.parameters(), *self.decide.parameters()]

    def help_logit(self, i: int, feature: torch.Tensor, mean_logits: torch.Tensor) -> torch.Tensor:
        """Router i's logit that expert i+1 helps, from expert i's pooled feature and the running mean."""
        h = F.relu(self.hidden[i](feature / feature.norm(dim=1, keepdim=True)))
        top = torch.topk(mean_logits, k=min(self.top_k, mean_logits.shape[1]), dim=1).values
        if top.shape[1] < self.top_k:  # fewer classes than k: the missing scores are zeros
            top = F.pad(top, (0, self.top_k - top.shape[1]))
        return self.decide(torch.cat([top, h], dim=1)).squeeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.experts.expert_logits(features)  # B x E x C
        chunks = features.split(self.experts.expert_dim, dim=1)
        n = z.shape[1]
        if self.training:
            running = z.cumsum(dim=1)
            preds = [self.help_logit(i, chunks[i], running[:, i] / (i + 1)) for i in range(n - 1)]
            self.pending = (running, torch.stack(preds, dim=1))
            return running[:, -1] / n
        out, used = z[:, 0].clone(), torch.ones(len(z), device=z.device)
        active = torch.ones(len(z), dtype=torch.bool, device=z.device)
        for i in range(1, n):
            active = active & (torch.sigmoid(self.help_logit(i - 1, chunks[i - 1], out / used[:, None])) > 0.5)
            out = out + active[:, None].to(z.dtype) * z[:, i]
            used = used + active.to(used.dtype)
        self.last_used = used
        return out / used[:, None]

    def effective_weight(self) -> torch.Tensor:
        return self.experts.effective_weight()


def router_loss(running: torch.Tensor, preds: torch.Tensor, targets: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """RIDE's EA loss from the running sums of the experts' logits (B x E x C) and the routers' logits
    (B x E-1): each router's BCE against "this ensemble is wrong and a larger one is right"."""
    correct = running.argmax(dim=2) == targets[:, None]
    weight = preds.new_tensor([pos_weight])
    total = preds.new_zeros(())
    for i in range(preds.shape[1]):
        helps = ~correct[:, i] & correct[:, i + 1 :].any(dim=1)
        total = total + F.binary_cross_entropy_with_logits(preds[:, i], helps.float(), pos_weight=weight)
    return total / preds.shape[1]


@register_method
class RIDEExpertAssignment(Method):
    name = "ride-ea"
    description = "RIDE's expert-assignment router on the frozen ride experts: fewer experts per image (Wang et al.)"
    stage1 = "ride"
    sampler = "class-balanced"  # the official EA loader's `balanced: true`

    @dataclass(frozen=True)
    class Params:
        top_k: int = param(30, "scores of the running mean each router reads (top_choices_num)")
        pos_weight: float = param(100.0, "BCE weight of the positive class (expert helps)")
        epochs: int = param(5, "router training epochs")
        lr: float = param(0.01, "router lr (cosine per epoch)")
        weight_decay: float = param(5e-4, "router weight decay")
        batch_size: int = param(512, "router batch size")

        def __post_init__(self) -> None:
            if self.top_k < 1 or self.pos_weight <= 0 or self.epochs < 1 or self.lr <= 0 or self.batch_size < 1:
                raise ValueError("need top_k >= 1, pos_weight > 0, epochs >= 1, lr > 0 and batch_size >= 1")

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        p = self.params
        experts = stage.stage1_head
        if not hasattr(experts, "expert_logits"):
            raise TypeError("ride-ea needs the ride network's expert heads")
        head = ExpertRouter(experts, p.top_k)

        def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            assert head.pending is not None
            running, preds = head.pending
            return router_loss(running, preds, targets, p.pos_weight)

        trained = stage.train_head(
            head,
            loss,
            epochs=p.epochs,
            lr=p.lr,
            weight_decay=p.weight_decay,
            batch_size=p.batch_size,
            sampler=self.sampler_name(),
            augment=True,
            parameters=head.router_parameters(),
            bn="eval",
            drop_last=False,  # the official loader keeps the last partial batch
            lr_shift=0,  # its CosineAnnealingLR steps after each epoch: the first epoch at the full lr
        )
        trained.eval()
        used = []
        with torch.no_grad():
            for chunk in stage.features("test")[0].split(4096):
                trained(chunk)
                used.append(trained.last_used)
        extras = {"experts_per_image": float(torch.cat(used).mean())}
        return StageTwoResult(trained, variants={"all": experts}, extras=extras)
