"""The runs frame and the leaderboard on constructed runs: aggregation over seeds, missing and failed trials,
variants, configuration choice, and the LaTeX/Markdown rendering."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.core.trial import TrialConfig
from harness.reports.formatting import latex_escape, mean_std
from harness.reports.leaderboard import leaderboard, trial_status, variant_leaderboard, write_leaderboard
from harness.reports.runs import pick_config, result_rows, run_row
from tests.reports.run_records import run_record, synthetic_runs

RECIPE = {"epochs": 2, "batch_size": 32}
DATA = {"max_per_class": 40}


def trial(method: str, ratio: float, seed: int) -> TrialConfig:
    # a fixed code identity: some of these methods (plugins) are not installed
    return TrialConfig(
        "lb", "fashion-mnist-lt", ratio, method, seed, "resnet-small-gray", RECIPE, DATA, method_code="t"
    )


def record_for(t: TrialConfig, **fields) -> dict:
    row = run_record(t.method, t.seed, dataset=t.dataset, ratio=t.imbalance_ratio, suite="lb", **fields)
    row["trial_key"] = t.key
    return row


@pytest.fixture
def grid() -> tuple[list[TrialConfig], pd.DataFrame]:
    """ce r=10: three seeds finished (50/60/70 %); la r=10: one finished, one FAILED, one never started;
    ce r=100: only a RUNNING run; la r=100: nothing; plus a stale run of an older configuration."""
    trials = [trial(m, r, s) for r in (10.0, 100.0) for m in ("ce", "la") for s in (0, 1, 2)]
    by = {(t.method, t.imbalance_ratio, t.seed): t for t in trials}
    records = [record_for(by[("ce", 10.0, s)], acc=a) for s, a in zip((0, 1, 2), (0.5, 0.6, 0.7), strict=True)]
    records.append(record_for(by[("la", 10.0, 0)], acc=0.8))
    records.append(record_for(by[("la", 10.0, 1)], status="FAILED", reason="CUDA out of memory"))
    records.append(record_for(by[("ce", 100.0, 0)], status="RUNNING"))
    stale = run_record("ce", 0, dataset="fashion-mnist-lt", ratio=10.0, acc=0.99)  # key not in the suite
    records.append(stale)
    return trials, synthetic_runs(records)


def test_mean_std_n_over_seeds(grid) -> None:
    trials, runs = grid
    board = leaderboard(runs, trials).set_index(["imbalance_ratio", "method"])
    ce = board.loc[(10.0, "ce")]
    assert ce.All_mean == pytest.approx(60.0) and ce.All_std == pytest.approx(10.0)
    assert (ce.n, ce.expected) == (3, 3)  # the stale 99 % run of another configuration is not counted
    la = board.loc[(10.0, "la")]
    assert la.All_mean == pytest.approx(80.0) and np.isnan(la.All_std) and (la.n, la.expected) == (1, 3)


def test_groups_without_a_finished_seed_are_kept_as_missing(grid) -> None:
    trials, runs = grid
    board = leaderboard(runs, trials)
    assert len(board) == 4  # every expected dataset x ratio x method, finished or not
    empty = board[board.imbalance_ratio == 100.0]
    assert list(empty.n) == [0, 0] and empty.All_mean.isna().all()


def test_failed_running_and_missing_trials_are_listed_with_reasons(grid, tmp_path: Path) -> None:
    trials, runs = grid
    status = trial_status(runs, trials).set_index(["imbalance_ratio", "method", "seed"])
    assert status.loc[(10.0, "la", 1)].status == "FAILED"
    assert status.loc[(10.0, "la", 1)].reason == "CUDA out of memory"
    assert status.loc[(10.0, "la", 2)].status == "MISSING"
    assert status.loc[(100.0, "ce", 0)].status == "RUNNING"

    board, _, text = write_leaderboard(runs, trials, tmp_path / "lb", "Leaderboard: lb")
    assert "| fashion-mnist-lt | 10 | ce | 60.00 ± 10.00 |" in text
    assert "| fashion-mnist-lt | 100 | la | missing | missing |" in text
    assert "## Trials not finished (8 of 12)" in text
    assert f"fashion-mnist-lt-r10-la-s1 ({trials[4].key}) FAILED: CUDA out of memory" in text
    assert "fashion-mnist-lt-r10-la-s2" in text and "MISSING" in text
    written = pd.read_csv(tmp_path / "lb" / "trials.csv")
    assert len(written) == 12 and (written.status == "FINISHED").sum() == 4

    tex = (tmp_path / "lb" / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert r"fashion-mnist-lt & 10 & ce & 60.00 $\pm$ 10.00 &" in tex
    assert "8 of 12 trials not finished" in tex
    assert pd.read_csv(tmp_path / "lb" / "leaderboard.csv", comment="#").shape[0] == len(board)


def test_a_finished_run_wins_over_a_failed_run_of_the_same_trial() -> None:
    t = trial("ce", 10.0, 0)
    runs = synthetic_runs([record_for(t, status="FAILED", reason="killed"), record_for(t, acc=0.5)])
    assert trial_status(runs, [t]).status.tolist() == ["FINISHED"]
    assert leaderboard(runs, [t]).n.tolist() == [1]


def test_variants_get_their_own_rows(tmp_path: Path) -> None:
    trials = [trial("tau-norm", 10.0, s) for s in (0, 1)]
    records = [
        record_for(t, acc=0.6 + 0.1 * t.seed, tau1__test_top1=0.5, tau1__test_mean_class_acc=0.5) for t in trials
    ]
    runs = synthetic_runs(records)
    assert leaderboard(runs, trials).All_mean.tolist() == pytest.approx([65.0])  # main results only
    variants = variant_leaderboard(runs, trials)
    assert variants.variant.tolist() == ["tau1"] and variants.All_mean.tolist() == pytest.approx([50.0])
    assert variants.Few_mean.isna().all() and variants.n.tolist() == [2]  # the variant logged no Few
    _, _, text = write_leaderboard(runs, trials, tmp_path, "lb")
    assert "## Method variants" in text and "| fashion-mnist-lt | 10 | tau-norm (τ = 1) | 50.00 ± 0.00 |" in text
    assert "Every row: 2 of 2 seeds finished." in text and "| n |" not in text  # said once, no n column
    assert r"tau-norm ($\tau$ = 1) & 50.00" in (tmp_path / "leaderboard.tex").read_text()
    assert len(pd.read_csv(tmp_path / "leaderboard_variants.csv", comment="#")) == 1


def test_one_method_order_and_the_best_of_each_column_in_bold(tmp_path: Path) -> None:
    methods = ["lws", "ce", "zz-plugin", "la", "ldam-drw", "aa-plugin"]
    trials = [trial(m, 10.0, s) for m in methods for s in (0, 1)]
    accuracy = {"ce": 0.5, "la": 0.7, "lws": 0.6, "ldam-drw": 0.65, "zz-plugin": 0.4, "aa-plugin": 0.3}
    runs = synthetic_runs([record_for(t, acc=accuracy[t.method]) for t in trials])
    board = leaderboard(runs, trials)
    assert board.method.tolist() == ["ce", "ldam-drw", "la", "lws", "aa-plugin", "zz-plugin"]
    _, _, text = write_leaderboard(runs, trials, tmp_path, "lb")
    assert "| fashion-mnist-lt | 10 | la | **70.00 ± 0.00** |" in text
    assert "| fashion-mnist-lt | 10 | ce | 50.00 ± 0.00 |" in text
    assert r"la & \textbf{70.00 $\pm$ 0.00}" in (tmp_path / "leaderboard.tex").read_text()


def test_result_rows_expand_variants() -> None:
    runs = synthetic_runs([run_record("la-posthoc", 0, acc=0.7, tau1__test_top1=0.6), run_record("ce", 0, acc=0.5)])
    rows = result_rows(runs)
    assert sorted(zip(rows.method, rows.variant, rows.test_top1, strict=True)) == [
        ("ce", "", 0.5),
        ("la-posthoc", "", 0.7),
        ("la-posthoc", "tau1", 0.6),
    ]


def fake_mlflow_run(seed: int, method: str = "tau-norm", params: dict | None = None) -> SimpleNamespace:
    """What MlflowClient.search_runs returns, reduced to the fields the frame reads."""
    logged = {
        "dataset": "cifar10-lt", "imbalance_ratio": "100.0", "method": method, "seed": str(seed),
        "model": "resnet32", "recipe.epochs": "200", "data.selection": "random", "data.root": f"/data{seed}",
        "resources.gpu": "0.25", "device": "auto", **(params or {}),
    }  # fmt: skip
    metrics = {
        "final_test_top1": 0.7, "final_val_top1": 0.68, "final_tau1_test_top1": 0.65,
        "final_tau1_val_mean_class_acc": 0.6, "final_chosen_tau": 0.8, "final_test_many_classes": 4.0,
    }  # fmt: skip
    tags = {"ltbench.trial_key": f"key{seed}", "ltbench.failure": ""}
    return SimpleNamespace(
        data=SimpleNamespace(params=logged, metrics=metrics, tags=tags),
        info=SimpleNamespace(run_id=f"run{seed}", status="FINISHED", start_time=1, end_time=2),
    )


def test_run_row_reads_variants_params_and_keys() -> None:
    a, b = run_row(fake_mlflow_run(0), "s"), run_row(fake_mlflow_run(1), "s")
    assert a["variants"] == "tau1" and a["tau1/test_top1"] == 0.65 and a["tau1/val_mean_class_acc"] == 0.6
    assert a["chosen_tau"] == 0.8 and a["test_top1"] == 0.7 and np.isnan(a["test_few_acc"])
    # seeds, paths and resources do not make another configuration; the method does not change the context
    assert a["config_key"] == b["config_key"]
    other = run_row(fake_mlflow_run(0, "ce", {"method_params.sampler": "class-balanced"}), "s")
    assert other["config_key"] != a["config_key"] and other["context_key"] == a["context_key"]
    assert other["method_params"] == "sampler=class-balanced"
    assert other["setting"] == "ce[sampler=class-balanced]"


def test_pick_config_prefers_the_papers_model_then_most_seeds() -> None:
    rows = synthetic_runs(
        [run_record("ce", s, recipe="a", acc=0.5) for s in (0, 1)]
        + [run_record("ce", s, recipe="b", acc=0.6) for s in (0, 1, 2)]
        + [run_record("ce", 0, model="resnet50", acc=0.7)]
    )
    chosen, aside = pick_config(rows)
    assert len(chosen) == 3 and set(chosen.test_top1) == {0.6} and aside == 2
    chosen, _ = pick_config(rows, prefer_model="resnet50")
    assert chosen.test_top1.tolist() == [0.7]


def test_number_formatting_and_latex_escaping() -> None:
    assert mean_std(44.4, float("nan")) == "44.40"
    assert mean_std(float("nan"), 1.0) == "n/a"
    assert mean_std(1.0, 0.5) == "1.00 ± 0.50"
    assert latex_escape("LA post-hoc τ* 5% a_b") == r"LA post-hoc $\tau^*$ 5\% a\_b"


@pytest.mark.parametrize("command", [["report", "SUITE"], ["tables"], ["claims"]])
def test_nothing_to_report_exits_2_and_keeps_what_is_there(
    command: list[str], tiny_suite: Path, tmp_path: Path, capsys
) -> None:
    """A store without finished runs: one line, exit 2, no file written and an existing leaderboard kept."""
    from harness.cli import main

    results = tmp_path / "results"
    argv = [str(tiny_suite) if a == "SUITE" else a for a in command] + ["--results-dir", str(results)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ltbench: error: nothing to report: no finished run of ") and "Traceback" not in err
    assert not results.exists()
    board = results / "tiny" / "leaderboard.md"
    board.parent.mkdir(parents=True)
    board.write_text("an earlier leaderboard")
    assert main(argv) == 2
    assert board.read_text() == "an earlier leaderboard" and sorted(p.name for p in results.rglob("*")) == [
        "leaderboard.md",
        "tiny",
    ]
