"""Suites: YAML grids of dataset x imbalance ratio x method x seed, expanded into trials.

A suite is a built-in name (harness/experiment/suites/<name>.yaml) or a path to a YAML file. `--set key=value`
overrides any key with a dotted path (`recipe.epochs=3`, `seeds=[0,1,2]`, `data.root=/data`), the value read
as YAML. Everything is validated before any trial starts, and an unknown name lists the valid ones.

A suite that spans datasets trained differently (a paper's CIFAR and ImageNet-LT rows) gives a dataset its
own ratios, seeds, recipe, model, resources or method_params under `per_dataset.<dataset>` (the same keys as
the top level; a dataset's method_params update the suite's, hyperparameter by hyperparameter); everything
else comes from the suite's top level. The `paper-*` suites follow each seed paper's protocol.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from harness.core.errors import LtbenchError, unknown_choice
from harness.core.trial import TrialConfig
from harness.core.validation import MAX_SEED, Rule, check_fields, is_finite_number, is_seed
from harness.core.yaml_input import parse_yaml, shown
from harness.data import DATASETS, DataOptions
from harness.data.base import AUGMENTATIONS, SEED_FROM_TRIAL
from harness.data.profile import SELECTIONS
from harness.experiment.suite_files import GRID_KEYS, load_suite_file
from harness.models import MODELS
from harness.plugins.code_identity import method_code
from harness.plugins.loading import load_methods, require_method
from harness.plugins.method import parse_params
from harness.training.recipes import RECIPES, Recipe

DEFAULTS: dict[str, Any] = {
    "description": "",
    "model": None,
    "recipe": {},
    "data": {},
    "method_params": {},
    "resources": {"cpu": 1, "gpu": 0},
    "device": "auto",
    "per_dataset": {},
    # other runs of this suite that its paper table also reads, each a list of --set overrides (the dry run
    # prints them as commands), e.g. [[methods=[ce], method_params.ce.sampler=square-root]]
    "extra_runs": [],
    "group_size": "auto",  # trials per worker process (`harness.execution.grouping`); never part of a key
}
PER_DATASET_KEYS = ("imbalance_ratios", "seeds", "recipe", "model", "resources", "method_params")
TOP_KEYS = ("name", *GRID_KEYS, *DEFAULTS)
RESOURCE_KEYS = ("cpu", "gpu")
DEVICES = ("auto", "cpu", "cuda")
RAY_RESOURCE_STEP = 0.0001  # Ray rounds a resource request to 4 decimals: a smaller one is an error inside Ray
# A suite name becomes a directory under the results dir and an MLflow experiment: a plain name, no path.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# What each data option may hold beyond its type (one line per field, checked only for fields DataOptions has).
DATA_RULES: dict[str, Rule] = {
    "selection": (lambda v: v in SELECTIONS, "one of " + ", ".join(SELECTIONS)),
    "augmentation": (lambda v: v in AUGMENTATIONS, "one of " + ", ".join(AUGMENTATIONS)),
    "data_seed": (
        lambda v: is_seed(v) or v == SEED_FROM_TRIAL,
        f"an integer in [0, {MAX_SEED}] or {SEED_FROM_TRIAL!r} (the trial's seed)",
    ),
    "max_per_class": (lambda v: v >= 1, "an integer >= 1 (or null for no cap)"),
    "val_per_class": (lambda v: v >= 1, "an integer >= 1 (or null for the dataset's default)"),
}


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `key.path=value` to the raw suite dict, checking the key against the schema."""
    if "=" not in assignment:
        raise LtbenchError(f"--set expects key=value, got {assignment!r} (e.g. --set recipe.epochs=3)")
    key, _, text = assignment.partition("=")
    parts = key.strip().split(".")
    try:
        value = parse_yaml(text) if text.strip() else None
    except LtbenchError as e:
        raise LtbenchError(f"--set {key}: cannot parse value {shown(text)}: it {e}") from None
    _check_key(parts)
    target = raw
    for part in parts[:-1]:
        if target.get(part) is None:
            target[part] = {}
        target = target[part]
        if not isinstance(target, dict):
            raise LtbenchError(f"--set {key}: {part} is not a mapping in this suite")
    target[parts[-1]] = value


