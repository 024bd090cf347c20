"""`ltbench tables`: the seed papers' tables in their own layouts, published number beside ltbench's.

Each table is a `TableSpec`: rows (an ltbench method, its hyperparameters and variant) and columns (dataset,
ratio, metric). A cell holds three things side by side: the published number (from results/published/, with
its paper), ltbench's mean ± std over seeds with n, and the difference ltbench − published in the table's
own unit (for error tables a negative difference means ltbench errs less).

What a cell says when it has no number:
- published: "n/p" when the paper printed nothing there, "unavailable" when the paper's table itself could
  not be retrieved (LORT, Zhang et al.: their layouts are reconstructed, see `notes`);
- ltbench: "missing" when no run of it finished, "failed" when its runs failed (reasons in the notes),
  "n/a" when the metric is undefined for the runs (an empty few-shot bucket);
- difference: "—" when either side has no number.

Runs come from every suite (or the named ones). A cell counts the seeds of one configuration: the one on
the paper's backbone if there is one, else the one with most finished seeds, else the latest (see
`runs.pick_config`); other configurations set aside are counted in the notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.reports.formatting import (
    MISSING,
    NO_VALUE,
    NOT_PUBLISHED,
    UNAVAILABLE,
    UNDEFINED,
    latex_table,
    markdown_table,
    mean_std,
    signed,
)
from harness.reports.published import METRICS, load_published, same_ratio
from harness.reports.runs import finished, pick_config, result_rows, runs_of, setting_name

# SPEC section 3's methods in a reading order: joint training, logit adjustment, decoupled, whitening.
CANONICAL_METHODS = (
    "ce", "la", "la-posthoc", "ncm", "crt", "tau-norm", "lws", "lort", "cw", "cw-b3rs", "cw-b3rs-bet",
)  # fmt: skip
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


def _ratio_label(dataset: str, ratio: float | None) -> str:
    name = DATASET_NAMES.get(dataset, dataset)
    return name if ratio is None else f"{name} r={ratio:g}"


# -- the seed papers' layouts ----------------------------------------------------------------------------
KANG = TableSpec(
    name="kang2020_imagenet_lt",
    title="Kang et al. 2020, ImageNet-LT (ResNeXt-50), classifier learning",
    rows=(
        Row("Joint", "ce"),
        Row("NCM", "ncm"),
        Row("cRT", "crt"),
        Row("τ-norm", "tau-norm"),
        Row("LWS", "lws"),
        Row("Joint, class-balanced sampling", "ce", "sampler=class-balanced"),
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
)
MENON = TableSpec(
    name="menon2021_table3",
    title="Menon et al. 2021, Table 3: balanced error (%)",
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
    notes=("τ* is chosen on ltbench's validation split (carved from the training set), never on test.",),
)
CAO = TableSpec(
    name="cao2019_table2",
    title="Cao et al. 2019 (LDAM-DRW), Table 2: top-1 error (%), ResNet-32, long-tailed profile",
    rows=(Row("ERM", "ce"), Row("LDAM-DRW", "ldam-drw")),
    columns=(
        Column("CIFAR-10-LT r=100", "cifar10-lt", 100.0, "top1_error"),
        Column("CIFAR-10-LT r=10", "cifar10-lt", 10.0, "top1_error"),
        Column("CIFAR-100-LT r=100", "cifar100-lt", 100.0, "top1_error"),
        Column("CIFAR-100-LT r=10", "cifar100-lt", 10.0, "top1_error"),
    ),
    paper="cao2019",
    unit="top-1 error (%) on the balanced test set",
)
ALSHAMMARI = TableSpec(
    name="alshammari2022_cifar100",
    title="Alshammari et al. 2022 (Weight Balancing), CIFAR-100-LT top-1 accuracy (%)",
    rows=(Row("CE", "ce"), Row("LogitAdjust", "la"), Row("τ-norm", "tau-norm"), Row("WB (WD & Max)", "wb")),
    columns=tuple(Column(f"r={r:g}", "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
    paper="alshammari2022",
)
LORT = TableSpec(
    name="lort_cifar100",
    title="LORT (logits retargeting): classifier re-training on one stage-1 backbone, CIFAR-100-LT",
    rows=(
        Row("Stage 1 (CE)", "ce"),
        Row("NCM", "ncm"),
        Row("cRT", "crt"),
        Row("τ-norm", "tau-norm"),
        Row("LWS", "lws"),
        Row("LORT", "lort"),
    ),
    columns=tuple(Column(f"r={r:g}", "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
    published="unavailable",
    notes=(
        "LORT's result tables could not be retrieved: this layout is ltbench's reconstruction (re-training "
        "methods compared on a shared stage-1 backbone, CIFAR-100-LT at r = 100/50/10), and the published "
        "column is marked unavailable.",
    ),
)
ZHANG = TableSpec(
    name="zhang_channel_whitening",
    title="Zhang et al. (Channel Whitening + B3RS + BET): end-to-end vs decoupled, top-1 accuracy (%)",
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
        *(Column(f"CIFAR-10-LT r={r:g}", "cifar10-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
        *(Column(f"CIFAR-100-LT r={r:g}", "cifar100-lt", r, "top1") for r in (100.0, 50.0, 10.0)),
        Column("ImageNet-LT", "imagenet-lt", None, "top1"),
    ),
    published="unavailable",
    notes=(
        "The paper (arXiv 2112.05958) is withdrawn and its tables could not be retrieved: this layout is "
        "ltbench's reconstruction of its ablation (CW, CW+B3RS, CW+B3RS+BET against decoupled methods) and the "
        "published column is marked unavailable.",
    ),
)
PAPER_TABLES = (KANG, MENON, CAO, ALSHAMMARI, LORT, ZHANG)


def method_rows(
    methods: list[str], runs: pd.DataFrame, published: pd.DataFrame | None, datasets: list[str]
) -> list[Row]:
    """Rows for a grid: every method (SPEC order first, then the rest alphabetically) with each of its
    hyperparameter settings and variants that has runs or a published number on `datasets`."""
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
        method = key[0]
        rank = CANONICAL_METHODS.index(method) if method in CANONICAL_METHODS else len(CANONICAL_METHODS)
        return (rank, method, key[1], key[2])

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
        label = setting_name(method, shown) + (f" ({variant})" if variant else "")
        out.append(Row(label, method, params, variant))
    return out


def cifar_grid(methods: list[str], runs: pd.DataFrame, published: pd.DataFrame) -> TableSpec:
    datasets = ["cifar10-lt", "cifar100-lt"]
    return TableSpec(
        name="cifar_lt_grid",
        title="CIFAR-LT grid: top-1 accuracy (%), every method x CIFAR-10/100-LT x r = 10/50/100/200",
        rows=tuple(method_rows(methods, runs, published, datasets)),
        columns=tuple(Column(_ratio_label(d, r), d, r, "top1") for d in datasets for r in (10.0, 50.0, 100.0, 200.0)),
        published="any",
        notes=(
            "Published: any paper in results/published/ with a top-1 number for the cell (top-1 error converted "
            "as 100 − error); when several papers give one, the first file's is shown and all are in the CSV.",
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
        columns=tuple(Column(f"r={r:g} {METRIC_NAMES[m]}", dataset, r, m) for r in ratios for m in metrics),
        published="none",
        unit="test accuracy (%); MeanClass = mean per-class accuracy",
        notes=("No paper reports Fashion-MNIST-LT: it is ltbench's small default, so there is no published column.",)
        + (() if ratios else ("No Fashion-MNIST-LT run was found.",)),
    )


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

    @property
    def delta(self) -> float:
        if self.status != "ok" or math.isnan(self.published_value):
            return math.nan
        return self.mean - self.published_value

    def ours(self) -> str:
        if self.status != "ok":
            return self.status
        return f"{mean_std(self.mean, self.std)} (n={self.n})"


def _published_cell(cell: Cell, spec: TableSpec, published: pd.DataFrame) -> None:
    if spec.published == "unavailable":
        cell.published = UNAVAILABLE
        return
    if spec.published == "none":
        cell.published = ""
        return
    col, row = cell.column, cell.row
    match = published[
        (published.dataset == col.dataset)
        & published.ratio.map(lambda r: same_ratio(r, col.ratio))
        & (published.method == row.method)
        & (published.params == row.params)
        & (published.variant == row.variant)
    ]
    if spec.published == "paper":
        match = match[(match.paper == spec.paper) & (match.metric == col.metric)]
        if spec.paper_table:
            match = match[match.table == spec.paper_table]
        values = [(r.value, r.number) for r in match.itertuples()]
    else:  # 'any': the column's metric, or top-1 from top-1 error
        direct = match[match.metric == col.metric]
        converted = match[(col.metric == "top1") & (match.metric == "top1_error")]
        values = [(r.value, r.number) for r in direct.itertuples()]
        values += [(f"{100 - r.number:.2f}", 100 - r.number) for r in converted.itertuples()]
        match = pd.concat([direct, converted])
    if len(match):
        cell.published, cell.published_value = values[0]
        cell.published_refs = "; ".join(f"{r.paper} {r.table}: {r.value} ({r.metric})" for r in match.itertuples())
        cell.published_model = str(match.iloc[0].model)


def _ltbench_cell(cell: Cell, results: pd.DataFrame, all_runs: pd.DataFrame) -> None:
    col, row = cell.column, cell.row
    column, is_error = METRICS[col.metric]
    here = runs_of(
        results[
            (results.dataset == col.dataset)
            & results.imbalance_ratio.map(lambda r: same_ratio(r, col.ratio))
            & (results.variant == row.variant)
        ],
        row.setting,
    )
    chosen, cell.set_aside = pick_config(here, cell.published_model or None)
    if chosen.empty:
        failed = runs_of(
            all_runs[
                (all_runs.status == "FAILED")
                & (all_runs.dataset == col.dataset)
                & all_runs.imbalance_ratio.map(lambda r: same_ratio(r, col.ratio))
            ],
            row.setting,
        )
        if len(failed):
            cell.status = "failed"
            pairs = zip(failed.seed, failed.reason, strict=True)
            cell.reasons = sorted({f"seed {s}: {r or 'no reason logged'}" for s, r in pairs})
        return
    values = chosen[column].astype(float) * 100.0
    values = 100.0 - values if is_error else values
    cell.n = int(len(chosen))
    cell.config_key = str(chosen.config_key.iloc[0])
    cell.model = str(chosen.model.iloc[0])
    cell.suites = ",".join(sorted(set(chosen.suite)))
    if values.isna().all():
        cell.status = UNDEFINED
        return
    cell.status = "ok"
    cell.mean = float(values.mean())
    cell.std = float(values.std()) if values.notna().sum() > 1 else math.nan


def fill(spec: TableSpec, runs: pd.DataFrame, published: pd.DataFrame) -> list[list[Cell]]:
    """The spec's cells, row by row."""
    results = result_rows(finished(runs)) if len(runs) else runs.assign(variant=pd.Series(dtype=object))
    grid = []
    for row in spec.rows:
        cells = []
        for column in spec.columns:
            cell = Cell(row, column)
            _published_cell(cell, spec, published)
            _ltbench_cell(cell, results, runs)
            cells.append(cell)
        grid.append(cells)
    return grid


