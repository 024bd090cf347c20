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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.reports.departures import transductive_mark
from harness.reports.formatting import (
    NO_VALUE,
    Best,
    latex_table,
    markdown_table,
    signed,
)
from harness.reports.leaderboard import write_csv
from harness.reports.made_with import made_with_text
from harness.reports.runs import finished
from harness.reports.table_fill import best_cells, fill, table_notes, table_seeds
from harness.reports.table_spec import Cell, TableSpec


def _header(spec: TableSpec) -> tuple[list[str], list[tuple[str, int]]]:
    if spec.published == "none":
        return ["Method", *(c.label for c in spec.columns)], []
    header = ["Method"]
    for _ in spec.columns:
        header += ["published", "ltbench", "Δ"]
    return header, [(c.label, 3) for c in spec.columns]


def _rows(spec: TableSpec, grid: list[list[Cell]]) -> list[list[str]]:
    n, best = table_seeds(grid), best_cells(grid)
    out = []
    for i, cells in enumerate(grid):
        row = [cells[0].row.label + transductive_mark(cells)] if cells else []
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


def render_markdown(spec: TableSpec, grid: list[list[Cell]], notes: list[str], made_with: str = "") -> str:
    header, groups = _header(spec)
    lines = [f"# {spec.title}", "", f"Unit: {spec.unit}. {_seeds_text(grid)}"]
    if made_with:
        lines.append(made_with)
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


def render_latex(spec: TableSpec, grid: list[list[Cell]], notes: list[str], made_with: str = "") -> str:
    header, groups = _header(spec)
    caption = f"{spec.title}. Unit: {spec.unit}. {_seeds_text(grid)}" + (f" {made_with}" if made_with else "")
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
    made_with: str  # how the runs behind its cells were made (`made_with_text`): the .csv's comment line
    cells: int
    cells_run: int
    cells_published: int


def cell_runs(cells: list[Cell], runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs behind the cells' numbers (each cell's chosen configuration)."""
    keys = {c.config_key for c in cells if c.status == "ok" and c.config_key}
    return finished(runs[runs.config_key.isin(keys)]) if len(runs) and keys else runs.iloc[0:0]


def render_tables(
    specs: list[TableSpec], runs: pd.DataFrame, published: pd.DataFrame, known: set[str]
) -> list[RenderedTable]:
    """Fill and render each table. `known` are the method names ltbench has (a row of another method is said
    to be missing for that reason)."""
    out = []
    for spec in specs:
        grid = fill(spec, runs, published)
        notes = table_notes(spec, grid, known)
        cells = [c for row in grid for c in row]
        made_with = made_with_text(cell_runs(cells, runs))
        out.append(
            RenderedTable(
                spec,
                render_markdown(spec, grid, notes, made_with),
                render_latex(spec, grid, notes, made_with),
                to_frame(spec, grid),
                made_with,
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
        write_csv(table.frame, out_dir / f"{spec.name}.csv", table.made_with)
        paths.append(out_dir / f"{spec.name}.csv")
        ok, pub, n = table.cells_run, table.cells_published, table.cells
        summary.append(f"{spec.name}: {ok} of {n} cells with ltbench runs, {pub} with a published number")
        source = f"suite `{spec.suite}`" if spec.suite else "every suite"
        index.append(f"- [{spec.title}]({spec.name}.md) ({source}): {ok}/{n} cells run, {pub} published")
    (out_dir / "index.md").write_text("\n".join(index) + "\n")
    paths.append(out_dir / "index.md")
    return TablesOutcome(paths, summary)
