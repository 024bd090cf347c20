"""Shared text rendering for reports: numbers, Markdown tables and LaTeX booktabs tables.

One place decides how a mean ± std, a missing cell or a difference reads, so the leaderboard and the paper
tables never disagree on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

MISSING = "missing"  # no finished run behind the cell
# marks a row whose runs were transductive (learned from a split's unlabeled images, `ran.transductive`); the
# tables' † already marks a published number the paper chose on the test set
TRANSDUCTIVE_MARK = "‡"
NOT_PUBLISHED = "n/p"  # the paper has no number for this cell
UNAVAILABLE = "unavailable"  # the paper's table could not be retrieved at all
NO_VALUE = "—"  # a difference that cannot be computed
UNDEFINED = "n/a"  # the metric is undefined for the runs (e.g. an empty few-shot bucket)


class Best(str):
    """A table cell holding the best value of its column: bold in Markdown and LaTeX."""


WIDE_TABLE_COLUMNS = 13  # a LaTeX table with more columns than this is set landscape (sidewaystable)


def is_nan(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    """'44.40 ± 0.31' (LaTeX output turns ± into $\\pm$); one seed has no std and shows the mean alone;
    a NaN mean is 'n/a'."""
    if is_nan(mean):
        return UNDEFINED
    if is_nan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def signed(value: float, digits: int = 2) -> str:
    """A difference with its sign ('+1.20', '-0.35'); NaN is '—'."""
    return NO_VALUE if is_nan(value) else f"{value:+.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; `align` is one character per column ('l' or 'r')."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    escaped = str(text).replace("|", r"\|")
    return f"**{escaped}**" if isinstance(text, Best) else escaped


_LATEX_SPECIAL = {
    "τ*": r"$\tau^*$",
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "τ": r"$\tau$",
    "—": "---",
    "−": "$-$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "*": r"$^*$",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Plain text (which may hold ±, τ, Δ, —, and `code` in backticks as in Markdown) as LaTeX source."""
    parts = str(text).split("`")
    escaped = [_LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], part) for part in parts]
    if len(parts) % 2 == 0:  # an unpaired backtick is text
        escaped[-2:] = [escaped[-2] + r"\textasciigrave{}" + escaped[-1]]
    # odd positions were inside backticks
    return "".join(rf"\texttt{{{e}}}" if i % 2 else e for i, e in enumerate(escaped))


def _latex_cell(text: str) -> str:
    escaped = latex_escape(text)
    return rf"\textbf{{{escaped}}}" if isinstance(text, Best) else escaped


def latex_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
    label: str,
    align: str | None = None,
    groups: Sequence[tuple[str, int]] | None = None,
    notes: Sequence[str] = (),
    lead: int = 0,
) -> str:
    """A booktabs table that fits the page. `groups` puts spanning headers ((text, width), ...) over the
    columns after the first `lead` ones, each underlined with a cmidrule; `notes` go under the table in small
    print; `Best` cells are bold.

    The tabular is shrunk to the line width only when it is wider (graphicx's \\resizebox), and a table with
    more than WIDE_TABLE_COLUMNS columns is set landscape on its own page (rotating's sidewaystable). The
    preamble needs \\usepackage{booktabs,graphicx,rotating}.
    """
    align = align or "l" * len(header)
    environment = "sidewaystable" if len(header) > WIDE_TABLE_COLUMNS else "table"
    lines = [
        r"% needs \usepackage{booktabs,graphicx,rotating}",
        rf"\begin{{{environment}}}" + ("" if environment == "sidewaystable" else "[t]"),
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
    ]
    if groups:
        cells, rules, col = [""] * lead, [], lead + 1
        for text, width in groups:
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(text)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + width - 1}}}")
            col += width
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(latex_escape(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(_latex_cell(c) for c in row) + r" \\" for row in rows]
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}}")
    for note in notes:
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape(note) + "}")
    lines.append(rf"\end{{{environment}}}")
    return "\n".join(lines) + "\n"
