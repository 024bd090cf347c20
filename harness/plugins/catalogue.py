"""What `ltbench methods` lists, fast: the methods' descriptions and hyperparameters, kept in a small cache.

Listing methods means importing them, and every method imports torch (seconds on a small machine). The
listing is the same until a source file it came from changes, so it is cached as JSON together with a
stamp (path, size, mtime) of every file it was built from (the harness, the built-in methods, each
plugin's modules) and the list of installed `ltbench.methods` entry points. A changed, added or removed
file or plugin rebuilds it; checking the stamps needs no torch. Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

CACHE_FORMAT = 2
CACHE_ENV = "LTBENCH_CACHE"
ENTRY_POINT_GROUP = "ltbench.methods"  # = harness.plugins.loading.ENTRY_POINT_GROUP (that module imports torch)
HARNESS_DIR = Path(__file__).resolve().parents[1]


@dataclass
class ParamInfo:
    name: str
    type: str
    default: str  # repr() of the default
    help: str


@dataclass
class MethodInfo:
    name: str
    description: str
    kind: str  # "end to end" or "stage two on the shared <stage1> backbone"
    sampler: str
    params: list[ParamInfo] = field(default_factory=list)
    transductive: bool = False  # learns from a split's unlabeled (test) images after training (SADE)


def cache_path() -> Path:
    """One cache file per Python environment and source tree (several checkouts may share a home), in
    `$LTBENCH_CACHE`, else `$XDG_CACHE_HOME/ltbench`, else `~/.cache/ltbench`."""
    base = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ltbench"
    owner = hashlib.sha256(f"{sys.prefix}\n{HARNESS_DIR}".encode()).hexdigest()[:16]
    return Path(base) / f"methods-{owner}.json"


def method_catalogue() -> list[MethodInfo]:
    """Every registered method (built-in and plugins), from the cache when it is still current."""
    path = cache_path()
    cached = _read(path)
    if cached is not None:
        return cached
    methods, sources = _build()
    _write(path, methods, sources)
    return methods


def _plugins() -> list[str]:
    return sorted(f"{ep.name}={ep.value}" for ep in entry_points(group=ENTRY_POINT_GROUP))


def _stamp(path: str) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [path, st.st_size, st.st_mtime_ns]


def _read(path: Path) -> list[MethodInfo] | None:
    try:
        data = json.loads(path.read_text())
        if data["format"] != CACHE_FORMAT or data["plugins"] != _plugins():
            return None
        if any(_stamp(source[0]) != source for source in data["sources"]):
            return None
        return [MethodInfo(**{**m, "params": [ParamInfo(**p) for p in m["params"]]}) for m in data["methods"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no cache yet, or one from another version: rebuild it


def _build() -> tuple[list[MethodInfo], list[list[Any]]]:
    import inspect

    from harness.plugins.loading import load_methods
    from harness.plugins.method import param_spec

    registry = load_methods()
    methods, files = [], set()
    for name in registry.names():
        method = registry.get(name)
        params = param_spec(method)
        sampler = next((p.default for p in params if p.name == "sampler"), method.sampler)
        kind = f"stage two on the shared {method.stage1} backbone" if method.stage1 else "end to end"
        if method.transductive:
            kind += "; TRANSDUCTIVE: adapts on a split's unlabeled images (the test set by default)"
        infos = [ParamInfo(p.name, p.type, repr(p.default), p.help) for p in params]
        methods.append(MethodInfo(name, method.description, kind, str(sampler), infos, bool(method.transductive)))
        for obj in (method, method.Params):
            files.add(inspect.getsourcefile(obj) or "")
    # the harness and the built-in methods: a default may come from any module they import
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None) or ""
        if source.startswith((str(HARNESS_DIR), str(HARNESS_DIR.parent / "methods"))):
            files.add(source)
    sources = [s for s in (_stamp(f) for f in sorted(files) if f) if s is not None]
    return methods, sources


def _write(path: Path, methods: list[MethodInfo], sources: list[list[Any]]) -> None:
    data = {"format": CACHE_FORMAT, "plugins": _plugins(), "sources": sources, "methods": [asdict(m) for m in methods]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(data, f)
        os.replace(f.name, path)
    except OSError:
        pass  # a read-only home only costs the next call its imports
