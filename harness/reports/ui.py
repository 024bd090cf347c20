"""`ltbench ui`: MLflow's UI on the results store, opened on the suite's runs.

MLflow 3's UI has two modes, GenAI (traces, prompts; its default) and model training (runs, metrics),
chosen by a sidebar switch or by the `workflowType` query parameter of an experiment page. In GenAI mode an
experiment of training runs looks empty, so the URLs printed here name the mode: an experiment's runs page
with `workflowType=machine_learning`. Experiments also get MLflow's `mlflow.experimentKind` tag
(`custom_model_development`), without which the UI asks the user what kind of experiment it is.
"""

from __future__ import annotations

import errno
import socket

from harness.core.errors import LtbenchError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
WORKFLOW_PARAM = "workflowType"  # MLflow 3 UI: "genai" or "machine_learning"
MODEL_TRAINING = "machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's own "Default" experiment, never a suite


def runs_url(host: str, port: int, experiment_id: str, base: str | None = None) -> str:
    """The address of an experiment's runs table in model-training mode (the UI routes after `#`).

    A server bound to every interface (0.0.0.0, ::) is browsed on this machine at 127.0.0.1.
    """
    if base is None:
        shown = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
        base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_PARAM}={MODEL_TRAINING}"


def check_can_listen(host: str, port: int) -> None:
    """The UI's address is free and this machine can bind it: refused here in one line, before MLflow's server
    starts only to fail (or, on a busy port, to exit 0 without serving anything)."""
    if not 1 <= port <= 65535:
        raise LtbenchError(f"--port must be in 1..65535, got {port}; e.g. --port {DEFAULT_PORT}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise LtbenchError(
            f"--host {host!r} is not an address of this machine ({e.strerror}); e.g. 127.0.0.1"
        ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise LtbenchError(
                    f"port {port} on {host} is in use by another program; pick another with --port"
                ) from None
            raise LtbenchError(
                f"cannot listen on {host}:{port} ({e.strerror or e}); --host must be an address of this machine "
                "(127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None


def suite_experiments(client, suite: str | None) -> list[tuple[str, str]]:
    """(name, id) of the suite's experiment, or of every suite's when `suite` is None."""
    if suite is not None:
        found = client.get_experiment_by_name(suite)
        if found is None:
            names = ", ".join(e.name for e in client.search_experiments() if e.experiment_id != DEFAULT_EXPERIMENT_ID)
            raise LtbenchError(
                f"no suite {suite!r} in this store (suites: {names or 'none'}); run 'ltbench run {suite}' first"
            )
        return [(found.name, found.experiment_id)]
    return sorted(
        (e.name, e.experiment_id) for e in client.search_experiments() if e.experiment_id != DEFAULT_EXPERIMENT_ID
    )


def mark_model_training(client, experiment_id: str) -> None:
    """Tag an experiment as model training, so the UI neither asks nor guesses its kind."""
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
