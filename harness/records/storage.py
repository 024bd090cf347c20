"""Where trial files live: a local directory (the default, `<results>/trials`) or any filesystem pyarrow opens
from a URI (`s3://bucket/prefix?endpoint_override=host:port&scheme=http`, `gs://bucket/prefix`, ...), the
same filesystems Ray Tune's `storage_path` speaks.

On a cluster whose nodes share no POSIX filesystem, the store is the one place every node and the driver
can read: a trial trains in a node-local scratch directory (`$LTBENCH_SCRATCH`, default
`<tempdir>/ltbench-scratch`) and uploads its checkpoint after every epoch, then its manifest, analysis and
`result.json` last, so a `result.json` in the store still means the trial is complete. A trial that resumes
on any node pulls its checkpoint from the store (the store is the truth, not whatever a scratch dir holds),
and a stage-two trial pulls its backbone's files. An upload is one PUT, which an object store makes visible
whole or not at all; a local store keeps today's atomic, fsynced writes, and there pull and push do nothing.

Credentials come from the filesystem's usual sources (for S3 the `AWS_*` environment variables or
`~/.aws`), never from the URI, so a URI can travel in Tune's config and appear in messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from harness.core.errors import LtbenchError
from harness.core.files import atomic_write
from harness.records.results_dir import check_writable_dir

STORAGE_ENV = "LTBENCH_STORAGE"
SCRATCH_ENV = "LTBENCH_SCRATCH"
COPY_CHUNK = 8 << 20
PROBE_TIMEOUT_S = 10  # how long the pre-flight probe waits for an endpoint: connect, then each request
URI_HINT = (
    "use a local path, s3://bucket/prefix (add ?endpoint_override=host:port&scheme=http for an S3-compatible "
    "server) or gs://bucket/prefix"
)


def scratch_root() -> Path:
    """This node's scratch space for trials of remote stores."""
    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "ltbench-scratch")


