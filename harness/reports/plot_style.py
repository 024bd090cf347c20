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
from harness.reports.naming import METHOD_ORDER, ordered_methods

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


# 22 colours picked greedily, farthest first by CIEDE2000, from an sRGB grid restricted to lightness L* 28-72
# (none pale on white, none near black) and chroma >= 30, starting from seaborn's colour-blind blue; then, for
# the 19th and 20th, the same search without the chroma bound (two neutral greys: no hue was left 20 away).
# The first 20 are each at least ΔE00 20 from the others, all 22 at least 19; a 23rd (#484270), 24th (#7262fe)
# and 25th (#a4bc92, L* 73.5), each searched on a fine sRGB grid near the coarse grid's best (L* 28-74), keep
# all 25 at least 19 apart: the 24 built-in methods and a plugin. Built-in methods take the colour of their
# place in METHOD_ORDER (so a method has one colour in every report), plugins the rest.
PALETTE = (
    "#0072b2", "#b4b400", "#ff0000", "#2d4b0f", "#f000ff", "#00c3b4", "#782d4b", "#693c0f", "#3c00e1",
    "#ff9600", "#f096a5", "#a5a5f0", "#00962d", "#00b4f0", "#87783c", "#007869", "#f00069", "#966996",
    "#999999", "#595959", "#996659", "#a6001a", "#484270", "#7262fe",
    "#a4bc92",
)  # fmt: skip


def distinct_colors(n: int) -> list[tuple[float, float, float]]:
    """n colours, all different: PALETTE's, then evenly spaced HUSL hues beyond it."""
    import seaborn as sns
    from matplotlib.colors import to_rgb

    own = [to_rgb(c) for c in PALETTE[: max(n, 0)]]
    return own + (list(sns.color_palette("husl", n - len(PALETTE))) if n > len(PALETTE) else [])


def method_colors(methods: list[str]) -> dict[str, Any]:
    """One colour per method, in the report order: a built-in method the colour of its place in METHOD_ORDER
    (the same in every report, whatever else is drawn), other methods (plugins) the colours after those."""
    ordered = ordered_methods(methods)
    plugins = [m for m in ordered if m not in METHOD_ORDER]
    colors = distinct_colors(len(METHOD_ORDER) + len(plugins))
    slot = {m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER) + plugins.index(m) for m in ordered}
    return {m: colors[slot[m]] for m in ordered}


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


def marker_of(colors: dict[str, Any], method: str) -> str:
    """The marker `line_kwargs` and `shared_legend` give `method` among the methods of `colors`."""
    return MARKERS[list(colors).index(method) % len(MARKERS)]


def shared_legend(fig: Any, colors: dict[str, Any], methods: list[str], kind: str) -> None:
    """One legend for the whole figure, below the axes (never over data, never under the title), in the
    report's method order, as many columns as the figure's width holds; `kind` is bar, line or point."""
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
                    linestyle="none" if kind == "point" else (0, dash) if dash else "-",
                    marker=MARKERS[k % len(MARKERS)],
                    markersize=4,
                    label=method,
                )
            )
    columns = max(1, min(len(handles), int(fig.get_figwidth() / LEGEND_COLUMN_INCHES)))
    fig.legend(handles=handles, title="method", loc="outside lower center", ncols=columns, fontsize="small")


def finish(fig: Any, colors: dict[str, Any], methods: list[str], kind: str, title: str) -> Any:
    """How every figure of methods ends: the shared legend under its axes (`shared_legend`), its title over
    them; returns the figure."""
    shared_legend(fig, colors, methods, kind)
    fig.suptitle(title, fontsize="medium", wrap=True)
    return fig


def figure(
    nrows: int, ncols: int, width: float = 4.0, height: float = 3.2, sharey: bool | str = False
) -> tuple[Any, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(width * ncols, 6.0), height * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
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


def context_panels(
    frame: pd.DataFrame,
    contexts: list[tuple[str, float]] | None = None,
    sharey: bool = False,
    size: tuple[float, float] = (4.2, 3.4),
) -> tuple[Any, list]:
    """One panel per dataset x ratio (of `frame`, or the given ones): the figure and each panel's
    (axis, context rows, context label); axes beyond the contexts are removed, never left empty. `sharey`:
    one y scale for every panel, where panels are compared by height."""
    contexts = panel_contexts(frame) if contexts is None else contexts
    rows, cols = grid(len(contexts))
    fig, axes = figure(rows, cols, *size, sharey=sharey)
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
