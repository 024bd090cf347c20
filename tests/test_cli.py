"""The command line: `data describe`, `methods`, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main


def test_describe_json_cifar100(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "describe", "cifar100-lt", "--imbalance-ratio", "100", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"class_counts", "num_train", "buckets", "num_test"}
    assert info["num_train"] == 10847 and info["num_test"] == 10000
    assert info["buckets"] == {"many": 35, "medium": 35, "few": 30}
    assert info["class_counts"][:3] == [500, 477, 455] and info["class_counts"][-1] == 5


def test_describe_text_quick_profile(capsys: pytest.CaptureFixture) -> None:
    argv = ["data", "describe", "fashion-mnist-lt", "--imbalance-ratio", "100", "--max-per-class", "1000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1000 599 359 215 129 77 46 27 16 10" in out
    assert "many (>100) 5, medium (20-100) 3, few (<20) 2" in out


def test_methods_lists_ce(capsys: pytest.CaptureFixture) -> None:
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.startswith("ce ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "describe", "mnist-lt", "--imbalance-ratio", "10"], "unknown dataset 'mnist-lt'"),
        (["data", "describe", "cifar10-lt", "--imbalance-ratio", "0.5"], "imbalance ratio must be >= 1"),
        (["run", "no-such-suite"], "unknown suite 'no-such-suite'"),
        (["run", "quick", "--set", "recipe.epochs=-1"], "epochs must be a positive integer"),
        (["run", "quick", "--set", "data.root=/nonexistent"], "fashion-mnist-lt: dataset files not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv, "--results-dir", str(tmp_path)]
        if argv[0] == "run"
        else [sys.executable, "-m", "harness.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("ltbench: error: ") and message in lines[-1]
    assert "Traceback" not in done.stderr
