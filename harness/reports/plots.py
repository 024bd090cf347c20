"""Report plots, PNG and PDF, in one seaborn style with one colour per method across every figure.

Bars and lines are drawn by seaborn's axes-level functions on tidy frames (a row per run, class or epoch)
onto figures built on matplotlib's Agg canvas directly (no pyplot state, no global backend switch), so
drawing works headless and inside a notebook alike. Every figure carries one shared legend outside its axes,
so no legend ever covers data. A plot is skipped with a note, never faked or drawn as empty panels, when the
runs lack what it needs (e.g. analysis.npz for the weight-norm and correlation plots, or classes in more than
one shot bucket).

Plots (files under <out>/<name>.png|.pdf):
- accuracy_vs_ratio: All (and mean per-class) accuracy, a panel per dataset x ratio with the methods down
  the y axis, mean ± std and each seed (one row when All equals mean per-class on every run);
- shot_accuracy: Many / Medium / Few grouped bars per method, a panel per dataset x ratio, each bucket's
  number of classes under its name, empty buckets left out and named in the panel title;
- seed_spread: every seed's mean per-class accuracy as a point beside the mean over seeds, per method;
- per_class_accuracy, weight_norm, feature_correlation, training_curves: from the runs' artifacts
  (`plots_training`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.reports.naming import ordered_methods
from harness.reports.plot_style import (
    DPI,
    context_label,
    context_panels,
    figure,
    finish,
    in_context,
    marker_of,
    method_colors,
    panel_contexts,
    percent,
    style,
)
from harness.reports.plots_training import (
    feature_correlation,
    history_frame,
    per_class_accuracy,
    per_class_frame,
    training_curves,
    weight_norm,
)
from harness.reports.runs import RunArtifacts, fetch_artifacts, finished

# what the notebook and callers reach through this module, the artifact plots' helpers included
__all__ = ["draw_plots", "history_frame", "method_colors", "per_class_frame", "style", "write_plots"]

BUCKETS = (("test_many_acc", "Many"), ("test_medium_acc", "Medium"), ("test_few_acc", "Few"))
PLOT_NAMES = ("accuracy_vs_ratio", "shot_accuracy", "per_class_accuracy", "weight_norm", "feature_correlation",
              "training_curves", "seed_spread")  # fmt: skip
SAME_METRIC_TOLERANCE = 1e-9  # All and mean per-class accuracy count as one metric within this


@dataclass
class PlotOutcome:
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- the plots -----------------------------------------------------------------------------------------------
def accuracy_vs_ratio(done: pd.DataFrame, colors: dict, notes: list[str]) -> Any | None:
    """A panel per dataset x ratio with the methods down the y axis: each seed a faint dot, the mean ± std a
    marker with its bar, so methods a point apart at r=10 stay apart, and each ratio keeps its own x scale."""
    rated = done[done.imbalance_ratio.notna()]
    ratios_per_dataset = rated.groupby("dataset").imbalance_ratio.nunique() if len(rated) else pd.Series()
    if not (ratios_per_dataset >= 2).any():
        notes.append("accuracy_vs_ratio: skipped, no dataset has runs at two or more imbalance ratios")
        return None
    rated = rated[rated.dataset.isin(ratios_per_dataset[ratios_per_dataset >= 2].index)]
    gap = (rated.test_top1 - rated.test_mean_class_acc).abs()
    balanced = bool((gap.dropna() <= SAME_METRIC_TOLERANCE).all())
    metrics = [("test_top1", "All = mean per-class %" if balanced else "All (top-1) %")]
    if not balanced:
        metrics.append(("test_mean_class_acc", "mean per-class %"))
    contexts = sorted(panel_contexts(rated), key=lambda c: (c[0], c[1]))  # ratios left to right, growing
    methods = ordered_methods(rated.method)
    fig, axes = figure(len(metrics), len(contexts), 3.6, 0.28 * len(methods) + 1.4)
    for j, (dataset, ratio) in enumerate(contexts):
        mine = in_context(rated, dataset, ratio)
        here = [m for m in methods if m in set(mine.method)]
        for i, (column, xlabel) in enumerate(metrics):
            ax = axes[i, j]
            for y, method in enumerate(here):
                values = percent(mine[mine.method == method], column).dropna()
                if values.empty:
                    continue
                ax.scatter(values, [y] * len(values), color=colors[method], s=10, alpha=0.35, linewidths=0)
                ax.errorbar(
                    values.mean(),
                    y,
                    xerr=values.std() if len(values) > 1 else None,  # no bar for one seed, never a fake zero
                    fmt=marker_of(colors, method),
                    color=colors[method],
                    capsize=3,
                    markersize=5,
                )
            ax.set_yticks(range(len(here)), here if j == 0 else [""] * len(here))
            ax.set_ylim(len(here) - 0.5, -0.5)  # the report order, top to bottom
            ax.set_xlabel(xlabel)
            ax.set_title(context_label(dataset, ratio))
    title = "Test accuracy at each imbalance ratio (mean ± std over seeds; dots: each seed)"
    if balanced:
        title += "; All equals mean per-class accuracy on every run (balanced test set), drawn once"
    return finish(fig, colors, methods, "point", title)


def _bucket_frame(mine: pd.DataFrame) -> pd.DataFrame:
    """Tidy: one row per run x non-empty shot bucket, accuracy in percent."""
    parts = [
        pd.DataFrame({"method": mine.method, "bucket": name, "accuracy": percent(mine, column)})
        for column, name in BUCKETS
    ]
    return pd.concat(parts, ignore_index=True).dropna(subset=["accuracy"])


def bucket_sizes(mine: pd.DataFrame) -> dict[str, str]:
    """'5 classes' per shot bucket of one dataset x ratio, from the runs' recorded bucket sizes (a bucket
    whose size was not recorded is left out)."""
    out = {}
    for _, name in BUCKETS:
        counts = mine[f"classes_{name.lower()}"].dropna().unique()
        if len(counts) == 1:
            n = int(counts[0])
            out[name] = f"{n} class{'es' if n != 1 else ''}"
    return out


def shot_accuracy(done: pd.DataFrame, colors: dict, notes: list[str]) -> Any | None:
    import seaborn as sns

    drawn, lacking = [], []
    for dataset, ratio in panel_contexts(done):
        mine = in_context(done, dataset, ratio)
        present = [name for column, name in BUCKETS if mine[column].notna().any()]
        (drawn if len(present) >= 2 else lacking).append((dataset, ratio))
    if lacking:
        where = ", ".join(context_label(d, r) for d, r in lacking)
        notes.append(
            f"shot_accuracy: {where} left out: its classes fall in fewer than two shot buckets (many > 100, "
            "medium 20-100, few < 20 training images), so bars would repeat the mean per-class accuracy; "
            "a larger data.max_per_class or imbalance ratio fills the other buckets"
        )
    if not drawn:
        notes.append("shot_accuracy: skipped, no dataset x ratio has classes in two or more shot buckets")
        return None
    methods = ordered_methods(done.method)
    fig, panels = context_panels(done, drawn)
    for ax, mine, label in panels:
        tidy = _bucket_frame(mine)
        present = [name for _, name in BUCKETS if name in set(tidy.bucket)]
        empty = [name.lower() for _, name in BUCKETS if name not in present]
        sizes = bucket_sizes(mine)
        here = [m for m in methods if m in set(mine.method)]
        sns.barplot(
            data=tidy,
            x="bucket",
            y="accuracy",
            order=present,
            hue="method",
            hue_order=here,
            palette={m: colors[m] for m in here},
            saturation=1.0,  # exactly the colour the legend and the line plots show
            errorbar="sd",  # NaN (no bar) for a single seed
            capsize=0.1,
            err_kws={"linewidth": 1},
            legend=False,
            ax=ax,
        )
        ax.set_xticks(range(len(present)), [f"{name}\n{sizes[name]}" if name in sizes else name for name in present])
        ax.set_title(label + (f" (no {' or '.join(empty)} class)" if empty else ""))
        ax.set_xlabel("")
        ax.set_ylabel("test accuracy %")
        ax.set_ylim(0, 100)
    title = "Accuracy by shot bucket (training images: many > 100, medium 20-100, few < 20); mean ± std over seeds"
    return finish(fig, colors, methods, "bar", title)


# -- views the notebook adds ----------------------------------------------------------------------------------
def bucket_heatmap(done: pd.DataFrame) -> Any | None:
    """Method x shot bucket mean test accuracy (%), a heat map per dataset x ratio; empty buckets left out."""
    import seaborn as sns

    columns = [("test_top1", "All"), *BUCKETS]
    fig, panels = context_panels(done)
    methods = ordered_methods(done.method)
    for ax, mine, _ in panels:
        means = mine.groupby("method")[[c for c, _ in columns]].mean() * 100.0
        means = means.rename(columns=dict(columns)).dropna(axis=1, how="all")
        means = means.loc[[m for m in methods if m in means.index]]
        sns.heatmap(means, annot=True, fmt=".1f", cmap="viridis", vmin=0, vmax=100, cbar=False, ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle("Mean test accuracy (%) by method and shot bucket", fontsize="medium")
    return fig


def seed_spread(done: pd.DataFrame, column: str = "test_mean_class_acc") -> Any | None:
    """Each seed's result per method (dots) and their mean (bar), a panel per dataset x ratio: how far
    run-to-run noise reaches next to the gaps between methods."""
    import seaborn as sns

    methods = ordered_methods(done.method)
    colors = method_colors(methods)
    fig, panels = context_panels(done, size=(0.45 * len(methods) + 1.5, 3.4))
    for ax, mine, _ in panels:
        here = [m for m in methods if m in set(mine.method)]
        tidy = mine.assign(accuracy=percent(mine, column))
        palette = {m: colors[m] for m in here}
        sns.stripplot(
            data=tidy, x="method", y="accuracy", order=here, hue="method", palette=palette, size=6, legend=False, ax=ax
        )
        sns.pointplot(
            data=tidy, x="method", y="accuracy", order=here, errorbar=None, linestyle="none", markers="_",
            markersize=18, color="0.2", ax=ax,
        )  # fmt: skip
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        ax.set_xlabel("")
        ax.set_ylabel(f"{column.removeprefix('test_').replace('_', ' ')} %")
    metric = column.removeprefix("test_").replace("_", " ")
    title = f"Run-to-run spread of {metric}: each seed (dots) and the mean over seeds (bar)"
    return finish(fig, colors, methods, "bar", title)  # the dots are all circles: the legend gives colours only


# -- all of them -------------------------------------------------------------------------------------------
def draw_plots(done: pd.DataFrame, arts: dict[str, RunArtifacts]) -> tuple[dict[str, Any], list[str]]:
    """Every plot of the finished runs `done` as {name: matplotlib Figure}, and the notes on what was skipped.

    Nothing is written: `write_plots` saves them, the notebook shows them.
    """
    notes: list[str] = []
    colors = method_colors(list(done.method))
    figures: dict[str, Any] = {}
    with style():
        figures["accuracy_vs_ratio"] = accuracy_vs_ratio(done, colors, notes)
        figures["shot_accuracy"] = shot_accuracy(done, colors, notes)
        figures["per_class_accuracy"] = per_class_accuracy(done, arts, colors, notes)
        figures["weight_norm"] = weight_norm(done, arts, colors, notes)
        figures["feature_correlation"] = feature_correlation(done, arts, notes)
        figures["training_curves"] = training_curves(done, arts, colors, notes)
        figures["seed_spread"] = seed_spread(done)
    return {name: fig for name, fig in figures.items() if fig is not None}, notes


def write_plots(runs: pd.DataFrame, client: Any, out_dir: Path) -> PlotOutcome:
    """Every plot for the FINISHED runs in `runs` (one suite's) as PNG and PDF, artifacts read through
    `client`."""
    outcome = PlotOutcome()
    done = finished(runs) if len(runs) else runs
    if done.empty or client is None:
        outcome.notes.append("plots: skipped, no finished run")
        return outcome
    arts = fetch_artifacts(client, list(done.run_id))
    figures, outcome.notes = draw_plots(done, arts)
    out_dir.mkdir(parents=True, exist_ok=True)
    unread = sum(a.result is None for a in arts.values())
    if unread:  # files that could not be read are no reason to delete a plot drawn from them before
        outcome.notes.append(
            f"plots: {unread} run(s) without readable artifacts; a plot not drawn now keeps its previous file"
        )
    else:
        for name in set(PLOT_NAMES) - set(figures):  # a plot skipped now must not leave an older file behind
            for suffix in (".png", ".pdf"):
                (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
    for name, fig in figures.items():
        for suffix in (".png", ".pdf"):
            path = out_dir / f"{name}{suffix}"
            fig.savefig(path, dpi=DPI)
            outcome.paths.append(path)
    return outcome
