"""Report plots drawn from the runs' training artifacts (result.json, analysis.npz), in the style of
`plot_style`; `plots.draw_plots` draws them beside the plots of the runs frame.

- per_class_accuracy: each class as a point per method (mean over seeds), classes ordered by training count
  and named (with their count) where the dataset has few enough to name, the shot-bucket boundaries drawn;
- weight_norm: the norm of each class's classifier row for ce, tau-norm, crt and lws, panels on one y scale;
- feature_correlation: |correlation| of the classifier's input channels, ce beside cw, only where both ran;
- training_curves: train loss (log scale) and validation mean per-class accuracy vs epoch, end-to-end
  training and decoupled methods' stage two in separate rows (their epochs are not the same kind of epoch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.data import DATASETS
from harness.data.profile import FEW_BELOW, MANY_ABOVE, bucket_of
from harness.reports.naming import ordered_methods
from harness.reports.plot_style import (
    context_label,
    context_panels,
    figure,
    finish,
    in_context,
    line_kwargs,
    marker_of,
    panel_contexts,
)
from harness.reports.runs import RunArtifacts

NORM_METHODS = ("ce", "tau-norm", "crt", "lws")
CORR_METHODS = ("ce", "cw")
NAMED_CLASSES = 30  # up to this many classes, each is named on the per-class plot's axis
STAGE_TWO = "stage2"  # result.json's `effective` holds this for a decoupled method's stage two


def _log_count_axis(ax: Any, counts: np.ndarray) -> None:
    """Log x axis labelled with plain numbers: decades only when the counts span two or more decades,
    else 1-2-5 steps; minor ticks unlabelled, so labels never run together."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    span = math.log10(max(float(np.max(counts)), 1.0) / max(float(np.min(counts)), 1.0))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if span >= 2 else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def class_names(dataset: str) -> list[str] | None:
    """The dataset's class names by class id, None when it lists none (ImageNet-LT) or is unknown."""
    return list(DATASETS.get(dataset).class_names) or None if dataset in DATASETS else None


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


def _bucket_bounds(ax: Any, positions: list[tuple[str, float, float]]) -> None:
    """Dashed lines between shot buckets and each bucket's name over its span ((bucket, start, end) in x)."""
    from matplotlib.transforms import blended_transform_factory

    on_top = blended_transform_factory(ax.transData, ax.transAxes)
    for i, (bucket, start, end) in enumerate(positions):
        if i:
            ax.axvline(start, color="0.35", linestyle="--", linewidth=0.9)
        center = math.sqrt(start * end) if ax.get_xscale() == "log" else (start + end) / 2
        ax.text(center, 1.01, bucket, transform=on_top, ha="center", va="bottom", fontsize="small", color="0.3")


def per_class_accuracy(done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, notes: list[str]) -> Any:
    have = done[[arts[r].result is not None for r in done.run_id]]
    if len(have) < len(done):
        notes.append(f"per_class_accuracy: {len(done) - len(have)} run(s) without result.json skipped")
    if have.empty:
        notes.append("per_class_accuracy: skipped, no run has result.json")
        return None
    methods = ordered_methods(have.method)
    fig, panels = context_panels(have, size=(5.2, 3.8))
    for ax, mine, _ in panels:
        tidy = per_class_frame(mine, arts, class_names(mine.dataset.iloc[0]))
        means = tidy.groupby(["method", "class"], as_index=False).agg(
            accuracy=("accuracy", "mean"), train_count=("train_count", "first")
        )
        classes = tidy.drop_duplicates("class").sort_values(["train_count", "class"], ascending=[False, True])
        here = [m for m in methods if m in set(mine.method)]
        named = len(classes) <= NAMED_CLASSES
        x_of = dict(zip(classes["class"], range(len(classes)), strict=True))
        for k, method in enumerate(here):
            rows = means[means.method == method]
            if named:  # classes side by side, methods dodged within a class
                x = rows["class"].map(x_of) + (k - (len(here) - 1) / 2) * 0.7 / max(len(here), 1)
            else:
                x = rows.train_count
            ax.scatter(x, rows.accuracy, color=colors[method], marker=marker_of(colors, method), s=16, alpha=0.85)
        buckets = [bucket_of(int(n)) for n in classes.train_count]
        if named:
            names = classes.class_name if "class_name" in classes else classes["class"].astype(str)
            labels = [f"{n} ({c:g})" for n, c in zip(names, classes.train_count, strict=True)]
            ax.set_xticks(range(len(classes)), labels, rotation=90, fontsize="x-small")
            ax.set_xlim(-0.6, len(classes) - 0.4)
            edges = [i for i in range(1, len(buckets)) if buckets[i] != buckets[i - 1]]
            starts = [-0.6, *(e - 0.5 for e in edges)]
            ends = [*(e - 0.5 for e in edges), len(classes) - 0.4]
            ax.set_xlabel("class (training images), most to fewest")
        else:
            _log_count_axis(ax, classes.train_count.to_numpy())
            low, high = ax.get_xlim()
            cuts = [c for c in (MANY_ABOVE + 0.5, FEW_BELOW - 0.5) if low < c < high]
            starts, ends = [high, *cuts], [*cuts, low]
            ax.set_xlabel("training images of the class (log)")
        order = list(dict.fromkeys(buckets))
        _bucket_bounds(ax, list(zip(order, starts, ends, strict=True)))
        ax.set_ylabel("test accuracy of the class %")
        ax.set_ylim(-2, 102)
        ax.set_title(ax.get_title(), pad=16)  # room for the bucket names over the axes
    title = (
        f"Per-class test accuracy (mean over seeds); shot buckets: many > {MANY_ABOVE}, medium {FEW_BELOW}-"
        f"{MANY_ABOVE}, few < {FEW_BELOW} training images"
    )
    return finish(fig, colors, methods, "point", title)


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
    fig, panels = context_panels(have, sharey=True)  # norms are compared by height across ratios
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
    return finish(fig, colors, methods, "line", "Per-class norm of the effective classifier weights (mean over seeds)")


