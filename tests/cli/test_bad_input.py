"""Bad input, round two: every field is checked before anything is written, and a broken plugin breaks only
itself. Each case ends in one line and exit code 2, with nothing left in the results directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from tests.cli.test_commands import run_fails
from tests.conftest import write_tiny_suite
from tests.plugin_packages import install_plugin


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.max_per_class=abc", "data.max_per_class must be an integer or null, got 'abc'"),
        ("data.max_per_class=-5", "data.max_per_class must be an integer >= 1 (or null for no cap), got -5"),
        ("data.selection=bogus", "data.selection must be one of first, random, got 'bogus'"),
        (
            "data.data_seed=-1",
            "data.data_seed must be an integer in [0, 4294967295] or 'seed' (the trial's seed), got -1",
        ),
        ("device=cuda", "device 'cuda' needs a GPU per trial: add --set resources.gpu=1"),
        ("seeds=[99999999999999999999]", "seeds must be integers in [0, 4294967295], got 99999999999999999999"),
        ("recipe.epochs=2.5", "recipe.epochs must be an integer, got 2.5"),
        ("recipe.lr=fast", "recipe.lr must be a number, got 'fast'"),
        ("recipe.milestones=[a]", "recipe.milestones must be a list of integers, got ['a']"),
        ("recipe.channels_last=maybe", "recipe.channels_last must be true or false, got 'maybe'"),
        ("seeds=[0,1,0]", "seeds lists 0 more than once; list each once"),
        ("methods=[ce,la,ce]", "methods lists ce more than once; list each once"),
        ("imbalance_ratios=[10,10.0]", "imbalance_ratios lists 10 more than once"),
        ("data.val_per_class=0", "data.val_per_class must be an integer >= 1"),
        # the fake files hold 40 images a class and the profile keeps 30 of class 0: 10 spare, 29 to give
        ("data.val_per_class=40", "class 0 has 30 LT image(s) and 10 spare one(s): too few for 40 validation"),
    ],
)
def test_a_bad_field_is_one_line_and_writes_nothing(
    override: str, message: str, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert message in run_fails(["run", str(tiny_suite), "--set", override], tmp_path / "r", capsys)


@pytest.mark.parametrize("name", ["../../escaped", "12345", "a/b", "", ".hidden", "x" * 101])
def test_a_suite_name_must_be_a_plain_name(
    name: str, fake_fashion_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    value = 12345 if name == "12345" else name
    suite = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, name=value)
    line = run_fails(["run", str(suite)], tmp_path / "deep" / "r", capsys)
    assert f"suite name must be a plain name (letters, digits, '.', '_', '-'; no path), got {value!r}" in line
    assert not (tmp_path / "escaped").exists()


def test_an_unknown_data_key_in_a_suite_file(
    fake_fashion_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    suite = write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, data={"root": str(fake_fashion_root), "maxx": 3})
    assert "unknown data key 'maxx'; valid data keys: " in run_fails(["run", str(suite)], tmp_path / "r", capsys)


def test_results_dir_that_is_a_file_or_cannot_be_written(
    tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("keep me")
    assert main(["run", str(tiny_suite), "--results-dir", str(afile)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ltbench: error: --results-dir {afile} is a file, not a directory; pass a directory path"
    )
    assert afile.read_text() == "keep me"
    assert main(["run", str(tiny_suite), "--results-dir", str(afile / "sub")]) == 2
    assert f"{afile} is a file, not a directory" in capsys.readouterr().err
    # /proc refuses new files even to root, where a chmod'ed directory would not
    assert main(["run", str(tiny_suite), "--results-dir", "/proc/ltbench-results"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ltbench: error: --results-dir /proc/ltbench-results: /proc is not writable")


@pytest.mark.parametrize(
    "uri", ["htp://127.0.0.1:5000", "localhost:5000", "http://", "http://host:port", "sqlite:/x.db"]
)
def test_a_malformed_tracking_uri(uri: str, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = run_fails(["run", str(tiny_suite), "--tracking-uri", uri], tmp_path / "r", capsys)
    assert f"--tracking-uri {uri!r}" in line


def test_a_bad_ray_address_writes_nothing(tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = run_fails(["run", str(tiny_suite), "--address", "foo"], tmp_path / "r", capsys)
    assert "Ray address 'foo' is not host:port, 'auto' or a ray:// URI" in line


# -- broken plugins -------------------------------------------------------------------------------------

GOOD_PLUGIN = """
from harness.plugins.method import Method, register_method


