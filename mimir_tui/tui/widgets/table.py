"""The dashboard's tables: a row cursor, zebra stripes, and no row left painted too narrow."""

from __future__ import annotations

from typing import Any

from textual.geometry import Size
from textual.widgets import DataTable


class Table(DataTable):
    """A DataTable with a row cursor and zebra stripes, whose rows are painted again once its
    columns are measured.

    A DataTable measures the columns of new rows at its next idle, and caches each row as
    painted under a counter that the measuring leaves as it is (Textual 8.2.8). A row painted
    in between (a frame drawn before the table's idle, as under load, or the first row
    highlighted as it arrives) then kept its columns as wide as their headers ("runnin" for
    "running") until the table changed again: in a quiet dashboard, for good. Measuring
    changes the table's width, so its watcher drops what was painted. (Columns that trade
    width with each other, the total unchanged, are not seen: that needs a cell to shrink.)
    """

    def __init__(self, *, id: str | None = None, **options: Any) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, **options)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        if old.width != new.width:
            self.notify_style_update()  # DataTable's: drops every cached row and cell, repaints
