"""`ltbench tables`' engine: fill a table layout with published and ltbench numbers, and render it.

The layouts themselves (the seed papers' tables and the grids) are in `harness.reports.layouts`. A layout is
a `TableSpec`: rows (an ltbench method, its hyperparameters and variant) and columns (dataset, ratio,
metric). A cell holds three things side by side: the published number (from results/published/, with its
paper), ltbench's mean ± std over seeds, and the difference ltbench − published in the table's own unit (for
error tables a negative difference means ltbench errs less). The number of seeds is said once per table;
a cell with another number of seeds says its own. The best ltbench value of each column is marked (bold).

What a cell says when it has no number:
- published: "n/p" when the paper printed nothing there, "unavailable" when the paper's table itself could
  not be retrieved (LORT, Zhang et al.: their layouts are reconstructed, see `notes`);
- ltbench: "missing" when no run of it finished, "failed" when its runs failed (reasons in the notes),
  "n/a" when the metric is undefined for the runs (an empty few-shot bucket);
- difference: "—" when either side has no number.

A table with a `suite` reads only that suite's runs (the paper's reproduction); one without reads every
suite given. A cell counts the seeds of one configuration: the one on the paper's backbone if there is one,
else the one with most finished seeds, else the latest (see `runs.pick_config`); other configurations set
aside are counted in the notes.
"""

from __future__ import annotations

import math
from collections import Counter
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
    Best,
    latex_table,
    markdown_table,
    mean_std,
    signed,
)
from harness.reports.published import METRICS, same_ratio
from harness.reports.runs import finished, pick_config, result_rows, runs_of, setting_name

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
    suite: str | None = None  # the suite whose runs fill the table; None: every suite read
    departures: tuple[str, ...] = ()  # where `suite` still departs from the paper's protocol


def ratio_label(dataset: str, ratio: float | None) -> str:
    name = DATASET_NAMES.get(dataset, dataset)
    return name if ratio is None else f"{name} r={ratio:g}"


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

    def ours(self, table_n: int | None = None) -> str:
        """ltbench's number; its seed count only when it differs from the table's `table_n`."""
        if self.status != "ok":
            return self.status
        text = mean_std(self.mean, self.std)
        return text if self.n == table_n else f"{text} (n={self.n})"


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
    """The spec's cells, row by row, from the runs of the spec's suite (of every suite when it names none)."""
    if spec.suite is not None and len(runs):
        runs = runs[runs.suite == spec.suite]
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
    notes = []
    if spec.suite is not None:
        notes.append(
            f"ltbench's numbers are the runs of suite `{spec.suite}` only (`ltbench run {spec.suite}`); runs of "
            "other suites never fill this table."
        )
    notes += [f"Departs from the paper: {d}" for d in spec.departures]
    notes += list(spec.notes)
    unknown = sorted({r.method for r in spec.rows} - known_methods)
    if unknown:
        notes.append(f"Not ltbench methods (their ltbench cells stay missing): {', '.join(unknown)}.")
    for cells in grid:
        for c in cells:
            # runs are chosen per row x dataset x ratio, so one note covers all metric columns of it
            where = f"{c.row.label} / {ratio_label(c.column.dataset, c.column.ratio)}"
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


def table_seeds(grid: list[list[Cell]]) -> int | None:
    """The number of seeds most filled cells have (said once for the table), None when no cell is filled."""
    counts = Counter(c.n for cells in grid for c in cells if c.status == "ok")
    return max(counts, key=lambda n: (counts[n], n)) if counts else None


def best_cells(grid: list[list[Cell]]) -> set[tuple[int, int]]:
    """(row, column) of the best ltbench mean in each column: the highest accuracy or the lowest error (ties
    all marked); a column with fewer than two filled cells has no best."""
    best = set()
    for j in range(len(grid[0]) if grid else 0):
        filled = [(i, cells[j].mean) for i, cells in enumerate(grid) if cells[j].status == "ok"]
        if len(filled) < 2:
            continue
        lower_is_better = METRICS[grid[0][j].column.metric][1]
        target = min(v for _, v in filled) if lower_is_better else max(v for _, v in filled)
        best |= {(i, j) for i, v in filled if math.isclose(v, target, rel_tol=0, abs_tol=1e-9)}
    return best


