"""Loading methods: the built-in `methods` package and every installed `ltbench.methods` entry point.

The registry (`harness.plugins.method.METHODS`) never imports what registers into it; this module does,
once per process, and is what the suite, the plan and a worker call before they look a method up.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Any

from harness.core.errors import LtbenchError
from harness.core.registry import DuplicateName, Registry
from harness.plugins.method import METHODS, Method, MethodContext, parse_params, register_method

ENTRY_POINT_GROUP = "ltbench.methods"
_loaded = False
# Plugins that failed to load: entry point -> the one-line reason; and method names they made unusable
# (a name a broken plugin claimed is ambiguous, so a suite using it must not silently get the other one).
BROKEN_PLUGINS: dict[str, str] = {}
CONTESTED_NAMES: dict[str, str] = {}
# Method name -> (distribution, version) of the plugin package that registered it; built-ins are absent.
PLUGIN_ORIGIN: dict[str, tuple[str, str]] = {}


def load_methods() -> Registry[type[Method]]:
    """Import the built-in methods and every installed `ltbench.methods` entry point, once.

    A plugin that fails to import or register (a syntax error, a name another method has) is skipped with
    one warning naming its package and entry point: it breaks only itself, never the other methods.
    """
    global _loaded
    if not _loaded:
        _loaded = True
        import methods  # noqa: F401  (registers the built-ins)

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            before = set(METHODS.names())
            try:
                obj = ep.load()  # a module registers its methods on import; a class is registered here
                if isinstance(obj, type) and issubclass(obj, Method):
                    if obj.name not in METHODS:
                        register_method(obj)
                    elif METHODS.get(obj.name) is not obj:  # not its own import's registration
                        raise DuplicateName("method", obj.name, METHODS.get(obj.name))
                dist = getattr(ep, "dist", None)
                for name in set(METHODS.names()) - before:
                    PLUGIN_ORIGIN[name] = (dist.name, dist.version) if dist is not None else ("unknown", "unknown")
            except Exception as e:  # a third-party plugin's own bug, whatever it is
                for name in set(METHODS.names()) - before:
                    METHODS.unregister(name)
                _plugin_failed(ep, e)
    return METHODS


def _plugin_failed(ep: Any, error: Exception) -> None:
    package = ep.dist.name if getattr(ep, "dist", None) is not None else "an unknown package"
    where = f"plugin package {package!r} (entry point {ep.name} = {ep.value})"
    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    BROKEN_PLUGINS[where] = reason
    if isinstance(error, DuplicateName):
        CONTESTED_NAMES[error.name] = f"{where} also defines method {error.name!r}; rename it there"
    print(f"ltbench: warning: {where} failed to load and is skipped: {reason}", file=sys.stderr)


def method_origin(name: str) -> tuple[str, str] | None:
    """(distribution, version) of the plugin package that provides method `name`; None for a built-in."""
    load_methods()
    return PLUGIN_ORIGIN.get(name)


def require_method(name: str) -> type[Method]:
    """The method a suite names; a name that only a broken plugin could supply is an error saying so."""
    registry = load_methods()
    if name in CONTESTED_NAMES:
        raise LtbenchError(f"method {name!r} is ambiguous: {CONTESTED_NAMES[name]}")
    if name not in registry and BROKEN_PLUGINS:
        broken = "; ".join(f"{where} failed to load ({reason})" for where, reason in BROKEN_PLUGINS.items())
        raise LtbenchError(f"unknown method {name!r}; it may come from a broken plugin: {broken}")
    return registry.get(name)


def build_method(name: str, params: dict[str, Any], context: MethodContext) -> Method:
    cls = load_methods().get(name)
    return cls(parse_params(cls, params), context)
