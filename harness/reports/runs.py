"""Read ltbench's MLflow runs into one tidy pandas frame: a row per run, a column per field.

Everything downstream (leaderboards, paper tables, claims, plots, the notebook) works on this frame, so it is
built from MLflow alone (params, tags, metrics, and artifacts through the client) and works the same on the
local SQLite store and on a remote tracking server.

Columns:
- identity: `suite` (the MLflow experiment), `trial_key`, `run_id`, `status` (FINISHED / FAILED / RUNNING),
  `reason` (the failure tag), `dataset`, `imbalance_ratio` (NaN for a native split), `method`,
  `method_params` (canonical "k=v,k=v" string, "" for defaults), `setting` (method plus its params),
  `seed`, `model`, `start_time`, `end_time` (ms since the epoch).
- how it was made (`made_with`): `recipe` ('quick with epochs=2'), `epochs`, `precision` ('auto (ran bf16)'),
  `overrides` (the run's `--set` assignments, 'none'), `commit` (the ltbench commit that trained it).
- `config_key`: hash of everything that changes a result except the seed, so the seeds of one configuration
  group together and runs of another configuration (other recipe, other data options) never mix in.
- `context_key`: the same without the method, so methods trained on the same data, model and recipe (the
  same stage-1 backbone for decoupled methods) can be compared.
- metrics (fractions 0..1): `test_<m>`, `val_<m>` for m in METRICS (the method's main result), and for a
  method with variants (tau-norm's τ = 1 next to τ*) `<variant>/test_<m>`; `variants` lists the variant
  names; `chosen_tau` when the method logged one; `kept_epoch`, the end-to-end epoch the run kept (the last,
  or the best on validation with `recipe.keep: best-val`); `classes_many` / `_medium` / `_few`: the classes each
  shot bucket holds (NaN when not recorded).
- `config`: the run's configuration as MLflow holds it (`model`, `recipe.*`, `data.*`, `method_params.*` and
  what it ran with, `ran.*`), each value the logged text: what table notes describe a run by.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.errors import LtbenchError
from harness.core.trial import ratio_label
from harness.experiment.suite_files import load_suite_file
from harness.records.artifacts import ANALYSIS_FILE, RESULT_FILE
from harness.records.mlflow_names import read_back
from harness.records.relocation import relocate_artifacts
from harness.records.tracker import CLASSES_TAG, COMMIT_TAG, FAILURE_TAG, OVERRIDES_TAG, TRIAL_KEY_TAG, Tracker
from harness.records.tracking_uri import check_reachable, default_tracking_uri
from harness.reports.made_with import NOT_RECORDED, precision_description, recipe_description

METRICS = ("top1", "mean_class_acc", "many_acc", "medium_acc", "few_acc")
SPLITS = ("test", "val")
METRIC_COLUMNS = [f"{split}_{m}" for split in SPLITS for m in METRICS]
COLUMNS = [
    "suite",
    "trial_key",
    "run_id",
    "status",
    "reason",
    "dataset",
    "imbalance_ratio",
    "method",
    "method_params",
    "setting",
    "seed",
    "model",
    "recipe",
    "epochs",
    "precision",
    "overrides",
    "commit",
    "config_key",
    "context_key",
    "start_time",
    "end_time",
    "chosen_tau",
    "kept_epoch",
    "classes_many",
    "classes_medium",
    "classes_few",
    "variants",
    "config",
    *METRIC_COLUMNS,
]
CONFIG_PARAM = re.compile(r"^(model|recipe\..*|data\..*|method_params\..*|ran\..*)$")
# params that do not change a result: where files are, what a trial may use, which device, what it ran with
NOT_IDENTITY = re.compile(r"^(seed|device|data\.root|data\.download|resources\..*|ran\..*)$")
METHOD_PARAM = re.compile(r"^(method|method_params(\..*)?)$")
_VARIANT_METRIC = re.compile(rf"^final_(.+)_({'|'.join(SPLITS)})_({'|'.join(METRICS)})$")


def _signature(params: dict[str, str], drop: re.Pattern[str]) -> str:
    kept = {k: v for k, v in params.items() if not NOT_IDENTITY.match(k) and not drop.match(k)}
    if "imbalance_ratio" in kept:  # "100.0" (older runs) and "100" are one ratio
        kept["imbalance_ratio"] = ratio_label(_ratio(kept["imbalance_ratio"]), "value")
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def method_params_text(params: dict[str, str]) -> str:
    """The run's non-default hyperparameters as 'k=v,k=v' (sorted), '' when it used the defaults."""
    items = sorted((k.removeprefix("method_params."), v) for k, v in params.items() if k.startswith("method_params."))
    return ",".join(f"{k}={v}" for k, v in items)


def setting_name(method: str, params: str) -> str:
    """How a method with its hyperparameters is named in tables: 'ce' or 'ce[sampler=class-balanced]'."""
    return f"{method}[{params}]" if params else method


