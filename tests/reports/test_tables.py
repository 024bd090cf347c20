"""`ltbench tables`: paper layouts (golden files), cell states, unit conversion, configuration choice and the
published-numbers files. Runs are constructed; published numbers are the committed results/published/ CSVs.

Regenerate the golden files after an intended layout change with `LTBENCH_UPDATE_GOLDEN=1 pytest ...`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.core.errors import LtbenchError
from harness.experiment.suite import build_suite
from harness.reports import layouts as L
from harness.reports import tables as T
from harness.reports.departures import config_of_trial
from harness.reports.naming import METHOD_ORDER
from harness.reports.published import load_published
from harness.reports.table_fill import table_notes
from tests.reports.run_records import run_record, synthetic_runs

GOLDEN = Path(__file__).parent / "golden"
PUBLISHED = load_published()
METHODS = list(METHOD_ORDER)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LTBENCH_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"golden file {path} missing; run with LTBENCH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text()


def imagenet(method: str, seed: int, **fields) -> dict:
    return run_record(method, seed, dataset="imagenet-lt", ratio=None, model="resnext50-32x4d",
                      recipe="imagenet-lt", **fields)  # fmt: skip


@pytest.fixture
def runs() -> pd.DataFrame:
    """ImageNet-LT: ce 3 seeds, crt 2 seeds, tau-norm 1 seed with its τ=1 variant, lws only FAILED runs.
    CIFAR-10-LT r=100: ce and la 2 seeds each, tau-norm with variant; CIFAR-100-LT r=100: ce 2 seeds."""
    records = []
    for s, (many, med, few, top1) in enumerate(((0.66, 0.38, 0.08, 0.45), (0.65, 0.37, 0.07, 0.44),
                                                (0.64, 0.36, 0.09, 0.43))):  # fmt: skip
        records.append(imagenet("ce", s, test_many_acc=many, test_medium_acc=med, test_few_acc=few,
                                test_top1=top1, test_mean_class_acc=top1))  # fmt: skip
    for s in (0, 1):
        records.append(imagenet("crt", s, acc=0.49 + 0.01 * s))
    records.append(imagenet("tau-norm", 0, acc=0.5, tau1__test_mean_class_acc=0.47))
    records.append(imagenet("lws", 0, status="FAILED", reason="diverged: loss nan"))
    for s in (0, 1):
        records.append(run_record("ce", s, acc=0.72 + 0.02 * s, test_few_acc=float("nan")))
        records.append(run_record("la", s, acc=0.78))
        records.append(run_record("tau-norm", s, acc=0.76, tau1__test_mean_class_acc=0.74))
        records.append(run_record("ce", s, dataset="cifar100-lt", acc=0.38))
    return synthetic_runs(records)


def of_suite(spec: T.TableSpec, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs as if the spec's own suite had logged them."""
    return runs.assign(suite=spec.suite) if spec.suite else runs


def rendered(spec: T.TableSpec, runs: pd.DataFrame) -> tuple[str, str, pd.DataFrame]:
    grid = T.fill(spec, of_suite(spec, runs), PUBLISHED)
    notes = table_notes(spec, grid, set(METHODS))
    return T.render_markdown(spec, grid, notes), T.render_latex(spec, grid, notes), T.to_frame(spec, grid)


def test_kang_layout_golden(runs: pd.DataFrame) -> None:
    md, tex, _ = rendered(L.KANG, runs)
    check_golden("kang2020_imagenet_lt.md", md)
    check_golden("kang2020_imagenet_lt.tex", tex)


def test_menon_layout_golden(runs: pd.DataFrame) -> None:
    md, tex, _ = rendered(L.MENON, runs)
    check_golden("menon2021_table3.md", md)
    check_golden("menon2021_table3.tex", tex)


def test_lort_layout_golden_marks_published_unavailable(runs: pd.DataFrame) -> None:
    md, _, frame = rendered(L.LORT, runs)
    check_golden("lort_cifar100.md", md)
    assert set(frame.published) == {"unavailable"} and frame.delta.isna().all()


