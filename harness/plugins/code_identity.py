"""A method's code identity: the digest that enters its trials' keys, so that a result is never reused from
different method code. The suite and the plan fill it into each trial they make."""

from __future__ import annotations

import hashlib
import inspect
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from harness.plugins.method import METHODS


@cache
def method_code(cls: type) -> str:
    """The code identity of a method class: a digest of the source files that define it (its module and any
    base outside the harness, whose own changes the recorded git commit tracks), and of its stage-1
    method's identity for a decoupled method. Editing a plugin's loss therefore changes its trial keys."""
    digest = hashlib.sha256()
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is None or klass.__module__ == "builtins" or klass.__module__.startswith("harness."):
            continue
        try:
            digest.update(Path(inspect.getsourcefile(module) or "").read_bytes())
        except (OSError, TypeError):  # no source on disk: the distribution's name and version stand in
            digest.update(_distribution_of(klass.__module__).encode())
    stage1 = getattr(cls, "stage1", None)
    if stage1 is not None and stage1 != getattr(cls, "name", None):
        digest.update(method_code(METHODS.get(stage1)).encode())
    return digest.hexdigest()[:12]


def _distribution_of(module: str) -> str:
    top = module.split(".")[0]
    names = packages_distributions().get(top, [])
    found = []
    for name in names:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return ",".join(found) or f"{module} (no source, no distribution)"
