"""The command line: `data describe`, `methods`, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import write_tiny_suite
from tests.fakes import write_imagenet_lt


def test_describe_json_cifar100(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "describe", "cifar100-lt", "--imbalance-ratio", "100", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"class_counts", "train_counts", "num_train", "num_val", "val_per_class", "buckets", "num_test"}
    assert sum(info["class_counts"]) == info["num_profile"] == 10847 and info["num_test"] == 10000
    # validation is drawn beside the LT subset: only the head class (all 500 images selected) gives 20 of its own
    assert (info["val_per_class"], info["num_val"], info["val_from_lt"]) == (20, 2000, {"0": 20})
    assert info["num_train"] == 10827 and info["train_counts"][-1] == 5
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
    assert any(line.startswith("ce ") for line in capsys.readouterr().out.splitlines())


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "describe", "mnist-lt", "--imbalance-ratio", "10"], "unknown dataset 'mnist-lt'"),
        (
            ["data", "describe", "cifar10-lt", "--imbalance-ratio", "0.5"],
            "imbalance-ratio must be a finite number >= 1",
        ),
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


# -- bad input to `ltbench run`: one line, exit code 2, nothing written ------------------------------------


def run_fails(argv: list[str], results: Path, capsys: pytest.CaptureFixture) -> str:
    assert main([*argv, "--results-dir", str(results)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltbench: error: ")
    assert not results.exists() or not any(results.iterdir()), "a rejected run must write nothing"
    return lines[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("datasets=[cifar11-lt]", "unknown dataset 'cifar11-lt'; valid datasets: cifar10-lt, cifar100-lt"),
        ("methods=[ce,magic]", "unknown method 'magic'; valid methods: balanced-softmax, cb, ce, ce-drw, crt, cw"),
        ("recipe.epochz=3", "unknown recipe key 'epochz'"),
        ("nosuchkey=1", "unknown suite key 'nosuchkey'"),
        ("imbalance_ratios=[0.5]", "imbalance ratios must be finite numbers >= 1"),
        ("recipe.epochs=0", "epochs must be a positive integer"),
        ("seeds=[1.5]", "seeds must be integers in [0, 4294967295], got 1.5"),
    ],
)
def test_run_rejects_bad_suite_values(
    override: str, message: str, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert message in run_fails(["run", str(tiny_suite), "--set", override], tmp_path / "r", capsys)


def test_run_rejects_a_corrupt_dataset_file(
    fake_fashion_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    root = tmp_path / "fashion"
    shutil.copytree(fake_fashion_root, root)
    images = next(root.glob("train-images-idx3-ubyte*"))
    images.write_bytes(images.read_bytes()[:-100])
    suite = write_tiny_suite(tmp_path / "s.yaml", root)
    line = run_fails(["run", str(suite)], tmp_path / "r", capsys)
    assert f"{images} is truncated or corrupt" in line and "fetch it again" in line


def test_run_rejects_a_malformed_split_file_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake = write_imagenet_lt(tmp_path / "ilsvrc")
    val = fake.split_file("val")
    lines = val.read_text().splitlines()
    lines.insert(2, "val/n01440764/broken.JPEG not-a-label")
    val.write_text("\n".join(lines) + "\n")
    argv = ["run", "imagenet-lt", "--set", f"data.root={fake.root}", "--set", "methods=[ce]"]
    line = run_fails(argv, tmp_path / "r", capsys)
    assert f"{val}:3: malformed line 'val/n01440764/broken.JPEG not-a-label'" in line