def test_kang_cells(runs: pd.DataFrame) -> None:
    frame = rendered(L.KANG, runs)[2].set_index(["row", "column"])
    joint_few = frame.loc[("Joint", "Few")]
    assert joint_few.published == "7.7" and joint_few.n == 3
    assert joint_few.ltbench_mean == pytest.approx(8.0) and joint_few.ltbench_std == pytest.approx(1.0)
    assert joint_few.delta == pytest.approx(0.3)
    assert frame.loc[("cRT", "All")].ltbench_mean == pytest.approx(49.5)
    assert frame.loc[("NCM", "All")].status == "missing"
    assert frame.loc[("LWS", "All")].status == "failed"
    assert math.isnan(frame.loc[("τ-norm", "All")].ltbench_std)  # one seed: no spread, never a fake 0
    md = rendered(L.KANG, runs)[0]
    assert md.count("LWS / ImageNet-LT: failed runs: seed 0: diverged: loss nan") == 1


def test_menon_converts_to_balanced_error_and_reads_variants(runs: pd.DataFrame) -> None:
    frame = rendered(L.MENON, runs)[2].set_index(["row", "column"])
    erm = frame.loc[("ERM", "CIFAR-10-LT")]
    assert erm.ltbench_mean == pytest.approx(100 - 73.0) and erm.published_value == pytest.approx(27.16)
    assert erm.delta == pytest.approx(27.0 - 27.16)
    tau1 = frame.loc[("Weight normalisation (τ = 1)", "CIFAR-10-LT")]
    assert tau1.variant == "tau1" and tau1.ltbench_mean == pytest.approx(26.0)
    assert frame.loc[("Weight normalisation (τ = τ*)", "CIFAR-10-LT")].ltbench_mean == pytest.approx(24.0)
    assert frame.loc[("Logit adjustment post-hoc (τ = 1)", "CIFAR-10-LT")].status == "missing"


def test_the_cifar_grid_lists_every_method_and_converts_published_error(runs: pd.DataFrame) -> None:
    spec = L.cifar_grid([*METHODS, "aaa-plugin"], runs, PUBLISHED)
    labels = [r.label for r in spec.rows]
    assert [label for label in labels if label in METHODS] == METHODS  # the one report order
    assert labels.index("tau-norm (τ = 1)") == labels.index("tau-norm") + 1  # a variant follows its method
    assert labels[-1] == "aaa-plugin"  # a method the order does not know (a plugin) comes after the known ones
    assert [c.label for c in spec.columns][:4] == [f"CIFAR-10-LT r={r}" for r in (10, 50, 100, 200)]
    frame = T.to_frame(spec, T.fill(spec, runs, PUBLISHED)).set_index(["row", "column"])
    cell = frame.loc[("ce", "CIFAR-10-LT r=100")]
    # Cao et al.'s number: its best test epoch (†), not traced to the paper's text yet (unverified)
    assert (
        cell.published == "70.36† (unverified)"
        and "cao2019 Table 2: 29.64 (top1_error, unverified)" in cell.published_refs
    )
    assert cell.ltbench_mean == pytest.approx(73.0) and cell.delta == pytest.approx(73.0 - 70.36)
    both = frame.loc[("ce", "CIFAR-100-LT r=100")]  # Cao (as error) and Alshammari both publish it
    assert both.published_refs.count(";") == 1 and both.published_value == pytest.approx(38.32)
    assert frame.loc[("ce", "CIFAR-10-LT r=50")].published == "n/p"


def test_fashion_grid_has_no_published_column_and_marks_undefined_buckets() -> None:
    runs = synthetic_runs([run_record("ce", s, dataset="fashion-mnist-lt", ratio=r, acc=0.8,
                                      test_few_acc=float("nan")) for s in (0, 1) for r in (10.0, 100.0)])  # fmt: skip
    spec = L.fashion_grid(METHODS, runs)
    assert [c.label for c in spec.columns][:2] == ["r=100 All", "r=100 MeanClass"] and len(spec.columns) == 10
    grid = T.fill(spec, runs, PUBLISHED)
    md = T.render_markdown(spec, grid, [])
    assert "published" not in md.split("\n\n")[2]
    assert "| ce | 80.00 ± 0.00 | 80.00 ± 0.00 | 80.00 ± 0.00 | 80.00 ± 0.00 | n/a |" in md
    assert "mean ± std over 2 seeds" in md and "(n=2)" not in md  # the seed count is said once
    assert "| la | missing |" in md


