"""The results directory: checked before a run writes anything, and held by one driver at a time.

Two drivers on one results directory would both train the unfinished trials (and race to create the MLflow
tables), so `ltbench run` takes an exclusive `flock` on `<results>/.ltbench-run.lock` for its whole length.
The kernel drops the lock when the process ends, however it ends (kill -9 included), so a stale lock file
never blocks a later run; the file only says who holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import LtbenchError

LOCK_FILE = ".ltbench-run.lock"
NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, tmpfs, APFS
PATH_MAX = 4096


def check_results_dir(results_dir: Path) -> None:
    """A results dir must be a directory we can write, or creatable: say so in one line, before any work;
    its lock file, if there, must be a file."""
    check_writable_dir(results_dir, "--results-dir")
    lock = results_dir / LOCK_FILE
    if lock.exists() and not lock.is_file():
        raise LtbenchError(f"{lock} is a directory, not ltbench's lock file; remove it (rmdir) and rerun")


def check_path_length(path: Path, option: str) -> None:
    """A path the filesystem can hold: no name over its limit (255 bytes on most), the whole under PATH_MAX.
    (Past them every call fails with ENAMETOOLONG, `Path.exists` included.)"""
    longest = max((part for part in path.parts), key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > NAME_MAX:
        raise LtbenchError(
            f"{option}: the name {longest[:40]}... is too long ({len(os.fsencode(longest))} bytes; a file name "
            f"holds at most {NAME_MAX}); pick a shorter path"
        )
    if len(os.fsencode(str(path.absolute()))) > PATH_MAX - 512:  # room for the trial files beneath it
        raise LtbenchError(
            f"{option}: the path is too long ({len(str(path.absolute()))} characters); pick a shorter one"
        )


def check_writable_dir(folder: Path, option: str) -> None:
    """`folder` is a directory we can write, or can be created: checked without creating anything; `option`
    names where the user gave it, for the message."""
    check_path_length(folder, option)
    if folder.exists() and not folder.is_dir():
        raise LtbenchError(f"{option} {folder} is a file, not a directory; pass a directory path")
    existing = folder
    while not existing.exists():  # the nearest existing ancestor is where the directory would be created
        existing = existing.parent
    if not existing.is_dir():
        raise LtbenchError(f"{option} {folder}: {existing} is a file, not a directory")
    try:  # a real write, not os.access: that says yes to root on a read-only filesystem
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise LtbenchError(
            f"{option} {folder}: {existing} is not writable ({e.strerror or e}); pick a directory you can write"
        ) from None


@contextmanager
def exclusive_run(results_dir: Path) -> Iterator[None]:
    """Hold the results directory's run lock; another driver holding it is an error naming its process.

    Taken before Ray starts, so a second driver hears of the first within seconds. A run that ends having
    written nothing else (a failed resource check) takes its new lock file, and the directory it made, away.
    """
    created = not results_dir.exists()
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / LOCK_FILE
    before = {p.name for p in results_dir.iterdir()}
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "an unknown process"
            raise LtbenchError(
                f"{results_dir} is in use by another ltbench run ({holder}); wait for it to end, or use another "
                "--results-dir"
            ) from None
        command = " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))
        holder = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        if LOCK_FILE not in before and {p.name for p in results_dir.iterdir()} == before | {LOCK_FILE}:
            path.unlink()  # this run wrote nothing but its lock: leave the directory as it was
            if created:
                results_dir.rmdir()
        os.close(fd)  # closing drops the lock
