"""A method's code identity: the digest that enters its trials' keys, so that a result is never reused from
different method code. The suite and the plan fill it into each trial they make.

What counts as a method's code:
- a plugin's (a method outside ltbench's own `methods/` package): every Python file of the package its
  class comes from (all of `mypkg/`, so an edit to `mypkg/losses.py` that `mypkg/method.py` imports, or
  loads some other way, counts), or its one module when it is a single file;
- a built-in method's: its module, the modules of `methods/` it imports (another method's loss), and the
  harness's shared loss arithmetic it imports through `harness.api` (`SHARED_HELPERS`), followed
  transitively. Other built-in methods are not its code: editing `la.py` leaves `ce`'s results valid.
The rest of the harness is not part of any method's identity; the git commit recorded with every run tracks
it. A class with no source on disk stands in by its distribution's name and version.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from types import ModuleType

from harness.plugins.method import METHODS

BUILTIN_PACKAGE = "methods"
# Harness modules whose code is a method's arithmetic (what `harness.api` re-exports for losses), rather than
# the harness's machinery: a built-in method that imports from them has them in its identity.
SHARED_HELPERS = ("harness.plugins.losses",)


@cache
def method_code(cls: type) -> str:
    """The code identity of a method class: a digest of its code (see the module's docstring) and of every
    base class's outside the harness, and of its stage-1 method's identity for a decoupled method."""
    digest = hashlib.sha256()
    files: dict[str, Path] = {}
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is None or klass.__module__ == "builtins" or klass.__module__.startswith("harness."):
            continue
        found = _code_files(module)
        if not found:  # no source on disk: the distribution's name and version stand in
            digest.update(_distribution_of(klass.__module__).encode())
        files.update(found)
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes())
    stage1 = getattr(cls, "stage1", None)
    if stage1 is not None and stage1 != getattr(cls, "name", None):
        digest.update(method_code(METHODS.get(stage1)).encode())
    return digest.hexdigest()[:12]


def _code_files(module: ModuleType) -> dict[str, Path]:
    """The source files (by module name) that make up the code of a method defined in `module`."""
    if module.__name__.split(".")[0] == BUILTIN_PACKAGE:
        return _imported_closure(module)
    return _package_files(module)


def _source_of(module: ModuleType) -> Path | None:
    try:
        path = inspect.getsourcefile(module)
    except TypeError:  # a built-in or extension module
        return None
    return Path(path) if path and Path(path).is_file() else None


def _package_files(module: ModuleType) -> dict[str, Path]:
    """Every `.py` file of the top-level package holding `module` (or the module's own file, for a top-level
    single-file module)."""
    top = sys.modules.get(module.__name__.split(".")[0], module)
    folders = list(getattr(top, "__path__", []))
    if not folders:
        source = _source_of(module)
        return {module.__name__: source} if source else {}
    found = {}
    for folder in map(Path, folders):
        for path in sorted(folder.rglob("*.py")):
            found[f"{top.__name__}/{path.relative_to(folder).as_posix()}"] = path
    return found


def _imported_closure(module: ModuleType) -> dict[str, Path]:
    """`module`'s file and, transitively, those of the modules it imports that belong to the built-in methods'
    package or to `SHARED_HELPERS` (a name imported from a module, as `from harness.api import focal_terms`,
    counts as the module that defines it)."""
    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        current = pending.pop()
        source = _source_of(current)
        if current.__name__ in found or source is None:
            continue
        found[current.__name__] = source
        for name in _imports(current, source):
            target = sys.modules.get(name)
            if target is not None and _is_method_code(name):
                pending.append(target)
    return found


def _is_method_code(module_name: str) -> bool:
    return module_name.split(".")[0] == BUILTIN_PACKAGE or module_name in SHARED_HELPERS


def _imports(module: ModuleType, source: Path) -> set[str]:
    """Names of the modules `module`'s source imports from, each imported name resolved to its defining
    module (a re-export through `harness.api` counts as where it is defined)."""
    names: set[str] = set()
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            origin = sys.modules.get(base)
            for alias in node.names:
                value = getattr(origin, alias.name, None)
                if isinstance(value, ModuleType):
                    names.add(value.__name__)
                elif getattr(value, "__module__", None):
                    names.add(value.__module__)
    return names


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
