"""The main screen: Jobs, Pipelines, Executions and Health, live.

Wide terminals (at least :data:`GRID_SIZE`) show the four panes as a 2x2 grid; smaller ones
(80x24 over SSH) show one pane at a time under a row of tabs. Either way ``tab``/``shift+tab``
and ``1``-``4`` move between panes, and ``z`` zooms the focused pane to the whole screen and
back.
"""

from __future__ import annotations

from functools import partial

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer, Header, Tab, Tabs

from ...ops import overview
from ..jobs_pane import JobsPane
from ..panes import ExecutionsPane, HealthPane, Pane, PipelinesPane

#: The smallest terminal (columns, rows) that shows the four panes at once.
GRID_SIZE = (100, 30)


class PaneTabs(Tabs, can_focus=False):
    """The panes by name (shown when one pane fills the screen); the keyboard stays on the tables."""


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("tab", "next_pane(1)", "Next pane", show=False, id="next-pane"),
        Binding("shift+tab", "next_pane(-1)", "Previous pane", show=False, id="previous-pane"),
        *(Binding(str(n), f"show_pane({n - 1})", f"Pane {n}", show=False, id=f"pane-{n}") for n in range(1, 5)),
        Binding("v", "vectors", "Vectors", id="open-vectors"),
        # Not in the footer (it has no room left at 80 columns): in the help and the palette.
        Binding("m", "vacuum", "Vacuum, analyze, check", show=False, id="open-vacuum"),
        Binding("k", "retention", "Retention", show=False, id="open-retention"),
        Binding("b", "backups", "Backups", show=False, id="open-backups"),
    ]

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.zoomed = False

    def compose(self) -> ComposeResult:
        settings = self.app.settings  # type: ignore[attr-defined]
        every = settings.ui.refresh_interval
        yield Header()
        panes = [
            kind(read, title=title, columns=columns, interval=every, id=title.lower())
            for kind, title, columns, read in (
                (JobsPane, "Jobs", overview.JOB_COLUMNS, partial(overview.read_jobs, page_size=settings.ui.page_size)),
                (PipelinesPane, "Pipelines", overview.PIPELINE_COLUMNS, overview.read_pipelines),
                (
                    ExecutionsPane,
                    "Executions",
                    overview.EXECUTION_COLUMNS,
                    partial(overview.read_executions, page_size=settings.ui.page_size),
                ),
                (
                    HealthPane,
                    "Health",
                    overview.HEALTH_COLUMNS,
                    partial(overview.read_health, stale_after=settings.scheduler.stale_after, retention=settings),
                ),
            )
        ]
        yield PaneTabs(*(Tab(f"{n} {p.title}", id=f"tab-{p.id}") for n, p in enumerate(panes, 1)))
        with Container(id="panes"):
            yield from panes
        yield Footer()

    @property
    def panes(self) -> list[Pane]:
        return list(self.query(Pane))

    @property
    def current(self) -> Pane:
        """The pane that has (or last had) the focus."""
        found = self.query("#panes > .-current")
        return found.first(Pane) if found else self.panes[0]

    def on_mount(self) -> None:
        self.action_show_pane(0)

    def on_resize(self, event: events.Resize) -> None:
        self._layout()

    def _layout(self) -> None:
        small = self.size.width < GRID_SIZE[0] or self.size.height < GRID_SIZE[1]
        self.query_one("#panes").set_class(self.zoomed or small, "-single")
        self.query_one(PaneTabs).display = self.zoomed or small

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Focus moved (a click, tab): the pane it moved into becomes the current one."""
        if isinstance(event.widget.parent, Pane):
            for pane in self.panes:
                pane.set_class(event.widget.parent is pane, "-current")
            self.query_one(PaneTabs).active = f"tab-{self.current.id}"

    @on(Tabs.TabActivated)
    def _tab_clicked(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id != f"tab-{self.current.id}":
            self.action_show_pane([f"tab-{p.id}" for p in self.panes].index(event.tab.id))

    def action_show_pane(self, index: int) -> None:
        pane = self.panes[index % 4]
        for other in self.panes:
            other.set_class(other is pane, "-current")
        self._layout()
        pane.table.focus()
        pane.action_poll()  # fresh rows now, not at the next tick (a hidden pane does not read)

    def action_next_pane(self, step: int) -> None:
        self.action_show_pane(self.panes.index(self.current) + step)

    def action_vectors(self) -> None:
        """The Vectors screen (imported here: the dashboard's start does not pay for it)."""
        from .vectors import VectorsScreen

        self.app.push_screen(VectorsScreen())

    def action_vacuum(self) -> None:
        from .maintenance import VacuumScreen

        self.app.push_screen(VacuumScreen())

    def action_retention(self) -> None:
        from .maintenance import RetentionScreen

        self.app.push_screen(RetentionScreen())

    def action_backups(self) -> None:
        """The Backup screen (imported here, as the Vectors screen is)."""
        from .backup import BackupScreen

        self.app.push_screen(BackupScreen())

    def action_zoom(self) -> None:
        self.zoomed = not self.zoomed
        self._layout()
