"""Report plots, PNG and PDF, in one seaborn style with one colour per method across every figure.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so writing them
works headless and inside a notebook alike. Each plot is skipped with a note, never faked, when the runs
lack what it needs (e.g. a run without analysis.npz in the weight-norm and correlation plots).

Plots (files under <out>/<name>.png|.pdf):
- accuracy_vs_ratio: All and mean per-class accuracy vs imbalance ratio (log x), a line per method;
- shot_accuracy: Many / Medium / Few grouped bars per method, a panel per dataset x ratio;
- per_class_accuracy: each class's test accuracy vs its training count (log x);
- weight_norm: the norm of each class's classifier row for ce, tau-norm, crt and lws (analysis.npz);
- feature_correlation: |correlation| of the classifier's input channels, ce vs cw (analysis.npz);
- training_curves: train loss and validation mean per-class accuracy vs epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.reports.runs import download_artifact, finished

NORM_METHODS = ("ce", "tau-norm", "crt", "lws")
CORR_METHODS = ("ce", "cw")
BUCKETS = (("test_many_acc", "Many"), ("test_medium_acc", "Medium"), ("test_few_acc", "Few"))
PALETTE = "colorblind"
DPI = 150


@dataclass
class RunArtifacts:
    """What the plots read from one run's artifacts; None where the run has no such file."""

    result: dict[str, Any] | None = None
    analysis: dict[str, np.ndarray] | None = None


@dataclass
class PlotOutcome:
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fetch_artifacts(client: Any, run_ids: list[str], scratch: Path) -> dict[str, RunArtifacts]:
    """result.json and analysis.npz of each run, downloaded through MLflow into `scratch`."""
    import json

    out = {}
    for run_id in run_ids:
        names = {a.path for a in client.list_artifacts(run_id)}
        arts = RunArtifacts()
        where = scratch / run_id
        result = download_artifact(client, run_id, "result.json", where, names)
        if result is not None:
            arts.result = json.loads(result.read_text())
        analysis = download_artifact(client, run_id, "analysis.npz", where, names)
        if analysis is not None:
            with np.load(analysis) as data:
                arts.analysis = {k: np.asarray(data[k], dtype=float) for k in data.files}
        out[run_id] = arts
    return out


# -- style ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def style() -> Iterator[None]:
    """The one plot style: seaborn whitegrid, paper context, colour-blind palette."""
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        yield


def method_colors(methods: list[str]) -> dict[str, Any]:
    """A fixed colour per method (in a stable order), so a method looks the same in every figure."""
    import seaborn as sns

    from harness.reports.tables import CANONICAL_METHODS

    ordered = sorted(
        set(methods),
        key=lambda m: (CANONICAL_METHODS.index(m) if m in CANONICAL_METHODS else len(CANONICAL_METHODS), m),
    )
    colors = sns.color_palette(PALETTE, max(len(ordered), 1))
    return {m: colors[i % len(colors)] for i, m in enumerate(ordered)}


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def line_style(colors: dict[str, Any], method: str) -> dict[str, Any]:
    """Colour plus a line style and marker of its own, so methods whose lines coincide (τ-norm choosing
    τ* = 0 reproduces ce's norms) stay distinguishable."""
    k = list(colors).index(method)
    return {
        "color": colors[method],
        "linestyle": LINESTYLES[k % len(LINESTYLES)],
        "marker": MARKERS[k % len(MARKERS)],
        "markersize": 4,
    }


def _figure(nrows: int, ncols: int, width: float = 4.0, height: float = 3.2) -> tuple[Any, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(width * ncols, 7.0), height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, title: str, out_dir: Path, name: str, outcome: PlotOutcome) -> None:
    """Title the figure and write it as PNG and PDF."""
    fig.suptitle(title, fontsize="medium", wrap=True)
    for suffix in (".png", ".pdf"):
        path = out_dir / f"{name}{suffix}"
        fig.savefig(path, dpi=DPI)
        outcome.paths.append(path)


