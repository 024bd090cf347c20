"""SADE: its training loss and its test-time objective against transcriptions of the official code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.api import MethodContext
from harness.core.errors import LtbenchError
from harness.plugins.method import METHODS, parse_params
from methods.sade import SADE, diverse_expert_loss, inverse_prior, stability_loss

COUNTS = [500.0, 200.0, 90.0, 40.0, 12.0, 5.0]


def official_diverse_expert_loss(logits, target, cls_num_list, tau=2):
    """Transcribed from Vanint/SADE-AgnosticLT @ cba11b8, model/loss.py DiverseExpertLoss (CPU tensors)."""
    prior = torch.tensor(np.array(cls_num_list) / np.sum(cls_num_list)).float()

    def inverse(prior):
        value, idx0 = torch.sort(prior)
        _, idx1 = torch.sort(idx0)
        idx2 = prior.shape[0] - 1 - idx1
        return value.index_select(0, idx2)

    loss = 0
    loss += F.cross_entropy(logits[0], target)
    loss += F.cross_entropy(logits[1] + torch.log(prior + 1e-9), target)
    loss += F.cross_entropy(logits[2] + torch.log(prior + 1e-9) - tau * torch.log(inverse(prior) + 1e-9), target)
    return loss


def official_ssl_loss(aggregation_weight, output0_logits, output1_logits):
    """Transcribed from test_training_cifar.py `test_training`: the loss of one batch (outputs B x 3 x C)."""
    cos = torch.nn.CosineSimilarity(dim=1, eps=1e-6)
    a = F.softmax(aggregation_weight, dim=0)
    agg0 = a[0] * output0_logits[:, 0, :] + a[1] * output0_logits[:, 1, :] + a[2] * output0_logits[:, 2, :]
    agg1 = a[0] * output1_logits[:, 0, :] + a[1] * output1_logits[:, 1, :] + a[2] * output1_logits[:, 2, :]
    return -cos(F.softmax(agg0, dim=1), F.softmax(agg1, dim=1)).mean()


def fixed_logits(seed: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(8, 3, len(COUNTS), generator=g) * 2 - 1) * 30


def test_the_training_loss_is_the_official_one() -> None:
    logits, targets = fixed_logits(), torch.tensor([0, 1, 2, 3, 4, 5, 5, 0])
    prior = torch.tensor(COUNTS) / sum(COUNTS)
    expected = official_diverse_expert_loss(list(logits.unbind(1)), targets, COUNTS, tau=2)
    torch.testing.assert_close(diverse_expert_loss(logits, targets, prior, 2.0), expected)
    assert not torch.isclose(diverse_expert_loss(logits, targets, prior, 1.0), expected)


def test_the_inverse_prior_reverses_the_ranks() -> None:
    prior = torch.tensor([0.5, 0.1, 0.3, 0.1 - 1e-3, 0.001 + 1e-3])
    inv = inverse_prior(prior)
    assert sorted(inv.tolist()) == sorted(prior.tolist())
    assert inv.argmax() == prior.argmin() and inv.argmin() == prior.argmax()


def test_the_test_time_objective_is_the_official_one_and_moves_the_weights() -> None:
    z0, z1 = fixed_logits(5), fixed_logits(6)
    theta = torch.tensor([0.2, -0.1, 0.4], requires_grad=True)
    got = stability_loss(theta, z0, z1)
    torch.testing.assert_close(got, official_ssl_loss(theta, z0, z1))
    got.backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_sade_is_transductive_and_aggregate_on_chooses_the_split() -> None:
    context = MethodContext(len(COUNTS), torch.tensor(COUNTS, dtype=torch.float64))
    assert SADE.transductive and not METHODS.get("ride").transductive and not METHODS.get("ce").transductive
    assert SADE(parse_params(SADE, {}), context).unlabeled_split() == "test"
    assert SADE(parse_params(SADE, {"aggregate_on": "val"}), context).unlabeled_split() == "val"
    assert SADE(parse_params(SADE, {"aggregate_on": "none"}), context).unlabeled_split() is None
    with pytest.raises(LtbenchError, match="aggregate_on"):
        parse_params(SADE, {"aggregate_on": "train"})
    with pytest.raises(LtbenchError, match="augmentation"):
        parse_params(SADE, {"view_policy": "crop:4+nosuchop"})


def test_ltbench_methods_and_the_leaderboard_flag_it(tmp_path, monkeypatch) -> None:
    import pandas as pd

    from harness.plugins.catalogue import method_catalogue
    from harness.reports.leaderboard import _cells, transductive_legend

    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path))
    listed = {m.name: m for m in method_catalogue()}
    assert listed["sade"].transductive and "TRANSDUCTIVE" in listed["sade"].kind
    assert not listed["ride"].transductive and "TRANSDUCTIVE" not in listed["ride"].kind
    metrics = {
        f"{name}_{stat}": 50.0 for name in ("All", "Many", "Medium", "Few", "MeanClass") for stat in ("mean", "std")
    }
    board = pd.DataFrame(
        [
            {"dataset": "cifar100-lt", "imbalance_ratio": 100.0, "method": "ride", "variant": "", "n": 1,
             "expected": 1, "transductive": "", **metrics},
            {"dataset": "cifar100-lt", "imbalance_ratio": 100.0, "method": "sade", "variant": "", "n": 1,
             "expected": 1, "transductive": "test", **metrics},
        ]
    )  # fmt: skip
    labels = [row[2] for row in _cells(board, with_n=False)]
    assert labels == ["ride", "sade ‡"]
    assert "sade on the test split" in transductive_legend(board)[0]
    assert transductive_legend(board[board.method == "ride"]) == []


def test_the_paper_tables_note_a_transductive_cell_from_its_runs_configuration() -> None:
    from harness.reports.departures import transductive_mark, transductive_notes
    from harness.reports.table_spec import Cell, Column, Row

    column = Column("CIFAR-100-LT r=100", "cifar100-lt", 100.0, "top1")
    adapted = Cell(Row("SADE", "sade"), column, status="ok", config={"ran.transductive": "test"})
    plain = Cell(Row("RIDE", "ride"), column, status="ok", config={"model": "resnet32"})
    notes = transductive_notes([adapted, plain])
    assert len(notes) == 1 and notes[0].startswith("‡ SADE / ") and "unlabeled test images" in notes[0]
    assert transductive_mark([plain, adapted]) == " ‡" and transductive_mark([plain]) == ""
