"""The README's plugin example, taken from the README itself, installed as a package outside the repo and
run end to end through `ltbench run` (Ray Tune, MLflow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

from tests.conftest import write_tiny_suite

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(language: str, first_line: str) -> str:
    """The README code block in `language` whose first line is `first_line` (without that line)."""
    for block in re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S):
        head, _, body = block.partition("\n")
        if head.strip() == first_line:
            return body
    raise AssertionError(f"README has no {language} block starting {first_line!r}")


def install_example(site: Path) -> str:
    """Install the example the way pip would lay it out: the module plus a dist-info with its entry points."""
    pyproject = tomllib.loads(readme_block("toml", "# deferred-ce/pyproject.toml"))
    project = pyproject["project"]
    (module,) = pyproject["tool"]["setuptools"]["py-modules"]
    site.mkdir(parents=True)
    (site / f"{module}.py").write_text(readme_block("python", "# deferred-ce/deferred_ce.py"))
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]["ltbench.methods"]
    (dist / "entry_points.txt").write_text(
        "[ltbench.methods]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
    )
    (name,) = points
    return name


def test_the_readme_plugin_example_runs_end_to_end(tmp_path: Path, fake_fashion_root: Path) -> None:
    name = install_example(tmp_path / "site")
    assert name == "deferred-ce"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    listed = subprocess.run([sys.executable, "-m", "harness.cli", "methods"], env=env, capture_output=True, text=True)
    assert name in listed.stdout and "start: float = 0.8" in listed.stdout
    suite = write_tiny_suite(
        tmp_path / "s.yaml", fake_fashion_root, methods=["ce", name], seeds=[0], method_params={name: {"start": 0.5}}
    )
    results = tmp_path / "r"
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--results-dir", str(results), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"| {name} |" in done.stdout and name in (results / "tiny" / "leaderboard.csv").read_text()
    histories = [json.loads(p.read_text())["history"] for p in (results / "trials").glob("*/result.json")]
    assert len(histories) == 2
    # ce and deferred-ce share seed and initialisation: epoch 1 (before the hook switches the weights on)
    # trains identically, epoch 2 (weighted) does not
    first, second = histories
    assert first[0]["train_loss"] == pytest.approx(second[0]["train_loss"], rel=1e-6)
    assert first[1]["train_loss"] != pytest.approx(second[1]["train_loss"], rel=1e-4)
    # the plugin's run names the package it came from, for whoever reads it in MLflow's UI
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    tags = {r.data.tags["ltbench.method"]: r.data.tags for r in client.search_runs([experiment.experiment_id])}
    assert tags[name]["ltbench.plugin.distribution"] == "deferred-ce"
    assert tags[name]["ltbench.plugin.version"] == "0.1.0" and "ltbench.plugin.distribution" not in tags["ce"]
