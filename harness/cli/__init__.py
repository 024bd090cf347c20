"""The `ltbench` command line. User errors print one line and exit with code 2, never a traceback.

`parser` declares the commands and their arguments, `commands` carries them out; `main` runs one and turns
errors into exit codes: 0 all trials finished, 1 some trial failed, 2 bad input, 3 the tracking server went
away (results kept on disk; rerun to log them), 4 a filesystem is full (finished
trials kept; free space and rerun), 130 interrupted (Ctrl+C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import sys

from harness.cli.commands import TRACKING_UNAVAILABLE_EXIT
from harness.cli.parser import build_parser
from harness.core.errors import LtbenchError, TrackingUnavailable
from harness.execution.termination import TERMINATED_EXIT, terminated
from harness.records.disk_space import DiskFull
from harness.records.tracking_uri import check_tracking_uri

DISK_FULL_EXIT = 4


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "tracking_uri", None):
            check_tracking_uri(args.tracking_uri)
        return args.func(args)
    except TrackingUnavailable as e:  # trials ran and kept their results; only the tracking server is missing
        print(f"ltbench: error: {one_line(e)}", file=sys.stderr)
        return TRACKING_UNAVAILABLE_EXIT
    except DiskFull as e:
        print(f"ltbench: error: {one_line(e)}", file=sys.stderr)
        return DISK_FULL_EXIT
    except LtbenchError as e:
        print(f"ltbench: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if terminated() else "interrupted"
        print(f"ltbench: {how}; finished trials are kept, rerun the same command to resume", file=sys.stderr)
        return TERMINATED_EXIT if terminated() else 130


MAX_MESSAGE = 1000  # characters: an error quotes what was wrong, never megabytes of a value the user wrote


def one_line(error: Exception) -> str:
    """An error's message on one line of bounded length."""
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
