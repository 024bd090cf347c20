"""How ltbench's numbers are named and scaled in MLflow, and read back.

The MLflow UI draws one chart per metric, grouped into sections by the prefix before a `/`, the sections in
alphabetical order (seen in MLflow 3.x; unprefixed metrics come after them). So a run's page leads with what a
researcher looks at first, `curves/`: the training loss and the validation and test accuracy per epoch; then
the final values, one point each (`final/`), the learning rate (`optimizer/`), the shot buckets (`shots/`)
and the speed (`speed/`). Accuracies are logged in percent, the unit of ltbench's leaderboards and
tables, and a run says so in its `ltbench.accuracy_unit` tag.

Everything that reads runs back (`harness.reports.runs`) goes through `read_back`, which returns the
historical view (fractions, `final_<name>`), so runs logged before this layout (fractions, no prefixes, no
unit tag) read the same as new ones.
"""

from __future__ import annotations

import re

ACCURACY_UNIT_TAG = "ltbench.accuracy_unit"
PERCENT = "%"
FINAL = "final/"
LEGACY_FINAL = "final_"
SECTIONS = {
    re.compile(r"^(?:train_loss|(?:val|test)_(?:top1|mean_class_acc))$"): "curves/",
    re.compile(r"^(?:val|test)_(?:many|medium|few)_acc$"): "shots/",
    re.compile(r"^lr$"): "optimizer/",
    re.compile(r"^(?:epoch_seconds|train_images_per_s)$"): "speed/",
}
_ACCURACY = re.compile(r"(?:^|_)(?:top1|mean_class_acc|many_acc|medium_acc|few_acc)$")
_PREFIX = re.compile(r"^(?:curves|shots|optimizer|speed)/")


def is_accuracy(name: str) -> bool:
    """An accuracy (a fraction in ltbench's records): top-1, mean per-class or a shot bucket's, any split or
    variant (`tau1_test_top1`)."""
    return bool(_ACCURACY.search(name.rsplit("/", 1)[-1]))


def epoch_metric(name: str) -> str:
    """The MLflow name of a per-epoch metric, in its section."""
    for pattern, section in SECTIONS.items():
        if pattern.match(name):
            return section + name
    return name


def final_metric(name: str) -> str:
    """The MLflow name of a final value (`test_top1` -> `final/test_top1`)."""
    return FINAL + name


def logged_value(name: str, value: float, percent: bool) -> float:
    """The value as logged: an accuracy in percent when the run's unit is percent."""
    return 100.0 * value if percent and is_accuracy(name) else value


def read_back(metrics: dict[str, float], tags: dict[str, str]) -> dict[str, float]:
    """A run's MLflow metrics in ltbench's own terms: accuracies as fractions, finals as `final_<name>`,
    without section prefixes; runs of either layout read alike."""
    percent = tags.get(ACCURACY_UNIT_TAG) == PERCENT
    out = {}
    for name, value in metrics.items():
        plain = _PREFIX.sub("", name)
        if plain.startswith(FINAL):
            plain = LEGACY_FINAL + plain[len(FINAL) :]
        out[plain] = value / 100.0 if percent and is_accuracy(plain) else value
    return out
