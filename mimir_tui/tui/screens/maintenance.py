"""The Vacuum and Retention screens: the database's upkeep, through the same core the
``db`` and ``retention`` commands call (:mod:`mimir_tui.ops.maintenance`,
:mod:`mimir_tui.ops.retention`).

- Vacuum (``m`` on the main screen): the storage figures (size, pages, free pages, WAL) and
  each table's rows and sizes; ``c`` runs the integrity checks, ``a`` ANALYZE and ``u`` VACUUM,
  with a moving indicator and the time elapsed, then the size before and after and what was
  reclaimed. One operation at a time: a second is refused while one runs.
- Retention (``k``): the policy (days, each job's latest runs kept, schedule) in a form; what a
  dry run of it would delete, per job (``p``, or Enter in the form); ``s`` saves it into the
  config file (comments and order kept) and the system job; ``a`` applies it now, after a
  confirmation.

Every database and file call runs in a thread worker; the event loop only shows outcomes.
Escape goes back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, LoadingIndicator, Static
from textual.worker import Worker

from ...errors import BadInput, MimirError
from ...ops import maintenance
from ...ops.retention import apply_retention, policy, save_policy
from ..outcome import FINISHED, deliver
from ..panes import apply_rows
from ..widgets.confirm import ConfirmScreen
from ..widgets.table import Table

log = logging.getLogger("mimir.tui")

TABLE_COLUMNS = ("Table", "Rows", "Size", "Indexes")
PLAN_COLUMNS = ("Job", "Runs", "Oldest", "Newest")


def human(n: int | None) -> str:
    from ...commands.db import human_bytes

    return human_bytes(n)


def when(value: Any) -> str:
    from ...commands import short_time

    return short_time(value)


class OpsScreen(Screen):
    """A status line with a loading indicator and the time elapsed, and one call at a time in
    a thread worker (:meth:`work`): a second is refused, saying what runs."""

    PREFIX = "ops"

    def __init__(self, id: str) -> None:
        super().__init__(id=id)
        self.running: str | None = None  # what the worker in progress does
        self.note: str | None = None  # said once the next read is shown (what an operation did)
        self.refusal: str | None = None  # what was refused while the call in progress runs
        self._started = 0.0
        self._then: dict[Worker[Any], Callable[[Any], None]] = {}

    def status_bar(self) -> ComposeResult:
        with Horizontal(classes="ops-top"):
            yield Static("", id=f"{self.PREFIX}-status", classes="ops-status")
            yield LoadingIndicator(id=f"{self.PREFIX}-loading", classes="ops-loading")

    def on_mount(self) -> None:
        self.query_one(f"#{self.PREFIX}-loading").display = False
        self.set_interval(0.25, self._tick)

    def _elapsed(self) -> float:
        return max(0.0, self.app.timer() - self._started)  # type: ignore[attr-defined]

    def _tick(self) -> None:
        if self.running:
            refused = f"; {self.refusal} refused: one at a time, wait for it to end" if self.refusal else ""
            self.say(f"{self.running} is running... {self._elapsed():.1f} s{refused}", error=bool(refused))

    def say(self, line: str, *, error: bool = False) -> None:
        status = self.query_one(f"#{self.PREFIX}-status", Static)
        status.set_class(error, "-error")
        status.update(Text(line, end=""))

    def refused(self, what: str) -> bool:
        """True, saying so (until the call ends), while a call runs."""
        if self.running:
            self.refusal = what
            self._tick()
        return bool(self.running)

    def work(self, what: str, job: Callable[[Any], Any], then: Callable[[Any], None]) -> bool:
        """``job(backend)`` in a thread worker, ``then(result)`` on the event loop (an error: in
        the status line). False, and nothing started, while another call runs."""
        if self.refused(what):
            return False
        self.running = what
        self._started = self.app.timer()  # type: ignore[attr-defined]
        self.query_one(f"#{self.PREFIX}-loading").display = True
        self._tick()
        app: Any = self.app
        worker = self.run_worker(lambda: job(app.backend()), thread=True, exit_on_error=False, group=self.PREFIX)
        self._then[worker] = then
        return True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker not in self._then or event.state not in FINISHED:
            return
        event.stop()
        then = self._then.pop(worker)
        what, self.running, self.refusal = self.running, None, None
        self.query_one(f"#{self.PREFIX}-loading").display = False
        deliver(worker, event.state, what or "the call", then, self.say)


class VacuumScreen(OpsScreen):
    PREFIX = "vacuum"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("c", "run('check')", "Check", id="vacuum-check"),
        Binding("a", "run('analyze')", "Analyze", id="vacuum-analyze"),
        Binding("u", "run('vacuum')", "Vacuum", id="vacuum-vacuum"),
        Binding("r,ctrl+r", "stats", "Reload", id="vacuum-reload"),
    ]

    def __init__(self) -> None:
        super().__init__(id="vacuum")
        self.last: dict[str, Any] | None = None  # the last operation's report

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.status_bar()
        yield Static("", id="vacuum-result")
        yield Static("", id="vacuum-figures", classes="summary")
        table = Table(id="vacuum-tables")
        table.add_columns(*TABLE_COLUMNS)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.sub_title = "vacuum, analyze, check"
        self.query_one("#vacuum-tables").border_title = "Tables"
        self.query_one("#vacuum-result").display = False
        self.query_one("#vacuum-tables").focus()
        self.action_stats()

    def action_stats(self) -> None:
        self.work("reading the figures", maintenance.database_stats, self._show_stats)

    def _show_stats(self, report: dict[str, Any]) -> None:
        parts = [f"{human(report['size_bytes'])} ({report['backend']})"]
        if "wal_bytes" in report:
            parts.append(f"WAL {human(report['wal_bytes'])}")
        parts.append(f"{report['pages']} pages of {report['page_size']}")
        if report["free_pages"] is not None:
            parts.append(f"{report['free_pages']} free ({human(report['free_bytes'])})")
        if "dead_rows" in report:
            parts.append(f"{report['dead_rows']} dead rows")
        if report["index_sizes"] != "ok":
            parts.append(f"index sizes {report['index_sizes']}")
        self.query_one("#vacuum-figures", Static).update(Text(", ".join(parts)))
        rows = [
            (t["name"], (t["name"], str(t["rows"]), human(t["bytes"]), human(t["index_bytes"])))
            for t in report["tables"]
        ]
        apply_rows(self.query_one("#vacuum-tables", DataTable), rows)
        note, self.note = self.note, None
        self.say(note or "c check, a analyze, u vacuum", error=bool(note and self.last and self.last.get("problems")))

    def action_run(self, what: str) -> None:
        core = {"check": maintenance.check_database, "analyze": maintenance.analyze, "vacuum": maintenance.vacuum}
        label = {"check": "checking", "analyze": "ANALYZE", "vacuum": "VACUUM"}[what]
        self.work(label, core[what], self._show_result)

    def _show_result(self, report: dict[str, Any]) -> None:
        self.last = report
        result = self.query_one("#vacuum-result", Static)
        result.display = True
        seconds = self._elapsed()
        if report["operation"] == "check":
            problems = report["problems"]
            verdict = f"{len(problems)} problem(s)" if problems else "ok"
            lines = [f"check ({', '.join(report['checks'])}): {verdict}"]
            lines += [f"  {p}" for p in problems[:6]]
            if len(problems) > 6:
                lines.append(f"  ... and {len(problems) - 6} more")
            result.set_class(bool(problems), "-error")
            result.update(Text("\n".join(lines)))
            self.note = f"check done in {seconds:.1f} s"
        else:
            result.set_class(False, "-error")
            result.update(
                Text(
                    f"{report['operation']}: size before {human(report['size_before'])}, "
                    f"after {human(report['size_after'])}, reclaimed {human(report['reclaimed_bytes'])}"
                )
            )
            self.note = f"{report['operation']} done in {seconds:.1f} s"
        self.action_stats()


class RetentionScreen(OpsScreen):
    PREFIX = "retention"
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("p", "preview", "Dry run", id="retention-preview"),
        Binding("s,ctrl+s", "save", "Save", id="retention-save"),
        Binding("a", "apply", "Apply", id="retention-apply"),
        Binding("e", "edit", "Edit", id="retention-edit"),
    ]

    def __init__(self) -> None:
        super().__init__(id="retention")
        self.plan: dict[str, Any] | None = None  # the last dry run

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.status_bar()
        with Vertical(id="retention-form"):
            for key, label in (("days", "Days"), ("keep", "Keep last"), ("schedule", "Schedule")):
                with Horizontal(classes="retention-field"):
                    yield Label(label)
                    yield Input(id=f"retention-{key}", compact=True)
                    yield Static("", id=f"retention-{key}-help", classes="retention-help")
            with Horizontal(id="retention-buttons"):
                yield Button("Dry run (p)", id="retention-preview-button", compact=True)
                yield Button("Save (s)", id="retention-save-button", compact=True)
                yield Button("Apply (a)", id="retention-apply-button", variant="error", compact=True)
        yield Static("", id="retention-summary", classes="summary")
        table = Table(id="retention-plan")
        table.add_columns(*PLAN_COLUMNS)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        settings = self.app.settings  # type: ignore[attr-defined]
        p = settings.persistence
        self.sub_title = f"execution history retention ({settings.config_path or 'no config file'})"
        self.query_one("#retention-days", Input).value = str(p.retention_days)
        self.query_one("#retention-keep", Input).value = str(p.retention_keep_last)
        self.query_one("#retention-schedule", Input).value = p.retention_schedule
        self.query_one("#retention-plan").border_title = "What a run would delete"
        self.query_one("#retention-plan").focus()
        self.action_preview()

    def values(self) -> tuple[int, int, str]:
        """The form's policy; :class:`BadInput` naming the field that is not a number."""
        out = []
        for key, name in (("days", "days"), ("keep", "keep last")):
            text = self.query_one(f"#retention-{key}", Input).value.strip()
            try:
                out.append(int(text))
            except ValueError:
                raise BadInput(f"{name}: {text!r} is not a whole number") from None
        days, keep = policy(self.app.settings, out[0], out[1])  # type: ignore[attr-defined]
        return days, keep, self.query_one("#retention-schedule", Input).value

    def _form(self) -> tuple[int, int, str] | None:
        try:
            return self.values()
        except BadInput as exc:
            self.say(str(exc), error=True)
            return None

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#retention-plan").focus()
        else:
            self.app.pop_screen()

    def action_edit(self) -> None:
        self.query_one("#retention-days", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_preview()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        """What each field means, in words (the schedule read as cron reads it)."""
        from ...scheduler.cron import describe

        field = (event.input.id or "").removeprefix("retention-")
        text = event.value.strip()
        if field == "schedule":
            try:
                line, bad = describe(text), False
            except MimirError as exc:
                line, bad = str(exc), True
            zone = self.app.settings.scheduler.timezone  # type: ignore[attr-defined]
            line = line if bad else f"{line} ({zone}), once across all instances"
        elif field == "days":
            line, bad = ("0: keep all history" if text == "0" else "older runs are deleted"), not text.isdigit()
        else:
            line, bad = ("0: off" if text == "0" else "latest runs of each job always kept"), not text.isdigit()
        help_line = self.query_one(f"#retention-{field}-help", Static)
        help_line.set_class(bad, "-error")
        help_line.update(Text(line if not bad or field == "schedule" else "a whole number, please"))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        action = (event.button.id or "").removeprefix("retention-").removesuffix("-button")
        getattr(self, f"action_{action}")()

    def action_preview(self) -> None:
        form = self._form()
        if form is None:
            return
        days, keep, _ = form
        settings = self.app.settings  # type: ignore[attr-defined]
        now = self.app.now  # type: ignore[attr-defined]

        def job(backend: Any) -> dict[str, Any]:
            return apply_retention(backend, settings, days=days, keep_last=keep, dry_run=True, now=now(backend))

        self.work("dry run", job, self._show_plan)

    def _show_plan(self, report: dict[str, Any]) -> None:
        self.plan = report
        rows = [
            (str(j["job_id"]), (j["job_id"] or "(no job)", str(j["count"]), when(j["oldest"]), when(j["newest"])))
            for j in report["jobs"]
        ]
        apply_rows(self.query_one("#retention-plan", DataTable), rows)
        self.query_one("#retention-summary", Static).update(Text(self._plan_line(report)))
        note, self.note = self.note, None
        self.say(note or "p dry run, s save, a apply, e edit")

    @staticmethod
    def _plan_line(report: dict[str, Any]) -> str:
        if not report["days"]:
            return "retention off (0 days): nothing would be deleted"
        keep = f", keeping each job's latest {report['keep_last']}" if report["keep_last"] else ""
        return (
            f"older than {report['days']} days (before {when(report['cutoff'])}){keep}: would delete "
            f"{report['deleted']} execution(s), {report['log_files']} log file(s), {human(report['log_bytes'])}"
        )

    def action_save(self) -> None:
        form = self._form()
        if form is None:
            return
        days, keep, schedule = form
        settings = self.app.settings  # type: ignore[attr-defined]

        def job(backend: Any) -> list[str]:
            return save_policy(backend, settings, days=days, keep_last=keep, schedule=schedule)

        self.work("saving", job, self._saved)

    def _saved(self, changed: list[str]) -> None:
        settings = self.app.settings  # type: ignore[attr-defined]
        self.query_one("#retention-schedule", Input).value = settings.persistence.retention_schedule
        self.say(f"saved in {settings.config_path}" + (f"; {'; '.join(changed)}" if changed else ""))

    def action_apply(self) -> None:
        if self.refused("deleting"):
            return
        form = self._form()
        if form is None:
            return
        days, keep, _ = form
        if not days:
            self.say("retention is off (0 days): nothing to delete", error=True)
            return
        if (
            self.plan is not None
            and not self.plan["deleted"]
            and (days, keep) == (self.plan["days"], self.plan["keep_last"])
        ):
            self.say("the dry run found nothing to delete (p runs it again)")
            return
        would = f"{self.plan['deleted']} execution(s) and their logs" if self.plan else "executions"
        kept = f", keeping each job's latest {keep}" if keep else ""
        question = f"Delete {would} older than {days} days{kept}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._apply(days, keep)

        self.app.push_screen(ConfirmScreen(question), answered)

    def _apply(self, days: int, keep: int) -> None:
        settings = self.app.settings  # type: ignore[attr-defined]
        now = self.app.now  # type: ignore[attr-defined]

        def job(backend: Any) -> dict[str, Any]:
            return apply_retention(backend, settings, days=days, keep_last=keep, now=now(backend))

        self.work("deleting", job, self._applied)

    def _applied(self, report: dict[str, Any]) -> None:
        self.note = (
            f"deleted {report['deleted']} execution(s), {report['log_files']} log file(s), "
            f"{human(report['log_bytes'])} in {self._elapsed():.1f} s"
        )
        self.action_preview()
