"""Leaderboards: mean ± std over seeds per dataset x ratio x method, plus the trials that are not finished.

Only runs whose trial key belongs to the suite as configured now are counted, so results of an older
configuration of the same suite never mix into its table. Every expected dataset x ratio x method appears,
even when none of its seeds finished (its cells then read "missing"), and every trial that is not FINISHED
is listed with its status and failure reason: nothing is dropped silently.

A transductive method's row (one whose runs learned from a split's unlabeled images after training, SADE's
test-time aggregation; recorded by the run as `ran.transductive`) is marked ‡ and the legend says which split.

Methods appear in the report order (`naming.METHOD_ORDER`), variants labelled as a reader writes them
(`tau-norm (τ = 1)`); the best value of each column within a dataset x ratio is bold, and the number of
seeds is said once when every row has the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.trial import TrialConfig, ratio_label
from harness.reports.formatting import MISSING, TRANSDUCTIVE_MARK, Best, latex_table, markdown_table, mean_std
from harness.reports.made_with import made_with_text
from harness.reports.naming import method_sort_key, setting_label
from harness.reports.runs import finished, result_rows

GROUP = ["dataset", "imbalance_ratio", "method"]
SHOWN = {
    "test_top1": "All",
    "test_many_acc": "Many",
    "test_medium_acc": "Medium",
    "test_few_acc": "Few",
    "test_mean_class_acc": "MeanClass",
}
NATIVE = -1.0  # stands for a native split (ratio NaN) while grouping and merging


def expected_trials(trials: list[TrialConfig]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "trial_key": t.key,
                "label": t.label(),
                "dataset": t.dataset,
                "imbalance_ratio": np.nan if t.imbalance_ratio is None else t.imbalance_ratio,
                "method": t.method,
                "seed": t.seed,
            }
            for t in trials
        ],
        columns=["trial_key", "label", "dataset", "imbalance_ratio", "method", "seed"],
    )


def trial_status(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """One row per expected trial: FINISHED, FAILED (with reason), RUNNING or MISSING."""
    expected = expected_trials(trials)
    latest = runs.drop_duplicates("trial_key", keep="first")[["trial_key", "status", "reason"]]
    # a FINISHED run wins over any other run of the same key
    finished_runs = runs[runs.status == "FINISHED"].drop_duplicates("trial_key")
    latest = pd.concat([finished_runs[["trial_key", "status", "reason"]], latest]).drop_duplicates(
        "trial_key", keep="first"
    )
    out = expected.merge(latest, on="trial_key", how="left")
    out["status"] = out["status"].fillna("MISSING")
    out["reason"] = out["reason"].fillna("")
    return out


def _aggregate(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """Accuracy in percent per dataset x ratio x method x variant ('' the main result) over finished seeds,
    with every expected main row present even when no seed finished."""
    expected = expected_trials(trials)
    groups = (
        expected.assign(imbalance_ratio=expected.imbalance_ratio.fillna(NATIVE))
        .groupby(GROUP, sort=False)
        .size()
        .rename("expected")
        .reset_index()
    )
    done = reported_runs(runs, trials)
    columns = GROUP + ["variant"] + [f"{n}_{s}" for n in SHOWN.values() for s in ("mean", "std")]
    if done.empty:
        table = pd.DataFrame(
            {c: pd.Series(dtype=object if c in ("dataset", "method", "variant") else float) for c in columns + ["n"]}
        ).assign(transductive=pd.Series(dtype=object))
    else:
        rows = result_rows(done)
        rows = rows.assign(imbalance_ratio=rows.imbalance_ratio.fillna(NATIVE))
        scaled = rows.assign(**{c: rows[c] * 100.0 for c in SHOWN})
        grouped = scaled.groupby(GROUP + ["variant"])
        table = grouped[list(SHOWN)].agg(["mean", "std"])
        table.columns = [f"{SHOWN[c]}_{stat}" for c, stat in table.columns]
        table["n"] = grouped.size()
        # a transductive method's runs name the split whose unlabeled images they learned from (SADE)
        splits = rows.config.map(lambda c: c.get("ran.transductive", "") if isinstance(c, dict) else "")
        table["transductive"] = splits.groupby([rows[c] for c in GROUP + ["variant"]]).agg(
            lambda s: ",".join(sorted({v for v in s if v}))
        )
        table = table.reset_index()
    mains = groups.assign(variant="").merge(table, on=GROUP + ["variant"], how="left")
    variants = table[table.variant != ""].merge(groups, on=GROUP, how="inner")
    board = pd.concat([mains, variants], ignore_index=True)
    board["n"] = board["n"].fillna(0).astype(int)
    board["transductive"] = board.get("transductive", pd.Series("", index=board.index)).fillna("")
    rank = board.method.map(lambda m: method_sort_key(m)[0])
    board = (
        board.assign(_rank=rank)
        .sort_values(["dataset", "imbalance_ratio", "_rank", "method", "variant"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    board["imbalance_ratio"] = board.imbalance_ratio.replace(NATIVE, np.nan)
    return board[columns + ["n", "expected", "transductive"]]


def leaderboard(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """One row per expected dataset x ratio x method, main results: <metric>_mean and <metric>_std in
    percent (sample std, NaN for one seed), n seeds finished and `expected` seeds."""
    board = _aggregate(runs, trials)
    return board[board.variant == ""].drop(columns="variant").reset_index(drop=True)


def variant_leaderboard(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """The same for the variants some methods report beside their main result (tau-norm's τ = 1 next to τ*)."""
    board = _aggregate(runs, trials)
    return board[board.variant != ""].reset_index(drop=True)


def _ratio_text(ratio: float) -> str:
    return ratio_label(ratio, "value")


def _best(board: pd.DataFrame) -> pd.DataFrame:
    """True where a mean is the highest of its column within its dataset x ratio (ties all marked), among at
    least two rows with a value."""
    flags = pd.DataFrame(False, index=board.index, columns=list(SHOWN.values()))
    ratio = board.imbalance_ratio.fillna(NATIVE)
    for _, group in board.groupby([board.dataset, ratio], sort=False):
        for name in SHOWN.values():
            values = group[f"{name}_mean"].dropna()
            if len(values) >= 2:
                flags.loc[values.index, name] = (values - values.max()).abs() <= 1e-9
    return flags


def seeds_said_once(*boards: pd.DataFrame | None) -> str | None:
    """'n/e' when every row of the boards has n of e seeds finished (said once in the table's text), else
    None (the table then keeps an n column)."""
    pairs = {(int(r.n), int(r.expected)) for b in boards if b is not None for r in b.itertuples()}
    return f"{next(iter(pairs))[0]}/{next(iter(pairs))[1]}" if len(pairs) == 1 else None


def _cells(board: pd.DataFrame, with_n: bool, mark_best: bool = True) -> list[list[str]]:
    """Display rows; variants are not marked (the variants of different methods are no competition)."""
    out = []
    best = _best(board) if mark_best else pd.DataFrame(False, index=board.index, columns=list(SHOWN.values()))
    for index, row in board.iterrows():
        label = setting_label(row.method, "", row.get("variant", "")) + (
            f" {TRANSDUCTIVE_MARK}" if row.get("transductive") else ""
        )
        cells = [row.dataset, _ratio_text(row.imbalance_ratio), label]
        if row.n == 0:
            cells += [MISSING] * len(SHOWN)
        else:
            for name in SHOWN.values():
                text = mean_std(row[f"{name}_mean"], row[f"{name}_std"])
                cells.append(Best(text) if best.loc[index, name] else text)
        if with_n:
            cells.append(f"{row.n}/{row.expected}")
        out.append(cells)
    return out


def transductive_legend(board: pd.DataFrame) -> list[str]:
    """The legend of the ‡ marker, from the runs' own record of the split they adapted on (`ran.transductive`)."""
    marked = board[board.transductive != ""] if "transductive" in board else board.iloc[0:0]
    if marked.empty:
        return []
    which = "; ".join(
        f"{method} on the {split} split"
        for method, split in dict(zip(marked.method, marked.transductive, strict=True)).items()
    )
    return [
        f"{TRANSDUCTIVE_MARK}: transductive: after training the method learned from a split's unlabeled images "
        f"(labels unused) before its evaluation ({which})."
    ]


def _seeds_sentence(once: str | None) -> str:
    if once is None:
        return "n = seeds finished / expected."
    done, expected = once.split("/")
    return f"Every row: {done} of {expected} seeds finished."


def _unfinished_lines(status: pd.DataFrame) -> list[str]:
    lines = []
    for _, row in status[status.status != "FINISHED"].iterrows():
        reason = f": {row.reason}" if row.reason else ""
        lines.append(f"{row.label} ({row.trial_key}) {row.status}{reason}")
    return lines


def markdown(
    board: pd.DataFrame,
    status: pd.DataFrame,
    title: str,
    variants: pd.DataFrame | None = None,
    made_with: str = "",
) -> str:
    """The leaderboard page; `made_with` (`made_with_text` of the runs it reports) follows the legend."""
    once = seeds_said_once(board, variants)
    lines = [
        f"# {title}",
        "",
        f"Test accuracy (%), mean ± std over seeds. {_seeds_sentence(once)} MeanClass is mean per-class "
        "accuracy; bold: the best of its column at that dataset and ratio. 'n/a': the bucket has no class at "
        "this ratio; 'missing': no seed finished.",
        "",
    ]
    if made_with:
        lines += [made_with, ""]
    lines += [f"{note}\n" for note in transductive_legend(board)]
    header = ["dataset", "ratio", "method", *SHOWN.values()] + (["n"] if once is None else [])
    align = "lll" + "r" * (len(header) - 3)
    lines.append(markdown_table(header, _cells(board, once is None), align))
    if variants is not None and len(variants):
        lines += ["", "## Method variants", "", "Reported beside a method's main result (e.g. τ = 1 next to τ*).", ""]
        lines.append(markdown_table(header, _cells(variants, once is None, mark_best=False), align))
    unfinished = _unfinished_lines(status)
    if unfinished:
        lines += ["", f"## Trials not finished ({len(unfinished)} of {len(status)})", ""]
        lines += [f"- {line}" for line in unfinished]
    return "\n".join(lines) + "\n"


def latex(
    board: pd.DataFrame,
    status: pd.DataFrame,
    title: str,
    label: str,
    variants: pd.DataFrame | None = None,
    made_with: str = "",
) -> str:
    """The leaderboard (variant rows after the main ones) as a booktabs table, how its runs were made in the
    caption; unfinished trials are counted under it (each one is in trials.csv)."""
    once = seeds_said_once(board, variants)
    header = ["Dataset", "Ratio", "Method", "All", "Many", "Medium", "Few", "Mean/class"] + (
        ["n"] if once is None else []
    )
    unfinished = int((status.status != "FINISHED").sum())
    notes = [
        f"Test accuracy (%), mean ± std over seeds. {_seeds_sentence(once)} Bold: the best of its column at "
        "that dataset and ratio. n/a: empty shot bucket; missing: no seed finished."
    ]
    notes += transductive_legend(board)
    if unfinished:
        notes.append(
            f"{unfinished} of {len(status)} trials not finished (FAILED, RUNNING or MISSING); "
            "see trials.csv for each one and its reason."
        )
    rows = _cells(board, once is None) + (_cells(variants, once is None, False) if variants is not None else [])
    caption = f"{title}. {made_with}" if made_with else title
    return latex_table(header, rows, caption, label, "lll" + "r" * (len(header) - 3), notes=notes)


def reported_runs(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """The finished runs a leaderboard of `trials` counts."""
    keys = {t.key for t in trials}
    return finished(runs[runs.trial_key.isin(keys)]) if len(runs) else runs


def write_csv(frame: pd.DataFrame, path: Path, made_with: str) -> None:
    """A CSV whose first line, a '#' comment, says how its runs were made (read it with
    `pd.read_csv(path, comment="#")`)."""
    header = f"# {made_with}\n" if made_with else ""
    path.write_text(header + frame.to_csv(index=False, float_format="%.4f"))


def write_leaderboard(
    runs: pd.DataFrame, trials: list[TrialConfig], out_dir: Path, title: str
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Write leaderboard.{csv,md,tex}, leaderboard_variants.csv and trials.csv into `out_dir`; return the
    board, the trial status and the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    board = leaderboard(runs, trials)
    variants = variant_leaderboard(runs, trials)
    status = trial_status(runs, trials)
    made_with = made_with_text(reported_runs(runs, trials))
    write_csv(board, out_dir / "leaderboard.csv", made_with)
    write_csv(variants, out_dir / "leaderboard_variants.csv", made_with)
    status.to_csv(out_dir / "trials.csv", index=False)
    text = markdown(board, status, title, variants, made_with)
    (out_dir / "leaderboard.md").write_text(text)
    label = "tab:ltbench-" + out_dir.name.replace("_", "-")
    (out_dir / "leaderboard.tex").write_text(latex(board, status, title, label, variants, made_with))
    return board, status, text
