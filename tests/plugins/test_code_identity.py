"""A method's code identity covers all of its code: a plugin's whole package, a built-in method's imports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.plugins.code_identity import _code_files, method_code
from harness.plugins.loading import load_methods

PLUGIN_METHOD = """
from harness.api import Method
from {package}.losses import weighted


class Mine(Method):
    name = "mine-{package}"
    description = "a plugin whose loss lives in a helper module"

    def loss(self, logits, targets):
        return weighted(logits, targets)
"""
PLUGIN_LOSS = (
    "import torch.nn.functional as F\n\n\ndef weighted(logits, targets):\n    return F.cross_entropy(logits, targets)\n"
)


@pytest.fixture
def plugin(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, type]]:
    """A package `<name>/` with `method.py` (the class) importing `losses.py` (its loss), imported."""
    package = f"codeid_{request.node.name.split('[')[0][-20:]}"
    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "losses.py").write_text(PLUGIN_LOSS)
    (folder / "method.py").write_text(PLUGIN_METHOD.format(package=package))
    sys.path.insert(0, str(tmp_path))
    try:
        yield folder, importlib.import_module(f"{package}.method").Mine
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.split(".")[0] == package]:
            del sys.modules[name]


def digest(cls: type) -> str:
    return method_code.__wrapped__(cls)  # past the cache: the files are read again


def test_editing_a_plugins_helper_module_changes_its_code_identity(plugin: tuple[Path, type]) -> None:
    folder, cls = plugin
    before = digest(cls)
    assert digest(cls) == before  # stable while nothing changes
    (folder / "losses.py").write_text(PLUGIN_LOSS.replace("cross_entropy", "nll_loss"))
    edited_loss = digest(cls)
    assert edited_loss != before
    (folder / "helpers.py").write_text("SCALE = 2.0\n")  # a module loaded some other way counts too
    assert digest(cls) != edited_loss


def test_editing_the_class_module_changes_its_code_identity(plugin: tuple[Path, type]) -> None:
    folder, cls = plugin
    before = digest(cls)
    (folder / "method.py").write_text((folder / "method.py").read_text() + "\n# tuned\n")
    assert digest(cls) != before


def test_a_builtin_methods_code_is_its_module_its_imports_and_the_shared_loss_arithmetic() -> None:
    methods = load_methods()

    def modules(name: str) -> set[str]:
        return set(_code_files(sys.modules[methods.get(name).__module__]))

    assert modules("ce") == {"methods.ce"}  # another method's edit leaves ce's results valid
    assert {"methods.focal", "harness.plugins.losses"} <= modules("focal")
    importers = [n for n in methods.names() if "methods.la" in modules(n) and n not in ("la",)]
    assert importers, "a built-in method that imports methods.la has it in its identity"