def _check_key(parts: list[str]) -> None:
    head = parts[0]
    if head not in TOP_KEYS or head == "name":
        raise unknown_choice("suite key", head, [k for k in TOP_KEYS if k != "name"])
    nested = {
        "recipe": ["base", *(f.name for f in dataclasses.fields(Recipe))],
        "data": [f.name for f in dataclasses.fields(DataOptions)],
        "resources": list(RESOURCE_KEYS),
    }
    if head in nested and len(parts) > 1:
        if parts[1] not in nested[head] or len(parts) > 2:
            raise unknown_choice(f"{head} key", ".".join(parts[1:]), nested[head])
    elif head == "per_dataset" and len(parts) > 1:
        DATASETS.get(parts[1])  # an unknown dataset is reported with the valid ones
        if len(parts) > 2 and parts[2] not in PER_DATASET_KEYS:
            raise unknown_choice("per_dataset key", parts[2], PER_DATASET_KEYS)
        if len(parts) > 3 and (parts[2] not in ("recipe", "method_params") or len(parts) > 4 + (parts[2] != "recipe")):
            raise LtbenchError(
                "per_dataset keys are per_dataset.<dataset>.<key>, ...recipe.<recipe key> or "
                "...method_params.<method>.<hyperparameter>"
            )
    elif head == "method_params":
        if len(parts) > 1:
            load_methods().get(parts[1])  # an unknown method is reported with the valid ones
        if len(parts) > 3:
            raise LtbenchError("method_params keys are method_params.<method>.<hyperparameter>")
    elif len(parts) > 1:
        raise LtbenchError(f"suite key {head!r} has no sub-keys; use --set {head}=VALUE")


@dataclass
class Suite:
    name: str
    description: str
    trials: list[TrialConfig]
    raw: dict[str, Any]
    overrides: list[str] = dataclasses.field(default_factory=list)  # the `--set` assignments, as given
    group_size: int | str = "auto"

    def __len__(self) -> int:
        return len(self.trials)


def _as_list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        raise LtbenchError(f"suite {raw['name']!r} must list {key} (e.g. {key}: [...])")
    values = value if isinstance(value, list) else [value]
    if not values:
        raise LtbenchError(f"suite {raw['name']!r}: {key} is empty")
    return values


def build_suite(name_or_path: str, overrides: list[str] | None = None) -> Suite:
    raw = load_suite_file(name_or_path)
    for key in raw:
        if key not in TOP_KEYS:
            raise unknown_choice("suite key", key, TOP_KEYS)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    cfg = {**copy.deepcopy(DEFAULTS), **raw}
    _check_name(raw["name"])
    _check_sections(cfg)
    grid = {key: _as_list(raw, key) for key in GRID_KEYS}
    for key in ("datasets", "methods"):
        if not all(isinstance(v, str) for v in grid[key]):
            raise LtbenchError(f"suite {raw['name']!r}: {key} must be names (strings), got {shown(grid[key])}")
    for key, values in grid.items():
        repeated = [values[values.index(v)] for i, v in enumerate(values) if v in values[:i]]  # as first written
        if repeated:
            listed = ", ".join(str(v) for v in dict.fromkeys(map(str, repeated)))
            raise LtbenchError(f"suite {raw['name']!r}: {key} lists {listed} more than once; list each once")
    methods = load_methods()

    for dataset in grid["datasets"]:
        DATASETS.get(dataset)
    for method in grid["methods"]:
        require_method(method)
    per_dataset = _per_dataset(cfg["per_dataset"], grid["datasets"])
    ratios = {d: _ratios(per_dataset[d].get("imbalance_ratios", grid["imbalance_ratios"])) for d in grid["datasets"]}
    seeds = {d: _seeds(per_dataset[d].get("seeds", grid["seeds"])) for d in grid["datasets"]}
    if cfg["device"] not in DEVICES:
        raise unknown_choice("device", cfg["device"], DEVICES)
    resources = {d: _resources(per_dataset[d].get("resources", cfg["resources"])) for d in grid["datasets"]}
    if cfg["device"] == "cuda" and not all(r["gpu"] for r in resources.values()):
        # Ray hides every GPU from a trial that asked for none, so it could never see one
        raise LtbenchError("device 'cuda' needs a GPU per trial: add --set resources.gpu=1 (or use device auto/cpu)")
    _check_extra_runs(cfg["extra_runs"])
    data_options = _data_options(cfg["data"])
    method_params = {
        d: _method_params(cfg["method_params"], per_dataset[d].get("method_params"), d) for d in per_dataset
    }
    for params_of in method_params.values():
        for method, params in params_of.items():
            parse_params(methods.get(method), params)
    for dataset in grid["datasets"]:
        _check_views_in_memory(DATASETS.get(dataset), [methods.get(m) for m in grid["methods"]])
    if cfg["model"] is not None:
        MODELS.get(cfg["model"])

    trials = []
    for dataset in grid["datasets"]:
        spec = DATASETS.get(dataset)
        own = per_dataset[dataset]
        recipe = _recipe(_merged_recipe(cfg["recipe"], own.get("recipe")), spec.default_recipe)
        model = own.get("model") or cfg["model"] or spec.default_model
        MODELS.get(model)
        for ratio in ratios[dataset]:
            for method in grid["methods"]:
                for seed in seeds[dataset]:
                    trials.append(
                        TrialConfig(
                            suite=raw["name"],
                            dataset=dataset,
                            imbalance_ratio=None if ratio is None else float(ratio),
                            method=method,
                            seed=seed,
                            model=model,
                            recipe=recipe.as_dict(),
                            data=dataclasses.asdict(data_options),
                            method_params=dict(method_params[dataset].get(method) or {}),
                            resources=resources[dataset],
                            device=cfg["device"],
                            method_code=method_code(methods.get(method)),
                        )
                    )
    return Suite(
        raw["name"], cfg["description"] or "", trials, raw, list(overrides or []), parse_group_size(cfg["group_size"])
    )


