"""Report plots, PNG and PDF, in one seaborn style with one colour per method across every figure.

Bars and lines are drawn by seaborn's axes-level functions on tidy frames (a row per run, class or epoch)
onto figures built on matplotlib's Agg canvas directly (no pyplot state, no global backend switch), so
drawing works headless and inside a notebook alike. Every figure carries one shared legend outside its axes,
so no legend ever covers data. A plot is skipped with a note, never faked or drawn as empty panels, when the
runs lack what it needs (e.g. analysis.npz for the weight-norm and correlation plots, or classes in more than
one shot bucket).

Plots (files under <out>/<name>.png|.pdf):
- accuracy_vs_ratio: All and mean per-class accuracy vs imbalance ratio (log x), a line per method (one row
  when the two are equal on every run, as on a balanced test set);
- shot_accuracy: Many / Medium / Few grouped bars per method, a panel per dataset x ratio, empty buckets left
  out and named in the panel title;
- per_class_accuracy: each class's test accuracy vs its training count (log x);
- weight_norm: the norm of each class's classifier row for ce, tau-norm, crt and lws (analysis.npz);
- feature_correlation: |correlation| of the classifier's input channels, ce vs cw (analysis.npz);
- training_curves: train loss and validation mean per-class accuracy vs epoch;
- seed_spread: every seed's mean per-class accuracy as a point beside the mean over seeds, per method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.reports.naming import ordered_methods
from harness.reports.plot_style import (
    DPI,
    context_label,
    context_panels,
    figure,
    in_context,
    line_kwargs,
    method_colors,
    panel_contexts,
    percent,
    shared_legend,
    style,
)
from harness.reports.runs import RunArtifacts, fetch_artifacts, finished

NORM_METHODS = ("ce", "tau-norm", "crt", "lws")
CORR_METHODS = ("ce", "cw")
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
    import seaborn as sns

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
    datasets = sorted(rated.dataset.unique())
    fig, axes = figure(len(metrics), len(datasets))
    methods = ordered_methods(rated.method)
    for j, dataset in enumerate(datasets):
        mine = rated[rated.dataset == dataset]
        here = [m for m in methods if m in set(mine.method)]
        for i, (column, ylabel) in enumerate(metrics):
            ax = axes[i, j]
            tidy = mine.assign(accuracy=percent(mine, column))
            sns.lineplot(
                data=tidy,
                x="imbalance_ratio",
                y="accuracy",
                errorbar="sd",  # no bar for a single seed rather than a fake zero spread
                err_style="bars",
                err_kws={"capsize": 3},
                ax=ax,
                **line_kwargs(colors, here),
            )
            ax.set_xscale("log")
            ratios = sorted(mine.imbalance_ratio.unique())
            ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
            ax.minorticks_off()
            ax.set_xlabel("imbalance ratio (log)")
            ax.set_ylabel(ylabel)
            ax.set_title(dataset)
    shared_legend(fig, colors, methods, "line")
    title = "Test accuracy vs imbalance ratio (mean ± std over seeds)"
    if balanced:
        title += "; All equals mean per-class accuracy on every run (balanced test set), drawn once"
    fig.suptitle(title, fontsize="medium", wrap=True)
    return fig


def _bucket_frame(mine: pd.DataFrame) -> pd.DataFrame:
    """Tidy: one row per run x non-empty shot bucket, accuracy in percent."""
    parts = [
        pd.DataFrame({"method": mine.method, "bucket": name, "accuracy": percent(mine, column)})
        for column, name in BUCKETS
    ]
    return pd.concat(parts, ignore_index=True).dropna(subset=["accuracy"])


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
        ax.set_title(label + (f" (no {' or '.join(empty)} class)" if empty else ""))
        ax.set_xlabel("")
        ax.set_ylabel("test accuracy %")
        ax.set_ylim(0, 100)
    shared_legend(fig, colors, methods, "bar")
    fig.suptitle(
        "Accuracy by shot bucket (training images: many > 100, medium 20-100, few < 20); mean ± std over seeds",
        fontsize="medium",
        wrap=True,
    )
    return fig


def _log_count_axis(ax: Any, counts: np.ndarray) -> None:
    """Log x axis labelled with plain numbers: decades only when the counts span two or more decades,
    else 1-2-5 steps; minor ticks unlabelled, so labels never run together."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    span = math.log10(max(float(np.max(counts)), 1.0) / max(float(np.min(counts)), 1.0))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if span >= 2 else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def per_class_accuracy(done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, notes: list[str]) -> Any:
    import seaborn as sns

    have = done[[arts[r].result is not None for r in done.run_id]]
    if len(have) < len(done):
        notes.append(f"per_class_accuracy: {len(done) - len(have)} run(s) without result.json skipped")
    if have.empty:
        notes.append("per_class_accuracy: skipped, no run has result.json")
        return None
    methods = ordered_methods(have.method)
    fig, panels = context_panels(have)
    for ax, mine, _ in panels:
        tidy = per_class_frame(mine, arts)
        here = [m for m in methods if m in set(mine.method)]
        sns.lineplot(data=tidy, x="train_count", y="accuracy", errorbar=None, ax=ax, **line_kwargs(colors, here))
        _log_count_axis(ax, tidy.train_count.to_numpy())
        ax.set_xlabel("training images of the class (log)")
        ax.set_ylabel("test accuracy of the class %")
        ax.set_ylim(-2, 102)
    shared_legend(fig, colors, methods, "line")
    fig.suptitle("Per-class test accuracy vs training count (mean over seeds)", fontsize="medium", wrap=True)
    return fig


