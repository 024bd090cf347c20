"""Method plugin packages installed the way pip lays them out (a module and its dist-info with an
`ltbench.methods` entry point) into a test's own site dir, which a test puts on `PYTHONPATH`; and a gate,
a method that a test holds at its second epoch so that it can act while a trial is surely still training."""

from __future__ import annotations

import os
from pathlib import Path

GATE_ENV = "LTBENCH_TEST_GATE"

GATED_PLUGIN = f"""
import os
import time

from harness.api import Method, register_method


@register_method
class Gated(Method):
    name = "gated"
    description = "cross-entropy held before its second epoch until a test opens its gate (a test plugin)"

    def on_epoch_start(self, epoch, num_epochs):
        gate = os.environ.get("{GATE_ENV}")
        deadline = time.monotonic() + 900  # a test that never opens the gate still ends
        while epoch >= 1 and gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.1)
"""


def install_plugin(site: Path, package: str, module: str, source: str) -> None:
    """A module and its dist-info with an `ltbench.methods` entry point, as pip would leave them."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    dist = site / f"{package.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[ltbench.methods]\n{module} = {module}\n")


class Gate:
    """The `gated` method installed in `tmp_path`, and the file that lets its trials go on past epoch 1.
    `env` is what an `ltbench` process (and so its Ray workers) must run with."""

    def __init__(self, tmp_path: Path) -> None:
        site = tmp_path / "gate-site"
        install_plugin(site, "gated-methods", "gated_methods", GATED_PLUGIN)
        self.file = tmp_path / "gate-open"
        self.env = {**os.environ, "PYTHONPATH": str(site), GATE_ENV: str(self.file)}

    def open(self) -> None:
        self.file.touch()
