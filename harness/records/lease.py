"""A per-trial lease in the trial store, so that two drivers sharing one `--storage` never train one trial.

The results dir's lock (`results_dir.py`) keeps one driver per results dir; a store shared by several results
dirs (two people, two terminals, the README's cluster set-up) needs its own guard, per trial: before a
worker trains a trial it creates `<trial>/lease.json` with an atomic create-if-absent (a hard link locally,
which fails if the name exists; S3's conditional `PutObject` with `If-None-Match: *`), renews it every
`renew_s` while the trial trains, and deletes it when done. A worker that finds a lease held waits, saying
once who holds it, and trains (or, if the holder finished, reads the result) when the lease goes away.

On Google Cloud Storage the same is done with generation preconditions: create with `ifGenerationMatch=0`,
renew and take over with `ifGenerationMatch` on the generation read, release with it too.

A lease left by the same results dir (its `home`: the driver's host and results dir) is stale sooner: after
`SAME_HOME_STALE_RENEWALS` of its holder's renewal periods unchanged. The driver holds that results dir's
lock, so the holder is an attempt of this trial that Ray gave up on (a worker that died and is being
retried, or an earlier run of the results dir that was killed); the short wait only makes sure it is not a
worker cut off from the cluster that still renews.

A lease that has not changed for `stale_s` of the waiter's own clock (no clocks are compared across nodes)
belongs to a dead driver or node and is taken over: atomically on S3 and GCS (a write conditional on the
stale version); locally by an atomic swap of the file (`os.replace`) after checking it is still the stale
one. A holder that finds at renewal that its lease was taken over stops its trial (`LeaseLost`) rather than
train beside the new holder.

Other pyarrow filesystems (HDFS, ...) offer no conditional write; there the lease is written and read back,
which narrows the race to the write's latency but does not close it (listed in the docs). The clients of the
conditional writes come with the store's extra: `ltbench[s3]` (boto3), `ltbench[gcs]`
(google-cloud-storage); `check_lease_client` says which is missing before a run starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.core.errors import LtbenchError
from harness.records.storage import Storage, TrialFiles

LEASE_FILE = "lease.json"
RENEW_ENV = "LTBENCH_LEASE_RENEW_S"  # tests shorten it
DEFAULT_RENEW_S = 15.0
STALE_RENEWALS = 6  # a lease unchanged for this many renewal periods is stale
SAME_HOME_STALE_RENEWALS = 2  # ... and one from this results dir, for this many of its holder's periods


class LeaseLost(LtbenchError):
    """Another driver took this trial's lease over (it found ours stale): this attempt must stop."""


def renew_seconds() -> float:
    return float(os.environ.get(RENEW_ENV) or DEFAULT_RENEW_S)


class _LocalBackend:
    """The lease as a file in a local (or network-mounted POSIX) store."""

    def __init__(self, files: TrialFiles) -> None:
        self.path = files.local_dir / LEASE_FILE

    def create(self, content: bytes) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{LEASE_FILE}.{uuid.uuid4().hex}")
        temp.write_bytes(content)
        try:
            os.link(temp, self.path)  # atomic, and fails if the name exists; the lease is whole when it appears
            return content
        except FileExistsError:
            return None
        finally:
            temp.unlink(missing_ok=True)

    def read(self) -> tuple[bytes, Any] | None:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return content, content  # the content is its own version: it holds a token new at every write

    def replace(self, version: Any, content: bytes) -> Any:
        """Write the lease anew if it still reads as `version`. `os.replace` swaps the file in one step, so the
        name is never free for a waiter's create; of two takers of one stale lease both may write, and the
        one whose write is not the last finds at its next renewal that the lease is not its own, and stops."""
        found = self.read()
        if found is None or found[1] != version:
            return None
        temp = self.path.with_name(f".{LEASE_FILE}.{uuid.uuid4().hex}")
        temp.write_bytes(content)
        os.replace(temp, self.path)
        return content

    def delete(self, version: Any) -> None:
        self.path.unlink(missing_ok=True)