def _context_label(dataset: str, ratio: float) -> str:
    return f"{dataset} native" if pd.isna(ratio) else f"{dataset} r={ratio:g}"


def _contexts(done: pd.DataFrame) -> list[tuple[str, float]]:
    pairs = done[["dataset", "imbalance_ratio"]].drop_duplicates()
    pairs = pairs.sort_values(["dataset", "imbalance_ratio"], ascending=[True, False], na_position="first")
    return list(pairs.itertuples(index=False, name=None))


def _in_context(done: pd.DataFrame, dataset: str, ratio: float) -> pd.DataFrame:
    same = done.imbalance_ratio.isna() if pd.isna(ratio) else done.imbalance_ratio == ratio
    return done[(done.dataset == dataset) & same]


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _context_panels(frame: pd.DataFrame) -> tuple[Any, np.ndarray, list[tuple[Any, pd.DataFrame]]]:
    """One panel per dataset x ratio of `frame`: the figure, its axes, and each panel's (axis, rows), the
    axis already titled with its context."""
    contexts = _contexts(frame)
    rows, cols = _grid(len(contexts))
    fig, axes = _figure(rows, cols, 4.6, 3.4)
    panels = []
    for ax, (dataset, ratio) in zip(axes.flat, contexts, strict=False):
        ax.set_title(_context_label(dataset, ratio))
        panels.append((ax, _in_context(frame, dataset, ratio)))
    for ax in axes.flat[len(contexts) :]:
        ax.set_visible(False)
    return fig, axes, panels


# -- the plots -----------------------------------------------------------------------------------------------
def accuracy_vs_ratio(done: pd.DataFrame, colors: dict, out_dir: Path, outcome: PlotOutcome) -> None:
    rated = done[done.imbalance_ratio.notna()]
    if rated.empty:
        outcome.notes.append("accuracy_vs_ratio: skipped, no run has an imbalance ratio (native splits only)")
        return
    datasets = sorted(rated.dataset.unique())
    metrics = (("test_top1", "All (top-1) %"), ("test_mean_class_acc", "mean per-class %"))
    fig, axes = _figure(len(metrics), len(datasets))
    for j, dataset in enumerate(datasets):
        mine = rated[rated.dataset == dataset]
        for i, (column, ylabel) in enumerate(metrics):
            ax = axes[i, j]
            stats = mine.assign(v=mine[column] * 100).groupby(["method", "imbalance_ratio"]).v.agg(["mean", "std"])
            for method in sorted(mine.method.unique(), key=list(colors).index):
                s = stats.loc[method].reset_index()
                ax.errorbar(
                    s.imbalance_ratio,
                    s["mean"],
                    yerr=s["std"],  # NaN for a single seed: no bar rather than a fake zero spread
                    capsize=3,
                    label=method,
                    **line_style(colors, method),
                )
            ax.set_xscale("log")
            ratios = sorted(mine.imbalance_ratio.unique())
            ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
            ax.minorticks_off()
            ax.set_xlabel("imbalance ratio (log)")
            ax.set_ylabel(ylabel)
            ax.set_title(dataset)
    axes[0, -1].legend(title="method", fontsize="small")
    _save(fig, "Test accuracy vs imbalance ratio (mean ± std over seeds)", out_dir, "accuracy_vs_ratio", outcome)