def feature_correlation(done: pd.DataFrame, arts: dict[str, RunArtifacts], notes: list[str]) -> Any | None:
    """ce beside cw in each dataset x ratio where both have a matrix: the figure is that comparison, so it is
    skipped (not drawn half empty) where one of the two is missing."""
    import seaborn as sns

    have = _with_analysis(done, arts, CORR_METHODS, "feature_correlation", notes)
    if len(have):
        have = have[[arts[r].analysis["feature_corr"].size > 0 for r in have.run_id]]
    contexts = [c for c in panel_contexts(have) if set(CORR_METHODS) <= set(in_context(have, *c).method)]
    if not contexts:
        notes.append(
            "feature_correlation: skipped, it compares ce with cw and no dataset x ratio has a correlation "
            "matrix of both"
        )
        return None
    fig, axes = figure(len(contexts), len(CORR_METHODS), 4.2, 3.6)
    for i, (dataset, ratio) in enumerate(contexts):
        mine = in_context(have, dataset, ratio)
        for j, method in enumerate(CORR_METHODS):
            ax = axes[i, j]
            # channels are not aligned across seeds, so one seed (the lowest) is shown, never an average
            run = mine[mine.method == method].sort_values("seed").iloc[0]
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
                cbar=j == len(CORR_METHODS) - 1,
            )
            ax.set_title(
                f"{method}, {context_label(dataset, ratio)}, seed {run.seed}\n"
                f"mean |off-diagonal| {np.nanmean(off) if off.size else float('nan'):.3f}"
            )
    fig.suptitle("|Correlation| of the classifier's input channels on the test set", fontsize="medium")
    return fig


def history_frame(runs: pd.DataFrame, arts: dict[str, RunArtifacts]) -> pd.DataFrame:
    """Tidy training history: one row per run x epoch, with the run's method, seed and whether the epochs are
    a decoupled method's stage two (`stage_two`)."""
    parts = [
        pd.DataFrame(arts[run.run_id].result["history"]).assign(
            method=run.method, seed=run.seed, stage_two=STAGE_TWO in arts[run.run_id].result.get("effective", {})
        )
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
    history = history_frame(have, arts)
    kinds = [(False, "end-to-end"), (True, "stage two (decoupled)")]
    kinds = [(flag, name) for flag, name in kinds if (history.stage_two == flag).any()]
    fig, axes = figure(2 * len(kinds), len(contexts), 4.2, 2.6)
    for j, (dataset, ratio) in enumerate(contexts):
        mine = history_frame(in_context(have, dataset, ratio), arts)
        for i, (flag, kind) in enumerate(kinds):
            part = mine[mine.stage_two == flag] if len(mine) else mine
            loss_ax, acc_ax = axes[2 * i, j], axes[2 * i + 1, j]
            here = [m for m in methods if len(part) and m in set(part.method)]
            if here:
                look = line_kwargs(colors, here)
                sns.lineplot(data=part, x="epoch", y="train_loss", errorbar=None, ax=loss_ax, **look)
                loss_ax.set_yscale("log")  # one method's loss scale (LORT's) must not flatten the others
                val = "val_mean_class_acc" if "val_mean_class_acc" in part else "val_top1"
                points = part.dropna(subset=[val]) if val in part else part.iloc[0:0]
                if len(points):
                    points = points.assign(accuracy=points[val] * 100.0)
                    sns.lineplot(data=points, x="epoch", y="accuracy", errorbar=None, ax=acc_ax, **look)
            loss_ax.set_title(f"{context_label(dataset, ratio)}: {kind}")
            loss_ax.set_ylabel("train loss (log)")
            loss_ax.set_xlabel("")
            acc_ax.set_ylabel("val mean per-class acc %")
            acc_ax.set_xlabel(f"{kind} epoch")
            for ax in (loss_ax, acc_ax):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = "Training curves (mean over seeds): end-to-end epochs and decoupled methods' stage-two epochs apart"
    return finish(fig, colors, methods, "line", title)
