"""The command line as a user meets it: `--version`, help with defaults on every argument, a fast
`ltbench methods` that explains each hyperparameter, and `ltbench ui` opening the runs in model-training mode."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import __version__
from harness.cli import main
from harness.cli.parser import build_parser
from harness.plugins.catalogue import cache_path, method_catalogue
from harness.plugins.loading import load_methods
from harness.plugins.method import param_spec
from harness.reports.ui import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, runs_url


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"ltbench {__version__}"


def all_actions(parser: argparse.ArgumentParser, path: str = "ltbench"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_actions(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_argument_has_help_that_states_its_default() -> None:
    actions = list(all_actions(build_parser()))
    assert len(actions) > 30
    for path, action in actions:
        name = f"{path} {action.option_strings or action.dest}"
        assert action.help, f"{name} has no help text"
        optional = action.option_strings or action.nargs in ("?", "*")
        assert not optional or "default" in action.help, f"{name} does not state its default: {action.help!r}"


def test_every_built_in_hyperparameter_is_explained() -> None:
    for name in load_methods().names():
        for p in param_spec(load_methods().get(name)):
            assert p.help, f"{name}.{p.name} has no help (use harness.plugins.method.param(default, help))"


def ltbench_methods(code: str = "") -> subprocess.CompletedProcess:
    program = f"import sys; from harness.cli import main; main(['methods']); {code}"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)


def test_methods_explains_each_hyperparameter_and_skips_torch_once_cached(method_cache: Path) -> None:
    first = ltbench_methods()
    assert first.returncode == 0, first.stderr
    assert cache_path().is_file() and cache_path().parent == method_cache
    lort = first.stdout.split("\nlort ")[1].split("\nncm ")[0]
    assert "epsilon: float = 0.98" in lort and "ε of the targets (1-ε)·onehot + ε/K" in lort
    again = ltbench_methods("print('torch' in sys.modules, 'ray' in sys.modules, 'mlflow' in sys.modules)")
    assert again.stdout.splitlines()[-1] == "False False False"
    assert again.stdout.splitlines()[:-1] == first.stdout.splitlines()


def test_a_changed_source_file_rebuilds_the_method_listing() -> None:
    method_catalogue()
    data = json.loads(cache_path().read_text())
    lort = next(s for s in data["sources"] if s[0].endswith(os.path.join("methods", "lort.py")))
    lort[2] -= 1  # as if lort.py had been edited since the listing was cached
    data["methods"] = []
    cache_path().write_text(json.dumps(data))
    assert "lort" in [m.name for m in method_catalogue()]


def test_ui_url_opens_the_runs_in_model_training_mode() -> None:
    assert (
        runs_url("127.0.0.1", 5000, "3") == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )
    assert runs_url("0.0.0.0", 8080, "1").startswith("http://127.0.0.1:8080/#/experiments/1/runs?")
    assert runs_url("::1", 5000, "1").startswith("http://[::1]:5000/#/")
    assert runs_url("h", 1, "2", base="http://server:5000/").startswith("http://server:5000/#/experiments/2/runs")


def test_ui_takes_host_and_port_and_prints_the_suites_runs_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from harness.records.tracker import Tracker
    from harness.records.tracking_uri import default_tracking_uri

    tracker = Tracker(default_tracking_uri(tmp_path), "tiny", tmp_path)
    started: list[list[str]] = []

    class Exec(Exception):
        pass

    def fake_execv(path: str, argv: list[str]) -> None:
        started.append(argv)
        raise Exec

    monkeypatch.setattr(os, "execv", fake_execv)
    with pytest.raises(Exec):
        main(["ui", "--results-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "5123"])
    out = capsys.readouterr().out
    url = f"http://127.0.0.1:5123/#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning"
    assert f"tiny: {url}" in out
    assert started[0][-4:] == ["--host", "0.0.0.0", "--port", "5123"]
    assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert main(["ui", "nosuch", "--results-dir", str(tmp_path)]) == 2
    assert "no suite 'nosuch' in this store (suites: tiny)" in capsys.readouterr().err


def test_ui_without_results_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ui", "--results-dir", str(tmp_path / "none")]) == 2
    assert "run a suite first (ltbench run quick)" in capsys.readouterr().err
