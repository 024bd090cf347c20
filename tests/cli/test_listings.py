"""`ltbench suites` and `ltbench methods`: fast, in columns that hold whatever the names' lengths."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import main
from harness.core.text import plural, text_columns
from harness.experiment.suite import build_suite
from harness.experiment.suite_files import builtin_suites, grid_size, load_suite_file


def test_plural_and_columns() -> None:
    assert [plural(n, "trial") for n in (0, 1, 2)] == ["0 trials", "1 trial", "2 trials"]
    lines = text_columns([["a", "1", "x"], ["longer-name", "100", "y"]], "lrl")
    assert lines == ["a              1  x", "longer-name  100  y"]


@pytest.mark.parametrize("name", builtin_suites())
def test_the_suite_listing_counts_what_building_the_suite_makes(name: str) -> None:
    assert grid_size(load_suite_file(name)) == len(build_suite(name))


def test_suites_lists_in_columns_without_importing_torch() -> None:
    code = "import sys; from harness.cli import main; main(['suites']); assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(builtin_suites())
    counts = [ln.index(" trials") for ln in lines]  # the count column ends at one place, long names or not
    assert len(set(counts)) == 1 and any(ln.startswith("paper-alshammari2022 ") for ln in lines)


def test_methods_lists_in_columns_whatever_the_names_length(capsys: pytest.CaptureFixture) -> None:
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = {len(ln) - len(ln.lstrip()) for ln in lines if ln.startswith(" ")}
    assert len(starts) == 1  # kinds and hyperparameters all start under the descriptions
    (indent,) = starts
    heads = [ln for ln in lines if not ln.startswith(" ")]
    assert any(ln.startswith("balanced-softmax ") for ln in heads)
    assert all(ln[indent - 1] == " " and ln[indent] != " " for ln in heads)  # descriptions in one column


def test_a_run_ends_naming_the_report_and_ui_commands_with_its_own_options() -> None:
    from harness.cli.commands import next_commands
    from harness.cli.parser import build_parser

    args = build_parser().parse_args(
        ["run", "quick", "--set", "recipe.epochs=2", "--set", "methods=[ce,la]", "--results-dir", "/tmp/my res"]
    )
    line = next_commands(args, "quick")
    assert "ltbench report quick --set recipe.epochs=2 --set 'methods=[ce,la]' --results-dir '/tmp/my res'" in line
    assert "ltbench ui quick --results-dir '/tmp/my res'" in line
