"""Plain-text pieces of console output: counted nouns and aligned columns.

Console listings (`ltbench suites`, `ltbench methods`, the dry run's plan) size each column to its widest
cell, so a long name never pushes the rest of its row out of line.
"""

from __future__ import annotations

from collections.abc import Sequence

COLUMN_GAP = "  "


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 trial`, `2 trials`, `0 trials` (`nouns` for an irregular plural)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def text_columns(rows: Sequence[Sequence[str]], align: str | None = None, indent: str = "") -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell; `align` is one character per column,
    'l' or 'r' (default: all left). Trailing spaces are dropped."""
    if not rows:
        return []
    count = max(len(row) for row in rows)
    align = align or "l" * count
    widths = [max((len(row[i]) for row in rows if i < len(row)), default=0) for i in range(count)]
    lines = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if align[i] == "r" else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((indent + COLUMN_GAP.join(cells)).rstrip())
    return lines