# -- rendering -------------------------------------------------------------------------------------------
def _notes(spec: TableSpec, grid: list[list[Cell]], known_methods: set[str]) -> list[str]:
    notes = list(spec.notes)
    unknown = sorted({r.method for r in spec.rows} - known_methods)
    if unknown:
        notes.append(f"Not ltbench methods (their ltbench cells stay missing): {', '.join(unknown)}.")
    for cells in grid:
        for c in cells:
            # runs are chosen per row x dataset x ratio, so one note covers all metric columns of it
            where = f"{c.row.label} / {_ratio_label(c.column.dataset, c.column.ratio)}"
            if c.set_aside:
                notes.append(
                    f"{where}: {c.set_aside} other configuration(s) with finished runs set aside "
                    f"(shown: {c.config_key}, {c.n} seeds)."
                )
            if c.status == "ok" and c.published_model and c.model != c.published_model:
                notes.append(f"{where}: ltbench ran {c.model}, the paper {c.published_model}.")
            if c.status == "failed":
                notes.append(f"{where}: failed runs: " + "; ".join(c.reasons))
    return list(dict.fromkeys(notes))


def _header(spec: TableSpec) -> tuple[list[str], list[tuple[str, int]]]:
    if spec.published == "none":
        return ["Method", *(c.label for c in spec.columns)], []
    header = ["Method"]
    for _ in spec.columns:
        header += ["published", "ltbench", "Δ"]
    return header, [(c.label, 3) for c in spec.columns]


