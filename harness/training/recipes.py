"""Training recipes: the optimiser and schedule of each paper, as named configs (SPEC.md section 2).

A suite names a recipe and may override any field; the resolved recipe is part of the trial key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from harness.core.errors import LtbenchError, unknown_choice
from harness.core.registry import Registry
from harness.core.validation import is_finite_number

SCHEDULES = ("step", "cosine", "constant")
# per-step: the lr changes every iteration (a smooth warm-up from ~0, cosine within the epoch). per-epoch: it is
# set once at the start of each epoch, as LDAM-DRW's `adjust_learning_rate` and Kang et al.'s scheduler stepped
# before the epoch do: warm-up lr·(e+1)/W, step milestones by epoch index, cosine at (e+1) epochs done.
LR_UPDATES = ("per-step", "per-epoch")
# last: the model after the last epoch. best-val: the epoch with the best validation mean per-class accuracy
# (validation is scored after every epoch; ties keep the earliest, as Kang et al.'s `>` comparison does).
KEEPS = ("last", "best-val")
# all: weight decay on every parameter (PyTorch's SGD). non-bn: not on BatchNorm's scale and shift (a Keras L2
# regulariser on the convolution and dense layers, Menon et al.'s code).
WEIGHT_DECAY_ON = ("all", "non-bn")
# fp32: plain float32. bf16: bfloat16 autocast for forward passes (weights, gradients and optimiser stay
# float32). auto: bf16 where the device runs it natively (CUDA with bf16 support), else fp32.
PRECISIONS = ("fp32", "bf16", "auto")
# Bounds past which a recipe trains nonsense or cannot allocate: ImageNet-LT's largest published batch is 512
# and its longest schedule a few hundred epochs.
MAX_BATCH_SIZE = 65_536
MAX_EPOCHS = 100_000


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    warmup_epochs: float = 0.0  # linear warm-up to lr over these epochs (see `lr_update` for its form)
    schedule: str = "cosine"  # step | cosine (to 0) | constant
    milestones: tuple[int, ...] = field(default_factory=tuple)  # step schedule: epochs where lr is multiplied
    step_gamma: float = 0.1  # ... by this factor (LDAM-DRW's code uses 0.01)
    eval_every: int = 1  # evaluate validation and test every k epochs (always after the last)
    precision: str = "fp32"  # fp32 | bf16 | auto (see PRECISIONS); changes numerics, so it is in the key
    channels_last: bool = False  # NHWC model and batches: faster convolutions on tensor cores and oneDNN
    lr_update: str = "per-step"  # per-step | per-epoch (see LR_UPDATES)
    keep: str = "last"  # last | best-val: which epoch's model the trial reports and stage two stands on
    weight_decay_on: str = "all"  # all | non-bn (see WEIGHT_DECAY_ON)

    def __post_init__(self) -> None:
        finite = {name: is_finite_number(getattr(self, name)) for name in ("lr", "weight_decay", "warmup_epochs")}
        gamma_ok = is_finite_number(self.step_gamma) and self.step_gamma > 0
        checks = [
            (1 <= self.epochs <= MAX_EPOCHS, f"epochs must be a positive integer up to {MAX_EPOCHS}"),
            (1 <= self.batch_size <= MAX_BATCH_SIZE, f"batch_size must be a positive integer up to {MAX_BATCH_SIZE}"),
            (finite["lr"] and self.lr > 0, "lr must be a finite number > 0"),
            (0 <= self.momentum < 1, "momentum must be a number in [0, 1)"),
            (finite["weight_decay"] and self.weight_decay >= 0, "weight_decay must be a finite number >= 0"),
            (finite["warmup_epochs"] and self.warmup_epochs >= 0, "warmup_epochs must be a finite number >= 0"),
            (gamma_ok, "step_gamma must be a finite number > 0"),
            (self.eval_every >= 1, "eval_every must be a positive integer"),
        ]
        fields_of = (
            "epochs",
            "batch_size",
            "lr",
            "momentum",
            "weight_decay",
            "warmup_epochs",
            "step_gamma",
            "eval_every",
        )
        for (ok, message), name in zip(checks, fields_of, strict=True):
            if not ok:
                raise LtbenchError(f"recipe: {message}, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise unknown_choice("schedule", self.schedule, SCHEDULES)
        if self.precision not in PRECISIONS:
            raise unknown_choice("precision", self.precision, PRECISIONS)
        for name, value, choices in (
            ("lr_update", self.lr_update, LR_UPDATES),
            ("keep", self.keep, KEEPS),
            ("weight_decay_on", self.weight_decay_on, WEIGHT_DECAY_ON),
        ):
            if value not in choices:
                raise unknown_choice(name, value, choices)
        if not isinstance(self.channels_last, bool):
            raise LtbenchError(f"recipe: channels_last must be true or false, got {self.channels_last!r}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def override(self, **changes: object) -> Recipe:
        valid = {f.name for f in fields(self)}
        for key in changes:
            if key not in valid:
                raise unknown_choice("recipe key", key, valid)
        if "milestones" in changes:
            changes["milestones"] = tuple(changes["milestones"])  # type: ignore[arg-type]
        return replace(self, **changes)  # type: ignore[arg-type]


RECIPES: Registry[Recipe] = Registry("recipe")
# Every recipe of an official code trains in fp32 (TF32 convolutions where PyTorch's defaults allow them, recorded
# in `ran.cudnn`); only ImageNet-LT at 224 px keeps `auto` (bf16 autocast on a bf16 GPU), where it pays.
# LDAM-DRW's CIFAR-LT recipe (kaidic/LDAM-DRW `cifar_train.py`): 200 epochs; `adjust_learning_rate` sets the lr
# at the start of each epoch: lr·(e+1)/5 for the first five, x0.01 from epoch 160 and x0.0001 from 180. The
# code reports the last and the best test epoch; ltbench keeps the last (the tables compare to the paper's).
RECIPES.register(
    "cifar-lt",
    Recipe(
        epochs=200,
        batch_size=128,
        lr=0.1,
        weight_decay=2e-4,
        warmup_epochs=5,
        schedule="step",
        milestones=(160, 180),
        step_gamma=0.01,
        eval_every=10,
        channels_last=True,
        lr_update="per-epoch",
    ),
)
# Kang et al.'s ImageNet-LT joint training (`run_networks.py`): 90 epochs, cosine to 0 stepped at the start of
# each epoch, the best validation epoch kept (cRT/LWS start from it). bf16 autocast on a GPU (`auto`): at 224 px
# it pays, and every table it fills says so.
RECIPES.register(
    "imagenet-lt",
    Recipe(
        epochs=90,
        batch_size=512,
        lr=0.2,
        weight_decay=5e-4,
        schedule="cosine",
        eval_every=10,
        precision="auto",
        channels_last=True,
        lr_update="per-epoch",
        keep="best-val",
    ),
)
# LORT's stage 1 (bilibili/LOS `main_stage1.py`): plain CE, lr 0.01, wd 5e-3, batch 64, 200 epochs cosine; the
# code keeps the best test epoch, ltbench the best validation epoch.
RECIPES.register(
    "lort-stage1",
    Recipe(epochs=200, batch_size=64, lr=0.01, weight_decay=5e-3, schedule="cosine", eval_every=10, keep="best-val"),
)
# Weight Balancing's stage 1 (ShadeAlsha/LTR-weight-balancing demo 1): CE with the tuned weight decay 5e-3,
# lr 0.01, batch 64, 320 epochs cosine (no warm-up), fp32; the demo keeps the best test epoch
# (`with_WD_model_best`), ltbench the best validation epoch. NHWC like the other CIFAR recipe, so the backbone
# `wb` names from the cifar-lt suite is the `ce` trial of paper-alshammari2022.
RECIPES.register(
    "wb-stage1",
    Recipe(
        epochs=320,
        batch_size=64,
        lr=0.01,
        weight_decay=5e-3,
        schedule="cosine",
        eval_every=10,
        channels_last=True,
        keep="best-val",
    ),
)
# ltbench's laptop recipe for Fashion-MNIST-LT: short, cosine, one warm-up epoch.
RECIPES.register(
    "quick",
    Recipe(epochs=12, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=1, schedule="cosine", eval_every=6),
)
# Menon et al. 2021, Appendix D's CIFAR-LT recipe: LDAM-DRW's 200 epochs with x0.1 lr steps at 160 and 180 and
# weight decay 1e-4 (its warm-up per step).
RECIPES.register(
    "menon2021-cifar",
    RECIPES.get("cifar-lt").override(weight_decay=1e-4, step_gamma=0.1, lr_update="per-step"),
)


def menon2021_code_recipe(epochs: int, warmup: int, milestones: tuple[int, ...]) -> Recipe:
    """Menon et al.'s CIFAR-LT recipe as their code runs it (google-research `logit_adjustment`, `main.py` and
    `utils.py`): about 120K steps of batch 128, SGD lr 0.1 with Nesterov momentum 0.9, a linear warm-up per step
    from 0 over the first `warmup` epochs, x0.1 at each milestone, and Keras L2 1e-4 on the convolution and dense
    weights (and the dense bias), which is weight decay 2e-4 on all but BatchNorm's parameters."""
    return Recipe(
        epochs=epochs,
        batch_size=128,
        lr=0.1,
        nesterov=True,
        weight_decay=2e-4,
        weight_decay_on="non-bn",
        warmup_epochs=warmup,
        schedule="step",
        milestones=milestones,
        step_gamma=0.1,
        eval_every=50,
        channels_last=True,
    )