def per_class_frame(
    runs: pd.DataFrame, arts: dict[str, RunArtifacts], class_names: list[str] | None = None
) -> pd.DataFrame:
    """Tidy per-class test accuracy: one row per run x class with its training count (and name, when given)."""
    parts = []
    for run in runs.itertuples():
        result = arts[run.run_id].result
        if result is None:
            continue
        acc = np.asarray(result["per_class_acc"]["test"], dtype=float) * 100.0
        part = pd.DataFrame(
            {
                "method": run.method,
                "seed": run.seed,
                "class": np.arange(len(acc)),
                "train_count": np.asarray(result["train_counts"], dtype=float),
                "accuracy": acc,
            }
        )
        if class_names is not None and len(class_names) == len(acc):
            part["class_name"] = class_names
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _with_analysis(
    done: pd.DataFrame, arts: dict[str, RunArtifacts], methods: tuple[str, ...], plot: str, notes: list[str]
) -> pd.DataFrame:
    mine = done[done.method.isin(methods)]
    ok = mine[[arts[r].analysis is not None for r in mine.run_id]]
    if len(ok) < len(mine):
        notes.append(f"{plot}: {len(mine) - len(ok)} run(s) of {', '.join(methods)} without analysis.npz skipped")
    return ok


def weight_norm(done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, notes: list[str]) -> Any | None:
    import seaborn as sns

    have = _with_analysis(done, arts, NORM_METHODS, "weight_norm", notes)
    have = have[[arts[r].analysis["weight_norm"].size > 0 for r in have.run_id]]
    if have.empty:
        notes.append(f"weight_norm: skipped, no run of {', '.join(NORM_METHODS)} has weight norms")
        return None
    methods = ordered_methods(have.method)
    fig, panels = context_panels(have)
    for ax, mine, _ in panels:
        parts = []
        for run in mine.itertuples():
            analysis = arts[run.run_id].analysis
            norms = analysis["weight_norm"]
            counts = analysis.get("class_counts", np.zeros(len(norms)))
            order = np.argsort(-counts, kind="stable")  # ImageNet-LT's class ids are not sorted by count
            parts.append(pd.DataFrame({"method": run.method, "rank": np.arange(len(norms)), "norm": norms[order]}))
        here = [m for m in methods if m in set(mine.method)]
        tidy = pd.concat(parts, ignore_index=True)
        sns.lineplot(data=tidy, x="rank", y="norm", errorbar=None, ax=ax, **line_kwargs(colors, here))
        ax.set_xlabel("class rank by training count (many to few)")
        ax.set_ylabel("classifier weight norm ||w_c||")
    shared_legend(fig, colors, methods, "line")
    fig.suptitle("Per-class norm of the effective classifier weights (mean over seeds)", fontsize="medium")
    return fig


