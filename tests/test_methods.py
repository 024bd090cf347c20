"""Each method checked against the equation that defines it, and every method smoke-run through the trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.plan import make_plan, stage1_config
from harness.plugin import METHODS, Method, MethodContext, build_method, load_methods, register_method
from harness.suite import build_suite
from harness.training.decoupled import StageTwo, load_stage_one
from harness.training.trainer import TrialSetup, run_trial
from methods.channel_whitening import ChannelWhitening, InverseSquareRoot
from methods.lort import retargeted
from methods.lws import ScaledLinear
from methods.ncm import NearestClassMean
from methods.tau_norm import TauNormHead
from tests.conftest import write_tiny_suite

ALL = ["ce", "la", "la-posthoc", "crt", "tau-norm", "lws", "ncm", "lort", "cw", "cw-b3rs", "cw-b3rs-bet"]
COUNTS = torch.tensor([50.0, 20.0, 5.0])


def context() -> MethodContext:
    return MethodContext(3, COUNTS.double())


def test_all_eleven_methods_are_registered() -> None:
    assert set(ALL) <= set(load_methods().names())


def test_la_loss_is_ce_on_prior_shifted_logits() -> None:
    method = build_method("la", {"tau": 1.5}, context())
    logits, targets = torch.randn(8, 3), torch.randint(0, 3, (8,))
    prior = COUNTS / COUNTS.sum()
    expected = F.cross_entropy(logits + 1.5 * torch.log(prior), targets)
    torch.testing.assert_close(method.loss(logits, targets), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(method.predict(logits), logits)  # prediction is plain argmax f(x)


def test_tau_norm_tau0_keeps_weights_and_tau1_equalises_norms() -> None:
    weight = torch.randn(5, 4) * torch.arange(1, 6)[:, None]
    assert torch.equal(TauNormHead(weight, 0.0).weight, weight)
    norms = TauNormHead(weight, 1.0).weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(5))
    z = torch.randn(3, 4)
    torch.testing.assert_close(TauNormHead(weight, 0.0)(z), z @ weight.T)  # no bias


def test_lws_starts_as_the_stage1_classifier_and_only_scales_learn() -> None:
    linear = torch.nn.Linear(4, 3)
    head = ScaledLinear(linear)
    z = torch.randn(6, 4)
    torch.testing.assert_close(head(z), linear(z))
    assert [name for name, p in head.named_parameters()] == ["scales"]
    with torch.no_grad():
        head.scales.copy_(torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(head(z), linear(z) * torch.tensor([1.0, 2.0, 0.5]))


def test_ncm_predicts_the_nearest_normalised_mean() -> None:
    means = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), dim=1)
    head = NearestClassMean(means, center=torch.tensor([1.0, 1.0]), normalize=True)
    z = torch.tensor([[5.0, 1.2], [1.1, 9.0], [0.0, 0.5]])  # centred: (4, .2), (.1, 8), (-1, -.5)
    assert head(z).argmax(1).tolist() == [0, 1, 2]


def test_lort_targets_are_over_smoothed_labels() -> None:
    t = retargeted(torch.tensor([2, 0]), num_classes=4, epsilon=0.98)
    torch.testing.assert_close(t[0], torch.tensor([0.245, 0.245, 1 - 0.98 + 0.245, 0.245]))
    torch.testing.assert_close(t.sum(1), torch.ones(2))
    assert t[1, 0] > 1 / 4 > t[1, 1]  # slightly above / below 1/K
    method = build_method("lort", {"epsilon": 0.98}, MethodContext(4, torch.ones(4, dtype=torch.float64)))
    logits = torch.randn(2, 4)
    expected = -(t * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(method.loss(logits, torch.tensor([2, 0])), expected)


def test_whitening_gives_identity_covariance_on_the_batch_and_uses_running_statistics_in_eval() -> None:
    torch.manual_seed(0)
    mixing = torch.randn(8, 8)
    z = torch.randn(512, 8) @ mixing + 3.0
    layer = ChannelWhitening(8, group_size=8, eps=1e-5, momentum=1.0)
    out = layer.train()(z)
    cov = (out - out.mean(0)).T @ (out - out.mean(0)) / len(out)
    torch.testing.assert_close(cov, torch.eye(8), atol=1e-3, rtol=0)
    # momentum 1: the running statistics are this batch's, so eval reproduces the training output
    torch.testing.assert_close(layer.eval()(z), out, atol=1e-4, rtol=1e-4)
    other = torch.randn(4, 8)
    expected = (other - layer.running_mean) @ layer.running_whiten
    torch.testing.assert_close(layer(other), expected)  # no batch statistics at eval


def test_whitening_groups_whiten_within_each_group() -> None:
    torch.manual_seed(1)
    z = torch.randn(400, 6) @ torch.randn(6, 6)
    out = ChannelWhitening(6, group_size=3, eps=1e-5).train()(z)
    cov = torch.cov(out.T, correction=0)
    torch.testing.assert_close(cov[:3, :3], torch.eye(3), atol=2e-3, rtol=0)
    torch.testing.assert_close(cov[3:, 3:], torch.eye(3), atol=2e-3, rtol=0)


def test_whitening_works_under_bf16_autocast_and_keeps_float32_statistics() -> None:
    """The cifar-lt and imagenet-lt recipes train in bf16 on GPUs (precision: auto)."""
    torch.manual_seed(2)
    layer = ChannelWhitening(8, group_size=8).train()
    linear = torch.nn.Linear(8, 3)
    z = torch.randn(64, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear(layer(z.bfloat16()))
    out.float().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert layer.running_mean.dtype == layer.running_whiten.dtype == torch.float32
    cov = torch.cov(layer.train()(z.detach()).T, correction=0)
    torch.testing.assert_close(cov, torch.eye(8), atol=2e-2, rtol=0)  # still whitened: computed in float32


def test_inverse_square_root_gradient_is_exact_with_repeated_eigenvalues() -> None:
    a = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = (a @ a.T + 1e-2 * torch.eye(6, dtype=torch.float64)).requires_grad_(True)  # 4 equal eigenvalues
    assert torch.autograd.gradcheck(lambda m: InverseSquareRoot.apply((m + m.T) / 2), (sigma,))


def test_duplicate_method_name_is_rejected() -> None:
    class Another(Method):
        name = "ce"
        description = "clash"

    with pytest.raises(ValueError, match="method 'ce' is already registered"):
        register_method(Another)
    assert METHODS.get("ce").__name__ == "CrossEntropy"


# -- through the trainer ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fake_fashion_root: Path) -> dict:
    """Every method trained once on tiny fake data, stage-1 backbones first (as the scheduler orders them)."""
    tmp = tmp_path_factory.mktemp("methods")
    path = write_tiny_suite(tmp / "s.yaml", fake_fashion_root)
    suite = build_suite(str(path), [f"methods=[{','.join(ALL)}]", "seeds=[0]", "method_params.lort.augment=true"])
    plan = make_plan(suite.trials)
    results = {}
    for cfg in plan.phase1 + plan.phase2:
        results[cfg.method] = run_trial(cfg, tmp / "trials" / cfg.key)
    return {"results": results, "suite": suite, "root": tmp / "trials"}


@pytest.mark.integration
@pytest.mark.parametrize("method", ALL)
def test_every_method_trains_and_reports(trained: dict, method: str) -> None:
    result = trained["results"][method]
    metrics = result["metrics"]
    assert 0.0 <= metrics["test_mean_class_acc"] <= 1.0 and len(result["per_class_acc"]["test"]) == 10
    trains = method not in ("la-posthoc", "tau-norm", "ncm")  # these fit no parameters by gradient descent
    assert bool(result["history"]) == trains
    if method in ("tau-norm", "la-posthoc"):
        assert "tau1" in result["variants"] and "chosen_tau" in metrics
    assert all(math.isfinite(h["train_loss"]) for h in result["history"])


def test_decoupled_methods_share_one_backbone(trained: dict) -> None:
    suite = trained["suite"]
    backbones = {stage1_config(t).key for t in suite.trials if stage1_config(t) is not None}
    ce_key = next(t.key for t in suite.trials if t.method == "ce")
    assert backbones == {ce_key}
    assert (trained["root"] / ce_key / "features.pt").is_file()  # features computed once, beside the backbone


@pytest.mark.parametrize("method", ["crt", "lort", "lws"])
def test_stage_two_leaves_the_backbone_bit_identical(trained: dict, method: str) -> None:
    cfg = next(t for t in trained["suite"].trials if t.method == method)
    cfg = type(cfg).from_dict({**cfg.as_dict(), "method_params": {"augment": True, "epochs": 2}})
    setup = TrialSetup.build(cfg)
    backbone_dir = trained["root"] / stage1_config(cfg).key
    load_stage_one(setup.model, backbone_dir)
    before = {k: v.clone() for k, v in setup.model.backbone.state_dict().items()}
    stage = StageTwo(setup.model, setup.data, setup.method.context, setup.recipe, 0, setup.splits, backbone_dir, print)
    setup.method.fit_classifier(stage)
    after = setup.model.backbone.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():  # weights and BatchNorm running statistics alike
        assert torch.equal(value, after[name]), name


def test_tau_norm_choice_is_the_best_on_validation(trained: dict) -> None:
    result = trained["results"]["tau-norm"]
    grid = torch.linspace(0, 2, 21).tolist()
    assert min(abs(result["metrics"]["chosen_tau"] - g) for g in grid) < 1e-6


@pytest.mark.integration
def test_method_from_outside_the_repo_runs_end_to_end(tmp_path: Path, fake_fashion_root: Path) -> None:
    """A third-party package registers a method through the `ltbench.methods` entry point."""
    import subprocess
    import sys

    pkg = tmp_path / "site"
    (pkg / "focal_plugin").mkdir(parents=True)
    (pkg / "focal_plugin" / "__init__.py").write_text(
        "from dataclasses import dataclass\n"
        "import torch.nn.functional as F\n"
        "from harness.plugin import Method, register_method\n\n"
        "@register_method\n"
        "class Focal(Method):\n"
        "    name = 'focal'\n"
        "    description = 'Focal loss (a third-party plugin)'\n\n"
        "    @dataclass(frozen=True)\n"
        "    class Params:\n"
        "        gamma: float = 2.0\n\n"
        "    def loss(self, logits, targets):\n"
        "        logp = F.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)\n"
        "        return (-(1 - logp.exp()) ** self.params.gamma * logp).mean()\n"
    )
    dist = pkg / "focal_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: focal-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ltbench.methods]\nfocal = focal_plugin\n")
    suite = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, methods=["focal"], seeds=[0])
    env = {**__import__("os").environ, "PYTHONPATH": str(pkg)}
    listed = subprocess.run([sys.executable, "-m", "harness.cli", "methods"], env=env, capture_output=True, text=True)
    assert "focal" in listed.stdout and "gamma: float = 2.0" in listed.stdout
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--results-dir", str(tmp_path / "r"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "| fashion-mnist-lt | 4 | focal |" in done.stdout
    board = (tmp_path / "r" / "tiny" / "leaderboard.csv").read_text()
    assert "focal" in board
    result = json.loads(next((tmp_path / "r" / "trials").glob("*/result.json")).read_text())
    assert 0 <= result["metrics"]["test_top1"] <= 1


def test_dry_run_plan_shares_one_backbone_per_ratio_and_seed() -> None:
    from harness.plan import epoch_budget
    from harness.runner import dry_run

    suite = build_suite("quick")
    plan = make_plan(suite.trials)
    assert len(plan.phase1) == 2 * 2 * 5 and len(plan.phase2) == 2 * 2 * 6  # ratios x seeds x methods
    assert all(len(users) == 6 for users in plan.users.values())
    budget = epoch_budget(suite.trials)
    assert (budget.shared_epochs, budget.retrain_epochs) == (20 * 12, 44 * 12)
    text = dry_run("quick")
    assert "fashion-mnist-lt-r100-ce-s0" in text and "shared by 6: la-posthoc, crt, tau-norm, lws, ncm, lort" in text
    assert "240 with stage sharing, 528 if every decoupled method retrained its backbone (2.20x)" in text