class Storage:
    """A store of trial directories, `<root>/<trial key>/<file>`; `open` one from a path or URI."""

    def __init__(self, uri: str, fs: Any, root: str, local_root: Path) -> None:
        self.uri = uri  # what `open` takes back: it travels to Ray workers in the trial config
        self._fs = fs  # a pyarrow FileSystem; None for a local directory
        self._root = root  # the store's path inside `fs` (the directory itself when local)
        self.local_root = local_root  # where trials of this store read and write real files on this node

    @classmethod
    def open(cls, uri: str | Path) -> Storage:
        """A local directory (a path, or a file:// URI) or a remote store named by a pyarrow filesystem URI.
        A malformed URI or unknown scheme is an `LtbenchError`; nothing is contacted or written here (see
        `check`)."""
        text = str(uri)
        if "://" not in text:
            root = Path(text).expanduser().resolve()
            return cls(str(root), None, str(root), root)
        from pyarrow import fs as pafs

        try:
            filesystem, path = pafs.FileSystem.from_uri(text)
        except Exception as e:  # ArrowInvalid, ValueError, OSError: an unknown scheme or a bad query
            raise LtbenchError(f"--storage {text!r} cannot be opened ({str(e).splitlines()[0]}); {URI_HINT}") from None
        if isinstance(filesystem, pafs.LocalFileSystem):
            return cls.open(Path(path))
        if not path.strip("/"):
            raise LtbenchError(f"--storage {text!r} names no bucket; {URI_HINT}")
        return cls.remote(text, filesystem, path)

    @classmethod
    def remote(cls, uri: str, filesystem: Any, path: str) -> Storage:
        """A store at `path` ("bucket/prefix") of a pyarrow `filesystem` that `uri` names, with this node's
        scratch dir for it. `open` makes one from the URI alone; a program (or a test) may pass a filesystem
        made with options no URI carries, such as anonymous credentials, to use in its own process."""
        scratch = scratch_root() / hashlib.sha256(uri.encode()).hexdigest()[:16]
        return cls(uri, filesystem, path.strip("/"), scratch)

    @property
    def is_local(self) -> bool:
        return self._fs is None

    @property
    def location(self) -> str:
        """The store without its query (endpoint options): `s3://bucket/prefix`, or the local path."""
        if self.is_local:
            return self.uri
        parsed = urllib.parse.urlsplit(self.uri)
        return f"{parsed.scheme}://{self._root}"

    def child_uri(self, name: str) -> str:
        """A folder beside the trials, as a plain URI other tools take (MLflow's artifact location)."""
        return (Path(self._root) / name).as_uri() if self.is_local else f"{self.location}/{name}"

    @property
    def endpoint_url(self) -> str | None:
        """An S3-compatible server's URL from `endpoint_override` (and `scheme`), for clients that take it
        separately (MLflow's `MLFLOW_S3_ENDPOINT_URL`); None for AWS itself and other stores."""
        if self.is_local:
            return None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.uri).query)
        endpoint = query.get("endpoint_override", [None])[0]
        if not endpoint:
            return None
        return endpoint if "://" in endpoint else f"{query.get('scheme', ['https'])[0]}://{endpoint}"

    def tune_storage(self) -> tuple[Any, str]:
        """(filesystem, path) of a folder for Ray Tune's own files in a remote store (`RunConfig`'s
        `storage_filesystem` and `storage_path`)."""
        assert not self.is_local, "a local store leaves Tune's files in the results dir"
        return self._fs, f"{self._root}/ray"

    def trial(self, key: str) -> TrialFiles:
        return TrialFiles(self, key)

    def keys_with(self, name: str) -> set[str]:
        """The trials that have file `name` (e.g. every finished one): one listing, not a request per trial."""
        if self.is_local:
            return {p.parent.name for p in Path(self._root).glob(f"*/{name}") if p.is_file()}
        from pyarrow.fs import FileSelector, FileType

        found = self._fs.get_file_info(FileSelector(self._root, recursive=True, allow_not_found=True))
        keys = set()
        for info in found:
            parts = info.path[len(self._root) + 1 :].split("/")
            if info.type == FileType.File and len(parts) == 2 and parts[1] == name:
                keys.add(parts[0])
        return keys

    def check(self) -> None:
        """Write and delete a small object at the store's root: an unreachable endpoint, a missing bucket or
        no write permission fails here in one line, before a run writes anything."""
        if self.is_local:
            check_writable_dir(Path(self._root), "--storage")
            return
        name, fs = f".ltbench-probe-{uuid.uuid4().hex}", _impatient(self._fs)
        try:
            with fs.open_output_stream(f"{self._root}/{name}") as out:
                out.write(b"ltbench")
            fs.delete_file(f"{self._root}/{name}")
        except Exception as e:  # OSError from the filesystem, whatever its cause
            reason = " ".join(str(e).split())[:300]
            raise LtbenchError(
                f"--storage {self.location}: cannot write there ({reason}); check the bucket, the endpoint and "
                "the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for S3), or use a local path"
            ) from None

    def _remote_path(self, key: str, name: str) -> str:
        return f"{self._root}/{key}/{name}"

    def remote_path(self, key: str, name: str) -> str:
        """A trial file's path inside a remote store's filesystem (`bucket/prefix/<key>/<name>`)."""
        return self._remote_path(key, name)

    @property
    def filesystem(self) -> Any:
        """The pyarrow filesystem of a remote store (None for a local one)."""
        return self._fs


