"""A trial's full configuration and its key.

The trial key is the hash of the canonical JSON of everything that changes a trial's result (dataset and its
long-tail options, ratio, method and hyperparameters, the method's code, model, resolved recipe, seed,
precision). It names the trial's directory, checkpoint and MLflow run, so a rerun finds finished work. Paths,
resources and the device choice do not enter the key: moving data or machines does not make a new trial.
Editing a method's source file makes new keys, so a result is never reused from different method code.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

KEY_LENGTH = 16
# A run setting, not part of any key: how often a trial is retried, resuming from its checkpoint, after its
# worker process or node died (`ltbench run --max-retries`); a trial's own exception is never retried.
DEFAULT_MAX_RETRIES = 3


RATIO_STYLES = ("value", "text", "name")


def ratio_label(ratio: float | None, style: str = "text") -> str:
    """The one spelling of an imbalance ratio; a native split (None or NaN) is "native" in every style.

    `value` gives "100" (a table cell, an MLflow param or tag), `text` "r=100" (titles, prose, notes), `name`
    "r100" (inside a run's name, e.g. fashion-mnist-lt-r100-ce-s0).
    """
    if ratio is None or math.isnan(ratio):
        return "native"
    return {"value": f"{ratio:g}", "text": f"r={ratio:g}", "name": f"r{ratio:g}"}[style]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class TrialConfig:
    suite: str
    dataset: str
    imbalance_ratio: float | None
    method: str
    seed: int
    model: str
    recipe: dict[str, Any]
    data: dict[str, Any]  # DataOptions fields
    method_params: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    device: str = "auto"
    method_code: str = ""  # digest of the method's code (`harness.plugins.code_identity`), filled in by the suite

    def identity(self) -> dict[str, Any]:
        data = {k: v for k, v in self.data.items() if k not in ("root", "download")}
        return {
            "dataset": self.dataset,
            "imbalance_ratio": self.imbalance_ratio,
            "method": self.method,
            "method_params": self.method_params,
            "method_code": self.method_code,
            "model": self.model,
            "recipe": self.recipe,
            "data": data,
            "seed": self.seed,
        }

    @property
    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:KEY_LENGTH]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        return cls(**d)

    def label(self) -> str:
        """Short human-readable name, used as the MLflow run name."""
        return f"{self.dataset}-{ratio_label(self.imbalance_ratio, 'name')}-{self.method}-s{self.seed}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}, for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = v
    return out