def feature_correlation(done: pd.DataFrame, arts: dict[str, RunArtifacts], notes: list[str]) -> Any | None:
    import seaborn as sns

    have = _with_analysis(done, arts, CORR_METHODS, "feature_correlation", notes)
    have = have[[arts[r].analysis["feature_corr"].size > 0 for r in have.run_id]]
    if have.empty:
        notes.append("feature_correlation: skipped, no run of ce or cw has a feature correlation matrix")
        return None
    contexts = panel_contexts(have)
    methods = [m for m in CORR_METHODS if m in set(have.method)]  # a method with no matrix gets no column
    fig, axes = figure(len(contexts), len(methods), 4.2, 3.6)
    for i, (dataset, ratio) in enumerate(contexts):
        mine = in_context(have, dataset, ratio)
        for j, method in enumerate(methods):
            ax = axes[i, j]
            runs = mine[mine.method == method].sort_values("seed")
            if runs.empty:
                ax.text(0.5, 0.5, f"no {method} run\nwith analysis.npz", ha="center", va="center")
                ax.set_axis_off()
                continue
            # channels are not aligned across seeds, so one seed (the lowest) is shown, never an average
            run = runs.iloc[0]
            corr = np.abs(arts[run.run_id].analysis["feature_corr"])
            off = corr[~np.eye(len(corr), dtype=bool)]
            sns.heatmap(
                corr,
                ax=ax,
                vmin=0,
                vmax=1,
                cmap="viridis",
                square=True,
                xticklabels=False,
                yticklabels=False,
                cbar=j == len(methods) - 1,
            )
            ax.set_title(
                f"{method}, {context_label(dataset, ratio)}, seed {run.seed}\n"
                f"mean |off-diagonal| {np.nanmean(off) if off.size else float('nan'):.3f}"
            )
    fig.suptitle("|Correlation| of the classifier's input channels on the test set", fontsize="medium")
    return fig


def history_frame(runs: pd.DataFrame, arts: dict[str, RunArtifacts]) -> pd.DataFrame:
    """Tidy training history: one row per run x epoch, with the run's method and seed."""
    parts = [
        pd.DataFrame(arts[run.run_id].result["history"]).assign(method=run.method, seed=run.seed)
        for run in runs.itertuples()
        if arts[run.run_id].result is not None and arts[run.run_id].result.get("history")
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def training_curves(done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, notes: list[str]) -> Any:
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    have = done[[arts[r].result is not None and bool(arts[r].result.get("history")) for r in done.run_id]]
    if have.empty:
        notes.append("training_curves: skipped, no run has a training history")
        return None
    contexts = panel_contexts(have)
    methods = ordered_methods(have.method)
    fig, axes = figure(2, len(contexts), 4.2, 3.0)
    for j, (dataset, ratio) in enumerate(contexts):
        mine = in_context(have, dataset, ratio)
        history = history_frame(mine, arts)
        here = [m for m in methods if m in set(mine.method)]
        val = "val_mean_class_acc" if "val_mean_class_acc" in history else "val_top1"
        sns.lineplot(data=history, x="epoch", y="train_loss", errorbar=None, ax=axes[0, j], **line_kwargs(colors, here))
        if val in history:
            points = history.dropna(subset=[val])
            points = points.assign(accuracy=points[val] * 100.0)
            sns.lineplot(
                data=points, x="epoch", y="accuracy", errorbar=None, ax=axes[1, j], **line_kwargs(colors, here)
            )
        axes[0, j].set_title(context_label(dataset, ratio))
        axes[0, j].set_ylabel("train loss")
        axes[0, j].set_xlabel("")
        axes[1, j].set_ylabel("validation mean per-class acc %")
        axes[1, j].set_xlabel("epoch")
        for ax in axes[:, j]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shared_legend(fig, colors, methods, "line")
    fig.suptitle(
        "Training curves (mean over seeds; decoupled methods show their stage-two epochs)", fontsize="medium", wrap=True
    )
    return fig


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
    fig, panels = context_panels(done)
    for ax, mine, _ in panels:
        here = [m for m in methods if m in set(mine.method)]
        tidy = mine.assign(accuracy=percent(mine, column))
        palette = {m: colors[m] for m in here}
        sns.stripplot(data=tidy, x="method", y="accuracy", order=here, hue="method", palette=palette, size=6, ax=ax)
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
    fig.suptitle("Run-to-run spread: each seed (dots) and the mean over seeds (bar)", fontsize="medium")
    return fig


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
