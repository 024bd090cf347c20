"""A real S3 API on 127.0.0.1 for tests: moto's server in a subprocess, with one bucket and dummy credentials.

Every client in the tests (pyarrow's S3 filesystem, boto3, MLflow's artifact client, the `ltbench` processes
the tests start) speaks HTTP to it exactly as to AWS; only the endpoint differs. Usage:
`with s3_server() as s3: s3.uri("trials")`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix/`, relative to it; not the empty "folder/" markers pyarrow leaves when it
        deletes a folder's last object."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/")
        keys = (o["Key"] for page in pages for o in page.get("Contents", []))
        return sorted(k[len(prefix) + 1 :] for k in keys if not k.endswith("/"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(bucket: str = "ltbench") -> Iterator[S3Server]:
    """Start moto's S3 server (credentials must already be in the environment: see CREDENTIALS), wait until it
    answers, create `bucket`; stop the server at the end."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.1)
        server = S3Server(port, bucket)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