def shot_accuracy(done: pd.DataFrame, colors: dict, out_dir: Path, outcome: PlotOutcome) -> None:
    fig, axes, panels = _context_panels(done)
    for ax, mine in panels:
        methods = sorted(mine.method.unique(), key=list(colors).index)
        width = 0.8 / len(methods)
        for k, method in enumerate(methods):
            m = mine[mine.method == method]
            means = [m[c].mean() * 100 for c, _ in BUCKETS]
            stds = [m[c].std() * 100 for c, _ in BUCKETS]  # NaN (no bar) for a single seed
            x = np.arange(len(BUCKETS)) + (k - (len(methods) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=2, label=method, color=colors[method])
        for b, (column, _) in enumerate(BUCKETS):
            if mine[column].isna().all():
                ax.text(b, 4, "empty\nbucket", ha="center", va="bottom", fontsize="small", color="0.4")
        ax.set_xticks(np.arange(len(BUCKETS)), [name for _, name in BUCKETS])
        ax.set_ylabel("test accuracy %")
        ax.set_ylim(0, 100)
    axes.flat[0].legend(title="method", fontsize="small")
    _save(
        fig,
        "Accuracy by shot bucket (training images: many > 100, medium 20-100, few < 20)",
        out_dir,
        "shot_accuracy",
        outcome,
    )


def per_class_accuracy(
    done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, out_dir: Path, outcome: PlotOutcome
) -> None:
    have = done[[arts[r].result is not None for r in done.run_id]]
    if len(have) < len(done):
        outcome.notes.append(f"per_class_accuracy: {len(done) - len(have)} run(s) without result.json skipped")
    if have.empty:
        outcome.notes.append("per_class_accuracy: skipped, no run has result.json")
        return
    from matplotlib.ticker import FuncFormatter

    fig, axes, panels = _context_panels(have)
    for ax, mine in panels:
        for method in sorted(mine.method.unique(), key=list(colors).index):
            results = [arts[r].result for r in mine[mine.method == method].run_id]
            counts = np.asarray(results[0]["train_counts"], dtype=float)
            acc = np.nanmean([np.asarray(r["per_class_acc"]["test"], dtype=float) for r in results], axis=0)
            order = np.argsort(counts)
            ax.plot(counts[order], acc[order] * 100, label=method, **line_style(colors, method))
        ax.set_xscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.set_xlabel("training images of the class (log)")
        ax.set_ylabel("test accuracy of the class %")
        ax.set_ylim(-2, 102)
    axes.flat[0].legend(title="method", fontsize="small")
    _save(fig, "Per-class test accuracy vs training count (mean over seeds)", out_dir, "per_class_accuracy", outcome)


def _with_analysis(
    done: pd.DataFrame, arts: dict[str, RunArtifacts], methods: tuple[str, ...], plot: str, outcome: PlotOutcome
) -> pd.DataFrame:
    mine = done[done.method.isin(methods)]
    ok = mine[[arts[r].analysis is not None for r in mine.run_id]]
    if len(ok) < len(mine):
        outcome.notes.append(
            f"{plot}: {len(mine) - len(ok)} run(s) of {', '.join(methods)} without analysis.npz skipped"
        )
    return ok


def weight_norm(
    done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, out_dir: Path, outcome: PlotOutcome
) -> None:
    have = _with_analysis(done, arts, NORM_METHODS, "weight_norm", outcome)
    have = have[[arts[r].analysis["weight_norm"].size > 0 for r in have.run_id]]
    if have.empty:
        outcome.notes.append(f"weight_norm: skipped, no run of {', '.join(NORM_METHODS)} has weight norms")
        return
    fig, axes, panels = _context_panels(have)
    for ax, mine in panels:
        for method in [m for m in NORM_METHODS if m in set(mine.method)]:
            analyses = [arts[r].analysis for r in mine[mine.method == method].run_id]
            norms = np.mean([a["weight_norm"] for a in analyses], axis=0)
            counts = analyses[0].get("class_counts", np.zeros(len(norms)))
            order = np.argsort(-counts, kind="stable")  # ImageNet-LT's class ids are not sorted by count
            ax.plot(np.arange(len(norms)), norms[order], label=method, **line_style(colors, method))
        ax.set_xlabel("class rank by training count (many to few)")
        ax.set_ylabel("classifier weight norm ||w_c||")
    axes.flat[0].legend(title="method", fontsize="small")
    _save(fig, "Per-class norm of the effective classifier weights (mean over seeds)", out_dir, "weight_norm", outcome)


def feature_correlation(done: pd.DataFrame, arts: dict[str, RunArtifacts], out_dir: Path, outcome: PlotOutcome) -> None:
    have = _with_analysis(done, arts, CORR_METHODS, "feature_correlation", outcome)
    have = have[[arts[r].analysis["feature_corr"].size > 0 for r in have.run_id]]
    if have.empty:
        outcome.notes.append("feature_correlation: skipped, no run of ce or cw has a feature correlation matrix")
        return
    import seaborn as sns

    contexts = _contexts(have)
    fig, axes = _figure(len(contexts), len(CORR_METHODS), 4.2, 3.6)
    for i, (dataset, ratio) in enumerate(contexts):
        mine = _in_context(have, dataset, ratio)
        for j, method in enumerate(CORR_METHODS):
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
                cbar=j == len(CORR_METHODS) - 1,
            )
            ax.set_title(
                f"{method}, {_context_label(dataset, ratio)}, seed {run.seed}\n"
                f"mean |off-diagonal| {np.nanmean(off) if off.size else float('nan'):.3f}"
            )
    _save(
        fig, "|Correlation| of the classifier's input channels on the test set", out_dir, "feature_correlation", outcome
    )


