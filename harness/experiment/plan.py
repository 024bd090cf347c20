"""The execution plan of a set of trials: which shared stage-1 backbones must exist, and who uses them.

A decoupled method (`stage1 = "ce"`) starts from the model that its stage-1 method trains under the same
dataset, ratio, seed, model, data options and recipe. That stage-1 trial is an ordinary trial (its key is
the key of the `ce` trial with the same settings), so it is trained once, reused by every decoupled method,
by the `ce` row of the leaderboard, and by any later rerun or other suite.

A decoupled method whose hyperparameter `stage1_recipe` names a recipe (Weight Balancing's `wb-stage1`)
starts instead from the `ce` trial trained with that recipe: a different shared backbone, shared in turn by
every method (and every suite) that names the same recipe, and equal to the `ce` trial of a suite whose
own recipe it is. `stage1_recipe: same` keeps the trial's own recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.core.trial import TrialConfig
from harness.plugins.code_identity import method_code
from harness.plugins.loading import load_methods
from harness.plugins.method import parse_params
from harness.training.recipes import named_stage1_recipe

SAME_RECIPE = "same"


def stage1_config(cfg: TrialConfig) -> TrialConfig | None:
    """The trial whose trained model `cfg` starts from, or None for an end-to-end method. The one place that
    says which backbone a trial stands on: `make_plan` records it in `Plan.backbone_of`, and the queue, the
    worker and the dry run read it there."""
    method = load_methods().get(cfg.method)
    if method.stage1 is None:
        return None
    recipe_name = getattr(parse_params(method, cfg.method_params), "stage1_recipe", SAME_RECIPE)
    recipe = cfg.recipe if recipe_name == SAME_RECIPE else named_stage1_recipe(recipe_name, cfg.recipe)
    stage1_code = method_code(load_methods().get(method.stage1))
    stage1 = {"method": method.stage1, "method_params": {}, "recipe": recipe, "method_code": stage1_code}
    return TrialConfig.from_dict({**cfg.as_dict(), **stage1})


def recipe_summary(recipe: dict) -> str:
    """The optimisation settings that tell two backbones apart, in one short phrase."""
    steps = f" x{recipe['step_gamma']:g} at {list(recipe['milestones'])}" if recipe["schedule"] == "step" else ""
    kept = ", keeps the best validation epoch" if recipe.get("keep") == "best-val" else ""
    return (
        f"{recipe['epochs']} ep, batch {recipe['batch_size']}, lr {recipe['lr']:g}, "
        f"wd {recipe['weight_decay']:g}, {recipe['schedule']}{steps}{kept}"
    )


def trial_epochs(cfg: TrialConfig) -> int:
    """Epochs the trial itself trains: the recipe's for an end-to-end trial; for a decoupled one, its
    stage-two `epochs` hyperparameter (0 when it trains none, e.g. tau-norm's search on a frozen head)."""
    method = load_methods().get(cfg.method)
    if method.stage1 is None:
        return int(cfg.recipe["epochs"])
    return int(getattr(parse_params(method, cfg.method_params), "epochs", 0))


@dataclass
class Plan:
    """A suite's trials in two kinds (not two phases: a decoupled trial starts once its own backbone has
    finished, while other backbones still train)."""

    end_to_end: list[TrialConfig] = field(default_factory=list)  # shared backbones included
    decoupled: list[TrialConfig] = field(default_factory=list)  # each starts after its backbone
    users: dict[str, list[TrialConfig]] = field(default_factory=dict)  # backbone key -> decoupled trials
    backbones: dict[str, TrialConfig] = field(default_factory=dict)
    backbone_of: dict[str, str] = field(default_factory=dict)  # decoupled trial key -> its backbone's key

    @property
    def trials(self) -> list[TrialConfig]:
        """Every trial to run, backbones first."""
        return self.end_to_end + self.decoupled


def make_plan(trials: list[TrialConfig]) -> Plan:
    plan = Plan()
    seen: set[str] = set()

    def add_end_to_end(cfg: TrialConfig) -> None:
        if cfg.key not in seen:
            seen.add(cfg.key)
            plan.end_to_end.append(cfg)

    for cfg in trials:
        backbone = stage1_config(cfg)
        if backbone is None:
            add_end_to_end(cfg)
        else:
            plan.backbones[backbone.key] = backbone
            plan.backbone_of[cfg.key] = backbone.key
            plan.users.setdefault(backbone.key, []).append(cfg)
            add_end_to_end(backbone)
            plan.decoupled.append(cfg)
    return plan


@dataclass(frozen=True)
class EpochBudget:
    """Backbone-training epochs with stage sharing and with retraining the backbone per decoupled method.

    Stage-two epochs (head only, on a frozen backbone) are the same in both and counted apart.
    """

    shared_epochs: int
    retrain_epochs: int
    stage2_epochs: int

    @property
    def saving(self) -> float:
        return self.retrain_epochs / max(self.shared_epochs, 1)


def epoch_budget(trials: list[TrialConfig]) -> EpochBudget:
    plan = make_plan(trials)
    shared = sum(int(cfg.recipe["epochs"]) for cfg in plan.end_to_end)
    # without sharing, every trial trains its own backbone: end-to-end ones and each decoupled one alike
    retrain = sum(int(cfg.recipe["epochs"]) for cfg in trials)
    stage2 = sum(trial_epochs(cfg) for cfg in plan.decoupled)
    return EpochBudget(shared, retrain, stage2)
