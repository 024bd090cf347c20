"""How a table's runs were made, said beside the table, from the runs' own recorded configuration.

A 2-epoch leaderboard must never look like a 200-epoch one. Every leaderboard and paper table therefore
states, per dataset, the recipe (the registered recipe it is closest to, with the fields that differ), its
epochs, the model and the precision, then the `--set` assignments of the runs and the ltbench commit that
trained them. Nothing here is hand-written: each value is read from the runs' MLflow params and tags (the
runs frame's `recipe`, `epochs`, `model`, `precision`, `overrides` and `commit` columns).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from harness.records.tracker import param_value
from harness.training.recipes import RECIPES

RECIPE_PARAM = "recipe."
NOT_RECORDED = "not recorded"  # a run logged before ltbench recorded this field
COMMIT_CHARS = 12


def _same(logged: str, value: object) -> bool:
    """A logged param against a recipe field: numbers by value (1 == 1.0), everything else as MLflow spells it."""
    expected = param_value(value)
    try:
        return float(logged) == float(expected)
    except ValueError:
        return logged == expected


def recipe_description(params: Mapping[str, str]) -> str:
    """The run's recipe as 'quick' or 'quick with epochs=2': the registered recipe that differs from the logged
    one in the fewest fields (the first registered on a tie), and those fields; NOT_RECORDED without params."""
    logged = {k.removeprefix(RECIPE_PARAM): v for k, v in params.items() if k.startswith(RECIPE_PARAM)}
    if not logged:
        return NOT_RECORDED
    best: tuple[int, str, list[str]] | None = None
    for name in RECIPES.names():
        fields = RECIPES.get(name).as_dict()
        differ = [f"{k}={logged[k]}" for k in sorted(logged) if k not in fields or not _same(logged[k], fields[k])]
        if best is None or len(differ) < best[0]:
            best = (len(differ), name, differ)
    assert best is not None  # at least one recipe is registered
    _, name, differ = best
    return f"{name} with {', '.join(differ)}" if differ else name


def precision_description(params: Mapping[str, str]) -> str:
    """'fp32', or 'auto (ran bf16)' when the recipe left the choice to the device."""
    asked = params.get("recipe.precision", NOT_RECORDED)
    ran = params.get("ran.precision")
    return f"{asked} (ran {ran})" if ran and ran != asked else asked


def _order(value: str) -> tuple[float, str]:
    try:
        return float(value), value
    except ValueError:
        return float("inf"), value


def _values(column: pd.Series) -> str:
    values = sorted({str(v) for v in column.dropna()}, key=_order)
    return " / ".join(values) if values else NOT_RECORDED


def made_with_lines(runs: pd.DataFrame) -> list[str]:
    """One sentence per dataset (recipe, epochs, model, precision), then the overrides and the commit(s) of
    `runs` (the runs a table reports); several values of one field are all named, joined by ' / '."""
    if runs.empty:
        return []
    lines = []
    for dataset, rows in runs.groupby("dataset", sort=True):
        epochs = _values(rows.epochs.map(lambda e: f"{int(e)}" if pd.notna(e) and e >= 0 else None))
        lines.append(
            f"{dataset}: recipe {_values(rows.recipe)}, epochs {epochs}, model {_values(rows.model)}, "
            f"precision {_values(rows.precision)}."
        )
    commits = _values(runs.commit.map(lambda c: str(c)[:COMMIT_CHARS] + ("-dirty" if "dirty" in str(c) else "")))
    lines.append(f"Overrides: {_values(runs.overrides)}. ltbench commit {commits}.")
    return lines


def made_with_text(runs: pd.DataFrame) -> str:
    """The lines of `made_with_lines` as one paragraph headed 'Runs made with:'; '' for no runs."""
    lines = made_with_lines(runs)
    return "Runs made with: " + " ".join(lines) if lines else ""
