"""Shared fixtures: tiny fake Fashion-MNIST files and a suite YAML that trains on them in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.records.storage import SCRATCH_ENV
from tests.fakes import write_fashion_mnist
from tests.store_servers import CREDENTIALS, GcsServer, S3Server, gcs_server, s3_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA GPU: skipped, saying so, where torch sees none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def method_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`ltbench methods` caches its listing (harness.plugins.catalogue); tests keep theirs out of the home."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTBENCH_CACHE", str(path))
        yield path


@pytest.fixture(autouse=True, scope="session")
def quick_leases() -> Iterator[None]:
    """Trials renew their store lease every second (15 s by default), so that the runs that resume a killed
    attempt from the same results dir wait 2 s, not 30, for its lease to go stale (`harness.records.lease`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTBENCH_LEASE_RENEW_S", "1")
        yield


@pytest.fixture(scope="session")
def fake_fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fashion")
    write_fashion_mnist(root, per_class=40, test_per_class=5)
    return root


def write_tiny_suite(path: Path, data_root: Path, **changes) -> Path:
    suite = {
        "name": "tiny",
        "description": "two one-epoch trials on fake data",
        "datasets": ["fashion-mnist-lt"],
        "imbalance_ratios": [4],
        "methods": ["ce"],
        "seeds": [0, 1],
        "recipe": {"base": "quick", "epochs": 2, "batch_size": 32, "eval_every": 1},
        "data": {"root": str(data_root), "max_per_class": 30, "val_per_class": 5},
        "resources": {"cpu": 1, "gpu": 0},
    }
    suite.update(changes)
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.fixture
def tiny_suite(tmp_path: Path, fake_fashion_root: Path) -> Path:
    return write_tiny_suite(tmp_path / "tiny.yaml", fake_fashion_root)


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's own node-local scratch dir for trials of remote stores (not the machine's default)."""
    path = tmp_path_factory.mktemp("scratch")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SCRATCH_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def s3(scratch: Path) -> Iterator[S3Server]:
    """One S3-compatible server (moto) for every S3 test of the session, with dummy AWS_* credentials in the
    environment (so `ltbench` processes the tests start inherit them)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        with s3_server() as server:
            yield server


@pytest.fixture(scope="session")
def gcs(scratch: Path) -> Iterator[GcsServer]:
    """One Google Cloud Storage emulator for every GCS test of the session."""
    with gcs_server() as server:
        yield server


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> S3Server | GcsServer:
    """Each object store ltbench is tested on: S3 (moto) and Google Cloud Storage (an emulator)."""
    return request.getfixturevalue(request.param)
