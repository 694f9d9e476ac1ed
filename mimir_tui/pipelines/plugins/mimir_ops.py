"""``Mimir.*``: Mimir's own operations as pipeline steps, so that a system job runs them on its
schedule once across all instances (the scheduler's exactly-once claim) and each run shows in
the execution history with its log. See :mod:`mimir_tui.ops.scheduled`."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from pydantic import Field

from ..registry import Plugin, PluginConfig, StepContext


class RetentionConfig(PluginConfig):
    days: int | None = Field(None, ge=0, description="older than N days (default persistence.retention_days)")
    keep_last: int | None = Field(
        None, ge=0, description="keep each job's latest K runs (default persistence.retention_keep_last)"
    )
    dry_run: bool = Field(False, description="only say what would be deleted")


def backend_of(ctx: StepContext) -> Any:
    """The runner's backend, or one opened on the configured database for this step."""
    if ctx.backend is not None:
        return nullcontext(ctx.backend)
    from ...persistence import open_backend

    return open_backend(ctx.settings)


class Retention(Plugin):
    type = "Mimir"
    name = "retention"
    description = (
        "Delete finished executions older than persistence.retention_days and their log files "
        "(mimir-tui retention apply). Result {deleted, log_files, log_bytes, cutoff, ...}."
    )
    Config = RetentionConfig

    def execute(self, config: RetentionConfig, ctx: StepContext) -> dict[str, Any]:
        from ...ops.retention import apply_retention, report_json

        with backend_of(ctx) as backend:
            report = apply_retention(
                backend, ctx.settings, days=config.days, keep_last=config.keep_last, dry_run=config.dry_run
            )
        verb = "would delete" if report["dry_run"] else "deleted"
        ctx.log(
            "INFO",
            f"retention ({report['days']} days, keep last {report['keep_last']}): {verb} {report['deleted']} "
            f"execution(s), {report['log_files']} log file(s), {report['log_bytes']} bytes",
        )
        return report_json(report)