def _ratio(text: str | None) -> float:
    return float(text) if text not in (None, "None", "null", "", "native") else float("nan")


def run_row(run: Any, suite: str) -> dict[str, Any]:
    """One MLflow run as a frame row (see the module docstring for the columns)."""
    params, tags = run.data.params, run.data.tags
    metrics = read_back(run.data.metrics, tags)  # fractions and final_<name>, whichever layout the run has
    mparams = method_params_text(params)
    method = params.get("method", tags.get("ltbench.method", ""))
    row: dict[str, Any] = {
        "suite": suite,
        "trial_key": tags.get(TRIAL_KEY_TAG),
        "run_id": run.info.run_id,
        "status": run.info.status,
        "reason": tags.get(FAILURE_TAG, ""),
        "dataset": params.get("dataset", tags.get("ltbench.dataset")),
        "imbalance_ratio": _ratio(params.get("imbalance_ratio")),
        "method": method,
        "method_params": mparams,
        "setting": setting_name(method, mparams),
        "seed": int(params["seed"]) if "seed" in params else -1,
        "model": params.get("model", ""),
        "recipe": recipe_description(params),
        "epochs": int(params["recipe.epochs"]) if "recipe.epochs" in params else -1,
        "precision": precision_description(params),
        "overrides": tags.get(OVERRIDES_TAG, NOT_RECORDED),
        "commit": tags.get(COMMIT_TAG, NOT_RECORDED),
        "config_key": _signature(params, re.compile(r"^$")),
        "context_key": _signature(params, METHOD_PARAM),
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "chosen_tau": metrics.get("final_chosen_tau", float("nan")),
        "kept_epoch": metrics.get("final_kept_epoch", float("nan")),
        "config": {k: v for k, v in params.items() if CONFIG_PARAM.match(k) and not k.startswith("data.root")},
        **{f"classes_{b}": float(tags.get(f"{CLASSES_TAG}{b}", "nan")) for b in ("many", "medium", "few")},
    }
    for column in METRIC_COLUMNS:
        row[column] = metrics.get(f"final_{column}", float("nan"))
    variants: set[str] = set()
    for name, value in metrics.items():
        match = _VARIANT_METRIC.match(name)
        if match:
            variant, split, metric = match.groups()
            variants.add(variant)
            row[f"{variant}/{split}_{metric}"] = value
    row["variants"] = ",".join(sorted(variants))
    return row


def frame_from_runs(runs: Iterable[tuple[Any, str]]) -> pd.DataFrame:
    """(MLflow run, suite name) pairs -> the runs frame; runs without an ltbench trial key are skipped."""
    rows = [run_row(run, suite) for run, suite in runs if run.data.tags.get(TRIAL_KEY_TAG)]
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=float if column in METRIC_COLUMNS else object)
    extra = sorted(c for c in frame.columns if c not in COLUMNS)
    return frame[COLUMNS + extra]


def runs_frame(tracker: Tracker) -> pd.DataFrame:
    """All runs of the tracker's suite (its MLflow experiment)."""
    name = tracker.client.get_experiment(tracker.experiment_id).name
    return frame_from_runs((run, name) for run in tracker.runs())


# -- reading across experiments -------------------------------------------------------------------------
def open_client(tracking_uri: str | None, results_dir: Path) -> Any | None:
    """An MLflow client on the store, or None when the default local store does not exist yet.

    A missing local store means "nothing has run": reports then show every trial as missing instead of
    creating an empty database as a side effect.
    """
    from mlflow.tracking import MlflowClient

    if tracking_uri is None:
        if not (results_dir / "mlflow.db").is_file():
            return None
        relocate_artifacts(results_dir)  # a moved or copied results dir reads its own artifacts
        tracking_uri = default_tracking_uri(results_dir)
    check_reachable(tracking_uri)  # a dead server fails in seconds, not after MLflow's minutes of retries
    return MlflowClient(tracking_uri=tracking_uri)


