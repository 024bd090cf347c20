"""MLflow tracking: one experiment per suite, one run per trial, found again by its trial key.

Only the driver process talks to MLflow (trials report to it through Ray), so the embedded SQLite store
never sees concurrent writers. The default store is `sqlite:///<results>/mlflow.db` with artifacts under
`<results>/mlartifacts`; any tracking server works through its URI.
"""

from __future__ import annotations

import json
import math
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness.artifacts import CONFIG_FILE, LOGGED_FILES, PER_CLASS_FILE, RESULT_FILE
from harness.config import TrialConfig, flatten
from harness.errors import LtbenchError
from harness.provenance import git_commit, package_versions

TRIAL_KEY_TAG = "ltbench.trial_key"
FAILURE_TAG = "ltbench.failure"
MAX_PARAM_CHARS = 6000


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """An HTTP tracking server must answer its /health endpoint within seconds (MLflow's own client would
    retry for minutes before failing)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise LtbenchError(
            f"cannot reach the MLflow tracking server {uri} ({reason}); start it (mlflow server ...) or fix "
            "--tracking-uri (leave it out for the local SQLite store)"
        ) from e


def default_tracking_uri(results_dir: Path) -> str:
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


class Tracker:
    def __init__(self, uri: str, experiment: str, results_dir: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri
        check_reachable(uri)
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
        except Exception as e:  # connection errors surface as several exception types
            raise LtbenchError(
                f"cannot reach the MLflow tracking store {uri}: {str(e).splitlines()[0]}; "
                "check --tracking-uri (or leave it out for the local SQLite store)"
            ) from e
        if found is None:
            artifacts = None
            if uri.startswith("sqlite:"):
                artifacts = (results_dir / "mlartifacts").resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            self.experiment_id = found.experiment_id

    # -- finding runs -------------------------------------------------------------------------------
    def runs(self, status: str | None = None) -> list:
        query = f"attributes.status = '{status}'" if status else ""
        return self.client.search_runs([self.experiment_id], filter_string=query, max_results=50_000)

    def finished_keys(self) -> set[str]:
        return {r.data.tags.get(TRIAL_KEY_TAG) for r in self.runs("FINISHED")}

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
            self.client.update_run(existing.info.run_id, status="RUNNING")
            if FAILURE_TAG in existing.data.tags:
                self.client.delete_tag(existing.info.run_id, FAILURE_TAG)
            return existing.info.run_id
        versions = package_versions()
        tags = {
            TRIAL_KEY_TAG: cfg.key,
            "ltbench.suite": cfg.suite,
            "ltbench.dataset": cfg.dataset,
            "ltbench.method": cfg.method,
            "ltbench.git_commit": git_commit(),
            **{f"ltbench.version.{k}": v for k, v in versions.items()},
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=cfg.label())
        from mlflow.entities import Param

        params = [
            Param(k, _param_value(v))
            for k, v in flatten({k: v for k, v in cfg.as_dict().items() if k != "suite"}).items()
        ]
        self.client.log_batch(run.info.run_id, params=params)
        self.client.log_dict(run.info.run_id, cfg.as_dict(), CONFIG_FILE)
        return run.info.run_id

    def log_epoch(self, run_id: str, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(row["epoch"])
        metrics = [
            Metric(k, float(v), 0, step)
            for k, v in row.items()
            if k != "epoch" and isinstance(v, int | float) and math.isfinite(v)
        ]
        self.client.log_batch(run_id, metrics=metrics)

    def finish(self, run_id: str, trial_dir: Path, device: str | None = None) -> None:
        result = json.loads((trial_dir / RESULT_FILE).read_text())
        # An epoch reported just before an interruption may never have reached the driver; the trial's own
        # history is complete, so log whatever epochs the run lacks (an epoch is checkpointed before it is
        # reported, so a resumed trial never reports one twice).
        logged = {m.step for m in self.client.get_metric_history(run_id, "train_loss")}
        for row in result.get("history", []):
            if int(row["epoch"]) not in logged:
                self.log_epoch(run_id, row)
        from mlflow.entities import Metric

        finals = {f"final_{k}": v for k, v in result["metrics"].items()}
        for variant, values in result.get("variants", {}).items():
            finals.update({f"final_{variant}_{k}": v for k, v in values.items()})
        metrics = [
            Metric(name, float(v), 0, 0)
            for name, v in finals.items()
            if isinstance(v, int | float) and math.isfinite(float(v))
        ]
        self.client.log_batch(run_id, metrics=metrics)
        # The trial's own view of where it ran (on a cluster it may differ from the driver's).
        self.client.set_tag(run_id, "ltbench.device", result.get("device", device or "unknown"))
        for name, value in result.get("versions", {}).items():
            self.client.set_tag(run_id, f"ltbench.version.{name}", value)
        for name in LOGGED_FILES:
            if (trial_dir / name).is_file():
                self.client.log_artifact(run_id, str(trial_dir / name))
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / PER_CLASS_FILE
            rows = ["class,train_count,lt_count," + ",".join(result["per_class_acc"])]
            for c, (n_train, n_lt) in enumerate(zip(result["train_counts"], result["class_counts"], strict=True)):
                accs = ",".join(str(result["per_class_acc"][s][c]) for s in result["per_class_acc"])
                rows.append(f"{c},{n_train},{n_lt},{accs}")
            table.write_text("\n".join(rows) + "\n")
            self.client.log_artifact(run_id, str(table))
        self.client.set_terminated(run_id, "FINISHED")

    def interrupt(self, run_id: str) -> None:
        """A trial stopped by the user: KILLED, and resumed into this same run by a rerun."""
        self.client.set_tag(run_id, FAILURE_TAG, "interrupted; rerun the suite to resume it")
        self.client.set_terminated(run_id, "KILLED")

    def fail(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, FAILURE_TAG, reason[:5000])
        self.client.set_terminated(run_id, "FAILED")


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text[:MAX_PARAM_CHARS]
