"""``Mimir.backup``: ``mimir-tui backup create`` as a pipeline step, so that a system job (a job
the scheduler fires once across all instances: its exactly-once claim) makes the scheduled
backups when ``persistence.backup_enabled``, each one a run in the history with its log."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..registry import Plugin, PluginConfig, PluginError, StepContext


class BackupConfig(PluginConfig):
    encrypt: bool | None = Field(None, description="encrypt the archive (default persistence.backup_encrypt)")


class Backup(Plugin):
    type = "Mimir"
    name = "backup"
    description = (
        "Write a verified backup archive into persistence.backup_path and rotate the folder "
        "(mimir-tui backup create). Result {archive, size_bytes, row_counts, verified, rotated, ...}."
    )
    Config = BackupConfig

    def execute(self, config: BackupConfig, ctx: StepContext) -> dict[str, Any]:
        from ...ops.backup import create_backup
        from .mimir_ops import backend_of

        with backend_of(ctx) as backend:
            result = create_backup(ctx.settings, backend, encrypt=config.encrypt)
        report = result.as_dict()
        rotated = f", rotated out {len(result.rotated)}" if result.rotated else ""
        ctx.log("INFO", f"backup {result.path.name}: {result.size_bytes} bytes in {result.seconds:.1f} s{rotated}")
        if not result.verified:
            raise PluginError(f"backup {result.path.name} failed its verification: {result.verify_error}")
        return report