def test_a_cell_uses_one_configuration_and_says_what_it_set_aside() -> None:
    runs = synthetic_runs(
        [run_record("ce", s, recipe="short", acc=0.5) for s in (0, 1)]
        + [run_record("ce", s, recipe="cifar-lt", acc=0.7) for s in (0, 1, 2)]
    )
    grid = T.fill(L.CAO, of_suite(L.CAO, runs), PUBLISHED)
    cell = grid[0][0]
    assert cell.n == 3 and cell.mean == pytest.approx(30.0) and cell.set_aside == 1
    assert any("1 other configuration(s)" in n for n in table_notes(L.CAO, grid, set(METHODS)))


def test_write_tables_writes_every_table_in_three_formats(runs: pd.DataFrame, tmp_path: Path) -> None:
    specs = L.all_specs(runs, PUBLISHED, METHODS)
    outcome = T.write_tables(T.render_tables(specs, of_suite(L.KANG, runs), PUBLISHED, set(METHODS)), tmp_path)
    names = [s.name for s in specs]
    for name in names:
        for suffix in (".md", ".csv", ".tex"):
            assert (tmp_path / f"{name}{suffix}").is_file()
    assert len(outcome.summary) == len(names) == len(L.PAPER_TABLES) + 2  # the papers and the two grids
    assert "kang2020_imagenet_lt: 12 of 32 cells with ltbench runs, 32 with a published number" in outcome.summary


def test_published_files_cover_every_paper_layout() -> None:
    for spec in (L.KANG, L.MENON, L.CAO, L.ALSHAMMARI):
        frame = T.to_frame(spec, T.fill(spec, synthetic_runs([]), PUBLISHED))
        assert frame.published_value.notna().all(), spec.name
    keys = ["paper", "dataset", "imbalance_ratio", "method", "params", "variant", "metric"]
    assert not PUBLISHED.duplicated(keys).any()
    assert (PUBLISHED.source.str.len() > 10).all() and PUBLISHED.table.str.len().gt(0).all()


def test_malformed_published_files_are_user_errors(tmp_path: Path) -> None:
    good = (Path(__file__).parents[2] / "results" / "published" / "cao2019_ldam_drw.csv").read_text()
    (tmp_path / "bad.csv").write_text(good.replace("top1_error", "top5"))
    with pytest.raises(LtbenchError, match="unknown metric 'top5'"):
        load_published(tmp_path)
    (tmp_path / "bad.csv").write_text("paper,value\nx,1\n")
    with pytest.raises(LtbenchError, match="missing columns"):
        load_published(tmp_path)


