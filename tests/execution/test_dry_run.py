"""`ltbench run --dry-run`: the plan as a table, finished trials counted from the store, missing data warned
about, the runs a paper table also needs, every trial with --verbose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.execution.run_suite import dry_run
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.records.artifacts import RESULT_FILE


def test_the_plan_is_a_table_of_dataset_ratio_method_not_a_line_per_trial(tmp_path: Path) -> None:
    text = dry_run("quick", results_dir=tmp_path)
    lines = text.splitlines()
    assert lines[0] == "suite quick: 44 trials"
    assert lines[1].split() == ["dataset", "ratio", "method", "trials", "finished", "kind", "backbone", "recipe"]
    rows = [ln for ln in lines if ln.startswith("  fashion-mnist-lt")]
    assert len(rows) == 2 * 11  # ratios x methods, each row holding its two seeds
    ce = next(r for r in rows if r.split()[1:3] == ["100", "ce"])
    assert ce.split()[3:8] == ["2", "0", "end", "to", "end,"] and "shared by 6" in ce
    crt = next(r for r in rows if r.split()[1:3] == ["10", "crt"])
    assert "stage two" in crt and "frozen ce resnet-small-gray" in crt and "12 ep, batch 128" in crt
    assert "-s0 (" not in text  # no trial keys without --verbose
    assert not tmp_path.joinpath("trials").exists()  # a dry run writes nothing


def test_verbose_lists_every_trial_and_no_empty_decoupled_heading(tmp_path: Path) -> None:
    text = dry_run("quick", results_dir=tmp_path, verbose=True)
    assert text.count("fashion-mnist-lt-r100-crt-s0 (") == 1 and "44 trials" in text
    only_ce = dry_run("quick", ["methods=[ce]", "seeds=[0]", "imbalance_ratios=[100]"], tmp_path, verbose=True)
    assert "suite quick: 1 trial\n" in only_ce and "1 trial trained end to end" in only_ce
    assert "decoupled trial" not in only_ce


def test_dry_run_counts_the_trials_already_finished_in_the_store(tmp_path: Path) -> None:
    plan = make_plan(build_suite("quick").trials)
    done = [plan.end_to_end[0], plan.decoupled[0], plan.decoupled[1]]
    for cfg in done:
        (tmp_path / "trials" / cfg.key).mkdir(parents=True)
        (tmp_path / "trials" / cfg.key / RESULT_FILE).write_text(json.dumps({"metrics": {}}))
    (tmp_path / "trials" / plan.end_to_end[1].key).mkdir()  # started, not finished: no result
    text = dry_run("quick", results_dir=tmp_path)
    assert f"3 of 44 trials already finished in {tmp_path / 'trials'}: a run trains the other 41" in text
    row = next(ln for ln in text.splitlines() if ln.split()[1:3] == ["100", "la-posthoc"])
    assert row.split()[3:5] == ["2", "2"]  # both seeds of the r=100 la-posthoc row are done
    assert "none of the 44 trials is finished yet" in dry_run("quick", results_dir=tmp_path / "elsewhere")


def test_dry_run_warns_of_missing_data_files_and_names_the_fetch_command(tmp_path: Path) -> None:
    text = dry_run("quick", [f"data.root={tmp_path / 'nothing'}"], tmp_path)
    (warning,) = [ln for ln in text.splitlines() if ln.startswith("warning: fashion-mnist-lt: dataset files")]
    assert "Run `ltbench data fetch fashion-mnist-lt`" in warning
    imagenet = dry_run("paper-kang2020", ["data.root=/nonexistent"], tmp_path)
    assert "warning: imagenet-lt: dataset files not found" in imagenet
    assert "data fetch" not in imagenet  # ImageNet cannot be fetched: the message says where files go instead


def test_kang2020_dry_run_names_the_sampler_runs_its_table_needs(tmp_path: Path) -> None:
    text = dry_run("paper-kang2020", results_dir=tmp_path)
    commands = [ln.strip() for ln in text.splitlines() if ln.startswith("  ltbench run paper-kang2020")]
    assert [c.rsplit("sampler=", 1)[1] for c in commands] == ["class-aware", "square-root", "progressive"]
    for command in commands:  # each one is a valid run of the suite
        overrides = [part.strip("'") for part in command.split(" --set ")[1:]]
        suite = build_suite("paper-kang2020", overrides)
        assert [t.method for t in suite.trials] == ["ce"] and suite.trials[0].method_params["sampler"]


@pytest.mark.parametrize("extra", ["[methods=[ce]]", "[[seeds]]", "oops"])
def test_a_malformed_extra_runs_is_a_one_line_error(extra: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "quick", "--dry-run", "--set", f"extra_runs={extra}"]) == 2
    assert "extra_runs" in capsys.readouterr().err


def test_data_describe_says_when_the_files_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Without --root the nominal profile is described, and a warning says the files are not where ltbench
    looks; a --root given that lacks them is bad input instead (tests/cli/test_bad_input.py)."""
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = ["data", "describe", "cifar10-lt", "--imbalance-ratio", "100"]
    assert main(args) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("warning: the counts above are nominal, the files are not here: cifar10-lt")
    assert main([*args, "--json"]) == 0
    assert "dataset files not found" in json.loads(capsys.readouterr().out)["files_missing"]


def test_data_describe_says_nothing_of_files_that_are_there(
    fake_fashion_root: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["data", "describe", "fashion-mnist-lt", "--imbalance-ratio", "4", "--root", str(fake_fashion_root)]
    assert main([*args, "--max-per-class", "30", "--val-per-class", "5"]) == 0
    assert "warning" not in capsys.readouterr().out
