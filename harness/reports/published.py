"""Published reference numbers: `results/published/*.csv` (package data `harness/reports/published/`, a link
to it in a checkout), one row per number with its paper and source.

These numbers are the papers', never ltbench's: they are only ever shown in a column of their own beside
ltbench's measured value. Values are kept as the text the paper printed (so '17.0' keeps its precision).

Columns: paper (short key, e.g. kang2020), table (the paper's table), source (URL or citation), location (where
in the source the number was read: table and page, or the README and its commit), status (`checked`: read
again in that location; `unverified`: not traced there, shown as such in the tables), selected_on (optional:
`test` when the paper chose the number on the test set, e.g. a best-τ or best-epoch result), dataset
(ltbench name), imbalance_ratio (empty for a native split such as ImageNet-LT), model (the paper's backbone
as an ltbench model name, empty if unknown), method (ltbench method name), params (method hyperparameters
as 'k=v,k=v', empty for defaults), variant (empty for the method's main result, else e.g. 'tau1'), label (the
paper's row name), metric (see METRICS), value (percent), notes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.core.errors import LtbenchError

# `results/published/` of the checkout, shipped in the wheel as package data through this link
PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
REQUIRED = (
    "paper", "table", "source", "location", "status", "dataset", "imbalance_ratio", "model", "method", "params",
    "variant", "label", "metric", "value",
)  # fmt: skip
STATUSES = ("checked", "unverified")
UNVERIFIED = "unverified"
SELECTIONS = ("", "test")  # selected_on: how the paper chose the number ('' = no choice on test)
ON_TEST_MARK = "†"
# metric -> (ltbench metric column, whether the published number is an error = 100 - accuracy)
METRICS: dict[str, tuple[str, bool]] = {
    "top1": ("test_top1", False),
    "mean_class_acc": ("test_mean_class_acc", False),
    "many_acc": ("test_many_acc", False),
    "medium_acc": ("test_medium_acc", False),
    "few_acc": ("test_few_acc", False),
    "top1_error": ("test_top1", True),
    "balanced_error": ("test_mean_class_acc", True),
}


def load_published(folder: Path = PUBLISHED_DIR) -> pd.DataFrame:
    """Every published number under `folder`, with `ratio` as a float (NaN for native) and `number` parsed.

    A malformed file is a user error naming the file and what is wrong, since users add their own papers.
    """
    frames = []
    for path in sorted(folder.glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise LtbenchError(f"{path}: missing columns {', '.join(missing)}; needed: {', '.join(REQUIRED)}")
        bad = sorted(set(frame.metric) - set(METRICS))
        if bad:
            raise LtbenchError(f"{path}: unknown metric {bad[0]!r}; valid metrics: {', '.join(METRICS)}")
        for column in ("source", "location", "paper", "value"):
            if (frame[column].str.strip() == "").any():
                raise LtbenchError(f"{path}: every row needs a {column}")
        if "selected_on" not in frame.columns:
            frame["selected_on"] = ""
        for column, valid in (("status", STATUSES), ("selected_on", SELECTIONS)):
            bad_value = sorted(set(frame[column]) - set(valid))
            if bad_value:
                raise LtbenchError(
                    f"{path}: {column} {bad_value[0]!r} is not one of {', '.join(repr(v) for v in valid)}"
                )
        try:
            number = frame.value.astype(float)
            ratio = frame.imbalance_ratio.map(lambda t: float(t) if t.strip() else math.nan)
        except ValueError as e:
            raise LtbenchError(f"{path}: value and imbalance_ratio must be numbers: {e}") from e
        frames.append(frame.assign(file=path.name, number=number, ratio=ratio))
    if not frames:
        return pd.DataFrame(columns=[*REQUIRED, "selected_on", "notes", "file", "number", "ratio"])
    return pd.concat(frames, ignore_index=True)


def same_ratio(a: float | None, b: float | None) -> bool:
    """Ratios match when equal, or when both are native (None / NaN)."""
    a_native = a is None or math.isnan(a)
    b_native = b is None or math.isnan(b)
    return a_native and b_native or (not a_native and not b_native and math.isclose(a, b))