# `utils.dataset_mappings()`: CIFAR-10-LT 1241 epochs (warm-up 20, steps at 604/926/1128), CIFAR-100-LT 1419
# epochs (warm-up 22, steps at 691/1059/1290).
RECIPES.register("menon2021-cifar10-code", menon2021_code_recipe(1241, 20, (604, 926, 1128)))
RECIPES.register("menon2021-cifar100-code", menon2021_code_recipe(1419, 22, (691, 1059, 1290)))
# Menon et al.'s ImageNet-LT: ResNet-50, lr 0.4, 5-epoch warm-up (its weight decay is not stated: Kang et al.'s
# kept), per-step warm-up then cosine; the last epoch (the paper tunes nothing else on ImageNet-LT).
RECIPES.register(
    "menon2021-imagenet",
    RECIPES.get("imagenet-lt").override(lr=0.4, warmup_epochs=5, lr_update="per-step", keep="last"),
)
# MiSLAS's stage one (dvlab-research/MiSLAS train_stage1.py, config/cifar*/*_stage1_mixup.yaml): ResNet-32,
# 200 epochs, batch 128, lr 0.1, wd 2e-4, 5 warm-up epochs, lr x0.1 after epoch 160 and x0.01 after 180.
RECIPES.register("mislas-cifar", RECIPES.get("cifar-lt").override(step_gamma=0.1))
# GLMC's CIFAR-LT commands (ynu-yangpeng/GLMC @ 2c0261c README, Trainer.py): 200 epochs, batch 64, SGD lr 0.01
# momentum 0.9, wd 5e-3, cosine to 0 with no warm-up (its CosineAnnealingLR steps after each epoch; here per
# step); the code reports its best test epoch, ltbench the last.
RECIPES.register(
    "glmc-cifar",
    Recipe(epochs=200, batch_size=64, lr=0.01, weight_decay=5e-3, schedule="cosine", eval_every=10, channels_last=True),
)
# PaCo's CIFAR-LT recipe (dvlab-research/Parametric-Contrastive-Learning @ fe56535, PaCo/LT/paco_cifar.py and
# sh/CIFAR100_train_imb0.01.sh): 400 epochs, batch 128, SGD lr 0.05, momentum 0.9, wd 5e-4 on every parameter;
# `adjust_learning_rate` sets the lr per epoch: lr·(e+1)/10 in the warm-up, x0.1 after epoch 320 (from index 321)
# and x0.01 after 360. (Its epoch 10 runs at 1.1·lr, `epoch <= warmup_epochs`; ltbench's warm-up ends at lr.)
RECIPES.register(
    "paco-cifar",
    RECIPES.get("cifar-lt").override(
        epochs=400, lr=0.05, weight_decay=5e-4, warmup_epochs=10, milestones=(321, 361), step_gamma=0.1
    ),
)
# RIDE (frank-xwang/RIDE-LongTailRecognition @ ab8be5c, configs/config_imbalance_cifar100_ride.json, train.py's
# CustomLR stepped once per epoch): 200 epochs, batch 128, SGD lr 0.1 with Nesterov momentum 0.9, wd 5e-4,
# lr·(e+1)/5 for the first five epochs, x0.01 from epoch 160 and x0.0001 from 180.
RECIPES.register("ride-cifar", RECIPES.get("cifar-lt").override(weight_decay=5e-4, nesterov=True))
# SADE (Vanint/SADE-AgnosticLT @ cba11b8, configs/config_cifar100_ir*_sade.json): RIDE's, with gamma 0.1
# (x0.1 from epoch 160, x0.01 from 180).
RECIPES.register("sade-cifar", RECIPES.get("ride-cifar").override(step_gamma=0.1))

# Fields that say how a trial executes rather than what it trains: a named stage-1 recipe takes them from the
# trial that names it, so `--set recipe.precision=fp32` or `recipe.eval_every` reach its backbone too.
EXECUTION_FIELDS = ("precision", "channels_last", "eval_every")


def named_stage1_recipe(name: str, trial_recipe: dict) -> dict:
    """The resolved recipe of a backbone trained with recipe `name` for a trial whose recipe is `trial_recipe`."""
    execution = {key: trial_recipe[key] for key in EXECUTION_FIELDS if key in trial_recipe}
    return RECIPES.get(name).override(**execution).as_dict()
