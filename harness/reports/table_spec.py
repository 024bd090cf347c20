"""What a paper table is made of: rows (a method, its hyperparameters and variant), columns (dataset, ratio,
metric), and the cells `harness.reports.table_fill` fills with published and ltbench numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.core.errors import LtbenchError
from harness.core.trial import ratio_label
from harness.reports.formatting import MISSING, NOT_PUBLISHED, mean_std
from harness.reports.runs import setting_name

DATASET_NAMES = {
    "cifar10-lt": "CIFAR-10-LT",
    "cifar100-lt": "CIFAR-100-LT",
    "imagenet-lt": "ImageNet-LT",
    "fashion-mnist-lt": "Fashion-MNIST-LT",
}

METRIC_NAMES = {
    "top1": "All",
    "mean_class_acc": "MeanClass",
    "many_acc": "Many",
    "medium_acc": "Medium",
    "few_acc": "Few",
    "top1_error": "Top-1 error",
    "balanced_error": "Balanced error",
}


# the configuration fields a protocol may name, as a note calls them
FIELD_NAMES = {
    "model": "model",
    "recipe.epochs": "epochs",
    "recipe.batch_size": "batch",
    "recipe.lr": "lr",
    "recipe.nesterov": "Nesterov momentum",
    "recipe.weight_decay": "weight decay",
    "recipe.weight_decay_on": "weight decay on",
    "recipe.schedule": "lr schedule",
    "recipe.milestones": "lr milestones",
    "recipe.step_gamma": "lr step factor",
    "recipe.warmup_epochs": "warm-up epochs",
    "recipe.lr_update": "lr set",
    "recipe.precision": "precision",
    "recipe.keep": "epoch kept",
    "data.selection": "images per class",
    "data.augmentation": "augmentation",
}


FP32 = {"recipe.precision": "fp32"}  # every official code trains in fp32 (a protocol's setting)
# the sentence every paper table says about choices (layouts' `departures`)
VALIDATION_ONLY = (
    "Every choice ltbench makes (a stage-two epoch, τ*, a post-hoc τ, the end-to-end epoch a `keep: best-val` "
    "recipe keeps) is made on its validation split and never on the test set."
)


@dataclass(frozen=True)
class Protocol:
    """What a paper (or its official code, `source`) ran on `datasets` (empty: every dataset of the table):
    configuration field -> value, in the text MLflow logs (`recipe.milestones`: "[160, 180]"); a value no
    ltbench setting has (e.g. "best test epoch", "CIFAR ResNet-34") is always reported as a departure."""

    source: str
    settings: dict[str, str]
    datasets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(FIELD_NAMES))
        if unknown:
            raise LtbenchError(f"protocol of {self.source}: unknown fields {unknown}; known: {sorted(FIELD_NAMES)}")

    def covers(self, dataset: str) -> bool:
        return not self.datasets or dataset in self.datasets


@dataclass(frozen=True)
class Row:
    label: str  # the paper's name for the row
    method: str
    params: str = ""  # 'k=v,k=v' hyperparameters, '' for the method's defaults
    variant: str = ""  # '' for the main result

    @property
    def setting(self) -> str:
        return setting_name(self.method, self.params)


@dataclass(frozen=True)
class Column:
    label: str
    dataset: str
    ratio: float | None  # None: the dataset's native split
    metric: str  # a key of published.METRICS


@dataclass(frozen=True)
class TableSpec:
    """A table layout. `published` says where its published column comes from:
    'paper' (rows of `paper`, optionally of `paper_table`), 'any' (any paper, top-1 converted from top-1
    error where needed), 'unavailable' (the paper's numbers are not retrievable), or 'none' (no column)."""

    name: str
    title: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    published: str = "paper"
    paper: str | None = None
    paper_table: str | None = None
    unit: str = "top-1 accuracy (%) on the test set"
    notes: tuple[str, ...] = ()
    suite: str | None = None  # the suite whose runs fill the table; None: every suite read
    departures: tuple[str, ...] = ()  # departures no configuration field shows (e.g. how a choice is made)
    # what the paper or its official code ran: the notes compare the runs' configuration with it
    protocols: tuple[Protocol, ...] = ()


def column_label(dataset: str, ratio: float | None) -> str:
    name = DATASET_NAMES.get(dataset, dataset)
    return name if ratio is None else f"{name} {ratio_label(ratio)}"


# -- filling cells ---------------------------------------------------------------------------------------
@dataclass
class Cell:
    row: Row
    column: Column
    published: str = NOT_PUBLISHED  # display text
    published_value: float = math.nan
    published_refs: str = ""  # 'paper: table' of every matching published number
    published_model: str = ""
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    status: str = MISSING  # ok | missing | failed | n/a
    config_key: str = ""
    suites: str = ""
    model: str = ""
    set_aside: int = 0
    reasons: list[str] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)  # the shown runs' configuration (runs frame `config`)
    kept_epochs: list[int] = field(default_factory=list)  # the end-to-end epoch each shown run kept, by seed
    published_unverified: bool = False  # the published number was not checked against its source
    published_on_test: bool = False  # the paper chose it on the test set (a τ*, a best test epoch)

    @property
    def delta(self) -> float:
        if self.status != "ok" or math.isnan(self.published_value):
            return math.nan
        return self.mean - self.published_value

    def ours(self, table_n: int | None = None) -> str:
        """ltbench's number; its seed count only when it differs from the table's `table_n`."""
        if self.status != "ok":
            return self.status
        text = mean_std(self.mean, self.std)
        return text if self.n == table_n else f"{text} (n={self.n})"