class _S3Backend:
    """The lease as an object, written with S3's conditional writes (`If-None-Match`, `If-Match`)."""

    def __init__(self, files: TrialFiles) -> None:
        import boto3

        storage = files.storage
        bucket, _, prefix = storage.remote_path(files.key, LEASE_FILE).partition("/")
        self.bucket, self.key = bucket, prefix
        region = getattr(storage.filesystem, "region", None) or None
        self.client = boto3.client("s3", endpoint_url=storage.endpoint_url, region_name=region)

    def _put(self, content: bytes, **condition: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=content, **condition)["ETag"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise

    def create(self, content: bytes) -> Any:
        return self._put(content, IfNoneMatch="*")

    def read(self) -> tuple[bytes, Any] | None:
        from botocore.exceptions import ClientError

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return found["Body"].read(), found["ETag"]

    def replace(self, version: Any, content: bytes) -> Any:
        return self._put(content, IfMatch=version)

    def delete(self, version: Any) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


class _GcsBackend:
    """The lease as an object, written with GCS's generation preconditions: `ifGenerationMatch=0` creates
    it only if absent, `ifGenerationMatch=<generation>` replaces or deletes it only if unchanged since read.
    The client takes the pyarrow filesystem's endpoint and credentials (anonymous, an access token, or the
    environment's default credentials, as pyarrow)."""

    def __init__(self, files: TrialFiles) -> None:
        from google.cloud import storage as gcs

        options = files.storage.filesystem.__reduce__()[1][0]  # what the GcsFileSystem was made with
        bucket, _, self.name = files.storage.remote_path(files.key, LEASE_FILE).partition("/")
        settings: dict[str, Any] = {"project": options.get("project_id") or None}
        if options.get("endpoint_override"):
            endpoint = options["endpoint_override"]
            scheme = options.get("scheme") or "https"
            settings["client_options"] = {"api_endpoint": endpoint if "://" in endpoint else f"{scheme}://{endpoint}"}
        if options.get("anonymous"):
            from google.auth.credentials import AnonymousCredentials

            settings.update(credentials=AnonymousCredentials(), project=settings["project"] or "anonymous")
        elif options.get("access_token"):
            from google.oauth2.credentials import Credentials

            settings["credentials"] = Credentials(options["access_token"])
        self.bucket = gcs.Client(**settings).bucket(bucket)

    def _write(self, content: bytes, generation: int) -> Any:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(self.name)  # a blob object per request: renewals run on their own thread
        try:
            blob.upload_from_string(content, content_type="application/json", if_generation_match=generation)
        except PreconditionFailed:
            return None
        return blob.generation

    def create(self, content: bytes) -> Any:
        return self._write(content, 0)

    def read(self) -> tuple[bytes, Any] | None:
        from google.api_core.exceptions import NotFound

        blob = self.bucket.blob(self.name)
        try:
            content = blob.download_as_bytes()
        except NotFound:
            return None
        return content, blob.generation

    def replace(self, version: Any, content: bytes) -> Any:
        return self._write(content, version)

    def delete(self, version: Any) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        with contextlib.suppress(NotFound, PreconditionFailed):  # gone, or another holder's by now
            self.bucket.blob(self.name).delete(if_generation_match=version)


class _WriteThenReadBackend:
    """Stores with no conditional write reachable here: write, then read back (narrows, does not close, the
    race between two creators)."""

    def __init__(self, files: TrialFiles) -> None:
        self.files = files
        self.path = files.storage.remote_path(files.key, LEASE_FILE)
        self.fs = files.storage.filesystem

    def read(self) -> tuple[bytes, Any] | None:
        from pyarrow.fs import FileType

        if self.fs.get_file_info(self.path).type != FileType.File:
            return None
        with self.fs.open_input_stream(self.path) as f:
            content = f.read()
        return content, content

    def _write(self, content: bytes) -> Any:
        with self.fs.open_output_stream(self.path) as out:
            out.write(content)
        found = self.read()
        return content if found is not None and found[0] == content else None

    def create(self, content: bytes) -> Any:
        return None if self.read() is not None else self._write(content)

    def replace(self, version: Any, content: bytes) -> Any:
        found = self.read()
        return self._write(content) if found is not None and found[1] == version else None

    def delete(self, version: Any) -> None:
        self.fs.delete_file(self.path)


# a store's scheme -> its conditional-write lease, and the client module and extra that it needs
CONDITIONAL_BACKENDS: dict[str, tuple[type, str, str]] = {
    "s3": (_S3Backend, "boto3", "s3"),
    "gs": (_GcsBackend, "google.cloud.storage", "gcs"),
}


def _scheme(storage: Storage) -> str:
    return storage.uri.partition("://")[0].lower()


def _backend(files: TrialFiles) -> Any:
    if files.storage.is_local:
        return _LocalBackend(files)
    backend = CONDITIONAL_BACKENDS.get(_scheme(files.storage))
    return backend[0](files) if backend else _WriteThenReadBackend(files)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def check_lease_client(storage: Storage) -> None:
    """Fail in one line, before a run starts, if the client of this store's conditional writes is missing."""
    if storage.is_local or _scheme(storage) not in CONDITIONAL_BACKENDS:
        return
    _, module, extra = CONDITIONAL_BACKENDS[_scheme(storage)]
    if not _importable(module):
        raise LtbenchError(
            f"--storage {storage.location}: the trial leases in this store need the {module} package; "
            f"install it with: pip install 'ltbench[{extra}]'"
        )


class TrialLease:
    """One holder's lease on one trial: `acquire` it, keep it renewed, `release` it."""

    def __init__(self, files: TrialFiles, holder: str, renew_s: float | None = None, home: str | None = None) -> None:
        self.files = files
        self.holder = holder  # who holds it, as another driver's message names it
        self.home = home  # the driver's results dir (`driver_home`): a lease from the same one goes stale sooner
        self.renew_s = renew_s or renew_seconds()
        self.stale_s = STALE_RENEWALS * self.renew_s
        self.token = uuid.uuid4().hex
        self.renewals = 0
        self.version: Any = None
        self.lost = threading.Event()
        self._backend = _backend(files)

    def _content(self) -> bytes:
        return json.dumps(
            {
                "holder": self.holder,
                "home": self.home,
                "token": self.token,
                "renewal": self.renewals,
                "renew_s": self.renew_s,
            }
        ).encode()

    def acquire(self, say: Callable[[str], None] = print, poll_s: float | None = None) -> None:
        """Take the lease, waiting while another holder keeps it fresh; take it over once it is stale."""
        poll_s = poll_s or min(self.renew_s, 2.0)
        seen, seen_at, said = None, 0.0, False
        while True:
            self.version = self._backend.create(self._content())
            if self.version is not None:
                return
            found = self._backend.read()
            if found is None:  # released between our create and read: try again at once
                continue
            content, version = found
            ours = self.home is not None and _field(content, "home") == self.home
            if version != seen:
                seen, seen_at = version, time.monotonic()
            elif time.monotonic() - seen_at > self._stale_after(content, ours):
                self.version = self._backend.replace(version, self._content())
                if self.version is not None:
                    what = "an earlier attempt from this results dir" if ours else _holder_of(content)
                    say(f"trial {self.files.key}: took over a stale lease of {what}")
                    return
            if not said:
                if ours:
                    say(
                        f"trial {self.files.key}: waiting up to {self._stale_after(content, ours):g} s for the "
                        "lease of an earlier attempt from this results dir to go stale"
                    )
                else:
                    say(
                        f"trial {self.files.key} is being trained by {_holder_of(content)} (its lease in the "
                        "shared store); waiting for it to finish"
                    )
                said = True
            time.sleep(poll_s)

    def _stale_after(self, content: bytes, ours: bool) -> float:
        """Seconds a lease must stay unchanged before it is taken over (see the module's docstring)."""
        if not ours:
            return self.stale_s
        try:
            holder_renew_s = float(_field(content, "renew_s"))
        except (TypeError, ValueError):
            holder_renew_s = self.renew_s
        return min(SAME_HOME_STALE_RENEWALS * holder_renew_s, self.stale_s)  # a lease's own figure, within ours

    def renew(self) -> None:
        """Write the lease anew if it is still ours; else mark it lost."""
        self.renewals += 1
        self.version = self._backend.replace(self.version, self._content())
        if self.version is None:
            self.lost.set()

    def release(self) -> None:
        found = self._backend.read()
        if found is not None and found[1] == self.version:
            self._backend.delete(self.version)

    def check(self) -> None:
        """Raise `LeaseLost` if another holder took the lease over (call between epochs)."""
        if self.lost.is_set():
            raise LeaseLost(
                f"trial {self.files.key}: its lease was taken over by another driver (this one looked dead); "
                "this attempt stops"
            )


def _field(content: bytes, name: str) -> Any:
    try:
        return json.loads(content)[name]
    except (ValueError, KeyError, TypeError):
        return None


def _holder_of(content: bytes) -> str:
    holder = _field(content, "holder")
    return "another ltbench run" if holder is None else str(holder)


def default_holder(results_dir: str | Path = "") -> str:
    where = f", results {results_dir}" if results_dir else ""
    return f"ltbench run (pid {os.getpid()} on {socket.gethostname()}{where})"


def driver_home(results_dir: str | Path) -> str:
    """The results dir a driver holds the lock of, as leases name it: its host and resolved path (two machines
    may use the same path for different directories)."""
    return f"{socket.gethostname()}:{Path(results_dir).resolve()}"


@contextmanager
def leased(
    files: TrialFiles, holder: str, say: Callable[[str], None] = print, home: str | None = None
) -> Iterator[TrialLease]:
    """Hold the trial's lease for the length of the block, renewed by a background thread."""
    lease = TrialLease(files, holder, home=home)
    lease.acquire(say)
    stop = threading.Event()

    def keep_renewing() -> None:
        while not stop.wait(lease.renew_s) and not lease.lost.is_set():
            try:
                lease.renew()
            except Exception:  # a store that fails now and then: try again at the next period
                continue

    renewer = threading.Thread(target=keep_renewing, name=f"lease-{files.key}", daemon=True)
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()
        if not lease.lost.is_set():
            lease.release()
