"""Bad input, round three: one table of what a careful lab tried, each refused up front.

Every case must end with exit code 2, exactly one line on stderr that starts `ltbench: error:` and names the
problem, no traceback, and nothing written: the results directory is left as it was (absent, or holding only
what the case put there before), so no `mlflow.db`, lock file or `ray/` appears.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.execution import run_suite
from tests.conftest import write_tiny_suite
from tests.fakes import FASHION_FILES, write_fashion_mnist, write_idx


@dataclass
class Scene:
    """What a case may use: a valid tiny suite, its data root, a results dir (not yet made) and a scratch dir."""

    suite: Path
    root: Path
    results: Path
    tmp: Path

    def suite_text(self, text: str | bytes) -> Path:
        """A suite file with exactly this content (for YAML the writer could not produce)."""
        path = self.tmp / "raw.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    def suite_with(self, **changes: object) -> Path:
        return write_tiny_suite(self.tmp / "changed.yaml", self.root, **changes)

    def results_holding(self, name: str, make: Callable[[Path], None]) -> Path:
        self.results.mkdir(parents=True, exist_ok=True)
        make(self.results / name)
        return self.results

    def data_with_labels(self, labels: np.ndarray, dtype_code: int = 0x08) -> Path:
        """Fashion-MNIST files whose training labels are `labels` (IDX type `dtype_code`; 0x09 is int8)."""
        root = self.tmp / "odd-data"
        write_fashion_mnist(root, per_class=40, test_per_class=2)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        write_idx(root / FASHION_FILES["train_images"], images)
        raw = labels.astype(np.int8 if dtype_code == 0x09 else np.uint8).tobytes()
        header = struct.pack(">I", dtype_code << 8 | 1) + struct.pack(">I", len(labels))
        (root / FASHION_FILES["train_labels"]).write_bytes(header + raw)
        return root


Case = Callable[[Scene], list[str]]


def run_set(*assignments: str) -> Case:
    return lambda s: ["run", str(s.suite), *[a for x in assignments for a in ("--set", x)]]


def run_file(text: str | bytes) -> Case:
    return lambda s: ["run", str(s.suite_text(text))]


def run_changed(**changes: object) -> Case:
    return lambda s: ["run", str(s.suite_with(**changes))]


def describe(*args: str) -> Case:
    return lambda s: ["data", "describe", "fashion-mnist-lt", "--imbalance-ratio", "10", *args]


def describe_on(labels: np.ndarray, *args: str) -> Case:
    root = lambda s: str(s.data_with_labels(labels))  # noqa: E731
    return lambda s: ["data", "describe", "fashion-mnist-lt", "--imbalance-ratio", "10", "--root", root(s), *args]


def run_on(labels: np.ndarray, dtype_code: int = 0x08) -> Case:
    return lambda s: ["run", str(s.suite_with(data={"root": str(s.data_with_labels(labels, dtype_code))}))]


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)
)
ONE_CLASS = np.zeros(400, np.int64)
NONE_LEFT = np.zeros(0, np.int64)

CASES: dict[str, tuple[Case, str]] = {
    # a scalar or list where a mapping belongs
    "recipe=5": (run_set("recipe=5"), "recipe must be a recipe name or a mapping"),
    "data=5": (run_set("data=5"), "data must be a mapping"),
    "resources=5": (run_set("resources=5"), "resources must be a mapping"),
    "method_params=5": (run_set("method_params=5"), "method_params must be a mapping"),
    "method_params.ce=5": (run_set("method_params.ce=5"), "method_params.ce must be a mapping"),
    "per_dataset=5": (run_set("per_dataset=5"), "per_dataset must map dataset names"),
    "per_dataset.x=5": (run_set("per_dataset.fashion-mnist-lt=5"), "per_dataset.fashion-mnist-lt must be a mapping"),
    "yaml recipe list": (run_changed(recipe=["quick", 1]), "recipe must be a recipe name or a mapping"),
    "yaml method_params list": (run_changed(method_params=["ce"]), "method_params must be a mapping"),
    "yaml data list": (run_changed(data=["root"]), "data must be a mapping"),
    "yaml resources list": (run_changed(resources=[1]), "resources must be a mapping"),
    # grid values of the wrong kind
    "methods=[[ce]]": (run_set("methods=[[ce]]"), "methods must be names"),
    "datasets=[5]": (run_set("datasets=[5]"), "datasets must be names"),
    "datasets={a: 1}": (run_set("datasets={a: 1}"), "datasets must be names"),
    "methods=[]": (run_set("methods=[]"), "methods is empty"),
    "datasets=[]": (run_set("datasets=[]"), "datasets is empty"),
    "seeds=[-1]": (run_set("seeds=[-1]"), "seeds must be integers"),
    "seeds=abc": (run_set("seeds=abc"), "seeds must be integers"),
    "seeds=[true]": (run_set("seeds=[true]"), "seeds must be integers"),
    "ratio nan": (run_set("imbalance_ratios=[.nan]"), "imbalance ratios must be finite numbers >= 1"),
    "ratio inf": (run_set("imbalance_ratios=[.inf]"), "imbalance ratios must be finite numbers >= 1"),
    "ratio 1e400": (run_set("imbalance_ratios=[1e400]"), "imbalance ratios must be finite numbers >= 1"),
    "ratio true": (run_set("imbalance_ratios=[true]"), "imbalance ratios must be finite numbers >= 1"),
    "ratio 0": (run_set("imbalance_ratios=[0]"), "imbalance ratios must be finite numbers >= 1"),
    "yaml ratio nan": (run_changed(imbalance_ratios=[float("nan")]), "imbalance ratios must be finite numbers"),
    "device=tpu": (run_set("device=tpu"), "unknown device 'tpu'"),
    "model=nosuch": (run_set("model=nosuch"), "unknown model 'nosuch'"),
    "recipe=nosuch": (run_set("recipe=nosuch"), "unknown recipe 'nosuch'"),
    "description=[1]": (run_set("description=[1]"), "description must be a string"),
    # recipe values that would train nonsense
    "lr=.inf": (run_set("recipe.lr=.inf"), "recipe: lr must be a finite number > 0"),
    "lr=.nan": (run_set("recipe.lr=.nan"), "recipe: lr must be a finite number > 0"),
    "lr=-0.1": (run_set("recipe.lr=-0.1"), "recipe: lr must be a finite number > 0"),
    "momentum=-5": (run_set("recipe.momentum=-5"), "recipe: momentum must be a number in [0, 1)"),
    "momentum=1.5": (run_set("recipe.momentum=1.5"), "recipe: momentum must be a number in [0, 1)"),
    "weight_decay=-1": (run_set("recipe.weight_decay=-1"), "recipe: weight_decay must be a finite number >= 0"),
    "batch_size=1e9": (
        run_set("recipe.batch_size=1000000000"),
        "recipe: batch_size must be a positive integer up to 65536",
    ),
    "batch_size=0": (run_set("recipe.batch_size=0"), "batch_size must be a positive integer up to 65536"),
    "epochs=-1": (run_set("recipe.epochs=-1"), "epochs must be a positive integer"),
    "epochs=10**7": (run_set("recipe.epochs=10000000"), "recipe: epochs must be a positive integer up to 100000"),
    # resources
    "cpu=0.00001": (run_set("resources.cpu=0.00001"), "resources.cpu must be 0 or 0.0001 or more"),
    "gpu=0.00001": (run_set("resources.gpu=0.00001"), "resources.gpu must be 0 or 0.0001 or more"),
    "cpu=.inf": (run_set("resources.cpu=.inf"), "resources.cpu must be a finite number >= 0"),
    "gpu=-1": (run_set("resources.gpu=-1"), "resources.gpu must be a finite number >= 0"),
    "cpu=abc": (run_set("resources.cpu=abc"), "resources.cpu must be a finite number >= 0"),
    # methods' own parameters
    "method_params.ce.bogus": (run_set("method_params.ce.bogus=1"), "bogus"),
    "method_params.la.tau=abc": (run_set("methods=[la]", "method_params.la.tau=abc"), "tau"),
    # --set itself
    "--set no =": (run_set("recipe.lr"), "--set expects key=value"),
    "--set bad yaml": (run_set("recipe.lr=[unclosed"), "cannot parse value"),
    "--set name": (run_set("name=x"), "unknown suite key 'name'"),
    # suite files
    "not utf-8": (run_file(b"name: caf\xe9\ndatasets: [fashion-mnist-lt]\n"), "is not UTF-8 text"),
    "duplicated key": (run_file("name: a\nseeds: [0]\nseeds: [1]\n"), "holds the key 'seeds' twice"),
    "alias bomb": (run_file(ALIAS_BOMB + "name: *g\n"), "uses YAML aliases"),
    "empty file": (run_file(""), "must hold a mapping of suite keys"),
    "a list": (run_file("- a\n- b\n"), "must hold a mapping of suite keys"),
    "huge file": (run_file("# " + "x" * 2_000_000 + "\nname: a\n"), "is larger than"),
    "no such suite": (lambda s: ["run", "nosuchsuite"], "unknown suite 'nosuchsuite'"),
    # data files and `data describe`
    "describe ratio nan": (describe("--imbalance-ratio", "nan"), "--imbalance-ratio must be a finite number >= 1"),
    "describe ratio inf": (describe("--imbalance-ratio", "inf"), "--imbalance-ratio must be a finite number >= 1"),
    "describe ratio 0.5": (describe("--imbalance-ratio", "0.5"), "--imbalance-ratio must be a finite number >= 1"),
    "describe val -5": (describe("--val-per-class", "-5"), "--val-per-class must be an integer >= 1"),
    "describe val 0": (describe("--val-per-class", "0"), "--val-per-class must be an integer >= 1"),
    "describe max 0": (describe("--max-per-class", "0"), "--max-per-class must be an integer >= 1"),
    "describe no root": (describe("--root", "/nonexistent"), "dataset files not found"),
    "describe 0 images": (describe_on(NONE_LEFT), "the training files hold no training images"),
    "describe one class": (describe_on(ONE_CLASS, "--max-per-class", "30"), "class 1 has no training images"),
    "describe too few": (describe_on(ONE_CLASS), "class 0 has 400 image(s) in the dataset's files but the profile"),
    "labels 200": (run_on(np.full(400, 200)), "labels outside 0..9"),
    "labels -1": (run_on(np.full(400, -1), dtype_code=0x09), "labels outside 0..9"),
    "describe labels 200": (describe_on(np.full(400, 200)), "labels outside 0..9"),
    # results dir, tracking store, trial store
    "results 300 chars": (lambda s: ["run", str(s.suite), "--results-dir", str(s.tmp / ("r" * 300))], "too long"),
    "corrupt mlflow.db": (
        lambda s: ["run", str(s.suite), "--results-dir", str(s.results_holding("mlflow.db", _garbage))],
        "is not an SQLite database",
    ),
    "mlflow.db a dir": (
        lambda s: ["run", str(s.suite), "--results-dir", str(s.results_holding("mlflow.db", Path.mkdir))],
        "mlflow.db is a directory",
    ),
    "lock file a dir": (
        lambda s: ["run", str(s.suite), "--results-dir", str(s.results_holding(".ltbench-run.lock", Path.mkdir))],
        ".ltbench-run.lock is a directory",
    ),
    "tracking file://": (
        lambda s: ["run", str(s.suite), "--tracking-uri", f"file://{s.tmp}/mlruns"],
        "MLflow 3 cannot track to a file store",
    ),
    "tracking postgresql": (
        lambda s: ["run", str(s.suite), "--tracking-uri", "postgresql://u@127.0.0.1:5432/db"],
        "needs the Python package",
    ),
    "tracking mysql": (
        lambda s: ["run", str(s.suite), "--tracking-uri", "mysql://u@127.0.0.1:3306/db"],
        "needs the Python package",
    ),
    "storage ftp": (lambda s: ["run", str(s.suite), "--storage", "ftp://host/x"], "--storage"),
    "max-retries -1": (lambda s: ["run", str(s.suite), "--max-retries", "-1"], "--max-retries must be 0 or more"),
    # the UI
    "ui port 99999": (lambda s: ["ui", "--port", "99999"], "--port must be in 1..65535"),
    "ui port 0": (lambda s: ["ui", "--port", "0"], "--port must be in 1..65535"),
    "ui busy port": (lambda s: ["ui", "--port", str(s.busy_port)], "is in use"),
    "ui foreign host": (lambda s: ["ui", "--host", "203.0.113.7"], "cannot listen on 203.0.113.7"),
}


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 100)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for a directory), to prove nothing was written."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.fixture
def scene(
    tiny_suite: Path, fake_fashion_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scene]:
    def no_exec(*args: object) -> None:
        raise AssertionError(f"the UI was started although its arguments are bad: {args}")

    def no_ray(*args: object) -> None:
        raise AssertionError("Ray was started although the input is bad")

    monkeypatch.setattr(os, "execv", no_exec)
    monkeypatch.setattr(run_suite, "ray_session", no_ray)  # every case here is refused before Ray starts
    scene = Scene(tiny_suite, fake_fashion_root, tmp_path / "results", tmp_path)
    ui_results = tmp_path / "ui-results"  # `ui` needs a store to get as far as its own arguments
    ui_results.mkdir()
    (ui_results / "mlflow.db").write_bytes(b"")
    monkeypatch.setenv("LTBENCH_RESULTS", str(ui_results))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        scene.busy_port = busy.getsockname()[1]  # type: ignore[attr-defined]
        yield scene


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_cleanly(name: str, scene: Scene, capsys: pytest.CaptureFixture) -> None:
    make_argv, message = CASES[name]
    argv = make_argv(scene)
    if argv[0] != "ui" and "--results-dir" not in argv:
        argv += ["--results-dir", str(scene.results)] if argv[0] == "run" else []
    before = snapshot(scene.results)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err[-3000:]}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("ltbench: error: "), err[-3000:]
    assert message in lines[0]
    assert len(lines[0]) < 600, "an error message is one readable line"
    assert snapshot(scene.results) == before, "a refused command must write nothing"
