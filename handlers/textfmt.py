"""Plain-text layout shared by renderers: the CLI's tabwriter columns."""

from __future__ import annotations

from .replies import Table

# docker/cli formats tables with text/tabwriter(minwidth=10, tabwidth=1,
# padding=3, padchar=' '): every column but the last is at least 10 wide and
# at least 3 wider than its widest cell.
MIN_WIDTH = 10
PADDING = 3


def column_widths(table: Table) -> list[int]:
    rows = list(table.rows) if table.headerless else [table.columns, *table.rows]
    n = len(table.columns)
    widths = [0] * n
    for row in rows:
        for i, cell in enumerate(row[:n]):
            widths[i] = max(widths[i], len(cell))
    return [max(w + PADDING, MIN_WIDTH) for w in widths]


def format_row(row: tuple[str, ...], widths: list[int]) -> str:
    cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]] if row else []
    return "".join(cells).rstrip()


def table_lines(table: Table) -> list[str]:
    if table.headerless:
        return [row[0] if len(row) == 1 else "   ".join(row) for row in table.rows]
    widths = column_widths(table)
    return [format_row(table.columns, widths)] + [format_row(r, widths) for r in table.rows]