def _row_cells(cells: list[Cell], spec: TableSpec) -> list[str]:
    out = [cells[0].row.label] if cells else []
    for c in cells:
        if spec.published == "none":
            out.append(c.ours())
        else:
            has_delta = c.status == "ok" and not math.isnan(c.published_value)
            out += [c.published, c.ours(), signed(c.delta) if has_delta else NO_VALUE]
    return out


def render_markdown(spec: TableSpec, grid: list[list[Cell]], notes: list[str]) -> str:
    header, groups = _header(spec)
    lines = [f"# {spec.title}", "", f"Unit: {spec.unit}."]
    if spec.published != "none":
        lines.append(
            "Each column shows the published number, ltbench's mean ± std over seeds (n seeds) and "
            "Δ = ltbench − published. n/p: not published; unavailable: the paper's table could not be "
            "retrieved; missing: no finished ltbench run; failed: its runs failed; n/a: metric undefined."
        )
    if spec.published == "paper" and spec.paper:
        lines.append(f"Published numbers: paper `{spec.paper}` in results/published/ (sources there).")
    lines.append("")
    if spec.columns:
        if groups:
            header = ["Method"] + [f"{g} {h}" for g, _ in groups for h in ("published", "ltbench", "Δ")]
        rows = [_row_cells(cells, spec) for cells in grid]
        lines.append(markdown_table(header, rows, "l" + "r" * (len(header) - 1)))
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def render_latex(spec: TableSpec, grid: list[list[Cell]], notes: list[str]) -> str:
    header, groups = _header(spec)
    rows = [_row_cells(cells, spec) for cells in grid]  # latex_table escapes ± itself
    caption = f"{spec.title}. Unit: {spec.unit}."
    label = "tab:" + spec.name.replace("_", "-")
    return latex_table(header, rows, caption, label, "l" + "r" * (len(header) - 1), groups or None, notes, 1)


