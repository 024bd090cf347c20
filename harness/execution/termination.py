"""SIGTERM (a `kill`, a CI job cancelled, a cluster scheduler ending a job) stops a run as Ctrl+C does.

`ray.init` makes SIGTERM `sys.exit(15)` in the driver; raised inside Tune's loop, that aborts the process
(exit 134) with MLflow runs left RUNNING. Inside `sigterm_as_interrupt` a SIGTERM is handed to whatever
handles SIGINT at that moment instead: Tune's handler during a run (it stops every trial, and the driver marks
the open runs KILLED), else Python's (`KeyboardInterrupt`). `main` then exits with 143 (128 + SIGTERM), as a
terminated process does, where Ctrl+C gives 130.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATED_EXIT = 128 + signal.SIGTERM
_received: list[int] = []


def terminated() -> bool:
    """Whether a SIGTERM reached the run (so its interrupt is a termination, not a Ctrl+C)."""
    return bool(_received)


def _forward_to_sigint_handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored or default (not Python's): stop as an interrupt all the same
        raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM does what SIGINT does at that moment. Enter it after `ray.init` (which installs its own
    SIGTERM handler); the handler before is restored on leaving. Only the main thread can install handlers;
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    before = signal.signal(signal.SIGTERM, _forward_to_sigint_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
