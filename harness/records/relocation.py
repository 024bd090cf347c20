"""A results dir that was moved, copied or unpacked elsewhere keeps every artifact.

MLflow's SQLite store keeps absolute artifact URIs (`file:///old/place/mlartifacts/<run>/artifacts`): after
`mv results /elsewhere`, every artifact read would look in the old place (a copy would silently read the
original's files, and lose them when the original is deleted). Before anything reads or writes the default
store `<results>/mlflow.db`, `relocate_artifacts` points the URIs an ltbench experiment recorded under an
older `.../mlartifacts` at this results dir's own `mlartifacts/`: experiments' artifact locations, runs'
artifact URIs and the training-data sources the UI shows. A store in place is left untouched (one query).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from harness.core.errors import LtbenchError

ARTIFACTS_DIR = "mlartifacts"
DATABASE = "mlflow.db"
# MLflow's columns that hold one artifact URI each (logged models: none from ltbench, but a user's may be there)
URI_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"))


def artifacts_uri(results_dir: Path) -> str:
    """Where the default store of `results_dir` keeps its artifacts, as MLflow records it."""
    return (results_dir / ARTIFACTS_DIR).resolve().as_uri()


def _same_place(uri: str, here: str) -> bool:
    """Two file: URIs of one directory (spelled alike once decoded)."""
    return unquote(urlparse(uri).path).rstrip("/") == unquote(urlparse(here).path).rstrip("/")


def relocate_artifacts(results_dir: Path) -> list[str]:
    """Point the default store's artifact URIs from an older place of this results dir to this one; returns
    the older places it moved from ([] when the store is where it was made, or has no artifacts here)."""
    database = results_dir / DATABASE
    if not database.is_file() or not (results_dir / ARTIFACTS_DIR).is_dir():
        return []
    here = artifacts_uri(results_dir)
    suffix = "/" + ARTIFACTS_DIR
    try:
        with sqlite3.connect(database) as db:
            locations = [row[0] for row in db.execute("SELECT artifact_location FROM experiments")]
            ours = {loc.rstrip("/") for loc in locations if loc and loc.startswith("file:")}
            old = sorted(loc for loc in ours if loc.endswith(suffix) and not _same_place(loc, here))
            for before in old:
                _rewrite(db, before, here)
    except sqlite3.OperationalError as e:
        raise LtbenchError(
            f"{database} records its artifacts at another place and cannot be updated to {here} ({e}); "
            "copy the results dir somewhere writable and use that copy"
        ) from None
    return old


def _rewrite(db: sqlite3.Connection, before: str, after: str) -> None:
    """Every URI under `before` now under `after`, in the columns that hold artifact URIs."""
    n = len(before)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, column in URI_COLUMNS:
        if table not in tables:
            continue
        db.execute(
            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 (fixed names)
            f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
            (after, n + 1, before, n + 1, before + "/"),
        )
    if "datasets" in tables:  # the UI's training-data source: JSON holding the manifest's URI
        db.execute(
            "UPDATE datasets SET dataset_source = replace(dataset_source, ?, ?) WHERE instr(dataset_source, ?) > 0",
            (before + "/", after + "/", before + "/"),
        )
