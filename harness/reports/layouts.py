"""The tables `ltbench tables` writes: the seed papers' layouts and the grids of every method.

Each paper table reads the runs of the one suite that reproduces that paper (`suite`), so a table never
mixes in runs trained some other way. What the paper or its official code ran is stated as `protocols` (a few
configuration fields, each read from the source named); the notes compare the runs' configuration with them
(`harness.reports.departures`), so they follow the suite. `departures` holds only what no configuration field
shows (how a choice is made). The grids read every suite. The engine that fills and renders a layout is
`harness.reports.tables`; this module only says what goes where.
"""

from __future__ import annotations

import pandas as pd

from harness.core.trial import ratio_label
from harness.reports.layouts_modern import PACO, RIDE, SADE
from harness.reports.naming import method_sort_key, setting_label
from harness.reports.runs import finished, result_rows
from harness.reports.table_spec import (
    FP32,
    METRIC_NAMES,
    VALIDATION_ONLY,
    Column,
    Protocol,
    Row,
    TableSpec,
    column_label,
)


def menon_cifar_code(epochs: int, warmup: int, milestones: str, dataset: str) -> Protocol:
    """Menon et al.'s code's CIFAR-LT run (google-research logit_adjustment `main.py`, `utils.py`, `models.py`)."""
    settings = {
        "model": "resnet32-menon",
        "recipe.epochs": str(epochs),
        "recipe.batch_size": "128",
        "recipe.lr": "0.1",
        "recipe.nesterov": "True",
        "recipe.weight_decay": "0.0002",
        "recipe.weight_decay_on": "non-bn",
        "recipe.milestones": milestones,
        "recipe.step_gamma": "0.1",
        "recipe.warmup_epochs": str(warmup),
        "recipe.keep": "last",
    }
    return Protocol("Menon et al.'s code (google-research logit_adjustment)", {**settings, **FP32}, (dataset,))


# the classifier re-training methods on a joint (ce) backbone, as Kang et al. and LORT list them
RETRAINING_ROWS = (Row("NCM", "ncm"), Row("cRT", "crt"), Row("τ-norm", "tau-norm"), Row("LWS", "lws"))

