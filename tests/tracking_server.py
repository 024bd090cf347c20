"""A real MLflow tracking server (MLflow's own Flask app) on 127.0.0.1, started in seconds for fault tests.

`mlflow server` runs uvicorn and a job executor and takes tens of seconds to answer on a busy two-core
machine; this serves the same REST handlers from one process, so a test can kill it (the server "goes
away") and start it again on the same port and store. Usage:
`python -m tests.tracking_server PORT BACKEND_STORE_URI ARTIFACTS_DIR`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(port: int, store: str, artifacts: Path) -> None:
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = store
    os.environ["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] = artifacts.resolve().as_uri()
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "mlflow-artifacts:/"
    os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "true"
    from mlflow.server import app
    from werkzeug.serving import make_server

    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