def training_curves(
    done: pd.DataFrame, arts: dict[str, RunArtifacts], colors: dict, out_dir: Path, outcome: PlotOutcome
) -> None:
    have = done[[arts[r].result is not None and bool(arts[r].result.get("history")) for r in done.run_id]]
    if have.empty:
        outcome.notes.append("training_curves: skipped, no run has a training history")
        return
    from matplotlib.ticker import MaxNLocator

    contexts = _contexts(have)
    fig, axes = _figure(2, len(contexts), 4.2, 3.0)
    for j, (dataset, ratio) in enumerate(contexts):
        mine = _in_context(have, dataset, ratio)
        for method in sorted(mine.method.unique(), key=list(colors).index):
            history = pd.concat([pd.DataFrame(arts[r].result["history"]) for r in mine[mine.method == method].run_id])
            per_epoch = history.groupby("epoch").mean(numeric_only=True)
            axes[0, j].plot(per_epoch.index, per_epoch["train_loss"], label=method, **line_style(colors, method))
            val = "val_mean_class_acc" if "val_mean_class_acc" in per_epoch else "val_top1"
            if val in per_epoch:
                points = per_epoch[val].dropna() * 100
                axes[1, j].plot(points.index, points, label=method, **line_style(colors, method))
        axes[0, j].set_title(_context_label(dataset, ratio))
        axes[0, j].set_ylabel("train loss")
        axes[1, j].set_ylabel("validation mean per-class acc %")
        axes[1, j].set_xlabel("epoch")
        for ax in axes[:, j]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend(title="method", fontsize="small")
    _save(
        fig,
        "Training curves (mean over seeds; decoupled methods show their stage-two epochs)",
        out_dir,
        "training_curves",
        outcome,
    )


def write_plots(runs: pd.DataFrame, client: Any, out_dir: Path, scratch: Path) -> PlotOutcome:
    """Every plot for the FINISHED runs in `runs` (one suite's), artifacts fetched through `client`."""
    outcome = PlotOutcome()
    done = finished(runs) if len(runs) else runs
    if done.empty or client is None:
        outcome.notes.append("plots: skipped, no finished run")
        return outcome
    out_dir.mkdir(parents=True, exist_ok=True)
    arts = fetch_artifacts(client, list(done.run_id), scratch)
    colors = method_colors(list(done.method))
    with style():
        accuracy_vs_ratio(done, colors, out_dir, outcome)
        shot_accuracy(done, colors, out_dir, outcome)
        per_class_accuracy(done, arts, colors, out_dir, outcome)
        weight_norm(done, arts, colors, out_dir, outcome)
        feature_correlation(done, arts, out_dir, outcome)
        training_curves(done, arts, colors, out_dir, outcome)
    return outcome
