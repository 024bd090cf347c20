"""What a run needs to be reproduced: git commit, package versions, a method's code, and the device it ran on."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from harness.core.errors import LtbenchError

PACKAGES = ("ltbench", "torch", "torchvision", "numpy", "ray", "mlflow", "pandas")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the ltbench checkout, with '-dirty' if tracked files differ; 'unknown' outside git."""
    repo = Path(__file__).resolve().parents[2]  # harness/records/provenance.py -> the checkout
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["cuda"] = torch.version.cuda or "none"
    return out


def resolve_device(choice: str) -> torch.device:
    """'auto' takes CUDA when present; Ray restricts CUDA_VISIBLE_DEVICES to the trial's GPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise LtbenchError("device 'cuda' was asked for but no GPU is visible; use --set device=cpu or auto")
    return torch.device(choice)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