def _rows(spec: TableSpec, grid: list[list[Cell]]) -> list[list[str]]:
    n, best = table_seeds(grid), best_cells(grid)
    out = []
    for i, cells in enumerate(grid):
        row = [cells[0].row.label] if cells else []
        for j, c in enumerate(cells):
            ours = Best(c.ours(n)) if (i, j) in best else c.ours(n)
            if spec.published == "none":
                row.append(ours)
            else:
                has_delta = c.status == "ok" and not math.isnan(c.published_value)
                row += [c.published, ours, signed(c.delta) if has_delta else NO_VALUE]
        out.append(row)
    return out


def _seeds_text(grid: list[list[Cell]]) -> str:
    n = table_seeds(grid)
    if n is None:
        return "No cell has a finished ltbench run yet."
    return (
        f"ltbench: mean ± std over {n} seed{'s' if n != 1 else ''} (a cell with another number of seeds says so); "
        "bold: the best ltbench value of its column."
    )


def render_markdown(spec: TableSpec, grid: list[list[Cell]], notes: list[str]) -> str:
    header, groups = _header(spec)
    lines = [f"# {spec.title}", "", f"Unit: {spec.unit}. {_seeds_text(grid)}"]
    if spec.published != "none":
        lines.append(
            "Each column shows the published number, ltbench's number and Δ = ltbench − published. n/p: not "
            "published; unavailable: the paper's table could not be retrieved; missing: no finished ltbench run; "
            "failed: its runs failed; n/a: metric undefined."
        )
    if spec.published == "paper" and spec.paper:
        lines.append(f"Published numbers: paper `{spec.paper}` in results/published/ (sources there).")
    lines.append("")
    if spec.columns:
        if groups:
            header = ["Method"] + [f"{g} {h}" for g, _ in groups for h in ("published", "ltbench", "Δ")]
        lines.append(markdown_table(header, _rows(spec, grid), "l" + "r" * (len(header) - 1)))
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def render_latex(spec: TableSpec, grid: list[list[Cell]], notes: list[str]) -> str:
    header, groups = _header(spec)
    caption = f"{spec.title}. Unit: {spec.unit}. {_seeds_text(grid)}"
    label = "tab:" + spec.name.replace("_", "-")
    rows = _rows(spec, grid)  # latex_table escapes ± itself
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


@dataclass
class RenderedTable:
    """One table filled and rendered, in memory: what `write_tables` writes and the notebook shows."""

    spec: TableSpec
    markdown: str
    latex: str
    frame: pd.DataFrame  # long form, one row per cell (the .csv)
    cells: int
    cells_run: int
    cells_published: int


def render_tables(
    specs: list[TableSpec], runs: pd.DataFrame, published: pd.DataFrame, known: set[str]
) -> list[RenderedTable]:
    """Fill and render each table. `known` are the method names ltbench has (a row of another method is said
    to be missing for that reason)."""
    out = []
    for spec in specs:
        grid = fill(spec, runs, published)
        notes = _notes(spec, grid, known)
        cells = [c for row in grid for c in row]
        out.append(
            RenderedTable(
                spec,
                render_markdown(spec, grid, notes),
                render_latex(spec, grid, notes),
                to_frame(spec, grid),
                len(cells),
                sum(c.status == "ok" for c in cells),
                sum(not math.isnan(c.published_value) for c in cells),
            )
        )
    return out


def write_tables(tables: list[RenderedTable], out_dir: Path) -> TablesOutcome:
    """Write each table as <name>.md, .csv and .tex into `out_dir`, plus an index.md linking them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, summary, index = [], [], ["# ltbench tables", ""]
    for table in tables:
        spec = table.spec
        for suffix, text in ((".md", table.markdown), (".tex", table.latex)):
            (out_dir / f"{spec.name}{suffix}").write_text(text)
            paths.append(out_dir / f"{spec.name}{suffix}")
        table.frame.to_csv(out_dir / f"{spec.name}.csv", index=False, float_format="%.4f")
        paths.append(out_dir / f"{spec.name}.csv")
        ok, pub, n = table.cells_run, table.cells_published, table.cells
        summary.append(f"{spec.name}: {ok} of {n} cells with ltbench runs, {pub} with a published number")
        source = f"suite `{spec.suite}`" if spec.suite else "every suite"
        index.append(f"- [{spec.title}]({spec.name}.md) ({source}): {ok}/{n} cells run, {pub} published")
    (out_dir / "index.md").write_text("\n".join(index) + "\n")
    paths.append(out_dir / "index.md")
    return TablesOutcome(paths, summary)
