"""The paper suites: each follows its paper's protocol, shares trials wherever keys match, and its dry run
shows the planned trials and the shared backbones (per stage-1 recipe)."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.core.errors import LtbenchError
from harness.execution.run_suite import dry_run
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.experiment.suite_files import builtin_suites

PAPERS = (
    "kang2020",
    "menon2021",
    "cao2019",
    "alshammari2022",
    "lort",
    "zhang",
    "mislas",
    "glmc",
    "paco",
    "ride",
    "sade",
)


def keys(suite: str, overrides: list[str] | None = None) -> set[str]:
    return {t.key for t in build_suite(suite, overrides).trials}


def test_every_paper_has_a_builtin_suite_listed_by_ltbench_suites(capsys: pytest.CaptureFixture) -> None:
    assert {f"paper-{p}" for p in PAPERS} <= set(builtin_suites())
    assert main(["suites"]) == 0
    listed = capsys.readouterr().out
    assert all(f"paper-{p}" in listed for p in PAPERS)


@pytest.mark.parametrize(
    ("paper", "trials", "backbones"),
    [
        ("kang2020", 5, 1),  # ImageNet-LT x 5 methods x 1 seed; ncm/crt/tau-norm/lws on one backbone
        ("menon2021", 2 * 4 * 3 + 4, 7),  # CIFAR-10/100 r=100 x 4 methods x 3 seeds + ImageNet-LT x 4 x 1
        ("cao2019", 2 * 2 * 2 * 3, 0),  # 2 datasets x 2 ratios x (ce, ldam-drw) x 3 seeds, all end to end
        ("alshammari2022", 3 * 4 * 3, 9),  # 3 ratios x 4 methods x 3 seeds; τ-norm and WB share 9 backbones
        ("lort", 3 * 6 * 3, 9),
        ("zhang", 2 * 3 * 7 * 3 + 7, 19),
        ("mislas", 2 * 2 * 3, 6),  # CIFAR-10/100 r=100 x (mixup, mislas) x 3 seeds; mislas on the mixup rows
        ("glmc", 3 * 3, 0),  # CIFAR-10-LT r=100, 50 and CIFAR-100-LT r=100 x 3 seeds, end to end
        ("paco", 3 * 3, 0),  # CIFAR-100-LT r=100/50/10 x paco x 3 seeds, end to end
        ("ride", 2 * 3, 3),  # CIFAR-100-LT r=100 x (ride, ride-ea) x 3 seeds; ride-ea on the ride rows
        ("sade", 3 * 3, 0),  # CIFAR-100-LT r=100/50/10 x sade x 3 seeds, end to end
    ],
)
def test_paper_suite_dry_run_shows_trials_and_shared_backbones(paper: str, trials: int, backbones: int) -> None:
    suite = build_suite(f"paper-{paper}")
    assert len(suite) == trials
    plan = make_plan(suite.trials)
    assert len(plan.backbones) == backbones
    text = dry_run(f"paper-{paper}", verbose=True)
    assert text.startswith(f"suite paper-{paper}: {trials} trials")
    assert text.count("<- shared by") == backbones


def test_alshammari_backbone_is_wb_stage1_shared_by_tau_norm_and_wb() -> None:
    suite = build_suite("paper-alshammari2022")
    assert {t.data["selection"] for t in suite.trials} == {"first"}
    tau_norm = {str(t.method_params) for t in suite.trials if t.method == "tau-norm"}
    assert tau_norm == {str({"bias": "keep", "test_flip": True})}  # WB's own Normalizer, with the flip
    plan = make_plan(suite.trials)
    for key, users in plan.users.items():
        assert sorted(u.method for u in users) == ["tau-norm", "wb"]
        recipe = plan.backbones[key].recipe
        assert (recipe["epochs"], recipe["batch_size"], recipe["lr"], recipe["weight_decay"]) == (320, 64, 0.01, 5e-3)
    assert {k for k in plan.users} <= {t.key for t in suite.trials}  # the ce rows are those backbones
    text = dry_run("paper-alshammari2022", verbose=True)
    assert "ce-s0 (" in text and "<- shared by 2: tau-norm, wb" in text
    assert (
        "end to end, shared by 2 resnet32 320 ep, batch 64, lr 0.01, wd 0.005, cosine, keeps the best validation epoch"
        in " ".join(text.split())
    )


def test_a_method_naming_another_stage1_recipe_gets_its_own_shared_backbone() -> None:
    suite = build_suite("paper-cao2019", ["methods=[ce,crt,tau-norm,wb]", "seeds=[0]", "imbalance_ratios=[100]"])
    plan = make_plan(suite.trials)
    # per dataset: the cifar-lt backbone (crt, tau-norm) and the wb-stage1 backbone (wb)
    assert len(plan.backbones) == 4
    users = sorted(sorted(u.method for u in us) for us in plan.users.values())
    assert users == [["crt", "tau-norm"], ["crt", "tau-norm"], ["wb"], ["wb"]]
    same = build_suite("paper-cao2019", ["methods=[wb]", "seeds=[0]", "method_params.wb.stage1_recipe=same"])
    ce = keys("paper-cao2019", ["methods=[ce]", "seeds=[0]"])
    assert {b for b in make_plan(same.trials).backbones} <= ce


def test_paper_suites_share_trials_with_the_standard_suites() -> None:
    cifar = keys("cifar-lt")
    assert keys("paper-cao2019", ["methods=[ce]"]) <= cifar
    zhang = build_suite("paper-zhang")
    imagenet = keys("imagenet-lt", ["methods=[ce,crt,tau-norm,lws]"])
    for trial in zhang.trials:
        if trial.dataset != "imagenet-lt":
            assert trial.key in cifar, trial.label()
        elif trial.method in ("ce", "crt", "tau-norm", "lws"):  # the imagenet-lt suite has no CW rows
            assert trial.key in imagenet, trial.label()
    assert keys("paper-kang2020") <= keys("imagenet-lt")


def test_menon_suite_trains_each_dataset_with_its_own_recipe_model_and_seeds() -> None:
    suite = build_suite("paper-menon2021")
    imagenet = [t for t in suite.trials if t.dataset == "imagenet-lt"]
    cifar = [t for t in suite.trials if t.dataset != "imagenet-lt"]
    assert {(t.model, t.recipe["lr"], t.recipe["warmup_epochs"], t.seed) for t in imagenet} == {("resnet50", 0.4, 5, 0)}
    assert {t.imbalance_ratio for t in imagenet} == {None} and imagenet[0].resources["gpu"] == 1
    # the authors' code's recipe and ResNet-32 variant on CIFAR (issue 24): ~120K steps, x0.1 at three milestones
    assert {(t.dataset, t.model, t.recipe["epochs"], tuple(t.recipe["milestones"])) for t in cifar} == {
        ("cifar10-lt", "resnet32-menon", 1241, (604, 926, 1128)),
        ("cifar100-lt", "resnet32-menon", 1419, (691, 1059, 1290)),
    }
    assert {(t.recipe["weight_decay"], t.recipe["weight_decay_on"], t.recipe["nesterov"]) for t in cifar} == {
        (2e-4, "non-bn", True)
    }
    assert {t.data["augmentation"] for t in suite.trials} == {"crop-flip"}  # no ColorJitter on ImageNet-LT
    assert {t.seed for t in cifar} == {0, 1, 2} and {t.imbalance_ratio for t in cifar} == {100.0}
    # a suite-wide override still reaches every dataset; a per-dataset one only its dataset
    short = build_suite("paper-menon2021", ["recipe.epochs=3", "per_dataset.imagenet-lt.recipe.lr=0.3"])
    assert {t.recipe["epochs"] for t in short.trials} == {3}
    assert {t.recipe["lr"] for t in short.trials if t.dataset == "imagenet-lt"} == {0.3}
    assert {t.recipe["lr"] for t in short.trials if t.dataset != "imagenet-lt"} == {0.1}


def test_a_dataset_sets_its_own_method_params() -> None:
    """MiSLAS's official stage two differs per dataset: per_dataset.<dataset>.method_params update the suite's."""
    suite = build_suite("paper-mislas", ["method_params.mislas.epochs=4"])
    params = {t.dataset: t.method_params for t in suite.trials if t.method == "mislas"}
    assert params["cifar100-lt"] == {"epochs": 4}
    assert params["cifar10-lt"] == {"epochs": 4, "smooth_head": 0.3, "smooth_tail": 0.0, "shift_bn": False,
                                    "lr_factor": 0.5}  # fmt: skip
    one = build_suite("paper-mislas", ["per_dataset.cifar100-lt.method_params.mislas.smooth_head=0.2"])
    assert {t.method_params.get("smooth_head") for t in one.trials if t.method == "mislas"} == {0.2, 0.3}
    with pytest.raises(LtbenchError, match="smooth_head"):
        build_suite("paper-mislas", ["per_dataset.cifar10-lt.method_params.mislas.smooth_head=2"])


@pytest.mark.parametrize(
    "override",
    [
        "per_dataset.cifar10-lt.epochs=3",
        "per_dataset.mnist.seeds=[0]",
        "per_dataset.imagenet-lt.seeds=[x]",
        "per_dataset.imagenet-lt=5",
        "per_dataset={imagenet-lt: {recipe: {lr: -1}}}",
    ],
)
def test_bad_per_dataset_settings_are_one_line_errors(override: str) -> None:
    with pytest.raises(LtbenchError):
        build_suite("paper-menon2021", [override])


def test_reproduce_dry_run_plans_the_papers_suite(capsys: pytest.CaptureFixture) -> None:
    assert main(["reproduce", "alshammari2022", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("suite paper-alshammari2022: 36 trials")
    assert main(["reproduce", "nobody2099"]) == 2
    assert "unknown paper 'nobody2099'" in capsys.readouterr().err


def test_wb_in_the_cifar_lt_suite_reuses_the_alshammari_ce_trials() -> None:
    grid = ["methods=[wb]", "datasets=[cifar100-lt]", "imbalance_ratios=[100,50,10]"]
    alshammari_ce = keys("paper-alshammari2022", ["methods=[ce]"])
    random = set(make_plan(build_suite("cifar-lt", grid).trials).backbones)
    assert len(random) == 9 and not random & alshammari_ce  # random selection: other images, other backbones
    first = set(make_plan(build_suite("cifar-lt", [*grid, "data.selection=first"]).trials).backbones)
    assert first == alshammari_ce


def test_every_paper_table_row_names_a_registered_method() -> None:
    from harness.plugins.loading import load_methods
    from harness.reports.layouts import PAPER_TABLES

    methods = load_methods()
    assert {row.method for spec in PAPER_TABLES for row in spec.rows} <= set(methods.names())


def test_reproduce_runs_the_suite_then_writes_the_tables(tmp_path, fake_fashion_root) -> None:
    """`ltbench reproduce` end to end on fake data: the paper suite's trials finish, then the tables exist."""
    results = tmp_path / "r"
    overrides = [
        "datasets=[fashion-mnist-lt]", "imbalance_ratios=[4]", "seeds=[0]", "model=null",
        "recipe={base: quick, epochs: 2, batch_size: 32, eval_every: 1}", f"data.root={fake_fashion_root}",
        "data.max_per_class=30", "data.val_per_class=5", "resources={cpu: 1, gpu: 0}",
    ]  # fmt: skip
    argv = ["reproduce", "cao2019", "--quiet", "--results-dir", str(results)]
    assert main([*argv, *(arg for o in overrides for arg in ("--set", o))]) == 0
    assert (results / "paper-cao2019" / "leaderboard.csv").is_file()
    assert "ldam-drw" in (results / "paper-cao2019" / "leaderboard.csv").read_text()
    assert (results / "tables" / "cao2019_table2.md").is_file()
