"""What a run needs to be reproduced: git commit, package versions, a method's code, and the device it ran on."""

from __future__ import annotations

import hashlib
import inspect
import platform
import subprocess
import sys
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import torch

PACKAGES = ("ltbench", "torch", "torchvision", "numpy", "ray", "mlflow", "pandas")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the ltbench checkout, with '-dirty' if tracked files differ; 'unknown' outside git."""
    repo = Path(__file__).resolve().parent.parent
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
    from harness.errors import LtbenchError

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise LtbenchError("device 'cuda' was asked for but no GPU is visible; use --set device=cpu or auto")
    return torch.device(choice)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@cache
def method_code(cls: type) -> str:
    """The code identity of a method class: a digest of the source files that define it (its module and any
    base outside the harness, whose own changes the recorded git commit tracks), and of its stage-1
    method's identity for a decoupled method. Editing a plugin's loss therefore changes its trial keys."""
    from harness.plugin import load_methods

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
        digest.update(method_code(load_methods().get(stage1)).encode())
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
