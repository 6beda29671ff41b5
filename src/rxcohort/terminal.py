"""What the commands print on a terminal: the one place that shapes a summary table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_summary(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table (what, value) under ``title``."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in rows:
        table.add_row(str(key), str(value))
    console.print(table)
