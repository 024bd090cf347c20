"""The look every report plot shares: one seaborn style, one colour (and line style) per method across every
figure, one legend outside the axes, and one panel per dataset x ratio."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from harness.core.trial import ratio_label
from harness.reports.naming import ordered_methods

DPI = 150

LEGEND_COLUMN_INCHES = 1.2  # room one legend entry takes across

LINESTYLES = ("", (4, 1.5), (1, 1.2), (5, 1.5, 1, 1.5))  # seaborn dashes: solid, dashed, dotted, dash-dot

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


# -- style ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def style() -> Iterator[None]:
    """The one plot style: seaborn whitegrid, paper context."""
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        yield


def distinct_colors(n: int) -> list[tuple[float, float, float]]:
    """n colours, all different: the colour-blind palette for up to 10, its dark companion for up to 20
    (the two never share a colour), evenly spaced HUSL hues beyond."""
    import seaborn as sns

    if n <= 10:
        return list(sns.color_palette("colorblind", 10))[: max(n, 0)]
    if n <= 20:
        return (list(sns.color_palette("colorblind", 10)) + list(sns.color_palette("dark", 10)))[:n]
    return list(sns.color_palette("husl", n))


def method_colors(methods: list[str]) -> dict[str, Any]:
    """One colour per method, in the report order, so a method looks the same in every figure of a report."""
    ordered = ordered_methods(methods)
    return dict(zip(ordered, distinct_colors(len(ordered)), strict=True))


def line_kwargs(colors: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """seaborn arguments giving each method its colour plus a dash pattern and marker of its own, so methods
    whose lines coincide (τ-norm choosing τ* = 0 reproduces ce's norms) stay distinguishable."""
    rank = {m: list(colors).index(m) for m in methods}
    return {
        "hue": "method",
        "hue_order": methods,
        "palette": {m: colors[m] for m in methods},
        "style": "method",
        "style_order": methods,
        "dashes": {m: LINESTYLES[rank[m] % len(LINESTYLES)] for m in methods},
        "markers": {m: MARKERS[rank[m] % len(MARKERS)] for m in methods},
        "markersize": 4,
        "legend": False,
    }


def shared_legend(fig: Any, colors: dict[str, Any], methods: list[str], kind: str) -> None:
    """One legend for the whole figure, below the axes (never over data, never under the title), in the
    report's method order, as many columns as the figure's width holds."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for method in methods:
        k = list(colors).index(method)
        if kind == "bar":
            handles.append(Patch(facecolor=colors[method], label=method))
        else:
            dash = LINESTYLES[k % len(LINESTYLES)]
            handles.append(
                Line2D(
                    [],
                    [],
                    color=colors[method],
                    linestyle=(0, dash) if dash else "-",
                    marker=MARKERS[k % len(MARKERS)],
                    markersize=4,
                    label=method,
                )
            )
    columns = max(1, min(len(handles), int(fig.get_figwidth() / LEGEND_COLUMN_INCHES)))
    fig.legend(handles=handles, title="method", loc="outside lower center", ncols=columns, fontsize="small")


def figure(nrows: int, ncols: int, width: float = 4.0, height: float = 3.2) -> tuple[Any, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(width * ncols, 6.0), height * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def context_label(dataset: str, ratio: float) -> str:
    return f"{dataset} {ratio_label(ratio)}"


def panel_contexts(done: pd.DataFrame) -> list[tuple[str, float]]:
    pairs = done[["dataset", "imbalance_ratio"]].drop_duplicates()
    pairs = pairs.sort_values(["dataset", "imbalance_ratio"], ascending=[True, False], na_position="first")
    return list(pairs.itertuples(index=False, name=None))


def in_context(done: pd.DataFrame, dataset: str, ratio: float) -> pd.DataFrame:
    same = done.imbalance_ratio.isna() if pd.isna(ratio) else done.imbalance_ratio == ratio
    return done[(done.dataset == dataset) & same]


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def context_panels(frame: pd.DataFrame, contexts: list[tuple[str, float]] | None = None) -> tuple[Any, list]:
    """One panel per dataset x ratio (of `frame`, or the given ones): the figure and each panel's
    (axis, context rows, context label); axes beyond the contexts are removed, never left empty."""
    contexts = panel_contexts(frame) if contexts is None else contexts
    rows, cols = grid(len(contexts))
    fig, axes = figure(rows, cols, 4.2, 3.4)
    panels = []
    for ax, (dataset, ratio) in zip(axes.flat, contexts, strict=False):
        label = context_label(dataset, ratio)
        ax.set_title(label)
        panels.append((ax, in_context(frame, dataset, ratio), label))
    for ax in axes.flat[len(contexts) :]:
        fig.delaxes(ax)
    return fig, panels


def percent(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype(float) * 100.0
