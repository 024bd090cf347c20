"""Shot-bucket coverage of a suite, checked before it runs: a bucket no class falls in reads n/a in every
table, and a researcher should hear it before the run rather than after (e.g. Fashion-MNIST-LT at r=50
without `max_per_class` has only many-shot classes: 6000 down to 120 images)."""

from __future__ import annotations

from harness.core.errors import LtbenchError
from harness.core.trial import TrialConfig
from harness.data import DATASETS, DataOptions
from harness.data.profile import BUCKETS, FEW_BELOW, MANY_ABOVE, bucket_sizes, largest_cap_with_every_bucket


def empty_bucket_warnings(trials: list[TrialConfig]) -> list[str]:
    """One `warning:` line per dataset x ratio x data options whose profile leaves a shot bucket empty,
    naming the `data.max_per_class` value that fills every bucket (or saying that none can)."""
    warnings: list[str] = []
    seen: set[tuple] = set()
    for trial in trials:
        options = DataOptions(**trial.data)
        context = (trial.dataset, trial.imbalance_ratio, options)
        if context in seen:
            continue
        seen.add(context)
        spec = DATASETS.get(trial.dataset)
        try:
            counts = spec.class_counts(trial.imbalance_ratio, options)
        except LtbenchError:  # a profile read from split files that are not here (ImageNet-LT): run checks it
            continue
        sizes = bucket_sizes(counts)
        empty = [bucket for bucket in BUCKETS if sizes[bucket] == 0]
        if not empty or trial.imbalance_ratio is None:
            continue
        ratio = f"{trial.imbalance_ratio:g}"
        line = (
            f"warning: {trial.dataset} r={ratio}: no {' or '.join(b + '-shot' for b in empty)} class (class sizes "
            f"{counts[0]} down to {counts[-1]}; many > {MANY_ABOVE}, few < {FEW_BELOW}), so "
            f"{' and '.join(b.title() for b in empty)} will read n/a"
        )
        cap = largest_cap_with_every_bucket(counts[0], spec.num_classes, float(trial.imbalance_ratio))
        if cap is None:
            line += (
                f"; no data.max_per_class fills every bucket at r={ratio} (that takes r > {MANY_ABOVE / FEW_BELOW:g})"
            )
        else:
            line += (
                f"; --set data.max_per_class={cap} fills every bucket (a cap that departs from the standard profile)"
            )
        warnings.append(line)
    return warnings