@register_method
class Mine(Method):
    name = "mine"
    description = "a working third-party method (a test plugin)"
"""
SYNTAX_ERROR_PLUGIN = """
from harness.plugins.method import Method, register_method

@register_method
class Focal2(Method):
    name = "focal2"
    description = "never imports"
    def loss(self, logits, targets:
        return 0
"""
CLASHING_PLUGIN = """
from harness.plugins.method import Method, register_method


@register_method
class Early(Method):
    name = "early"
    description = "registered before the clash, then taken back"


@register_method
class MyCE(Method):
    name = "ce"
    description = "claims a built-in name"
"""


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    install_plugin(site, "good-methods", "good_methods", GOOD_PLUGIN)
    install_plugin(site, "broken-syntax", "broken_syntax", SYNTAX_ERROR_PLUGIN)
    install_plugin(site, "clashing-methods", "clashing_methods", CLASHING_PLUGIN)
    return {**os.environ, "PYTHONPATH": str(site)}


def ltbench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_a_broken_plugin_breaks_only_itself(plugin_env: dict[str, str], tmp_path: Path, tiny_suite: Path) -> None:
    listed = ltbench("methods", env=plugin_env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = [line.split()[0] for line in listed.stdout.splitlines() if line and not line.startswith(" ")]
    assert {"ce", "crt", "mine"} <= set(names) and "focal2" not in names and "early" not in names
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("ltbench: warning: ")]
    assert len(warnings) == 2 and "Traceback" not in listed.stderr
    assert (
        "plugin package 'broken-syntax' (entry point broken_syntax = broken_syntax) failed to load and is "
        "skipped: SyntaxError: " in warnings[0] + warnings[1]
    )
    assert (
        "plugin package 'clashing-methods' (entry point clashing_methods = clashing_methods) failed to load and "
        "is skipped: DuplicateName: method 'ce' is already registered" in warnings[0] + warnings[1]
    )

    works = ltbench("run", str(tiny_suite), "--set", "methods=[mine,la]", "--dry-run", "--verbose", env=plugin_env)
    assert works.returncode == 0 and "fashion-mnist-lt-r4-mine-s0" in works.stdout

    results = tmp_path / "r"
    for methods, message in (
        ("[focal2]", "unknown method 'focal2'; it may come from a broken plugin: plugin package 'broken-syntax'"),
        ("[ce]", "method 'ce' is ambiguous: plugin package 'clashing-methods' (entry point clashing_methods = "
         "clashing_methods) also defines method 'ce'; rename it there"),
    ):  # fmt: skip
        done = ltbench(
            "run", str(tiny_suite), "--set", f"methods={methods}", "--results-dir", str(results), env=plugin_env
        )
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1].startswith("ltbench: error: " + message)
        assert "Traceback" not in done.stderr and not results.exists()


def test_suite_names_shipped_are_plain(tmp_path: Path) -> None:
    from harness.experiment.suite import build_suite
    from harness.experiment.suite_files import SUITES_DIR

    for path in SUITES_DIR.glob("*.yaml"):
        assert build_suite(str(path)).name == yaml.safe_load(path.read_text()).get("name", path.stem)


def test_a_negative_retry_count_writes_nothing(tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = run_fails(["run", str(tiny_suite), "--max-retries", "-1"], tmp_path / "r", capsys)
    assert "--max-retries must be 0 or more, got -1" in line
