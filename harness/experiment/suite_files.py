"""Suite files read without building their trials: where the built-in suites are, one suite's YAML as a dict,
and the size of its grid.

Building a suite validates every method, which imports torch (seconds on a small machine); listing the
built-in suites (`ltbench suites`) needs none of that, so this module imports only the YAML reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.errors import LtbenchError, unknown_choice
from harness.core.yaml_input import read_yaml_file

SUITES_DIR = Path(__file__).parent / "suites"
GRID_KEYS = ("datasets", "imbalance_ratios", "methods", "seeds")


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite_file(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise unknown_choice("suite", name_or_path, builtin_suites() + ["<path/to/suite.yaml>"])
    raw = read_yaml_file(path)  # bounded, UTF-8 checked, duplicate keys refused
    if not isinstance(raw, dict):
        raise LtbenchError(f"{path} must hold a mapping of suite keys (name, {', '.join(GRID_KEYS)}, ...)")
    raw.setdefault("name", path.stem)
    return raw


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grid_size(raw: dict[str, Any]) -> int:
    """The trials a valid suite expands to (datasets x their ratios x methods x their seeds), from its YAML
    alone; `build_suite` makes exactly this many (a test holds the two together)."""
    per_dataset = raw.get("per_dataset") or {}
    total = 0
    for dataset in _listed(raw.get("datasets") or []):
        own = per_dataset.get(dataset) or {}
        ratios = _listed(own.get("imbalance_ratios", raw.get("imbalance_ratios")))
        seeds = _listed(own.get("seeds", raw.get("seeds")))
        total += len(ratios) * len(_listed(raw.get("methods") or [])) * len(seeds)
    return total