def _impatient(fs: Any) -> Any:
    """The same store with short timeouts and few retries, for the pre-flight probe: an endpoint that accepts
    connections but never answers held the default S3 client for about 100 s before it gave up, and an
    endpoint that refuses connections held the GCS client's retries for about 20 s. Trials keep
    the filesystem's own timeouts, which must allow a slow upload of a large checkpoint."""
    from datetime import timedelta

    from pyarrow import fs as pafs

    if isinstance(fs, pafs.S3FileSystem):
        options = fs.__reduce__()[1][0]  # the options it was made with: endpoint, region, credentials, ...
        return pafs.S3FileSystem(
            **{**options, "connect_timeout": PROBE_TIMEOUT_S, "request_timeout": PROBE_TIMEOUT_S},
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
        )
    if isinstance(fs, pafs.GcsFileSystem):
        options = fs.__reduce__()[1][0]
        # bounds its retries only: one request to a silent endpoint still waits for the client's own timeout
        return pafs.GcsFileSystem(**{**options, "retry_time_limit": timedelta(seconds=PROBE_TIMEOUT_S)})
    return fs


class TrialFiles:
    """One trial's files in a store, and the local directory the trainer works in."""

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage = storage
        self.key = key
        self.local_dir = storage.local_root / key

    @property
    def where(self) -> str:
        """The trial's folder in the store, for messages."""
        return str(self.local_dir) if self.storage.is_local else f"{self.storage.location}/{self.key}"

    def _info(self, *names: str) -> list[Any]:
        fs = self.storage._fs
        return fs.get_file_info([self.storage._remote_path(self.key, n) for n in names])

    def exists(self, name: str) -> bool:
        if self.storage.is_local:
            return (self.local_dir / name).is_file()
        from pyarrow.fs import FileType

        return self._info(name)[0].type == FileType.File

    def read_bytes(self, name: str) -> bytes:
        if self.storage.is_local:
            return (self.local_dir / name).read_bytes()
        with self.storage._fs.open_input_stream(self.storage._remote_path(self.key, name)) as f:
            return f.read()

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def pull(self, *names: str, reuse: bool = False) -> list[str]:
        """Copy `names` from the store into `local_dir`; return those the store has.

        A name the store lacks is removed locally (the store is the truth: a scratch copy may be stale).
        With `reuse` (files of a finished trial, which never change), a local copy with the store's size and
        modification time is kept instead of downloaded again, and a local copy the store lacks is left alone
        (another trial on this node may be about to upload it). Local storage: nothing to copy.
        """
        if self.storage.is_local:
            return [n for n in names if (self.local_dir / n).is_file()]
        from pyarrow.fs import FileType

        self.local_dir.mkdir(parents=True, exist_ok=True)
        present = []
        for name, info in zip(names, self._info(*names), strict=True):
            dest = self.local_dir / name
            if info.type != FileType.File:
                if not reuse:
                    dest.unlink(missing_ok=True)
                continue
            present.append(name)
            stamp = info.mtime.timestamp() if info.mtime is not None else None
            if reuse and stamp is not None and dest.is_file():
                local = dest.stat()
                if local.st_size == info.size and abs(local.st_mtime - stamp) < 1e-3:
                    continue
            with self.storage._fs.open_input_stream(info.path) as src:
                atomic_write(dest, lambda out, src=src: shutil.copyfileobj(src, out, COPY_CHUNK))
            if stamp is not None:
                os.utime(dest, (stamp, stamp))  # what `reuse` compares with
        return present

    def release(self) -> None:
        """Drop the local working copy once every file is in the store (remote stores only): a node keeps no
        finished trial, so whatever reads it next, on any node, reads it from the store. Local: nothing."""
        if not self.storage.is_local:
            shutil.rmtree(self.local_dir, ignore_errors=True)

    def push(self, *names: str) -> None:
        """Upload `names` from `local_dir` to the store, in order, each in one PUT (visible whole or not at
        all). The file is read whole first, so a failed read never leaves a partial object. Local: nothing."""
        if self.storage.is_local:
            return
        for name in names:
            data = (self.local_dir / name).read_bytes()
            with self.storage._fs.open_output_stream(self.storage._remote_path(self.key, name)) as out:
                out.write(data)
