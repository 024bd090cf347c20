"""The driver's MLflow client: one experiment per suite, one run per trial, found again by its trial key.

Only the driver process talks to MLflow (trials report to it through Ray), so the embedded SQLite store
never sees concurrent writers. The default store is `sqlite:///<results>/mlflow.db` with artifacts under
`<results>/mlartifacts`; any tracking server works through its URI. With a remote trial store (`--storage`),
a new experiment keeps its artifacts in that store, under `mlflow-artifacts/`; an experiment that exists
keeps the artifact location it was created with (MLflow cannot move it). The tracker reads each trial's files
through the store, never from a worker's disk.

Training never waits on MLflow. Every write the driver makes while trials run goes through `Tracker.guard`:
when a tracking server stops answering, the write is dropped (the trial's own files keep everything), the
driver checks now and then whether the server is back, and at the end `reconcile` rebuilds what MLflow
lacks from the trials' records, waiting at most `retry_seconds` for the server before giving up with
`TrackingUnavailable`. A rerun reconciles the same way before it schedules anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.core.errors import LtbenchError, TrackingUnavailable
from harness.core.trial import TrialConfig, flatten, ratio_label
from harness.records.artifacts import CONFIG_FILE, LOGGED_FILES, MANIFEST_FILE, PER_CLASS_FILE, RESULT_FILE
from harness.records.mlflow_names import (
    ACCURACY_UNIT_TAG,
    LEGACY_FINAL,
    PERCENT,
    epoch_metric,
    final_metric,
    logged_value,
)
from harness.records.provenance import git_commit, package_versions
from harness.records.relocation import artifacts_uri, relocate_artifacts
from harness.records.storage import Storage, TrialFiles
from harness.records.suite_configurations import overrides_text
from harness.records.tracking_uri import MLFLOW_HTTP_SETTINGS, check_reachable, default_tracking_uri, use_artifact_store

TRIAL_KEY_TAG = "ltbench.trial_key"
FAILURE_TAG = "ltbench.failure"
COMMIT_TAG = "ltbench.git_commit"
METHOD_CODE_TAG = "ltbench.method_code"
CLASSES_TAG = "ltbench.classes."  # + many / medium / few: how many classes the shot bucket holds
OVERRIDES_TAG = "ltbench.overrides"  # the `--set` assignments of the run that made it (`overrides_text`)
MAX_PARAM_CHARS = 6000
PROBE_EVERY_S = 5.0  # while the server is away, how often a write first checks whether it is back
# Row keys that are not metrics: the step, the epoch's wall-clock end (the metric timestamp), and
# constants of the data (classes per bucket), which become tags.
NOT_METRICS = ("epoch", "time")
CONSTANT_METRIC = re.compile(r"^(?:val|test)_(many|medium|few)_classes$")
ARTIFACTS_FOLDER = "mlflow-artifacts"  # in a remote trial store, beside the trials

T = TypeVar("T")


class Tracker:
    def __init__(
        self,
        uri: str,
        experiment: str,
        results_dir: Path,
        storage: Storage | None = None,
        overrides: list[str] | None = None,
    ) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        quiet_mlflow()
        self.uri = uri
        self.remote = uri.startswith(("http://", "https://"))
        self.overrides = list(overrides or [])  # the run's `--set` assignments, tagged on each new run
        if self.remote:
            for name, value in MLFLOW_HTTP_SETTINGS.items():
                os.environ.setdefault(name, value)
        check_reachable(uri)
        if uri == default_tracking_uri(results_dir):
            relocate_artifacts(results_dir)  # a moved results dir logs new artifacts beside its old ones
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.down_since: float | None = None  # when the server stopped answering (None: it answers)
        self.had_outage = False
        self._last_probe = 0.0
        self._logged_steps: dict[str, set[int]] = {}  # run -> epochs already logged, so none is logged twice
        # run -> whether it is logged in the current layout (percent, sections; `mlflow_names`); a run made by
        # an older ltbench and resumed now keeps its own layout, so no run mixes two units
        self._current_layout: dict[str, bool] = {}
        try:
            found = self.client.get_experiment_by_name(experiment)
        except Exception as e:  # connection errors surface as several exception types
            raise LtbenchError(
                f"cannot reach the MLflow tracking store {uri}: {str(e).splitlines()[0]}; "
                "check --tracking-uri (or leave it out for the local SQLite store)"
            ) from e
        if storage is not None and not storage.is_local:
            use_artifact_store(storage)
        if found is None:
            artifacts = None
            if storage is not None and not storage.is_local:
                artifacts = storage.child_uri(ARTIFACTS_FOLDER)
            elif uri.startswith("sqlite:"):
                artifacts = artifacts_uri(results_dir)
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            self.experiment_id = found.experiment_id

    # -- a server that goes away ----------------------------------------------------------------------
    def answers(self) -> bool:
        try:
            check_reachable(self.uri, timeout=2.0)
            return True
        except LtbenchError:
            return False

    def guard(self, action: Callable[..., T], *args: Any) -> T | None:
        """Run one MLflow write; when the server is away, drop it (returning None) instead of raising, so a
        Tune callback never stops the trials. Errors of a server that answers are real errors: raised."""
        if self.down_since is not None:
            if time.monotonic() - self._last_probe < PROBE_EVERY_S:
                return None
            self._last_probe = time.monotonic()
            if not self.answers():
                return None
            print(f"ltbench: the MLflow tracking server {self.uri} answers again; logging resumes", file=sys.stderr)
            self.down_since = None
        try:
            return action(*args)
        except Exception:
            if not self.remote or self.answers():
                raise
            self.down_since = self._last_probe = time.monotonic()
            self.had_outage = True
            print(
                f"ltbench: the MLflow tracking server {self.uri} stopped answering; trials go on and keep their "
                "results on disk, and MLflow is filled in when it is back",
                file=sys.stderr,
            )
            return None

    def wait_until_answering(self, seconds: float) -> None:
        """Block until the server answers, at most `seconds`; then `TrackingUnavailable`."""
        deadline = time.monotonic() + seconds
        while not self.answers():
            if time.monotonic() > deadline:
                raise TrackingUnavailable(
                    f"the MLflow tracking server {self.uri} stopped answering and was not back within "
                    f"{seconds:g} s; the trials' results are kept on disk: start the server again and rerun "
                    "the same command to log them (nothing is retrained)"
                )
            time.sleep(min(PROBE_EVERY_S, max(0.1, deadline - time.monotonic())))
        self.down_since = None

    # -- finding runs -------------------------------------------------------------------------------
    def runs(self, status: str | None = None) -> list:
        query = f"attributes.status = '{status}'" if status else ""
        return self.client.search_runs([self.experiment_id], filter_string=query, max_results=50_000)

    def finished_runs(self) -> dict[str, str]:
        """Trial key -> the harness commit that trained it, for every FINISHED run."""
        return {r.data.tags.get(TRIAL_KEY_TAG): r.data.tags.get(COMMIT_TAG, "unknown") for r in self.runs("FINISHED")}

    def find_run(self, trial_key: str):
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{TRIAL_KEY_TAG}` = '{trial_key}'", max_results=10
        )
        finished = [r for r in runs if r.info.status == "FINISHED"]
        return (finished or runs or [None])[0]

    # -- writing -------------------------------------------------------------------------------------
    def open_run(self, cfg: TrialConfig) -> str:
        """The trial's run: the existing one (a resumed trial logs into it again) or a new one."""
        existing = self.find_run(cfg.key)
        if existing is not None:
            run_id = existing.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            if FAILURE_TAG in existing.data.tags:
                self.client.delete_tag(run_id, FAILURE_TAG)
            self._current_layout[run_id] = existing.data.tags.get(ACCURACY_UNIT_TAG) == PERCENT
            self._logged_steps[run_id] = self._epochs_logged(run_id)
            return run_id
        versions = package_versions()
        tags = {
            TRIAL_KEY_TAG: cfg.key,
            "ltbench.suite": cfg.suite,
            **trial_tags(cfg),
            COMMIT_TAG: git_commit(),
            OVERRIDES_TAG: overrides_text(self.overrides),
            METHOD_CODE_TAG: cfg.method_code,
            ACCURACY_UNIT_TAG: PERCENT,
            **plugin_tags(cfg.method),
            **{f"ltbench.version.{k}": v for k, v in versions.items()},
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=cfg.label())
        from mlflow.entities import Param

        identity = {k: v for k, v in cfg.as_dict().items() if k not in ("suite", "method_code")}
        identity["imbalance_ratio"] = trial_tags(cfg)["ltbench.imbalance_ratio"]  # "100" as in the tag, not 100.0
        params = [Param(k, param_value(v)) for k, v in flatten(identity).items()]
        self.client.log_batch(run.info.run_id, params=params)
        self.client.log_dict(run.info.run_id, cfg.as_dict(), CONFIG_FILE)
        self._logged_steps[run.info.run_id] = set()
        self._current_layout[run.info.run_id] = True
        return run.info.run_id

    def log_epoch(self, run_id: str, row: dict[str, Any]) -> None:
        """One epoch's metrics at their step (the epoch) and timestamp (when the epoch ended); an epoch
        this run already has is skipped, so a restarted trial never logs an epoch twice."""
        from mlflow.entities import Metric

        step = int(row["epoch"])
        logged = self._logged_steps.setdefault(run_id, set())
        if step in logged:
            return
        stamp = int(1000 * float(row.get("time", time.time())))
        current = self._layout(run_id)
        metrics = [
            Metric(epoch_metric(k) if current else k, logged_value(k, float(v), current), stamp, step)
            for k, v in row.items()
            if _is_metric(k, v)
        ]
        self.client.log_batch(run_id, metrics=metrics)
        logged.add(step)

    def record_result(self, run_id: str, files: TrialFiles) -> None:
        """Complete the run from the trial's records in its store: epochs MLflow lacks, final metrics, what
        ran, and the trial's files as artifacts (read on the driver, from the store)."""
        result = files.read_json(RESULT_FILE)
        # An epoch reported just before an interruption (or while the server was away) may never have
        # reached MLflow; the trial's own history is complete, so log whatever epochs the run lacks.
        self._logged_steps[run_id] = self._epochs_logged(run_id)
        for row in result.get("history", []):
            self.log_epoch(run_id, row)
        from mlflow.entities import Metric

        finals = dict(result["metrics"])
        for variant, values in result.get("variants", {}).items():
            finals.update({f"{variant}_{k}": v for k, v in values.items()})
        now = int(1000 * time.time())
        last = max((int(row["epoch"]) for row in result.get("history", [])), default=0)
        current = self._layout(run_id)
        # a run completed before (its trial retrained after its files were deleted) already holds its finals:
        # log only those it lacks or that changed, so each final metric has one entry, not one per completion
        logged = self.client.get_run(run_id).data.metrics
        metrics = []
        for name, v in finals.items():
            if not _is_metric(name, v):
                continue
            key = final_metric(name) if current else LEGACY_FINAL + name
            value = logged_value(name, float(v), current)
            if logged.get(key) != value:
                metrics.append(Metric(key, value, now, last))
        # classes per bucket: constants of the data, so tags (params would enter the reports' config key)
        for k, v in result["metrics"].items():
            if (m := CONSTANT_METRIC.match(k)) and k.startswith("test_"):
                self.client.set_tag(run_id, f"{CLASSES_TAG}{m.group(1)}", str(v))
        self.client.log_batch(run_id, metrics=metrics)
        # The trial's own view of where it ran (on a cluster it may differ from the driver's), and what actually
        # ran where the config leaves it open (precision "auto", the stage-two schedule, cuDNN settings).
        self.client.set_tag(run_id, "ltbench.device", result.get("device", "unknown"))
        from mlflow.entities import Param

        ran = flatten({"ran": result.get("effective", {})})
        self.client.log_batch(run_id, params=[Param(k, param_value(v)) for k, v in ran.items()])
        for name, value in result.get("versions", {}).items():
            self.client.set_tag(run_id, f"ltbench.version.{name}", value)
        with tempfile.TemporaryDirectory() as tmp:
            for name in LOGGED_FILES:
                if files.exists(name):
                    copy = Path(tmp) / name
                    copy.write_bytes(files.read_bytes(name))
                    self.client.log_artifact(run_id, str(copy))
            self._log_training_data(run_id, Path(tmp) / MANIFEST_FILE)
            table = Path(tmp) / PER_CLASS_FILE
            table.write_text(per_class_table(result, class_names(run_id, self.client)))
            self.client.log_artifact(run_id, str(table))
        self.client.set_terminated(run_id, "FINISHED")

    def _epochs_logged(self, run_id: str) -> set[int]:
        loss = epoch_metric("train_loss") if self._layout(run_id) else "train_loss"
        return {m.step for m in self.client.get_metric_history(run_id, loss)}

    def _layout(self, run_id: str) -> bool:
        """Whether the run is logged in the current layout (a run this tracker did not open: asked once)."""
        if run_id not in self._current_layout:
            tags = self.client.get_run(run_id).data.tags
            self._current_layout[run_id] = tags.get(ACCURACY_UNIT_TAG) == PERCENT
        return self._current_layout[run_id]

    def _log_training_data(self, run_id: str, manifest: Path) -> None:
        """The training images as an MLflow dataset input (the UI's Dataset column): named by dataset and
        ratio, its digest that of the manifest (which images), its source the manifest artifact."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        run = self.client.get_run(run_id)
        if run.inputs is not None and run.inputs.dataset_inputs:
            return  # logged when this run finished before (a reconciled rerun)
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest.is_file() else "unknown"
        tags = run.data.tags
        name = f"{tags.get('ltbench.dataset')}-r{tags.get('ltbench.imbalance_ratio')}-train"
        source = _manifest_source(f"{run.info.artifact_uri}/manifest.json")
        dataset = MetaDataset(source=source, name=name, digest=digest)
        entity = dataset._to_mlflow_entity()
        self.client.log_inputs(run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "training")])])

    def interrupt(self, run_id: str) -> None:
        """A trial stopped by the user: KILLED, and resumed into this same run by a rerun."""
        self.client.set_tag(run_id, FAILURE_TAG, "interrupted; rerun the suite to resume it")
        self.client.set_terminated(run_id, "KILLED")

    def fail(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, FAILURE_TAG, reason[:5000])
        self.client.set_terminated(run_id, "FAILED")

    def reconcile(self, finished: list[tuple[TrialConfig, TrialFiles]], failed: list[tuple[TrialConfig, str]]) -> None:
        """Make MLflow agree with the trials' own records: a trial whose result is in the store has a FINISHED
        run with every epoch, a failed one a FAILED run with its reason."""
        for cfg, files in finished:
            run = self.find_run(cfg.key)
            if run is None or run.info.status != "FINISHED":
                self.record_result(self.open_run(cfg), files)
        for cfg, reason in failed:
            run = self.find_run(cfg.key)
            if run is None or run.info.status not in ("FINISHED", "FAILED"):
                self.fail(self.open_run(cfg), reason)


def quiet_mlflow() -> None:
    """MLflow's INFO lines (creating and migrating its database tables) say nothing a user acts on and break
    the run's own output; its warnings and errors still show, except one: its SQL store logs every database
    error with a full traceback before raising it, and ltbench says each such error itself, in one line
    (a full disk, a locked or corrupt database)."""
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def _manifest_source(uri: str) -> Any:
    """A dataset source pointing at the manifest artifact; MLflow resolves file:, s3: etc. itself, and an
    `mlflow-artifacts:` URI (a tracking server's proxy) is kept as a plain URL."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return resolve_dataset_source(uri)
    except Exception:  # no resolver for this scheme
        return HTTPDatasetSource(uri)


def class_names(run_id: str, client: Any) -> list[str]:
    """The run's dataset's class names by class id ([] when the dataset lists none, e.g. ImageNet-LT's 1000)."""
    from harness.data import DATASETS

    dataset = client.get_run(run_id).data.tags.get("ltbench.dataset", "")
    return list(DATASETS.get(dataset).class_names) if dataset in DATASETS else []


def per_class_table(result: dict[str, Any], names: list[str]) -> str:
    """`per_class_acc.csv`: a row per class with its name, its training and profile counts and its accuracy
    (%) on each split."""
    splits = list(result["per_class_acc"])
    rows = ["class,class_name,train_count,lt_count," + ",".join(f"{s}_acc_percent" for s in splits)]
    for c, (n_train, n_lt) in enumerate(zip(result["train_counts"], result["class_counts"], strict=True)):
        name = names[c] if c < len(names) else ""
        accs = ",".join(f"{100 * result['per_class_acc'][s][c]:.2f}" for s in splits)
        rows.append(f"{c},{_csv_cell(name)},{n_train},{n_lt},{accs}")
    return "\n".join(rows) + "\n"


def _csv_cell(text: str) -> str:
    return f'"{text}"' if "," in text or '"' in text else text


def plugin_tags(method: str) -> dict[str, str]:
    """The distribution and version of the plugin package a method comes from; {} for a built-in method."""
    from harness.plugins.loading import method_origin

    origin = method_origin(method)
    if origin is None:
        return {}
    distribution, version = origin
    return {"ltbench.plugin.distribution": distribution, "ltbench.plugin.version": version}


def trial_tags(cfg: TrialConfig) -> dict[str, str]:
    """What the MLflow UI filters and groups runs by."""
    ratio = ratio_label(cfg.imbalance_ratio, "value")
    return {
        "ltbench.dataset": cfg.dataset,
        "ltbench.imbalance_ratio": ratio,
        "ltbench.method": cfg.method,
        "ltbench.seed": str(cfg.seed),
    }


def _is_metric(name: str, value: Any) -> bool:
    return (
        name not in NOT_METRICS
        and not CONSTANT_METRIC.match(name)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def param_value(value: Any) -> str:
    """A config value as MLflow keeps it in a param (lists and dicts as JSON)."""
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text[:MAX_PARAM_CHARS]
