"""The results dir's record of each configuration a suite ran: kept per `--set` list, read back whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.experiment.suite import build_suite
from harness.records.suite_configurations import (
    configurations_path,
    overrides_text,
    recorded_configurations,
    remember_configuration,
)


def test_each_set_list_is_one_entry_newest_last(tiny_suite: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    assert recorded_configurations(results, "tiny") == []
    short = build_suite(str(tiny_suite), ["recipe.epochs=1"])
    plain = build_suite(str(tiny_suite))
    remember_configuration(results, "tiny", short.overrides, short.trials)
    remember_configuration(results, "tiny", plain.overrides, plain.trials)
    remember_configuration(results, "tiny", short.overrides, short.trials)  # run again: moves to the end
    recorded = recorded_configurations(results, "tiny")
    assert [c.overrides for c in recorded] == [[], ["recipe.epochs=1"]]
    assert [t.key for t in recorded[1].trials] == [t.key for t in short.trials]  # the trials round-trip whole
    assert recorded[1].describe().startswith("--set recipe.epochs=1 (2 trials, last run ")
    assert overrides_text([]) == "none"


def test_an_unreadable_record_is_a_one_line_error(tmp_path: Path) -> None:
    path = configurations_path(tmp_path, "tiny")
    path.parent.mkdir(parents=True)
    path.write_text("[{")
    with pytest.raises(LtbenchError, match="is not a record ltbench can read"):
        recorded_configurations(tmp_path, "tiny")
