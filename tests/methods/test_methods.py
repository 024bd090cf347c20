"""Each method checked against the equation that defines it, and every method smoke-run through the trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.core.errors import LtbenchError
from harness.experiment.plan import make_plan, stage1_config
from harness.experiment.suite import build_suite
from harness.plugins.loading import build_method, load_methods
from harness.plugins.method import METHODS, Method, MethodContext, register_method
from harness.records.storage import Storage
from harness.training.decoupled import StageTwo, load_stage_one
from harness.training.trainer import TrialSetup
from methods.channel_whitening import ChannelWhitening, InverseSquareRoot
from methods.lort import retargeted
from methods.lws import ScaledLinear
from methods.ncm import NearestClassMean
from methods.tau_norm import TauNormHead
from tests.conftest import write_tiny_suite
from tests.trial_runs import setup_of, train

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


def test_ncm_fits_the_official_class_means_by_hand() -> None:
    """Kang et al.'s code: means of centred, L2-normalised features, not normalised again; Euclidean distance."""
    from types import SimpleNamespace

    features = torch.tensor([[3.0, 0.0], [1.0, 0.0], [1.0, 2.0], [1.0, -2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    stage = SimpleNamespace(features=lambda split: (features, labels), num_classes=2)
    head = build_method("ncm", {}, MethodContext(2, torch.tensor([2.0, 2.0]).double())).fit_classifier(stage).head
    # z̄ = (1.5, 0); centred (1.5, 0), (-.5, 0), (-.5, 2), (-.5, -2); normalised (1, 0), (-1, 0), (-c, s), (-c, -s)
    c = 0.5 / math.sqrt(4.25)
    torch.testing.assert_close(head.means, torch.tensor([[0.0, 0.0], [-c, 0.0]]))
    x = torch.tensor([[2.5, 0.0]])  # centred (1, 0), normalised (1, 0): distances 1 and 1 + c
    torch.testing.assert_close(head(x), torch.tensor([[-1.0, -(1.0 + c)]]))


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
    for cfg in plan.trials:
        results[cfg.method] = train(cfg, Storage.open(tmp / "trials"))
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
@pytest.mark.parametrize("bn", ["eval", "train"])
def test_stage_two_freezes_the_backbone(trained: dict, method: str, bn: str) -> None:
    """Stage two never changes the backbone's weights nor its file on disk; with `bn: eval` its BatchNorm
    statistics stay as well, with `bn: train` (the official codes) they are re-estimated on stage-two batches."""
    cfg = next(t for t in trained["suite"].trials if t.method == method)
    cfg = type(cfg).from_dict({**cfg.as_dict(), "method_params": {"augment": True, "epochs": 2, "bn": bn}})
    setup = setup_of(cfg)
    backbone = Storage.open(trained["root"]).trial(stage1_config(cfg).key)
    backbone_dir = backbone.local_dir
    on_disk = (backbone_dir / "checkpoint.pt").read_bytes()
    load_stage_one(setup.model, backbone)
    before = {k: v.clone() for k, v in setup.model.backbone.state_dict().items()}
    stage = StageTwo(setup.model, setup.data, setup.method.context, setup.recipe, 0, setup.splits, backbone, print)
    setup.method.fit_classifier(stage)
    after = setup.model.backbone.state_dict()
    assert before.keys() == after.keys()
    statistics = {name for name in before if "running_" in name or "num_batches_tracked" in name}
    for name, value in before.items():
        assert torch.equal(value, after[name]) != (bn == "train" and name in statistics), name
    assert (backbone_dir / "checkpoint.pt").read_bytes() == on_disk


def _stage_two(trained: dict, method: str, **params) -> tuple[StageTwo, TrialSetup]:
    cfg = next(t for t in trained["suite"].trials if t.method == method)
    cfg = type(cfg).from_dict({**cfg.as_dict(), "method_params": params})
    setup = setup_of(cfg)
    backbone = Storage.open(trained["root"]).trial(stage1_config(cfg).key)
    load_stage_one(setup.model, backbone)
    stage = StageTwo(setup.model, setup.data, setup.method.context, setup.recipe, 0, setup.splits, backbone, print)
    return stage, setup


@pytest.mark.parametrize("sampler", ["class-aware", "class-balanced", "instance"])
def test_a_stage_two_epoch_is_int_n_over_batch_steps_whatever_the_sampler(trained: dict, sampler: str) -> None:
    """Kang et al.'s loop stops every epoch at int(N / batch) steps (a class-aware epoch used to be n_max x C
    draws: 4-11x more steps); LORT's loader instead walks all N images with a partial last batch."""
    stage, setup = _stage_two(trained, "crt")
    n, batch = len(stage.features("train")[1]), 24
    sizes: list[int] = []

    def counting_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        sizes.append(len(targets))
        return F.cross_entropy(logits, targets)

    head = torch.nn.Linear(setup.model.feature_dim, 10)
    stage.train_head(head, counting_loss, epochs=2, lr=0.1, batch_size=batch, sampler=sampler)
    assert sizes == [batch] * (2 * (n // batch)) and n % batch  # the partial batch exists and is dropped
    assert stage.effective[-1]["steps_per_epoch"] == n // batch
    sizes.clear()
    stage.train_head(head, counting_loss, epochs=1, lr=0.1, batch_size=batch, sampler="instance", drop_last=False)
    assert sum(sizes) == n and sizes[-1] == n % batch


def test_crt_and_lws_report_the_epoch_chosen_on_validation(trained: dict) -> None:
    for method in ("crt", "lws"):
        result = trained["results"][method]
        chosen = int(result["metrics"]["chosen_epoch"])
        history = result["history"]
        best = max(h["val_mean_class_acc"] for h in history)
        assert history[chosen - 1]["val_mean_class_acc"] == best
        assert result["metrics"]["val_mean_class_acc"] == pytest.approx(best)
        ran = result["effective"]["stage2"]
        assert (ran["bn"], ran["select"], ran["lr_schedule"]) == (
            "train",
            "best on validation",
            "cosine per epoch, shift 1",
        )


def test_lort_runs_as_its_official_code(trained: dict) -> None:
    ran = trained["results"]["lort"]["effective"]
    assert (ran["stage2"]["batch_size"], ran["stage2"]["bn"], ran["stage2_test_flip"]) == (64, "train", True)
    assert ran["stage2"]["lr_schedule"] == "cosine per epoch, shift 0"


def test_test_time_flip_averages_the_scores_of_each_image_and_its_flip(trained: dict) -> None:
    stage, setup = _stage_two(trained, "lort")
    head = stage.stage1_head.eval()
    images = torch.cat([x for x, _ in setup.splits["test"].eval_batches(512)])
    with torch.no_grad():
        expected = (head(setup.model.features(images)) + head(setup.model.features(images.flip(-1)))) / 2
    torch.testing.assert_close(stage.scores(head, "test", test_flip=True), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(stage.scores(head, "test"), expected, atol=1e-5, rtol=1e-5)


def test_whitening_never_learns_from_a_partial_batch(tmp_path: Path, fake_fashion_root: Path) -> None:
    """The running whitening matrix after an epoch whose data end in a partial batch equals the one learnt from
    its full batches alone: every training batch the whitening sees is full."""
    path = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root)
    cfg = build_suite(str(path), ["methods=[cw]", "seeds=[0]", "recipe.epochs=1", "recipe.batch_size=24"]).trials[0]
    setup = setup_of(cfg)
    n, batch = len(setup.data.train), setup.recipe.batch_size
    assert n % batch  # this epoch's data end in a partial batch
    from harness.training import trainer

    seen: list[torch.Tensor] = []
    whitening = setup.model.head.whitening
    whitening.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
    (tmp_path / "trial").mkdir()
    trainer.train_end_to_end(setup, Storage.open(tmp_path).trial("trial"), lambda row: None)
    assert [len(z) for z in seen] == [batch] * (n // batch)
    replay = ChannelWhitening(whitening.dim, eps=whitening.eps, momentum=whitening.momentum).train()
    for z in seen:
        replay(z)
    torch.testing.assert_close(whitening.running_whiten, replay.running_whiten)
    torch.testing.assert_close(whitening.running_mean, replay.running_mean)


def test_tau_norm_choice_is_the_best_on_validation(trained: dict) -> None:
    result = trained["results"]["tau-norm"]
    grid = torch.linspace(0, 2, 21).tolist()
    assert min(abs(result["metrics"]["chosen_tau"] - g) for g in grid) < 1e-6


def test_dry_run_plan_shares_one_backbone_per_ratio_and_seed() -> None:
    from harness.execution.run_suite import dry_run
    from harness.experiment.plan import epoch_budget

    suite = build_suite("quick")
    plan = make_plan(suite.trials)
    assert len(plan.end_to_end) == 2 * 2 * 5 and len(plan.decoupled) == 2 * 2 * 6  # ratios x seeds x methods
    assert all(len(users) == 6 for users in plan.users.values())
    budget = epoch_budget(suite.trials)
    assert (budget.shared_epochs, budget.retrain_epochs) == (20 * 12, 44 * 12)
    text = dry_run("quick", verbose=True)
    assert "fashion-mnist-lt-r100-ce-s0" in text and "shared by 6: la-posthoc, crt, tau-norm, lws, ncm, lort" in text
    assert "240 with stage sharing, 528 if every decoupled method retrained its backbone (2.20x)" in text


def test_weight_balancing_evaluates_with_the_test_time_flip(trained: dict) -> None:
    """WB's demos report `print_accuracy(..., test_aug=True)`: the logits of each image and its mirror averaged."""
    stage, setup = _stage_two(trained, "crt")
    wb = build_method("wb", {"epochs": 1, "augment": False, "bn": "eval"}, setup.method.context)
    fitted = wb.fit_classifier(stage)
    assert fitted.test_flip is True
    assert build_method("wb", {"test_flip": False}, setup.method.context).params.test_flip is False


def test_tau_norm_keeps_the_bias_and_flips_as_weight_balancing_s_normalizer(trained: dict) -> None:
    """WB's `Normalizer` rescales the classifier's weight and keeps its bias; the demo evaluates with the flip,
    so τ is chosen on flipped validation scores."""
    weight, bias, z = torch.randn(5, 4), torch.randn(5), torch.randn(3, 4)
    expected = z @ (weight / weight.norm(dim=1, keepdim=True) ** 1.5).T + bias
    torch.testing.assert_close(TauNormHead(weight, 1.5, bias)(z), expected)
    stage, setup = _stage_two(trained, "tau-norm", bias="keep", test_flip=True)
    fitted = setup.method.fit_classifier(stage)
    stage1 = stage.stage1_head
    assert fitted.test_flip and torch.equal(fitted.head.bias, stage1.bias.detach())
    scores = {
        tau: stage.validation_score(TauNormHead(stage1.weight.detach(), tau, stage1.bias.detach()), test_flip=True)
        for tau in setup.method.params.grid()
    }
    best = max(s.accuracy for s in scores.values())
    assert scores[fitted.extras["chosen_tau"]].accuracy == best
    with pytest.raises(LtbenchError, match="bias must be one of"):
        build_method("tau-norm", {"bias": "zero"}, setup.method.context)