def _search_all(client: Any, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def load_runs(
    tracking_uri: str | None, results_dir: Path, suites: list[str] | None = None, missing_ok: bool = False
) -> pd.DataFrame:
    """The runs of the named suites (MLflow experiments), or of every experiment when `suites` is None.

    A named suite without an experiment is an error listing the ones that exist, unless `missing_ok`
    (a report on a suite that has not run yet).
    """
    client = open_client(tracking_uri, results_dir)
    if client is None:
        if suites and not missing_ok:
            raise LtbenchError(
                f"no results store at {results_dir / 'mlflow.db'}; run a suite first (ltbench run SUITE) "
                "or point --results-dir / --tracking-uri at one"
            )
        return frame_from_runs([])
    try:
        experiments = client.search_experiments()
    except Exception as e:  # connection errors surface as several exception types
        raise LtbenchError(f"cannot read the MLflow tracking store: {str(e).splitlines()[0]}") from e
    by_name = {e.name: e for e in experiments if e.name != "Default"}
    if suites is None:
        chosen = sorted(by_name)
    else:
        unknown = [s for s in suites if s not in by_name]
        if unknown and not missing_ok:
            have = ", ".join(sorted(by_name)) or "(none)"
            raise LtbenchError(f"no runs of suite {unknown[0]!r} in the tracking store; suites with runs: {have}")
        chosen = [s for s in suites if s in by_name]
    return frame_from_runs((run, name) for name in chosen for run in _search_all(client, by_name[name].experiment_id))


def suite_experiment_name(name_or_path: str) -> str:
    """The MLflow experiment of a suite given by built-in name or YAML path (its `name`), else the text itself.

    Reading results must not need the suite to still validate (a method may have been renamed since).
    """
    try:
        return str(load_suite_file(name_or_path)["name"])
    except LtbenchError:
        return name_or_path


# -- the frame's views -------------------------------------------------------------------------------------
def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """FINISHED runs, one per trial key (the same trial may be logged by several suites)."""
    done = runs[runs.status == "FINISHED"]
    return done.sort_values("end_time", ascending=False, kind="stable").drop_duplicates("trial_key")


def result_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, variant): `variant` '' holds the main result, other variants their own metrics.

    The metric columns keep their names (`test_top1`, ...), so the same aggregation serves both.
    """
    base = [c for c in runs.columns if "/" not in c]
    main = runs[base].assign(variant="")
    parts = [main]
    names = sorted({v for text in runs["variants"].dropna() for v in str(text).split(",") if v})
    for name in names:
        columns = {f"{name}/{m}": m for m in METRIC_COLUMNS if f"{name}/{m}" in runs}
        has = runs[list(columns)].notna().any(axis=1)
        if not has.any():
            continue
        sub = runs.loc[has, base].copy()
        for source, target in columns.items():
            sub[target] = runs.loc[has, source]
        for target in set(METRIC_COLUMNS) - set(columns.values()):
            sub[target] = np.nan
        parts.append(sub.assign(variant=name))
    return pd.concat(parts, ignore_index=True)


def runs_of(rows: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The rows that stand for `setting` in a paper's table or claim.

    An explicit 'method[k=v]' matches exactly. A bare method name matches its runs with default
    hyperparameters or, when the method only ran with others (a suite may set them, as the quick suite sets
    `augment: false` for cRT), those runs; `pick_config` then keeps one configuration.
    """
    if "[" in setting:
        return rows[rows.setting == setting]
    default = rows[rows.setting == setting]
    return default if len(default) else rows[rows.method == setting]


def pick_config(rows: pd.DataFrame, prefer_model: str | None = None) -> tuple[pd.DataFrame, int]:
    """The seeds of one configuration out of rows that may hold several, and how many others were set aside.

    Rule: prefer `prefer_model` when given (a paper's backbone), then the configuration with the most
    finished seeds, then the most recently finished one. Mixing configurations would average unlike things.
    """
    if rows.empty:
        return rows, 0
    stats = rows.groupby("config_key").agg(n=("trial_key", "size"), last=("end_time", "max"))
    if prefer_model is not None:
        models = rows.groupby("config_key")["model"].first()
        stats["model_match"] = (models == prefer_model).astype(int)
    else:
        stats["model_match"] = 0
    stats = stats.sort_values(["model_match", "n", "last"], ascending=False, kind="stable")
    best = stats.index[0]
    return rows[rows.config_key == best], len(stats) - 1


# -- artifacts ------------------------------------------------------------------------------------------
@dataclass
class RunArtifacts:
    """What reports read from one run's artifacts; None where the run has no such file."""

    result: dict[str, Any] | None = None  # result.json: history, per-class accuracy, class counts
    analysis: dict[str, np.ndarray] | None = None  # analysis.npz: weight_norm, feature_corr, class_counts


def fetch_artifacts(client: Any, run_ids: Iterable[str]) -> dict[str, RunArtifacts]:
    """Each run's result.json and analysis.npz, read through MLflow (local or remote store) into memory.

    Files go through a temporary directory that is removed before returning, so reading results never
    leaves anything behind in the results folder.
    """
    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        for run_id in run_ids:
            names = {a.path for a in client.list_artifacts(run_id)}
            arts = RunArtifacts()
            where = str(Path(scratch) / run_id)
            if RESULT_FILE in names:
                arts.result = json.loads(Path(client.download_artifacts(run_id, RESULT_FILE, where)).read_text())
            if ANALYSIS_FILE in names:
                with np.load(client.download_artifacts(run_id, ANALYSIS_FILE, where)) as data:
                    arts.analysis = {k: np.asarray(data[k], dtype=float) for k in data.files}
            out[run_id] = arts
    return out