KANG = TableSpec(
    name="kang2020_imagenet_lt",
    title="Kang et al. 2020, ImageNet-LT (ResNeXt-50), classifier learning",
    suite="paper-kang2020",
    rows=(
        Row("Joint", "ce"),
        *RETRAINING_ROWS,
        Row("Joint, class-balanced sampling", "ce", "sampler=class-aware"),  # Kang's CB row: class-aware sampler
        Row("Joint, square-root sampling", "ce", "sampler=square-root"),
        Row("Joint, progressively-balanced sampling", "ce", "sampler=progressive"),
    ),
    columns=tuple(
        Column(METRIC_NAMES[m], "imagenet-lt", None, m) for m in ("many_acc", "medium_acc", "few_acc", "top1")
    ),
    paper="kang2020",
    notes=(
        "The last three rows are the README's representation-learning table (joint training with other "
        "samplers); they map to method ce with a `sampler` hyperparameter.",
    ),
    departures=(
        VALIDATION_ONLY + " Kang et al.'s code also picks the joint model's, cRT's and LWS's epoch on "
        "ImageNet-LT's validation split, so this matches; τ-norm's τ is swept on a grid and chosen on validation.",
    ),
    protocols=(
        Protocol(
            "Kang et al.'s code (classifier-balancing run_networks.py, ImageNet-LT configs)",
            {
                "model": "resnext50-32x4d",
                "recipe.epochs": "90",
                "recipe.batch_size": "512",
                "recipe.lr": "0.2",
                "recipe.weight_decay": "0.0005",
                "recipe.schedule": "cosine",
                "recipe.lr_update": "per-epoch",
                "recipe.keep": "best-val",
                "data.augmentation": "standard",
                **FP32,
            },
        ),
    ),
)
MENON = TableSpec(
    name="menon2021_table3",
    title="Menon et al. 2021, Table 3: balanced error (%)",
    suite="paper-menon2021",
    rows=(
        Row("ERM", "ce"),
        Row("Weight normalisation (τ = 1)", "tau-norm", variant="tau1"),
        Row("Weight normalisation (τ = τ*)", "tau-norm"),
        Row("Logit adjustment post-hoc (τ = 1)", "la-posthoc", variant="tau1"),
        Row("Logit adjustment post-hoc (τ = τ*)", "la-posthoc"),
        Row("Logit adjustment loss", "la"),
    ),
    columns=(
        Column("CIFAR-10-LT", "cifar10-lt", 100.0, "balanced_error"),
        Column("CIFAR-100-LT", "cifar100-lt", 100.0, "balanced_error"),
        Column("ImageNet-LT", "imagenet-lt", None, "balanced_error"),
    ),
    paper="menon2021",
    unit="balanced error (%) = 100 − mean per-class accuracy, test set; CIFAR at r=100",
    notes=(
        "The CIFAR protocol compared is the authors' code's, whose README reports CIFAR-100-LT numbers close to "
        "the paper's; the paper's Appendix D states another (200 epochs, ×0.1 at 160 and 180, weight decay "
        "1e-4: recipe menon2021-cifar with model resnet32).",
    ),
    departures=(
        VALIDATION_ONLY + " τ* is chosen on ltbench's validation split (on CIFAR drawn from training images "
        "outside the LT subset); the paper's τ* is the best τ on the test set.",
    ),
    protocols=(
        menon_cifar_code(1241, 20, "[604, 926, 1128]", "cifar10-lt"),
        menon_cifar_code(1419, 22, "[691, 1059, 1290]", "cifar100-lt"),
        Protocol(
            "Menon et al. (Appendix D)",
            {
                "model": "resnet50",
                "recipe.epochs": "90",
                "recipe.lr": "0.4",
                "recipe.warmup_epochs": "5",
                "data.augmentation": "crop-flip",
                **FP32,
            },
            ("imagenet-lt",),
        ),
    ),
)
CAO = TableSpec(
    name="cao2019_table2",
    title="Cao et al. 2019 (LDAM-DRW), Table 2: top-1 error (%), ResNet-32, long-tailed profile",
    suite="paper-cao2019",
    rows=(Row("ERM", "ce"), Row("LDAM-DRW", "ldam-drw")),
    columns=(
        Column("CIFAR-10-LT r=100", "cifar10-lt", 100.0, "top1_error"),
        Column("CIFAR-10-LT r=10", "cifar10-lt", 10.0, "top1_error"),
        Column("CIFAR-100-LT r=100", "cifar100-lt", 100.0, "top1_error"),
        Column("CIFAR-100-LT r=10", "cifar100-lt", 10.0, "top1_error"),
    ),
    paper="cao2019",
    unit="top-1 error (%) on the balanced test set",
    departures=(
        VALIDATION_ONLY + " Cao et al.'s code has no validation split; its best test epoch favours the paper's "
        "numbers by the epoch-to-epoch noise, and ltbench compares its last epoch against them.",
    ),
    protocols=(
        Protocol(
            "Cao et al.'s code (LDAM-DRW cifar_train.py)",
            {
                "model": "resnet32",
                "recipe.epochs": "200",
                "recipe.batch_size": "128",
                "recipe.lr": "0.1",
                "recipe.weight_decay": "0.0002",
                "recipe.milestones": "[160, 180]",
                "recipe.step_gamma": "0.01",
                "recipe.warmup_epochs": "5",
                "recipe.lr_update": "per-epoch",
                "recipe.keep": "best test epoch",
                "data.selection": "random",
                **FP32,
            },
        ),
    ),
)
ALSHAMMARI = TableSpec(
    name="alshammari2022_cifar100",
    title="Alshammari et al. 2022 (Weight Balancing), CIFAR-100-LT top-1 accuracy (%)",
    suite="paper-alshammari2022",
    rows=(Row("CE", "ce"), Row("LogitAdjust", "la"), Row("τ-norm", "tau-norm"), Row("WB (WD & Max)", "wb")),
    columns=tuple(Column(ratio_label(r), "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
    paper="alshammari2022",
    departures=(VALIDATION_ONLY + " The Weight Balancing demos keep the stage-two epoch with the best test accuracy.",),
    protocols=(
        Protocol(
            "the Weight Balancing demos (ShadeAlsha/LTR-weight-balancing)",
            {
                "model": "CIFAR ResNet-34",
                "recipe.epochs": "320",
                "recipe.batch_size": "64",
                "recipe.lr": "0.01",
                "recipe.weight_decay": "0.005",
                "recipe.keep": "best test epoch",
                "data.selection": "first",
                **FP32,
            },
        ),
    ),
)
LORT = TableSpec(
    name="lort_cifar100",
    title="LORT (logits retargeting): classifier re-training on one stage-1 backbone, CIFAR-100-LT",
    suite="paper-lort",
    rows=(Row("Stage 1 (CE)", "ce"), *RETRAINING_ROWS, Row("LORT", "lort")),
    columns=tuple(Column(ratio_label(r), "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
    published="unavailable",
    notes=(
        "LORT's result tables could not be retrieved: this layout is ltbench's reconstruction (re-training "
        "methods compared on a shared stage-1 backbone, CIFAR-100-LT at r = 100/50/10), and the published "
        "column is marked unavailable.",
    ),
    departures=(
        VALIDATION_ONLY + " LORT's code picks the best stage-two epoch on the test set.",
        "LORT's ε is published for CIFAR-100-LT at r = 100 only (0.98); the other ratios use the same value.",
    ),
    protocols=(
        Protocol(
            "LORT's code (bilibili/LOS main_stage1.py)",
            {
                "model": "CIFAR ResNet-34",
                "recipe.epochs": "200",
                "recipe.batch_size": "64",
                "recipe.lr": "0.01",
                "recipe.weight_decay": "0.005",
                "recipe.keep": "best test epoch",
                "data.selection": "first",
                **FP32,
            },
        ),
    ),
)
ZHANG = TableSpec(
    name="zhang_channel_whitening",
    title="Zhang et al. (Channel Whitening + B3RS + BET): end-to-end vs decoupled, top-1 accuracy (%)",
    suite="paper-zhang",
    rows=(
        Row("CE", "ce"),
        Row("cRT", "crt"),
        Row("τ-norm", "tau-norm"),
        Row("LWS", "lws"),
        Row("CW (+LA loss)", "cw"),
        Row("CW + B3RS", "cw-b3rs"),
        Row("CW + B3RS + BET", "cw-b3rs-bet"),
    ),
    columns=(
        *(Column(column_label("cifar10-lt", r), "cifar10-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
        *(Column(column_label("cifar100-lt", r), "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
        Column("ImageNet-LT", "imagenet-lt", None, "top1"),
    ),
    published="unavailable",
    notes=(
        "The paper (arXiv 2112.05958) is withdrawn and its tables could not be retrieved: this layout is "
        "ltbench's reconstruction of its ablation (CW, CW+B3RS, CW+B3RS+BET against decoupled methods) and the "
        "published column is marked unavailable.",
    ),
    departures=(
        VALIDATION_ONLY,
        "B3RS's batch rule and BET's mechanism are not public: ltbench's versions are reconstructions with every "
        "choice a named hyperparameter (see `ltbench methods`).",
    ),
)
MISLAS_CIFAR10 = "lr_factor=0.5,shift_bn=False,smooth_head=0.3,smooth_tail=0.0"  # its official CIFAR-10 r=100 stage two
MISLAS = TableSpec(
    name="zhong2021_mislas",
    title="Zhong et al. 2021 (MiSLAS), official README: top-1 accuracy (%), ResNet-32, r = 100",
    suite="paper-mislas",
    rows=(
        Row("Stage-1 (mixup)", "mixup"),
        Row("MiSLAS (CIFAR-10-LT settings)", "mislas", MISLAS_CIFAR10),
        Row("MiSLAS (CIFAR-100-LT settings)", "mislas"),
    ),
    columns=(
        Column(column_label("cifar10-lt", 100.0), "cifar10-lt", 100.0, "top1"),
        Column(column_label("cifar100-lt", 100.0), "cifar100-lt", 100.0, "top1"),
    ),
    paper="zhong2021",
    notes=(
        "MiSLAS's stage two has official settings per dataset and ratio (label smoothing of the head and tail "
        "class, BatchNorm shift, the classifier's lr factor): each row is one setting, run on its own dataset.",
    ),
    departures=(
        VALIDATION_ONLY + " The official code reports the best test epoch of each stage.",
        "Stage one's 5-epoch warm-up rises per iteration (the official code: per epoch); a stage-two epoch is "
        "int(N / batch) class-aware batches (the official loop: ceil(N / batch) + 1).",
    ),
)
# GLMC's official settings per cell (README "Training"); '' is glmc's defaults, the CIFAR-100-LT r=100 command
GLMC_ROWS = (
    Row("GLMC (CIFAR-10-LT r=100 and r=50 settings)", "glmc", "contrast_weight=1.0"),
    Row("GLMC (CIFAR-10-LT r=10 settings)", "glmc", "contrast_weight=2.0,label_weighting=1.0,resample_weighting=0.2"),
    Row("GLMC (CIFAR-100-LT r=100 settings)", "glmc"),
    Row("GLMC (CIFAR-100-LT r=50 settings)", "glmc", "contrast_weight=6.0,resample_weighting=0.2"),
    Row("GLMC (CIFAR-100-LT r=10 settings)", "glmc", "resample_weighting=0.2"),
)
GLMC_COLUMNS = tuple(
    Column(column_label(d, r), d, r, "top1") for d in ("cifar10-lt", "cifar100-lt") for r in (100.0, 50.0, 10.0)
)
GLMC_NOTE = (
    "GLMC's settings (re-sampling power, label weighting, consistency weight) are official per dataset and "
    "ratio: each row is one setting, run on its own cells (`paper-glmc` and its extra runs)."
)
GLMC_DEPARTURES = (
    VALIDATION_ONLY + " The official code reports its best test epoch.",
    "The lr follows the cosine per step (the official CosineAnnealingLR steps once after each epoch); λ ~ Beta(1, "
    "1) is drawn once per step from the epoch's generator (the official loop also draws an unused λ ~ Beta(0.5, "
    "0.5)).",
)
GLMC_PROTOCOL = Protocol(
    "GLMC's code (ynu-yangpeng/GLMC Trainer.py and README commands)",
    {
        "model": "resnet32-x4",
        "recipe.epochs": "200",
        "recipe.batch_size": "64",
        "recipe.lr": "0.01",
        "recipe.weight_decay": "0.005",
        "recipe.schedule": "cosine",
        "recipe.keep": "best test epoch",
        "data.selection": "random",
        **FP32,
    },
)
GLMC = TableSpec(
    name="du2023_glmc",
    title="Du et al. 2023 (GLMC), official README: top-1 accuracy (%), ResNet-32 at 4x width",
    suite="paper-glmc",
    rows=GLMC_ROWS,
    columns=GLMC_COLUMNS,
    paper="du2023",
    notes=(
        GLMC_NOTE,
        "Published: the README's GLMC results (CIFAR-100-LT as the paper; CIFAR-10-LT as corrected on 2023/5/15), "
        "trained on LT subsets drawn with replacement (duplicate images); ltbench draws them without replacement, "
        "as the code does since 2023/5/23, whose numbers are table du2023_glmc_updated.",
    ),
    departures=GLMC_DEPARTURES,
    protocols=(GLMC_PROTOCOL,),
)
GLMC_UPDATED = TableSpec(
    name="du2023_glmc_updated",
    title="Du et al. 2023 (GLMC), README update of 2023/5/23 (LT images drawn without replacement): top-1 (%)",
    suite="paper-glmc",
    rows=GLMC_ROWS,
    columns=GLMC_COLUMNS,
    paper="du2023-update",
    notes=(
        GLMC_NOTE,
        "Published: the README's GLMC(Updated) column, from the current code, which draws each class's images "
        "without replacement (seed 3407): the images of ltbench's random selection with data_seed 3407.",
    ),
    departures=GLMC_DEPARTURES,
    protocols=(GLMC_PROTOCOL,),
)
PAPER_TABLES = (KANG, MENON, CAO, ALSHAMMARI, LORT, ZHANG, MISLAS, GLMC, GLMC_UPDATED, PACO, RIDE, SADE)


# -- grids of every method ----------------------------------------------------------------------------------
def method_rows(
    methods: list[str], runs: pd.DataFrame, published: pd.DataFrame | None, datasets: list[str]
) -> list[Row]:
    """Rows for a grid: every method (in the report order) with each of its hyperparameter settings and
    variants that has runs or a published number on `datasets`."""
    seen: dict[tuple[str, str, str], None] = {}
    for method in methods:
        seen[(method, "", "")] = None
    rows = result_rows(finished(runs[runs.dataset.isin(datasets)])) if len(runs) else None
    if rows is not None and len(rows):
        for (method, params, variant), _ in rows.groupby(["method", "method_params", "variant"]):
            seen[(method, "", "")] = None
            seen[(method, params, variant)] = None
    if published is not None:
        pub = published[published.dataset.isin(datasets)]
        for method, params, variant in zip(pub.method, pub.params, pub.variant, strict=True):
            seen[(method, "", "")] = None
            seen[(method, params, variant)] = None

    def order(key: tuple[str, str, str]) -> tuple[int, str, str, str]:
        return (*method_sort_key(key[0]), key[1], key[2])

    # A method run with one non-default setting only (the quick suite's cRT with augment=false) is shown in
    # its bare row, which `runs_of` fills with those runs: label that row with the setting, list it once.
    observed: dict[str, set[str]] = {}
    if rows is not None and len(rows):
        for method, params in zip(rows.method, rows.method_params, strict=True):
            observed.setdefault(method, set()).add(params)
    only = {m: next(iter(p)) for m, p in observed.items() if len(p) == 1 and "" not in p}
    out = []
    for method, params, variant in sorted(seen, key=order):
        if params and only.get(method) == params:
            continue
        shown = params if params else only.get(method, "")
        out.append(Row(setting_label(method, shown, variant), method, params, variant))
    return out


def cifar_grid(methods: list[str], runs: pd.DataFrame, published: pd.DataFrame) -> TableSpec:
    datasets = ["cifar10-lt", "cifar100-lt"]
    return TableSpec(
        name="cifar_lt_grid",
        title="CIFAR-LT grid: top-1 accuracy (%), every method x CIFAR-10/100-LT x r = 10/50/100/200",
        rows=tuple(method_rows(methods, runs, published, datasets)),
        columns=tuple(Column(column_label(d, r), d, r, "top1") for d in datasets for r in (10.0, 50.0, 100.0, 200.0)),
        published="any",
        notes=(
            "Runs of every suite are read. Published: any paper in results/published/ with a top-1 number for the "
            "cell (top-1 error converted as 100 − error); when several papers give one, the first file's is "
            "shown and all are in the CSV.",
        ),
    )


def fashion_grid(methods: list[str], runs: pd.DataFrame) -> TableSpec:
    dataset = "fashion-mnist-lt"
    mine = runs[runs.dataset == dataset] if len(runs) else runs
    ratios = sorted({float(r) for r in mine.imbalance_ratio.dropna()}, reverse=True) if len(mine) else []
    metrics = ("top1", "mean_class_acc", "many_acc", "medium_acc", "few_acc")
    return TableSpec(
        name="fashion_mnist_lt_grid",
        title="Fashion-MNIST-LT grid: test accuracy (%), every method x the ratios run",
        rows=tuple(method_rows(methods, runs, None, [dataset])),
        columns=tuple(Column(f"{ratio_label(r)} {METRIC_NAMES[m]}", dataset, r, m) for r in ratios for m in metrics),
        published="none",
        unit="test accuracy (%); MeanClass = mean per-class accuracy",
        notes=(
            "Runs of every suite are read. No paper reports Fashion-MNIST-LT: it is ltbench's small default, so "
            "there is no published column.",
        )
        + (() if ratios else ("No Fashion-MNIST-LT run was found.",)),
    )


def all_specs(runs: pd.DataFrame, published: pd.DataFrame, methods: list[str]) -> list[TableSpec]:
    """Every table `ltbench tables` writes: the paper layouts, then the grids."""
    return [*PAPER_TABLES, cifar_grid(methods, runs, published), fashion_grid(methods, runs)]
