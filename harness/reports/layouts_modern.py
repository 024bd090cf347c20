"""Paper layouts of issue 20's methods for `ltbench tables`, beside `layouts.py`'s: PaCo's, RIDE's and SADE's.

RIDE's reads the model zoo's CIFAR-100-LT row (3 experts, with the expert-assignment router: `ride-ea`) and
shows the row without the router (`ride`) beside it; SADE's reads the README's CIFAR-100-LT r=100 number (with
its transductive test-time aggregation, which the table's ‡ and notes say from the runs' configuration).
"""

from __future__ import annotations

from harness.reports.table_spec import FP32, VALIDATION_ONLY, Column, Protocol, Row, TableSpec, column_label

PACO_CODE = {"model": "resnet32", "recipe.epochs": "400", "recipe.batch_size": "128", "recipe.lr": "0.05"}
PACO = TableSpec(
    name="cui2021_paco",
    title="Cui et al. 2021 (PaCo): top-1 accuracy (%), ResNet-32, CIFAR-100-LT",
    suite="paper-paco",
    rows=(Row("PaCo", "paco"),),
    columns=tuple(Column(column_label("cifar100-lt", r), "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
    published="unavailable",
    notes=("The official README lists no CIFAR-LT numbers and the paper's table could not be read as text.",),
    departures=(
        VALIDATION_ONLY + " The official code logs the best test epoch.",
        "The views are made on the device by ltbench's ops (the official code: PIL transforms); the warm-up's last "
        "epoch runs at lr (the official epoch 10 at 1.1·lr); the log-prior is of ltbench's training counts.",
    ),
    protocols=(
        Protocol(
            "PaCo's code (dvlab-research/Parametric-Contrastive-Learning PaCo/LT/paco_cifar.py, sh/CIFAR100_*)",
            {**PACO_CODE, "recipe.weight_decay": "0.0005", "recipe.milestones": "[321, 361]", **FP32}
            | {"recipe.warmup_epochs": "10", "recipe.keep": "best test epoch", "data.selection": "random"},
        ),
    ),
)

RIDE = TableSpec(
    name="wang2021_ride",
    title="Wang et al. 2021 (RIDE), official model zoo: accuracy (%), ResNet-32, 3 experts, CIFAR-100-LT r = 100",
    suite="paper-ride",
    rows=(Row("RIDE (3 experts, without EA)", "ride"), Row("RIDE (3 experts)", "ride-ea")),
    columns=tuple(
        Column(f"{column_label('cifar100-lt', 100.0)} {name}", "cifar100-lt", 100.0, metric)
        for name, metric in (("All", "top1"), ("Many", "many_acc"), ("Medium", "medium_acc"), ("Few", "few_acc"))
    ),
    paper="wang2021",
    notes=(
        "RIDE (3 experts) is the `ride-ea` stage two: the expert-assignment router trained on the frozen `ride` "
        "experts, which the model zoo's row uses; the row without EA (every expert on every image) has no "
        "published number. ltbench computes every expert and combines those the router picks: the same "
        "predictions, without the saving in computation.",
    ),
    departures=(
        VALIDATION_ONLY + " The official code reports its best test epoch.",
        "Training images (crop, flip, rotation up to 15 degrees, as the official loader) are made on the device by "
        "ltbench's ops, with draws from the epoch's generator. The router trains with plain SGD momentum (the "
        "official: Nesterov).",
    ),
)
SADE = TableSpec(
    name="zhang2022_sade",
    title="Zhang et al. 2022 (SADE), official README: top-1 accuracy (%), ResNet-32, uniform test set",
    suite="paper-sade",
    rows=(Row("SADE", "sade"),),
    columns=tuple(Column(column_label("cifar100-lt", r), "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
    paper="zhang2022",
    notes=(
        "SADE is transductive: after training it learns its experts' aggregation weights on a split's unlabeled "
        "images (5 epochs of prediction-stability maximisation); the paper uses the test images, and each cell's "
        "‡ note says which split its runs used (`aggregate_on`).",
    ),
    departures=(
        VALIDATION_ONLY + " The official code reports its best test epoch.",
        "Training images (crop, flip, rotation up to 15 degrees) and the two test-time views of each unlabeled "
        "image (crop, colour jitter, grayscale, blur, flip) are the official transforms made on the device by "
        "ltbench's ops, with draws from generators seeded by the trial (the official code: PIL transforms with "
        "Python's and torch's global generators).",
    ),
)
