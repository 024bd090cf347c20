"""What a reader sees in the plots, measured on the drawn figures: legends that cover no data, a distinct
colour per method for any number of methods, log-axis labels that do not run together, no empty buckets or
duplicate panels. Runs and their artifacts are constructed, so these tests need no training and no MLflow."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.reports import plots as P
from harness.reports.naming import METHOD_ORDER
from harness.reports.runs import RunArtifacts
from tests.reports.colour_difference import delta_e_2000, lab
from tests.reports.run_records import run_record, synthetic_runs

QUICK_METHODS = ["ce", "la", "la-posthoc", "crt", "tau-norm", "lws", "ncm", "lort", "cw", "cw-b3rs", "cw-b3rs-bet"]
# Fashion-MNIST-LT's profile at r=100 and r=10 (n_max 6000): every bucket filled at 100, no few class at 10
COUNTS = {
    100.0: [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60, 19, 12],
    10.0: [6000, 4485, 3353, 2506, 1873, 1400, 1047, 782, 585, 437, 90, 60],
}


def _bucket(counts: np.ndarray, acc: np.ndarray, low: int, high: float) -> float:
    chosen = (counts >= low) & (counts <= high)
    return float(acc[chosen].mean()) if chosen.any() else float("nan")


def constructed(
    methods: list[str], ratios: tuple[float, ...] = (100.0, 10.0), balanced: bool = False
) -> tuple[pd.DataFrame, dict[str, RunArtifacts]]:
    """Two seeds per method x ratio with per-class accuracies rising with the class count, bucket metrics
    computed from them, a training history and analysis arrays."""
    rng = np.random.default_rng(0)
    records, arts = [], {}
    for ratio, (k, method), seed in itertools.product(ratios, enumerate(methods), (0, 1)):
        counts = np.asarray(COUNTS[ratio], dtype=float)
        acc = np.clip(0.3 + 0.08 * np.log10(counts) + 0.01 * k + rng.normal(0, 0.02, len(counts)), 0, 1)
        top1 = float(acc.mean()) if balanced else float(acc.mean()) + 0.05
        record = run_record(
            method,
            seed,
            dataset="fashion-mnist-lt",
            ratio=ratio,
            acc=top1,
            test_mean_class_acc=float(acc.mean()),
            test_many_acc=_bucket(counts, acc, 101, np.inf),
            test_medium_acc=_bucket(counts, acc, 20, 100),
            test_few_acc=_bucket(counts, acc, 0, 19),
        )
        records.append(record)
        history = [{"epoch": e, "train_loss": 2.0 / e + 0.01 * k, "val_mean_class_acc": 0.1 * e} for e in (1, 2, 3)]
        arts[record["run_id"]] = RunArtifacts(
            result={"per_class_acc": {"test": acc.tolist()}, "train_counts": counts.tolist(), "history": history},
            analysis={
                "weight_norm": np.linspace(2.0, 1.0, len(counts)) + 0.01 * k,
                "feature_corr": np.eye(4),
                "class_counts": counts,
            },
        )
    return synthetic_runs(records), arts


@pytest.fixture(scope="module")
def quick_figures() -> dict[str, Any]:
    done, arts = constructed(QUICK_METHODS)
    figures, notes = P.draw_plots(done, arts)
    for fig in figures.values():
        fig.canvas.draw()
    return figures


def _overlaps(a: Any, b: Any) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_the_legend_covers_no_bar_and_no_axes(quick_figures: dict[str, Any]) -> None:
    """11 methods (the quick suite): the legend used to sit on the first panel, over the Few bars at r=100."""
    figure = quick_figures["shot_accuracy"]
    (legend,) = figure.legends
    box = legend.get_window_extent()
    bars = [p for ax in figure.axes for p in ax.patches if p.get_width() > 0 and p.get_height() > 0]
    assert len(bars) >= len(QUICK_METHODS) * 3  # r=100 draws Many, Medium and Few for every method
    assert not [bar for bar in bars if _overlaps(bar.get_window_extent(), box)]
    for name, fig in quick_figures.items():
        if name == "feature_correlation":
            continue  # heat maps, no legend
        (legend,) = fig.legends  # one legend per figure, however many panels
        box = legend.get_window_extent()
        assert not [ax for ax in fig.axes if _overlaps(ax.get_window_extent(), box)], name
        shown = [t.get_text() for t in legend.get_texts()]
        assert shown and shown == [m for m in METHOD_ORDER if m in shown], name  # the one report order


def test_every_method_gets_its_own_colour_for_any_number_of_methods() -> None:
    for n in (11, 15, 20, 25):
        names = [*METHOD_ORDER, *(f"plugin-{i}" for i in range(10))][:n]
        colors = P.method_colors(names)
        assert len(colors) == n and len({tuple(np.round(c, 6)) for c in colors.values()}) == n, n
    assert P.method_colors(QUICK_METHODS)["ce"] != P.method_colors(QUICK_METHODS)["cw-b3rs-bet"]  # shared once


def test_a_method_keeps_its_colour_in_every_figure(quick_figures: dict[str, Any]) -> None:
    seen: dict[str, set] = {}
    for name, fig in quick_figures.items():
        if name == "feature_correlation":
            continue
        legend = fig.legends[0]
        handles = getattr(legend, "legend_handles", None) or legend.legendHandles
        for text, handle in zip(legend.get_texts(), handles, strict=True):
            color = handle.get_facecolor() if name in ("shot_accuracy", "seed_spread") else handle.get_color()
            seen.setdefault(text.get_text(), set()).add(tuple(np.round(np.asarray(color, dtype=float)[:3], 4)))
    assert all(len(colors) == 1 for colors in seen.values()), seen


def _visible_tick_boxes(ax: Any) -> list[Any]:
    low, high = sorted(ax.get_xlim())
    labels = [
        (tick.get_loc(), tick.label1)
        for tick in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
        if tick.label1.get_visible() and tick.label1.get_text()
    ]
    return [label.get_window_extent() for loc, label in labels if low <= loc <= high]


def test_log_axis_tick_labels_do_not_run_together(quick_figures: dict[str, Any]) -> None:
    """Every minor tick of the per-class plot's log axis used to be labelled ('40506078900')."""
    figure = quick_figures["per_class_accuracy"]
    for ax in figure.axes:
        boxes = _visible_tick_boxes(ax)
        assert len(boxes) >= 2
        assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if _overlaps(a, b)]


