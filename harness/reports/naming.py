"""How every report orders and names methods: leaderboards, plots, paper tables and claims share it.

One order, so a reader finds a method in the same place in every table and figure: the methods of
ltbench's seed papers grouped as the papers read (joint training and its losses, then logit adjustment,
then classifier re-training on a shared backbone, then channel whitening), and any method not listed (a
third-party plugin) after them, alphabetically, so a plugin needs nothing registered here to be placed.

Labels keep the method's ltbench name (what a suite lists and `ltbench methods` prints) and spell its
hyperparameters and variant as a reader would: `crt (augment off)`, `tau-norm (τ = 1)`, never
`crt[augment=False]`.
"""

from __future__ import annotations

from collections.abc import Iterable

METHOD_ORDER = (
    # joint training: plain CE and the loss-reweighting family
    "ce", "ce-drw", "focal", "cb", "ldam-drw",
    # logit adjustment
    "la", "balanced-softmax", "la-posthoc",
    # classifier re-training on a frozen (shared) stage-1 backbone
    "ncm", "crt", "tau-norm", "lws", "lort", "wb",
    # end-to-end channel whitening (Zhang et al.) and its ablation
    "cw", "cw-b3rs", "cw-b3rs-bet",
    # today's strongest baselines (issue 20): mixup and MiSLAS on its mixup backbone, GLMC, PaCo, the multi-expert
    # ones
    "mixup", "mislas", "glmc", "paco", "ride", "ride-ea", "sade",
)  # fmt: skip

VARIANT_LABELS = {"tau1": "τ = 1"}


def method_sort_key(method: str) -> tuple[int, str]:
    """Listed methods by their place in METHOD_ORDER, every other method after them by name."""
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, method


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """The distinct methods in `methods`, in the report order."""
    return sorted({str(m) for m in methods}, key=method_sort_key)


def _value_text(key: str, value: str) -> str:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return f"{key} {'on' if lowered == 'true' else 'off'}"
    return f"{key} {value}"


def params_label(params: str) -> str:
    """'augment=False,sampler=class-balanced' -> 'augment off, sampler class-balanced'; '' stays ''."""
    parts = [item.partition("=") for item in params.split(",") if item]
    return ", ".join(_value_text(key, value) if sep else key for key, sep, value in parts)


def variant_label(variant: str) -> str:
    """A method variant as a reader writes it ('tau1' -> 'τ = 1')."""
    return VARIANT_LABELS.get(variant, variant)


def setting_label(method: str, params: str = "", variant: str = "") -> str:
    """'crt', 'crt (augment off)', 'tau-norm (τ = 1)', 'ce (sampler class-balanced; τ = 1)'."""
    details = [text for text in (params_label(params), variant_label(variant)) if text]
    return f"{method} ({'; '.join(details)})" if details else method
