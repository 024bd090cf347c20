"""Which MLflow tracking store a run uses, checked before anything is written: the URI's form, an HTTP
server's health, the default SQLite store in the results dir, and how long the driver waits for a server
that stopped answering."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from harness.core.errors import LtbenchError
from harness.records.storage import Storage

# How long the driver waits for a tracking server that stopped answering, before it ends with one line;
# the environment variable overrides it (tests shorten it).
TRACKING_RETRY_ENV = "LTBENCH_TRACKING_RETRY_S"
DEFAULT_TRACKING_RETRY_S = 120.0
# MLflow's own HTTP client retries a dead server for minutes; ltbench retries on its own terms instead.
MLFLOW_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
STORE_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")
S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"


def check_tracking_uri(uri: str) -> None:
    """A tracking URI must name a store MLflow can open: a malformed one fails here in one line."""
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    hint = "e.g. http://127.0.0.1:5000 or sqlite:///results/mlflow.db (leave it out for the local SQLite store)"
    if scheme not in STORE_SCHEMES:
        raise LtbenchError(f"--tracking-uri {uri!r} is not an MLflow tracking URI; {hint}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if scheme in ("http", "https", "postgresql", "mysql", "mssql") and (not parsed.hostname or port == -1):
        raise LtbenchError(f"--tracking-uri {uri!r} has no valid host[:port]; {hint}")
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
        raise LtbenchError(f"--tracking-uri {uri!r}: a SQLite URI is sqlite:///relative/path or sqlite:////abs/path")


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


def retry_seconds() -> float:
    text = os.environ.get(TRACKING_RETRY_ENV)
    try:
        return float(text) if text else DEFAULT_TRACKING_RETRY_S
    except ValueError:
        raise LtbenchError(f"{TRACKING_RETRY_ENV} must be a number of seconds, got {text!r}") from None


def default_tracking_uri(results_dir: Path) -> str:
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def use_artifact_store(storage: Storage) -> None:
    """Let MLflow's artifact client reach a remote store's S3-compatible server: MLflow takes the endpoint from
    `MLFLOW_S3_ENDPOINT_URL`, not from the URI (a value already set wins)."""
    if storage.endpoint_url is not None:
        os.environ.setdefault(S3_ENDPOINT_ENV, storage.endpoint_url)