def test_empty_buckets_are_left_out_and_named_and_bucketless_contexts_skipped() -> None:
    done, arts = constructed(["ce", "la"])
    notes: list[str] = []
    fig = P.shot_accuracy(done, P.method_colors(["ce", "la"]), notes)
    fig.canvas.draw()
    panels = {ax.get_title(): [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes}
    assert panels == {
        "fashion-mnist-lt r=100": ["Many", "Medium", "Few"],
        "fashion-mnist-lt r=10 (no few class)": ["Many", "Medium"],
    }
    assert notes == []
    only_many = done.assign(test_medium_acc=np.nan, test_few_acc=np.nan)
    notes = []
    assert P.shot_accuracy(only_many, P.method_colors(["ce", "la"]), notes) is None
    assert "fashion-mnist-lt r=100, fashion-mnist-lt r=10 left out" in notes[0]
    assert "max_per_class" in notes[0] and notes[1].startswith("shot_accuracy: skipped")


def test_all_and_mean_per_class_are_drawn_once_when_they_are_equal() -> None:
    for balanced, rows in ((True, 1), (False, 2)):
        done, _ = constructed(["ce", "la"], balanced=balanced)
        fig = P.accuracy_vs_ratio(done, P.method_colors(["ce", "la"]), [])
        assert len(fig.axes) == rows * 2  # a panel per ratio
    one_ratio, _ = constructed(["ce"], ratios=(100.0,))
    notes: list[str] = []
    assert P.accuracy_vs_ratio(one_ratio, P.method_colors(["ce"]), notes) is None
    assert "two or more imbalance ratios" in notes[0]


def test_plots_leave_no_pyplot_state_and_tidy_frames_carry_class_names() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    done, arts = constructed(["ce", "la"], ratios=(100.0,))
    figures, _ = P.draw_plots(done, arts)
    assert "shot_accuracy" in figures and plt.get_fignums() == before  # no figure registered with pyplot
    tidy = P.per_class_frame(done, arts, [f"class {i}" for i in range(12)])
    assert len(tidy) == len(done) * 12 and tidy.class_name.iloc[0] == "class 0"


def test_no_two_methods_have_confusable_colours_and_none_is_pale_on_white() -> None:
    """The built-in methods and a plugin: every pair at least CIEDE2000 19 apart, the palette's first 20 colours
    at least 20 (the old palette had pairs 11.6 apart: la, ncm and tau-norm three oranges, crt and lws two pinks),
    and no colour lighter than L* 75 (the old one had a yellow of L* 88 on white)."""
    colors = P.method_colors([*METHOD_ORDER, "my-plugin"])
    assert len(colors) == len(METHOD_ORDER) + 1
    labs = {m: lab(c) for m, c in colors.items()}
    closest = min(delta_e_2000(labs[a], labs[b]) for a, b in itertools.combinations(labs, 2))
    assert closest >= 19, closest
    first = [labs[m] for m in [*METHOD_ORDER, "my-plugin"][:20]]
    assert min(delta_e_2000(a, b) for a, b in itertools.combinations(first, 2)) >= 20
    assert max(value[0] for value in labs.values()) <= 75
    assert P.method_colors(["la", "ncm"])["la"] == colors["la"]  # the same colour whatever else is drawn


def test_accuracy_by_ratio_lists_the_methods_down_each_panel() -> None:
    done, arts = constructed(["ce", "la", "crt"])
    fig = P.accuracy_vs_ratio(done, P.method_colors(["ce", "la", "crt"]), [])
    fig.canvas.draw()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["fashion-mnist-lt r=10", "fashion-mnist-lt r=100"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ce", "la", "crt"]


def test_shot_buckets_say_how_many_classes_they_hold() -> None:
    done, _ = constructed(["ce", "la"])
    sizes = {100.0: (8, 2, 2), 10.0: (10, 2, 0)}
    for bucket, k in (("many", 0), ("medium", 1), ("few", 2)):
        done[f"classes_{bucket}"] = done.imbalance_ratio.map(lambda r, k=k: sizes[r][k])
    fig = P.shot_accuracy(done, P.method_colors(["ce", "la"]), [])
    fig.canvas.draw()
    ticks = {ax.get_title(): [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes}
    assert ticks["fashion-mnist-lt r=100"] == ["Many\n8 classes", "Medium\n2 classes", "Few\n2 classes"]
    assert ticks["fashion-mnist-lt r=10 (no few class)"] == ["Many\n10 classes", "Medium\n2 classes"]


def test_per_class_points_are_named_classes_between_bucket_boundaries() -> None:
    from harness.data import DATASETS

    done, arts = constructed(["ce", "la"], ratios=(100.0,))
    counts = [6000, 2000, 800, 300, 150, 90, 50, 25, 15, 10]  # Fashion-MNIST's 10 classes: 5 many, 3 medium, 2 few
    for art in arts.values():
        art.result["train_counts"] = counts
        art.result["per_class_acc"]["test"] = art.result["per_class_acc"]["test"][:10]
    fig = P.per_class_accuracy(done, arts, P.method_colors(["ce", "la"]), [])
    (ax,) = fig.axes
    assert [line.get_linestyle() for line in ax.get_lines()] == ["--", "--"]  # two boundaries, no joining lines
    labels = [t.get_text() for t in ax.get_xticklabels()]
    names = DATASETS.get("fashion-mnist-lt").class_names
    assert labels[0] == f"{names[0]} (6000)" and labels[-1] == f"{names[-1]} (10)"
    assert [t.get_text() for t in ax.texts] == ["many", "medium", "few"]


def test_training_curves_keep_stage_two_apart_on_a_log_loss_axis() -> None:
    done, arts = constructed(["ce", "lort"], ratios=(100.0,))
    for run in done[done.method == "lort"].itertuples():
        arts[run.run_id].result["effective"] = {"stage2": {"epochs": 3}}
        for row in arts[run.run_id].result["history"]:
            row["train_loss"] *= 100  # LORT's loss scale
    fig = P.training_curves(done, arts, P.method_colors(["ce", "lort"]), [])
    titles = [ax.get_title() for ax in fig.axes]
    assert (
        titles[0] == "fashion-mnist-lt r=100: end-to-end"
        and titles[2] == "fashion-mnist-lt r=100: stage two (decoupled)"
    )
    assert fig.axes[0].get_yscale() == "log" and fig.axes[2].get_yscale() == "log"
    assert len(fig.axes[0].get_lines()) >= 1 and fig.axes[0].get_ylim()[1] < 100  # LORT is not on ce's axis


def test_a_comparison_without_its_other_half_is_skipped_and_norm_panels_share_y() -> None:
    done, arts = constructed(["ce", "tau-norm"])
    notes: list[str] = []
    assert P.feature_correlation(done, arts, notes) is None
    assert "compares ce with cw" in notes[-1]
    fig = P.weight_norm(done, arts, P.method_colors(["ce", "tau-norm"]), [])
    first, second = fig.axes
    assert first.get_shared_y_axes().joined(first, second)
