"""Which MLflow tracking store a run uses, checked before anything is written: the URI's form, an HTTP
server's health, the default SQLite store in the results dir, and how long the driver waits for a server
that stopped answering."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
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
SQLITE_HEADER = b"SQLite format 3\x00"
# SQLAlchemy's default driver of each database a tracking URI may name, and each driver's module and package.
DATABASE_DRIVERS = {"postgresql": "psycopg2", "mysql": "mysqldb", "mssql": "pyodbc"}
DRIVER_MODULES = {
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "psycopg": ("psycopg", "psycopg[binary]"),
    "mysqldb": ("MySQLdb", "mysqlclient"),
    "mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    "pymysql": ("pymysql", "PyMySQL"),
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
    if scheme == "file":
        raise LtbenchError(
            f"--tracking-uri {uri!r}: MLflow 3 cannot track to a file store; use sqlite:///path/to/mlflow.db or "
            "a tracking server (leave it out for the local SQLite store)"
        )
    if scheme in DATABASE_DRIVERS:
        driver = parsed.scheme.partition("+")[2] or DATABASE_DRIVERS[scheme]
        module, package = DRIVER_MODULES.get(driver, (driver, driver))
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise LtbenchError(
                f"--tracking-uri {uri!r} needs the Python package {package!r} (SQLAlchemy's {scheme}+{driver} "
                f"driver), which is not installed; pip install {package}"
            )
    if scheme == "sqlite":
        check_sqlite_store(Path(uri[len("sqlite:///") :]))


def check_sqlite_store(path: Path) -> None:
    """An SQLite tracking store that exists must be an SQLite file: a directory or another file in its place
    fails here in one line, not in SQLAlchemy's traceback after the run has begun."""
    if not path.exists():
        return
    if path.is_dir():
        raise LtbenchError(f"{path} is a directory, not an MLflow SQLite store; move it away and rerun")
    with open(path, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise LtbenchError(
            f"{path} is not an SQLite database (a damaged or foreign file); move it away to start a new store, or "
            "restore it from a backup"
        )
    try:  # read-only and immutable: the check writes no journal beside the store
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise LtbenchError(f"{path} is not an SQLite database that can be read ({e}); move it away and rerun") from None


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