def _check_views_in_memory(spec: Any, methods: list[Any]) -> None:
    """Extra views of each image (a method's `views`, `paired_sampler`) and a transductive method's unlabeled
    views are made on the device from in-memory datasets only: refused here, before anything runs."""
    in_memory = sorted(name for name in DATASETS if DATASETS.get(name).in_memory)
    for method in methods:
        if spec.in_memory or not (method.views or method.paired_sampler or method.transductive):
            continue
        needs = "adapts on augmented views of unlabeled images" if method.transductive else "trains on extra views"
        raise LtbenchError(
            f"method {method.name!r} {needs}, which ltbench makes for in-memory datasets only "
            f"({', '.join(in_memory)}), not for {spec.name} (read from files): drop one of the two from the suite"
        )


def _check_sections(cfg: dict[str, Any]) -> None:
    """Each section holds the kind of value its keys are read from: a scalar where a mapping belongs (`--set
    recipe=5`, `method_params: [ce]`) is named here rather than failing later as a Python error."""
    if cfg["description"] is not None and not isinstance(cfg["description"], str):
        raise LtbenchError(f"description must be a string, got {shown(cfg['description'])}")
    _check_recipe_section("recipe", cfg["recipe"])
    for key, example in (
        ("data", "{root: /data, max_per_class: 500}"),
        ("resources", "{cpu: 1, gpu: 0}"),
        ("method_params", "{la: {tau: 1.0}}"),
    ):
        _check_mapping(key, cfg[key], example)
    for method, params in (cfg["method_params"] or {}).items():
        _check_mapping(f"method_params.{method}", params, "{tau: 1.0}")
    for dataset, own in (cfg["per_dataset"] or {}).items() if isinstance(cfg["per_dataset"], dict) else ():
        if isinstance(own, dict):
            _check_recipe_section(f"per_dataset.{dataset}.recipe", own.get("recipe"))
            _check_mapping(f"per_dataset.{dataset}.resources", own.get("resources"), "{cpu: 1, gpu: 0}")


