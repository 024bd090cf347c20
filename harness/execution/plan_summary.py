"""The dry run's sections, one function each: the plan as a table, the trials already finished, the runs a
suite's table also needs, every trial (`--verbose`).

`ltbench run --dry-run` joins them (`harness.execution.run_suite.dry_run`); each returns its lines, so a new
section (a cost estimate, say) is one more function beside these.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from harness.core.text import plural, text_columns
from harness.core.trial import TrialConfig, ratio_label
from harness.experiment.plan import Plan, recipe_summary
from harness.experiment.suite import Suite

PLAN_HEADER = ["dataset", "ratio", "method", "trials", "finished", "kind", "backbone", "recipe"]


def _kind(plan: Plan, cfg: TrialConfig, requested: set[str]) -> str:
    if cfg.key in plan.backbone_of:
        return "stage two"
    users = len(plan.users.get(cfg.key, []))
    if users and cfg.key not in requested:
        return f"backbone only, for {users}"
    return f"end to end, shared by {users}" if users else "end to end"


def _backbone_and_recipe(plan: Plan, cfg: TrialConfig) -> tuple[str, str]:
    """The network a trial trains (its model) or stands on (a frozen backbone of another method), and the
    recipe that trains it."""
    if cfg.key in plan.backbone_of:
        backbone = plan.backbones[plan.backbone_of[cfg.key]]
        return f"frozen {backbone.method} {backbone.model}", recipe_summary(backbone.recipe)
    return cfg.model, recipe_summary(cfg.recipe)


def plan_table(plan: Plan, requested: Iterable[TrialConfig], finished: set[str]) -> list[str]:
    """One row per dataset x ratio x method (and kind): how many trials (seeds), how many are finished, what
    kind they are, the backbone they train or stand on and its recipe. `requested` are the suite's own trials;
    a backbone that only the plan adds (a `ce` under another method's stage-1 recipe) is named as such."""
    requested_keys = {cfg.key for cfg in requested}
    groups: dict[tuple[str, ...], list[TrialConfig]] = {}
    for cfg in plan.trials:
        ratio = ratio_label(cfg.imbalance_ratio, "value")
        row = (cfg.dataset, ratio, cfg.method, _kind(plan, cfg, requested_keys), *_backbone_and_recipe(plan, cfg))
        groups.setdefault(row, []).append(cfg)
    settings = list(dict.fromkeys(row[:2] for row in groups))  # dataset x ratio, in the suite's order
    ordered = sorted(groups, key=lambda row: settings.index(row[:2]))  # stable: end to end before stage two
    rows = [PLAN_HEADER]
    for dataset, ratio, method, kind, backbone, recipe in ordered:
        trials = groups[(dataset, ratio, method, kind, backbone, recipe)]
        done = sum(cfg.key in finished for cfg in trials)
        rows.append([dataset, ratio, method, str(len(trials)), str(done), kind, backbone, recipe])
    return text_columns(rows, "lrlrrlll", indent="  ")


def finished_summary(plan: Plan, finished: set[str], store: str) -> list[str]:
    """How many of the plan's trials have their result in the store already (a run skips them)."""
    done = sum(cfg.key in finished for cfg in plan.trials)
    left = len(plan.trials) - done
    if not done:
        return [f"none of the {plural(len(plan.trials), 'trial')} is finished yet in {store}: a run trains all"]
    return [f"{done} of {len(plan.trials)} trials already finished in {store}: a run trains the other {left}"]


def extra_runs(suite: Suite) -> list[str]:
    """The runs a paper suite's table also reads (`extra_runs:` in its YAML: each a list of --set overrides),
    as the commands to type."""
    runs = suite.raw.get("extra_runs") or []
    if not runs:
        return []
    lines = [f"this suite's table also has rows from {plural(len(runs), 'other run')} of it, one command each:"]
    for overrides in runs:
        lines.append(f"  ltbench run {suite.name} " + " ".join(f"--set {shlex.quote(o)}" for o in overrides))
    return lines


def every_trial(plan: Plan) -> list[str]:
    """`--verbose`: each trial with its key; a decoupled one with the backbone it stands on."""
    lines = [f"{plural(len(plan.end_to_end), 'trial')} trained end to end (shared backbones included):"]
    for cfg in plan.end_to_end:
        users = plan.users.get(cfg.key, [])
        shared = f" <- shared by {len(users)}: " + ", ".join(u.method for u in users) if users else ""
        lines.append(f"  {cfg.label()} ({cfg.key}){shared}")
    if plan.decoupled:
        lines.append(f"{plural(len(plan.decoupled), 'decoupled trial')}, each started once its backbone has finished:")
    for cfg in plan.decoupled:
        backbone = plan.backbones[plan.backbone_of[cfg.key]]
        lines.append(f"  {cfg.label()} ({cfg.key}) on {backbone.label()} ({backbone.key})")
    return lines
