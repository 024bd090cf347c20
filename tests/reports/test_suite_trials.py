"""Which trials `ltbench report SUITE` covers: the recorded configurations, `--set` narrowing them, and a
second configuration of the same trials left out (never averaged in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import LtbenchError
from harness.experiment.suite import build_suite
from harness.records.suite_configurations import remember_configuration
from harness.reports.suite_trials import trials_to_report
from tests.conftest import write_tiny_suite


@pytest.fixture
def suite(tmp_path: Path, fake_fashion_root: Path) -> str:
    return str(write_tiny_suite(tmp_path / "tiny.yaml", fake_fashion_root, methods=["ce", "la"]))


def ran(results: Path, suite: str, overrides: list[str]) -> list[str]:
    """Record a run of `suite` with `overrides`, as `ltbench run` does; its trial keys."""
    made = build_suite(suite, overrides)
    remember_configuration(results, "tiny", overrides, made.trials)
    return [t.key for t in made.trials]


def test_without_a_record_the_suite_as_configured_now(suite: str, tmp_path: Path) -> None:
    chosen = trials_to_report(suite, "tiny", [], tmp_path)
    assert [t.key for t in chosen.trials] == [t.key for t in build_suite(suite).trials]
    assert chosen.reported[0].startswith("the suite as configured now (no record of its runs at ")


def test_the_runs_made_with_set_are_found_without_repeating_it(suite: str, tmp_path: Path) -> None:
    keys = ran(tmp_path, suite, ["recipe.epochs=1"])
    chosen = trials_to_report(suite, "tiny", [], tmp_path)
    assert [t.key for t in chosen.trials] == keys and not chosen.left_out
    assert chosen.reported[0].startswith("the run with --set recipe.epochs=1 (4 trials, last run ")


def test_set_narrows_what_was_run(suite: str, tmp_path: Path) -> None:
    keys = ran(tmp_path, suite, ["recipe.epochs=1"])
    chosen = trials_to_report(suite, "tiny", ["methods=[la]"], tmp_path)
    assert {t.method for t in chosen.trials} == {"la"} and {t.key for t in chosen.trials} <= set(keys)
    assert "narrowed by --set methods=[la] to 2" in chosen.reported[0]
    with pytest.raises(LtbenchError, match=r"no recorded run of suite 'tiny' matches --set recipe.epochs=3"):
        trials_to_report(suite, "tiny", ["recipe.epochs=3"], tmp_path)


def test_runs_of_other_methods_add_up_other_recipes_never_mix(suite: str, tmp_path: Path) -> None:
    ce = ran(tmp_path, suite, ["methods=[ce]"])
    la = ran(tmp_path, suite, ["methods=[la]"])
    both = trials_to_report(suite, "tiny", [], tmp_path)
    assert sorted(t.key for t in both.trials) == sorted(ce + la) and len(both.reported) == 2
    short = ran(tmp_path, suite, ["recipe.epochs=1", "methods=[ce]"])  # the same ce trials, trained shorter
    newest = trials_to_report(suite, "tiny", [], tmp_path)
    assert sorted(t.key for t in newest.trials) == sorted(short + la)  # the older 2-epoch ce is not averaged in
    (left,) = newest.left_out
    assert left.startswith("not reported: the run with --set methods=[ce] (2 trials")
    assert left.endswith(f"to report it: ltbench report {suite} --set methods=[ce]")
    assert [t.key for t in trials_to_report(suite, "tiny", ["methods=[ce]"], tmp_path).trials] == ce  # as it says