def test_tables_cli_reports_an_unknown_suite_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["tables", "nosuch", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ltbench: error: no results store")


def test_a_method_run_only_with_tuned_hyperparameters_gets_one_labelled_row() -> None:
    records = [run_record("crt", s, dataset="fashion-mnist-lt", ratio=100.0, acc=0.7, params="augment=False")
               for s in (0, 1)]  # fmt: skip
    runs = synthetic_runs(records)
    spec = L.fashion_grid(METHODS, runs)
    labels = [r.label for r in spec.rows]
    assert "crt (augment off)" in labels and "crt" not in labels  # once, and saying how it was run
    frame = T.to_frame(spec, T.fill(spec, runs, PUBLISHED)).set_index(["row", "column"])
    assert frame.loc[("crt (augment off)", "r=100 All")].ltbench_mean == pytest.approx(70.0)


def test_a_paper_table_reads_only_its_own_suite_and_says_where_it_departs() -> None:
    ce = [run_record("ce", s, acc=0.70 + 0.01 * s, suite="paper-cao2019") for s in (0, 1)]
    ldam = [run_record("ldam-drw", s, acc=0.80, suite="paper-cao2019") for s in (0, 1)]
    elsewhere = [run_record("ce", s, acc=0.10, suite="cifar-lt", recipe="other") for s in (0, 1, 2)]
    runs = synthetic_runs(ce + ldam + elsewhere)
    grid = T.fill(L.CAO, runs, PUBLISHED)
    frame = T.to_frame(L.CAO, grid).set_index(["row", "column"])
    erm = frame.loc[("ERM", "CIFAR-10-LT r=100")]
    assert erm.n == 2 and erm.ltbench_mean == pytest.approx(29.5) and erm.suites == "paper-cao2019"
    assert frame.loc[("LDAM-DRW", "CIFAR-10-LT r=100")].ltbench_mean == pytest.approx(20.0)  # the ldam-drw runs
    notes = table_notes(L.CAO, grid, set(METHODS))
    assert notes[0].startswith("ltbench's numbers are the runs of suite `paper-cao2019` only")
    assert any(n.startswith("Departs from the paper:") and "best test epoch" in n for n in notes)
    assert not any("other configuration" in n for n in notes)  # the cifar-lt runs were never candidates
    assert L.ALSHAMMARI.rows[-1].method == "wb" and L.ALSHAMMARI.suite == "paper-alshammari2022"
    suites = {spec.suite for spec in L.PAPER_TABLES}
    assert suites == {"paper-kang2020", "paper-menon2021", "paper-cao2019", "paper-alshammari2022", "paper-lort",
                      "paper-zhang", "paper-mislas", "paper-glmc", "paper-paco", "paper-ride",
                      "paper-sade"}  # fmt: skip
    assert all(spec.departures for spec in L.PAPER_TABLES)


def test_the_best_cell_of_each_column_is_bold_and_latex_fits_the_page() -> None:
    runs = synthetic_runs([run_record(m, s, acc=a, suite="paper-cao2019") for m, a in (("ce", 0.7), ("ldam-drw", 0.8))
                           for s in (0, 1)])  # fmt: skip
    md, tex, _ = rendered(L.CAO, runs)
    assert "| LDAM-DRW | 22.97† (unverified) | **20.00 ± 0.00** | -2.97 |" in md  # lowest error is best
    assert "| ERM | 29.64† (unverified) | 30.00 ± 0.00 | +0.36 |" in md
    assert r"\textbf{20.00 $\pm$ 0.00}" in tex
    assert r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%" in tex
    wide = T.render_latex(L.ZHANG, T.fill(L.ZHANG, runs, PUBLISHED), [])  # 7 column groups: 22 columns
    assert wide.splitlines()[1] == r"\begin{sidewaystable}" and wide.rstrip().endswith(r"\end{sidewaystable}")


def _menon_notes(spec: T.TableSpec, runs: pd.DataFrame) -> list[str]:
    grid = T.fill(spec, of_suite(spec, runs), PUBLISHED)
    return [n for n in table_notes(spec, grid, set(METHODS)) if n.startswith("Departs from the paper: CIFAR")]


def test_departure_notes_follow_the_configuration_the_runs_had() -> None:
    """Menon's table once said its CIFAR runs used LDAM-DRW's x0.01 / 2e-4 after its suite had moved on: the
    notes now come from the runs' logged configuration, so runs of another recipe get another note."""
    planned = {t.dataset: config_of_trial(t) for t in build_suite("paper-menon2021").trials}
    code = [run_record("ce", s, acc=0.7, config=planned["cifar10-lt"]) for s in (0, 1)]
    assert _menon_notes(L.MENON, synthetic_runs(code)) == []  # the suite runs the authors' code's recipe
    ldam = {**planned["cifar10-lt"], "model": "resnet32", "recipe.epochs": "200", "recipe.step_gamma": "0.01",
            "recipe.milestones": "[160, 180]", "ran.precision": "bf16"}  # fmt: skip
    old = [run_record("ce", s, acc=0.7, config=ldam) for s in (0, 1)]
    (note,) = _menon_notes(L.MENON, synthetic_runs(old))
    assert note.startswith("Departs from the paper: CIFAR-10-LT: ltbench's runs differ from Menon et al.'s code")
    said = ("model resnet32 (paper: resnet32-menon)", "epochs 200 (paper: 1241)", "lr step factor 0.01 (paper: 0.1)",
            "lr milestones [160, 180] (paper: [604, 926, 1128])", "precision bf16 (paper: fp32)")  # fmt: skip
    assert all(part in note for part in said), note


def test_departure_notes_change_when_the_suite_does(tmp_path: Path) -> None:
    """Without runs, the notes describe the suite as planned: point the table at a suite on the paper's Appendix D
    recipe and LDAM-DRW's ResNet-32, and the note says so; the built-in suite has no such departure."""
    import dataclasses

    import yaml

    from harness.experiment.suite_files import SUITES_DIR

    assert _menon_notes(L.MENON, synthetic_runs([])) == []
    suite = yaml.safe_load((SUITES_DIR / "paper-menon2021.yaml").read_text())
    suite.update(model="resnet32", recipe={"base": "menon2021-cifar"}, per_dataset={})
    path = tmp_path / "menon-appendix.yaml"
    path.write_text(yaml.safe_dump(suite))
    notes = _menon_notes(dataclasses.replace(L.MENON, suite=str(path)), synthetic_runs([]))
    cifar10 = next(n for n in notes if "CIFAR-10-LT:" in n)
    assert "the suite as planned now" in cifar10 and "epochs 200 (paper: 1241)" in cifar10
    assert "model resnet32 (paper: resnet32-menon)" in cifar10 and "weight decay 0.0001 (paper: 0.0002)" in cifar10


def test_kept_epochs_are_said_beside_the_table() -> None:
    config = {"model": "resnext50-32x4d", "recipe.keep": "best-val"}
    runs = synthetic_runs([imagenet("ce", s, acc=0.4, kept_epoch=e, config=config) for s, e in ((0, 81), (1, 77))])
    grid = T.fill(L.KANG, of_suite(L.KANG, runs), PUBLISHED)
    assert (
        "Departs from the paper: Joint / ImageNet-LT: the end-to-end epoch kept, best on validation (per seed): 81, 77."
        in (table_notes(L.KANG, grid, set(METHODS)))
    )


def test_published_rows_name_where_they_were_read_and_whether_that_was_checked(tmp_path: Path) -> None:
    assert set(PUBLISHED.status) == {"checked", "unverified"} and (PUBLISHED.location.str.len() > 10).all()
    kang = PUBLISHED[PUBLISHED.paper == "kang2020"]
    assert set(kang.status) == {"checked"} and kang.location.str.contains("commit f162adef").all()
    tau_star = PUBLISHED[(PUBLISHED.paper == "menon2021") & (PUBLISHED.variant == "")
                         & PUBLISHED.method.isin(["tau-norm", "la-posthoc"])]  # fmt: skip
    assert len(tau_star) == 6 and set(tau_star.selected_on) == {"test"}
    frame = T.to_frame(L.MENON, T.fill(L.MENON, synthetic_runs([]), PUBLISHED)).set_index(["row", "column"])
    assert frame.loc[("Weight normalisation (τ = τ*)", "CIFAR-10-LT")].published == "21.50† (unverified)"
    assert frame.loc[("ERM", "CIFAR-10-LT")].published == "27.16 (unverified)"
    good = (Path(__file__).parents[2] / "results" / "published" / "cao2019_ldam_drw.csv").read_text()
    (tmp_path / "bad.csv").write_text(good.replace(",unverified,", ",maybe,"))
    with pytest.raises(LtbenchError, match="status 'maybe' is not one of"):
        load_published(tmp_path)


def test_mislas_rows_read_the_runs_and_published_numbers_of_their_own_stage_two_setting() -> None:
    """Each MiSLAS row is one official stage-two setting: its cells read runs with exactly those
    hyperparameters, beside the README number published for that setting."""
    cifar10 = L.MISLAS_CIFAR10
    runs = synthetic_runs([
        *(run_record("mislas", s, params=cifar10, acc=0.80, suite="paper-mislas") for s in (0, 1)),
        *(run_record("mislas", s, dataset="cifar100-lt", acc=0.45, suite="paper-mislas") for s in (0, 1)),
        *(run_record("mixup", s, dataset="cifar100-lt", acc=0.40, suite="paper-mislas") for s in (0, 1)),
    ])  # fmt: skip
    frame = T.to_frame(L.MISLAS, T.fill(L.MISLAS, runs, PUBLISHED)).set_index(["row", "column"])
    c10 = frame.loc[("MiSLAS (CIFAR-10-LT settings)", "CIFAR-10-LT r=100")]
    # † marks a number the official code chose on the test set (its best test epoch)
    assert (c10.published, c10.ltbench_mean, c10.n) == ("82.5†", pytest.approx(80.0), 2)
    c100 = frame.loc[("MiSLAS (CIFAR-100-LT settings)", "CIFAR-100-LT r=100")]
    assert (c100.published, c100.ltbench_mean) == ("47.0†", pytest.approx(45.0))
    assert frame.loc[("Stage-1 (mixup)", "CIFAR-100-LT r=100")].published == "39.5†"


def test_glmc_rows_read_the_runs_of_their_setting_beside_the_readme_and_its_update() -> None:
    """Each GLMC row is one official per-cell setting; the README's results and its update of 2023/5/23 (images
    drawn without replacement, as ltbench) are two tables over the same runs."""
    cifar10 = L.GLMC_ROWS[0].params
    runs = synthetic_runs([
        *(run_record("glmc", s, params=cifar10, acc=0.88, suite="paper-glmc", model="resnet32-x4") for s in (0, 1)),
        *(run_record("glmc", s, dataset="cifar100-lt", acc=0.57, suite="paper-glmc", model="resnet32-x4")
          for s in (0, 1)),
    ])  # fmt: skip
    paper = T.to_frame(L.GLMC, T.fill(L.GLMC, runs, PUBLISHED)).set_index(["row", "column"])
    updated = T.to_frame(L.GLMC_UPDATED, T.fill(L.GLMC_UPDATED, runs, PUBLISHED)).set_index(["row", "column"])
    c100 = ("GLMC (CIFAR-100-LT r=100 settings)", "CIFAR-100-LT r=100")
    assert (paper.loc[c100].published, paper.loc[c100].ltbench_mean) == ("55.88†", pytest.approx(57.0))
    assert updated.loc[c100].published == "57.97†"
    c10 = ("GLMC (CIFAR-10-LT r=100 and r=50 settings)", "CIFAR-10-LT r=100")
    assert (paper.loc[c10].published, paper.loc[c10].ltbench_mean, paper.loc[c10].n) == ("87.75†", 88.0, 2)
    assert updated.loc[("GLMC (CIFAR-10-LT r=100 and r=50 settings)", "CIFAR-10-LT r=50")].published == "91.04†"
    # a setting's row has no published number on the other settings' cells
    assert paper.loc[("GLMC (CIFAR-100-LT r=10 settings)", "CIFAR-100-LT r=100")].published_value != 55.88
    assert paper.loc[("GLMC (CIFAR-100-LT r=10 settings)", "CIFAR-100-LT r=10")].published == "70.74†"


def test_paco_rows_read_paper_paco_runs_and_mark_the_published_column_unavailable() -> None:
    runs = synthetic_runs([
        *(run_record("paco", s, dataset="cifar100-lt", acc=0.50, suite="paper-paco") for s in (0, 1)),
        *(run_record("paco", s, dataset="cifar100-lt", acc=0.10, suite="cifar-lt-2023") for s in (0, 1)),
    ])  # fmt: skip
    frame = T.to_frame(L.PACO, T.fill(L.PACO, runs, PUBLISHED)).set_index(["row", "column"])
    cell = frame.loc[("PaCo", "CIFAR-100-LT r=100")]
    assert (cell.published, cell.ltbench_mean, cell.n) == ("unavailable", pytest.approx(50.0), 2)
    assert frame.loc[("PaCo", "CIFAR-100-LT r=10")].n == 0
