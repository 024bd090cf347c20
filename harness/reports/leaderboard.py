"""Leaderboards: mean ± std over seeds per dataset x ratio x method, plus the trials that are missing.

Only runs whose trial key belongs to the suite as configured now are counted, so results of an older
configuration of the same suite never mix into its table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.config import TrialConfig

GROUP = ["dataset", "imbalance_ratio", "method"]
SHOWN = {
    "test_top1": "All",
    "test_many_acc": "Many",
    "test_medium_acc": "Medium",
    "test_few_acc": "Few",
    "test_mean_class_acc": "MeanClass",
}


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
        ]
    )


def trial_status(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """One row per expected trial: FINISHED, FAILED (with reason), RUNNING or MISSING."""
    expected = expected_trials(trials)
    latest = runs.drop_duplicates("trial_key", keep="first")[["trial_key", "status", "reason"]]
    # a FINISHED run wins over any other run of the same key
    finished = runs[runs.status == "FINISHED"].drop_duplicates("trial_key")[["trial_key", "status", "reason"]]
    latest = pd.concat([finished, latest]).drop_duplicates("trial_key", keep="first")
    out = expected.merge(latest, on="trial_key", how="left")
    out["status"] = out["status"].fillna("MISSING")
    out["reason"] = out["reason"].fillna("")
    return out


def leaderboard(runs: pd.DataFrame, trials: list[TrialConfig]) -> pd.DataFrame:
    """Accuracy in percent: <metric>_mean, <metric>_std (sample std, NaN for one seed), and n seeds."""
    keys = {t.key for t in trials}
    done = runs[(runs.status == "FINISHED") & runs.trial_key.isin(keys)].drop_duplicates("trial_key")
    if done.empty:
        return pd.DataFrame(columns=GROUP + ["n"])
    scaled = done.assign(**{c: done[c] * 100.0 for c in SHOWN})
    grouped = scaled.groupby(GROUP, dropna=False)
    table = grouped[list(SHOWN)].agg(["mean", "std"])
    table.columns = [f"{SHOWN[c]}_{stat}" for c, stat in table.columns]
    table["n"] = grouped.size()
    return table.reset_index()


def fmt(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.2f}" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def markdown(board: pd.DataFrame, status: pd.DataFrame, title: str) -> str:
    lines = [f"# {title}", "", "Test accuracy (%), mean ± std over seeds; n = seeds finished.", ""]
    header = ["dataset", "ratio", "method", *SHOWN.values(), "n"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in board.iterrows():
        ratio = "native" if pd.isna(row.imbalance_ratio) else f"{row.imbalance_ratio:g}"
        cells = [row.dataset, ratio, row.method]
        cells += [fmt(row[f"{name}_mean"], row[f"{name}_std"]) for name in SHOWN.values()]
        cells.append(str(int(row.n)))
        lines.append("| " + " | ".join(cells) + " |")
    unfinished = status[status.status != "FINISHED"]
    if len(unfinished):
        lines += ["", f"## Trials not finished ({len(unfinished)} of {len(status)})", ""]
        for _, row in unfinished.iterrows():
            reason = f": {row.reason}" if row.reason else ""
            lines.append(f"- {row.label} ({row.trial_key}) {row.status}{reason}")
    return "\n".join(lines) + "\n"


def write_leaderboard(
    runs: pd.DataFrame, trials: list[TrialConfig], out_dir: Path, title: str
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    board = leaderboard(runs, trials)
    status = trial_status(runs, trials)
    board.to_csv(out_dir / "leaderboard.csv", index=False, float_format="%.4f")
    status.to_csv(out_dir / "trials.csv", index=False)
    text = markdown(board, status, title)
    (out_dir / "leaderboard.md").write_text(text)
    return board, status, text