def _check_mapping(where: str, value: Any, example: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise LtbenchError(f"{where} must be a mapping, e.g. {example}; got {shown(value)}")


def _check_recipe_section(where: str, value: Any) -> None:
    if value is not None and not isinstance(value, str | dict):
        raise LtbenchError(
            f"{where} must be a recipe name or a mapping, e.g. quick or {{base: quick, epochs: 3}}; got {shown(value)}"
        )


def parse_group_size(value: Any, where: str = "group_size") -> int | str:
    """A positive whole number or 'auto' (how many trials train in one worker process); anything else is a
    one-line error saying so."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LtbenchError(f"{where} must be a positive whole number or 'auto', got {value!r}")
    return value


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        raise LtbenchError(
            f"suite name must be a plain name (letters, digits, '.', '_', '-'; no path), got {name!r}; "
            "e.g. name: my-suite"
        )


def _check_extra_runs(runs: Any) -> None:
    """`extra_runs` is a list of runs, each a list of `key=value` overrides (applied on top of the suite)."""
    example = "e.g. extra_runs: [[methods=[ce], method_params.ce.sampler=square-root]]"
    if not isinstance(runs, list):
        raise LtbenchError(f"extra_runs must be a list of runs, each a list of key=value overrides; {example}")
    for run in runs:
        if not isinstance(run, list) or not all(isinstance(o, str) and "=" in o for o in run):
            raise LtbenchError(f"extra_runs holds {run!r}: each run is a list of key=value overrides; {example}")


def _ratios(values: Any) -> list[Any]:
    values = values if isinstance(values, list) else [values]
    for ratio in values:
        if ratio is not None and (not is_finite_number(ratio) or ratio < 1):
            raise LtbenchError(
                f"imbalance ratios must be finite numbers >= 1 (n_max / n_min), got {shown(ratio)}; "
                "e.g. [10, 50, 100, 200]"
            )
    return values


def _seeds(values: Any) -> list[int]:
    values = values if isinstance(values, list) else [values]
    for seed in values:
        if not is_seed(seed):
            raise LtbenchError(
                f"seeds must be integers in [0, {MAX_SEED}], got {shown(seed)}; e.g. --set seeds=[0,1,2]"
            )
    return values


def _per_dataset(section: Any, datasets: list[str]) -> dict[str, dict[str, Any]]:
    """Each dataset's own settings ({} when it has none), checked against the schema."""
    section = section or {}
    if not isinstance(section, dict):
        raise LtbenchError(f"per_dataset must map dataset names to {{{', '.join(PER_DATASET_KEYS)}}}")
    for dataset, own in section.items():
        DATASETS.get(dataset)
        if not isinstance(own or {}, dict):
            raise LtbenchError(f"per_dataset.{dataset} must be a mapping, e.g. {{seeds: [0], model: resnet50}}")
        for key in own or {}:
            if key not in PER_DATASET_KEYS:
                raise unknown_choice(f"per_dataset.{dataset} key", key, PER_DATASET_KEYS)
    return {d: dict(section.get(d) or {}) for d in datasets}


def _method_params(suite_section: Any, own_section: Any, dataset: str) -> dict[str, dict[str, Any]]:
    """A dataset's method hyperparameters: the suite's, updated by the dataset's own, method by method."""
    merged: dict[str, dict[str, Any]] = {}
    for where, section in (("method_params", suite_section), (f"per_dataset.{dataset}.method_params", own_section)):
        if not isinstance(section or {}, dict):
            raise LtbenchError(f"{where} must map method names to {{hyperparameter: value}}")
        for method, params in (section or {}).items():
            if not isinstance(params or {}, dict):
                raise LtbenchError(f"{where}.{method} must map hyperparameters to values")
            merged[method] = {**merged.get(method, {}), **(params or {})}
    return merged


def _merged_recipe(suite_section: Any, own_section: Any) -> Any:
    """A dataset's recipe section: its own base (if named) with the suite's overrides, then its own ones."""
    if own_section is None:
        return suite_section
    suite, own = _recipe_section(suite_section), _recipe_section(own_section)
    return {**suite, **own}


def _recipe_section(section: Any) -> dict[str, Any]:
    """A suite's `recipe` value as a dict: a bare name is `{base: name}`."""
    return {"base": section} if isinstance(section, str) else dict(section or {})


def _recipe(section: Any, default_name: str) -> Recipe:
    section = _recipe_section(section)
    base = RECIPES.get(section.pop("base", default_name))
    check_fields("recipe", Recipe, section)
    try:
        return base.override(**section)
    except TypeError as e:
        raise LtbenchError(f"recipe: {e}") from e


def _data_options(section: Any) -> DataOptions:
    section = dict(section or {})
    fields = {f.name for f in dataclasses.fields(DataOptions)}
    for key in section:
        if key not in fields:
            raise unknown_choice("data key", key, fields)
    check_fields("data", DataOptions, section, DATA_RULES)
    return DataOptions(**section)


def _resources(section: Any) -> dict[str, float]:
    section = {**DEFAULTS["resources"], **(section or {})}
    for key, value in section.items():
        if key not in RESOURCE_KEYS:
            raise unknown_choice("resource", key, RESOURCE_KEYS)
        if not is_finite_number(value) or value < 0:
            raise LtbenchError(f"resources.{key} must be a finite number >= 0, got {shown(value)}")
        if 0 < value < RAY_RESOURCE_STEP:
            raise LtbenchError(
                f"resources.{key} must be 0 or {RAY_RESOURCE_STEP} or more (Ray counts resources in steps of "
                f"{RAY_RESOURCE_STEP}), got {value!r}"
            )
    if section["cpu"] <= 0:
        raise LtbenchError("resources.cpu must be > 0 (each trial needs a CPU to drive it)")
    return {k: float(v) for k, v in section.items()}