def to_frame(spec: TableSpec, grid: list[list[Cell]]) -> pd.DataFrame:
    """The table in long form: one row per cell with every number behind it."""
    records = []
    for cells in grid:
        for c in cells:
            records.append(
                {
                    "table": spec.name,
                    "row": c.row.label,
                    "method": c.row.method,
                    "params": c.row.params,
                    "variant": c.row.variant,
                    "column": c.column.label,
                    "dataset": c.column.dataset,
                    "imbalance_ratio": np.nan if c.column.ratio is None else c.column.ratio,
                    "metric": c.column.metric,
                    "published": c.published,
                    "published_value": c.published_value,
                    "published_refs": c.published_refs,
                    "ltbench_mean": c.mean,
                    "ltbench_std": c.std,
                    "n": c.n,
                    "delta": c.delta,
                    "status": c.status,
                    "config_key": c.config_key,
                    "model": c.model,
                    "suites": c.suites,
                }
            )
    return pd.DataFrame(records)


@dataclass
class TablesOutcome:
    paths: list[Path]
    summary: list[str]


def all_specs(runs: pd.DataFrame, published: pd.DataFrame, methods: list[str]) -> list[TableSpec]:
    return [*PAPER_TABLES, cifar_grid(methods, runs, published), fashion_grid(methods, runs)]


def write_tables(
    runs: pd.DataFrame, out_dir: Path, published: pd.DataFrame | None = None, methods: list[str] | None = None
) -> TablesOutcome:
    """Write every table as <name>.md, .csv and .tex into `out_dir`, plus an index.md linking them.

    `methods` are the rows every grid lists (default: SPEC's methods plus the registered ones).
    """
    published = load_published() if published is None else published
    if methods is None:
        from harness.plugin import load_methods

        methods = list(dict.fromkeys([*CANONICAL_METHODS, *load_methods().names()]))
    known = set(methods) | set(runs.method.dropna()) if len(runs) else set(methods)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, summary, index = [], [], ["# ltbench tables", ""]
    for spec in all_specs(runs, published, methods):
        grid = fill(spec, runs, published)
        notes = _notes(spec, grid, known)
        for suffix, text in (
            (".md", render_markdown(spec, grid, notes)),
            (".tex", render_latex(spec, grid, notes)),
        ):
            (out_dir / f"{spec.name}{suffix}").write_text(text)
            paths.append(out_dir / f"{spec.name}{suffix}")
        to_frame(spec, grid).to_csv(out_dir / f"{spec.name}.csv", index=False, float_format="%.4f")
        paths.append(out_dir / f"{spec.name}.csv")
        cells = [c for cells in grid for c in cells]
        ok = sum(c.status == "ok" for c in cells)
        pub = sum(not math.isnan(c.published_value) for c in cells)
        line = f"{spec.name}: {ok} of {len(cells)} cells with ltbench runs, {pub} with a published number"
        summary.append(line)
        index.append(f"- [{spec.title}]({spec.name}.md): {ok}/{len(cells)} cells run, {pub} published")
    (out_dir / "index.md").write_text("\n".join(index) + "\n")
    paths.append(out_dir / "index.md")
    return TablesOutcome(paths, summary)
