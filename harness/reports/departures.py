"""A paper table's departure notes, built from the configuration its runs actually had.

A note written by hand goes stale the day its suite changes (the Menon table once said its CIFAR runs used
LDAM-DRW's x0.01 steps long after its suite had moved to another recipe). So a `TableSpec` states only what
the paper or its official code ran (`Protocol`: a few configuration fields and their values, with the
source they were read from), and the notes compare it with the configuration of the runs that filled the
table's cells (the `config` column of the runs frame: what MLflow logged for each run), field by field.
Without finished runs, the suite's own trial configurations stand in for them, and the note says so.

Also said beside the table, from the same configuration: the precision a run trained in where it is not the
official codes' fp32 (bf16 autocast), the end-to-end epoch each `ce` run kept under `keep: best-val`, and a
transductive method's runs (`ran.transductive`: the split whose unlabeled images it learned from).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from typing import Any

from harness.core.trial import flatten
from harness.experiment.suite import build_suite
from harness.reports.formatting import TRANSDUCTIVE_MARK
from harness.reports.table_spec import DATASET_NAMES, FIELD_NAMES, Cell, Protocol

FP32 = "fp32"


def param_text(value: Any) -> str:
    """A configuration value as MLflow holds it (lists and dicts as JSON, everything else `str`)."""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def config_of_trial(trial: Any) -> dict[str, str]:
    """A `TrialConfig`'s configuration in the form of the runs frame's `config` column."""
    identity = trial.identity()
    fields = {"model": identity["model"], "recipe": identity["recipe"], "data": identity["data"]}
    return {k: param_text(v) for k, v in flatten(fields).items()}


def same_value(ours: str | None, theirs: str) -> bool:
    """Equal as numbers when both are numbers (a logged 0.0002 is the protocol's 2e-4), else as text."""
    if ours is None:
        return False
    try:
        return math.isclose(float(ours), float(theirs), rel_tol=1e-9)
    except ValueError:
        return ours.replace(" ", "") == theirs.replace(" ", "")


def shown(value: str | None) -> str:
    """A configuration value as a note says it."""
    if value is None:
        return "not recorded"
    return "auto = bf16 autocast on a bf16 GPU, fp32 elsewhere" if value == "auto" else value


def differences(config: dict[str, str], protocol: Protocol) -> list[str]:
    """'field ours (paper: theirs)' for each field of `protocol` that `config` does not match."""
    out = []
    for field, theirs in protocol.settings.items():
        ours = config.get(field)
        if field == "recipe.precision" and "ran.precision" in config:
            ours = config["ran.precision"]  # what `auto` resolved to where the run trained
        if not same_value(ours, theirs):
            out.append(f"{FIELD_NAMES[field]} {shown(ours)} (paper: {theirs})")
    return out


def _configs_by_dataset(cells: list[Cell]) -> dict[str, list[dict[str, str]]]:
    """The distinct configurations (method settings aside) of the runs that filled cells, per dataset."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for cell in cells:
        if cell.status != "ok" or not isinstance(cell.config, dict) or not cell.config:
            continue
        shared = {k: v for k, v in cell.config.items() if not k.startswith("method_params.")}
        found.setdefault(cell.column.dataset, {})[json.dumps(shared, sort_keys=True)] = shared
    return {dataset: list(configs.values()) for dataset, configs in found.items()}


@cache
def suite_configs(suite: str | None) -> list[tuple[str, dict[str, str]]]:
    """(dataset, configuration) of every trial the built-in or file suite `suite` plans ([] without one)."""
    if suite is None:
        return []
    return [(t.dataset, config_of_trial(t)) for t in build_suite(suite).trials]


def departure_notes(
    protocols: tuple[Protocol, ...], cells: list[Cell], planned: Callable[[], list[tuple[str, dict[str, str]]]]
) -> list[str]:
    """The notes: per dataset, where the runs' configuration departs from each protocol that covers it, the
    precision where it is not fp32, and the epochs kept by validation. `planned()` ((dataset, config) of the
    suite's trials, e.g. `suite_configs`) stands in for datasets without finished runs; it is called only then."""
    from_runs = _configs_by_dataset(cells)
    datasets = list(dict.fromkeys(c.column.dataset for c in cells))
    notes = []
    for dataset in datasets:
        configs, is_plan = from_runs.get(dataset), False
        if not configs:
            unique = {json.dumps(c, sort_keys=True): c for d, c in planned() if d == dataset}
            configs, is_plan = list(unique.values()), True
        name = DATASET_NAMES.get(dataset, dataset)
        whose = (
            "the suite as planned now (no run records its configuration) differs"
            if is_plan
            else "ltbench's runs differ"
        )
        for config in configs:
            for protocol in protocols:
                if protocol.covers(dataset):
                    diffs = differences(config, protocol)
                    if diffs:
                        notes.append(f"{name}: {whose} from {protocol.source} in {'; '.join(diffs)}.")
            precision = config.get("ran.precision", config.get("recipe.precision", FP32))
            if precision != FP32 and not any(p.covers(dataset) and "recipe.precision" in p.settings for p in protocols):
                notes.append(f"{name}: precision {shown(precision)}; the official codes train in fp32.")
    notes += kept_epoch_notes(cells)
    notes += transductive_notes(cells)
    return notes


def _adapted_on(cell: Cell) -> str | None:
    return cell.config.get("ran.transductive") if cell.status == "ok" and isinstance(cell.config, dict) else None


def transductive_mark(cells: list[Cell]) -> str:
    """' ‡' after a row's label when any of its cells' runs were transductive, else ''."""
    return f" {TRANSDUCTIVE_MARK}" if any(_adapted_on(c) for c in cells) else ""


def transductive_notes(cells: list[Cell]) -> list[str]:
    """'‡ Row / column: transductive, ...' for cells whose runs learned from a split's unlabeled images after
    training (`ran.transductive`, e.g. SADE's test-time aggregation on the test images)."""
    notes = []
    for cell in cells:
        split = _adapted_on(cell)
        if split:
            where = f"{cell.row.label} / {DATASET_NAMES.get(cell.column.dataset, cell.column.dataset)}"
            notes.append(
                f"{TRANSDUCTIVE_MARK} {where}: transductive: after training it learned from the unlabeled {split} "
                f"images (their labels unused) before it was evaluated."
            )
    return list(dict.fromkeys(notes))


def kept_epoch_notes(cells: list[Cell]) -> list[str]:
    """'Row / column: epoch kept on validation: 73, 81 (per seed)' for cells whose runs kept a best-val epoch."""
    notes = []
    for cell in cells:
        if cell.status == "ok" and cell.kept_epochs and cell.config.get("recipe.keep") == "best-val":
            where = f"{cell.row.label} / {DATASET_NAMES.get(cell.column.dataset, cell.column.dataset)}"
            epochs = ", ".join(str(e) for e in cell.kept_epochs)
            notes.append(f"{where}: the end-to-end epoch kept, best on validation (per seed): {epochs}.")
    return list(dict.fromkeys(notes))
