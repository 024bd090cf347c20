"""Filling a table: each cell's published number, ltbench's mean ± std over seeds, their difference, and the
notes a table's numbers need (configurations set aside, failures, reconstructed layouts)."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from harness.reports.departures import departure_notes, suite_configs
from harness.reports.formatting import UNAVAILABLE, UNDEFINED
from harness.reports.published import METRICS, ON_TEST_MARK, UNVERIFIED, same_ratio
from harness.reports.runs import finished, pick_config, result_rows, runs_of
from harness.reports.table_spec import Cell, TableSpec, column_label


def published_cell(cell: Cell, spec: TableSpec, published: pd.DataFrame) -> None:
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
        shown = match.iloc[0]
        text, cell.published_value = values[0]
        cell.published_on_test = shown.selected_on == "test"
        cell.published_unverified = shown.status == UNVERIFIED
        mark = (ON_TEST_MARK if cell.published_on_test else "") + (
            f" ({UNVERIFIED})" if cell.published_unverified else ""
        )
        cell.published = text + mark
        cell.published_refs = "; ".join(
            f"{r.paper} {r.table}: {r.value} ({r.metric}, {r.status})" for r in match.itertuples()
        )
        cell.published_model = str(shown.model)


def ltbench_cell(cell: Cell, results: pd.DataFrame, all_runs: pd.DataFrame) -> None:
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
    config = chosen.config.iloc[0] if "config" in chosen else None
    cell.config = config if isinstance(config, dict) else {}
    if "kept_epoch" in chosen:
        kept = chosen.sort_values("seed").kept_epoch.dropna()
        cell.kept_epochs = [int(e) for e in kept]
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
            published_cell(cell, spec, published)
            ltbench_cell(cell, results, runs)
            cells.append(cell)
        grid.append(cells)
    return grid


# -- rendering -------------------------------------------------------------------------------------------
def table_notes(spec: TableSpec, grid: list[list[Cell]], known_methods: set[str]) -> list[str]:
    notes = []
    if spec.suite is not None:
        notes.append(
            f"ltbench's numbers are the runs of suite `{spec.suite}` only (`ltbench run {spec.suite}`); runs of "
            "other suites never fill this table."
        )
    notes += [f"Departs from the paper: {d}" for d in spec.departures]
    cells = [c for row in grid for c in row]
    notes += [
        f"Departs from the paper: {d}"
        for d in departure_notes(spec.protocols, cells, lambda: suite_configs(spec.suite))
    ]
    notes += published_marks(cells)
    notes += list(spec.notes)
    unknown = sorted({r.method for r in spec.rows} - known_methods)
    if unknown:
        notes.append(f"Not ltbench methods (their ltbench cells stay missing): {', '.join(unknown)}.")
    for cells in grid:
        for c in cells:
            # runs are chosen per row x dataset x ratio, so one note covers all metric columns of it
            where = f"{c.row.label} / {column_label(c.column.dataset, c.column.ratio)}"
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


def published_marks(cells: list[Cell]) -> list[str]:
    """What the marks on published numbers mean, for the marks this table shows."""
    notes = []
    on_test = sorted({c.row.label for c in cells if c.published_on_test})
    if on_test:
        notes.append(
            f"{ON_TEST_MARK} the paper chose this number on the test set (its best τ, or its best test epoch; "
            f"results/published/ `selected_on`): {', '.join(on_test)}. ltbench chooses on validation only."
        )
    if any(c.published_unverified for c in cells):
        notes.append(
            f"({UNVERIFIED}): not yet checked against the source its row names in results/published/ "
            "(`location`, `status`); treat the difference Δ with care."
        )
    return notes


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
