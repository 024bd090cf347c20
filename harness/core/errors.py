"""User-facing errors.

Anything the user can fix (a bad suite name, a missing dataset file, an invalid value) is raised as
`LtbenchError`. The CLI prints its one-line message and exits with code 2 instead of a traceback, so the
message must say what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable


class LtbenchError(Exception):
    """An error caused by user input or environment, reported without a traceback."""


class TrackingUnavailable(LtbenchError):
    """The tracking server stopped answering and was not back within the retry window; the trials' results
    are on disk, and a rerun logs them."""


def unknown_choice(kind: str, value: object, valid: Iterable[str]) -> LtbenchError:
    """Build the standard 'unknown X' error that lists the valid choices."""
    choices = ", ".join(sorted(valid))
    return LtbenchError(f"unknown {kind} {value!r}; valid {kind}s: {choices}")
