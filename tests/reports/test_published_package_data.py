"""The published reference numbers ship inside the wheel: an installed ltbench (no source checkout) finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_an_installed_wheel_reads_the_published_numbers_from_its_package_data(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("ltbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("harness/reports/published/")}
    assert shipped == {p.name for p in (ROOT / "results" / "published").glob("*.csv")}
    installed = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(installed)
    code = (
        "from harness.reports.published import PUBLISHED_DIR, load_published\n"
        "frame = load_published()\n"
        "print(PUBLISHED_DIR)\n"
        "print(len(frame), sorted(set(frame.paper)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}  # ahead of the editable checkout on sys.path
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    where, count = out.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(installed.resolve())
    assert int(count.split()[0]) > 0 and "kang2020" in count
