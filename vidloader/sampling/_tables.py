"""The rich table the sampling reports print."""

from __future__ import annotations


def quantity_table(title: str, rows: list[tuple[str, str]]):
    """A two-column ``rich`` table: quantity, value (right-aligned)."""
    from rich.table import Table

    t = Table(title=title, show_header=True)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    return t
