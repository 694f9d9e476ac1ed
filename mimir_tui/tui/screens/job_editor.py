"""The job editor: a modal form for a new job or an edit of one.

The cron expression is checked as it is typed, and read back in words with its next five fires
in the chosen zone (and the seconds-first warning of ``jobs next``). Saving calls
:func:`~mimir_tui.scheduler.jobs.create_job` or :func:`~mimir_tui.scheduler.jobs.update_job`
once, in a thread worker; what they refuse is shown in the form, on the field it names. An edit
is written only if the job was not changed since the form loaded it (its ``updated_at``); if it
was, the form says so and offers to load the stored job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static
from textual.worker import get_current_worker

from ...errors import BadInput, Conflict, MimirError
from ...persistence import MisfirePolicy, ScheduledJob
from ...scheduler import jobs as core
from ...scheduler.cron import validate_cron, zone

log = logging.getLogger("mimir.tui")


@lru_cache(maxsize=1)
def zone_names() -> list[str]:
    """The IANA zone names, for completion (read once, in a worker: it lists files)."""
    from zoneinfo import available_timezones

    return sorted(available_timezones())


@dataclass(frozen=True)
class EditorChoices:
    """What the form offers, read in a worker before it opens."""

    pipelines: list[str]
    zones: list[str]

    @classmethod
    def read(cls, backend: Any) -> EditorChoices:
        return cls(sorted(p.name for p in backend.list_pipelines()), zone_names())


#: Form field id -> how core messages name it (the first that a message holds marks the field).
FIELD_WORDS = (
    ("job-timeout", ("timeout_seconds", "timeout")),
    ("job-retries", ("max_retries", "retries")),
    ("job-backoff", ("retry_backoff_seconds", "backoff")),
    ("job-misfire", ("misfire_policy",)),
    ("job-queue", ("queue",)),
    ("job-pipeline", ("pipeline",)),
    ("job-timezone", ("timezone", "time zone")),
    ("job-cron", ("cron", "field", "minute", "hour", "day", "month", "second")),
    ("job-name", ("name",)),
    ("job-id", ("job id", "already exists")),
)


def field_of(message: str) -> str | None:
    """The form field a core validation message is about."""
    for field_id, words in FIELD_WORDS:
        if any(word in message for word in words):
            return field_id
    return None


class JobEditor(ModalScreen[str | None]):
    """Dismissed with what was saved (a line for the operator), or None."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="editor-save"),
        Binding("escape", "cancel", "Cancel", id="editor-cancel"),
        Binding("ctrl+l", "reload", "Reload stored job", id="editor-reload"),
    ]

    def __init__(self, choices: EditorChoices, job: ScheduledJob | None = None) -> None:
        super().__init__(id="job-editor")
        self.choices = choices
        #: The job as loaded (None: a new one); its updated_at guards the save.
        self.job = job
        self.saving = False

    # -- the form --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        job = self.job
        pipelines = list(self.choices.pipelines)
        if job is not None and job.pipeline not in pipelines:
            pipelines.append(job.pipeline)  # gone meanwhile: still shown (saving says so)
        with VerticalScroll(id="editor-box") as box:
            box.border_title = f"Edit job {job.id}" if job else "New job"
            yield from self._row(
                "Id", Input(placeholder="generated when empty", id="job-id", disabled=job is not None, compact=True)
            )
            yield from self._row("Name", Input(id="job-name", compact=True))
            yield from self._row(
                "Pipeline",
                Select([(p, p) for p in pipelines], prompt="choose a pipeline", id="job-pipeline", compact=True),
            )
            yield from self._row("Cron", Input(placeholder="m h dom mon dow [sec]", id="job-cron", compact=True))
            yield Static("", id="job-cron-help")
            yield from self._row(
                "Zone",
                Input(
                    suggester=SuggestFromList(self.choices.zones, case_sensitive=False), id="job-timezone", compact=True
                ),
            )
            yield from self._row("", Checkbox("Enabled", id="job-enabled", compact=True))
            yield from self._row("Queue", Input(id="job-queue", compact=True))
            yield from self._row("Timeout s", Input(placeholder="none", id="job-timeout", compact=True))
            yield from self._row("Retries", Input(id="job-retries", compact=True))
            yield from self._row("Backoff s", Input(id="job-backoff", compact=True))
            yield from self._row(
                "Misfire",
                Select([(p.value, p.value) for p in MisfirePolicy], allow_blank=False, id="job-misfire", compact=True),
            )
            yield Static("", id="job-error")
            with Horizontal(id="editor-buttons"):
                yield Button("Save (ctrl+s)", id="editor-save", variant="primary", compact=True)
                yield Button("Reload stored job", id="editor-reload", variant="warning", compact=True)
                yield Button("Cancel (esc)", id="editor-cancel", compact=True)

    @staticmethod
    def _row(label: str, field: Widget) -> ComposeResult:
        with Horizontal():
            yield Label(label)
            yield field

    def on_mount(self) -> None:
        self.query_one("#editor-reload").display = False
        self.fill(self.job)
        self.query_one("#job-name" if self.job else "#job-id").focus()

    def fill(self, job: ScheduledJob | None) -> None:
        """Put ``job`` (or a new job's defaults) in the form."""
        job = job or ScheduledJob.model_construct(id="", name="", pipeline="", cron_expr="")
        values = {
            "job-id": job.id,
            "job-name": job.name,
            "job-cron": job.cron_expr,
            "job-timezone": job.timezone or "UTC",
            "job-queue": job.queue,
            "job-timeout": "" if job.timeout_seconds is None else f"{job.timeout_seconds:g}",
            "job-retries": str(job.max_retries),
            "job-backoff": f"{job.retry_backoff_seconds:g}",
        }
        for field_id, value in values.items():
            self.query_one(f"#{field_id}", Input).value = value
        if job.pipeline:
            self.query_one("#job-pipeline", Select).value = job.pipeline
        self.query_one("#job-misfire", Select).value = job.misfire_policy
        self.query_one("#job-enabled", Checkbox).value = bool(job.enabled)
        self.preview()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.input.remove_class("-invalid")
        if event.input.id in ("job-cron", "job-timezone"):
            self.preview()

    def preview(self) -> None:
        """The expression checked, in words, and its next five fires in the zone (pure
        computation, no store: done as the operator types)."""
        help_line = self.query_one("#job-cron-help", Static)
        expr = self.query_one("#job-cron", Input).value
        tz = self.query_one("#job-timezone", Input).value.strip() or "UTC"
        help_line.remove_class("-error", "-warning")
        if not expr.strip():
            help_line.update("")
            return
        for field_id, check, value in (("job-cron", validate_cron, expr), ("job-timezone", zone, tz)):
            try:
                check(value)
            except BadInput as exc:
                self.query_one(f"#{field_id}").add_class("-invalid")
                help_line.add_class("-error")
                help_line.update(Text(str(exc)))
                return
        try:
            fires = core.next_fires(expr, tz, start=self.app.now(), n=5)  # type: ignore[attr-defined]
        except BadInput as exc:
            help_line.add_class("-error")
            help_line.update(Text(str(exc)))
            return
        lines = [fires.explain, *(f.strftime("  %a %Y-%m-%d %H:%M:%S %Z") for f in fires.local())]
        if fires.warning:
            help_line.add_class("-warning")
            lines.append(fires.warning)
        help_line.update(Text("\n".join(lines)))

    # -- saving ----------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """The form's fields as job options; :class:`BadInput` naming one that is not a number."""

        def text(field_id: str) -> str:
            return self.query_one(f"#{field_id}", Input).value.strip()

        def number(field_id: str, what: str, kind: type) -> Any:
            raw = text(field_id)
            try:
                return kind(raw)
            except ValueError:
                whole = "a whole number" if kind is int else "a number of seconds"
                raise BadInput(f"{what} {raw!r} is not {whole}") from None

        pipeline = self.query_one("#job-pipeline", Select).value
        return {
            "name": text("job-name"),
            "pipeline": "" if pipeline is Select.NULL else str(pipeline),
            "cron_expr": text("job-cron"),
            "timezone": text("job-timezone") or "UTC",
            "enabled": self.query_one("#job-enabled", Checkbox).value,
            "queue": text("job-queue"),
            "timeout_seconds": number("job-timeout", "timeout", float) if text("job-timeout") else None,
            "max_retries": number("job-retries", "retries", int),
            "retry_backoff_seconds": number("job-backoff", "backoff", float),
            "misfire_policy": str(self.query_one("#job-misfire", Select).value),
        }

    def show_error(self, message: str, *, conflict: bool = False) -> None:
        self.query_one("#job-error", Static).update(Text(message))
        field_id = None if conflict else field_of(message)
        if field_id is not None:
            self.query_one(f"#{field_id}").add_class("-invalid")
        self.query_one("#editor-reload").display = conflict

    def action_save(self) -> None:
        if self.saving:
            return  # one write per save
        self.query_one("#job-error", Static).update("")
        try:
            values = self.values()
        except BadInput as exc:
            self.show_error(str(exc))
            return
        if not values["pipeline"]:
            self.show_error("pipeline: choose one")
            return
        self.saving = True
        self.save(values, self.query_one("#job-id", Input).value.strip() or None)

    @work(thread=True, exit_on_error=False, group="job-editor")
    def save(self, values: dict[str, Any], job_id: str | None) -> None:
        backend = self.app.backend()  # type: ignore[attr-defined]
        loaded = self.job
        try:
            if loaded is None:
                job = core.create_job(backend, job_id=job_id, **values)
                outcome = f"created job {job.id} ({job.name})"
            else:
                changes = {k: v for k, v in values.items() if getattr(loaded, k) != v}
                if changes:
                    core.update_job(backend, loaded.id, expected_updated_at=loaded.updated_at, **changes)
                outcome = f"saved job {loaded.id}: {', '.join(sorted(changes))}" if changes else "no changes"
        except Conflict as exc:
            advice = "Reload it (ctrl+l; your edits here are dropped) or cancel."
            self.app.call_from_thread(self._failed, f"{exc}. {advice}", True)
            return
        except Exception as exc:  # noqa: BLE001 - shown in the form, the form stays open
            if not isinstance(exc, MimirError):
                log.error("saving a job failed", exc_info=exc)
            self.app.call_from_thread(self._failed, str(exc), False)
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.dismiss, outcome)

    def _failed(self, message: str, conflict: bool) -> None:
        self.saving = False
        self.show_error(message, conflict=conflict)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "editor-save":
            self.action_save()
        elif event.button.id == "editor-reload":
            self.action_reload()
        else:
            self.action_cancel()

    def action_reload(self) -> None:
        """Load the job as stored now (after a conflict; the form's edits are dropped)."""
        if self.job is not None:
            self.reload()

    @work(thread=True, exit_on_error=False, group="job-editor")
    def reload(self) -> None:
        assert self.job is not None
        try:
            job = self.app.backend().get_job(self.job.id)  # type: ignore[attr-defined]
        except MimirError as exc:
            self.app.call_from_thread(self._failed, str(exc), False)
            return
        self.app.call_from_thread(self._reloaded, job)

    def _reloaded(self, job: ScheduledJob) -> None:
        self.job = job
        for widget in self.query(".-invalid"):
            widget.remove_class("-invalid")
        self.query_one("#job-error", Static).update(Text(f"loaded job {job.id} as stored now"))
        self.query_one("#editor-reload").display = False
        self.fill(job)

    def action_cancel(self) -> None:
        self.dismiss(None)
