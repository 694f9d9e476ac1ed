"""Retention: how long execution history (and the workers it names) is kept."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from ..persistence.types import as_utc, utcnow

log = logging.getLogger("mimir.retention")


def apply_retention(backend: Any, settings: Any, *, now: datetime | None = None) -> int:
    """Delete finished executions that started more than ``persistence.retention_days``
    before ``now`` (default: this machine's clock), and the stopped or dead workers last seen
    before then: they are kept as long as the history that names them. Returns how many
    executions went; ``retention_days`` 0 or unset keeps everything."""
    days = settings.persistence.retention_days
    if not days:
        return 0
    cutoff = (as_utc(now) or utcnow()) - timedelta(days=days)
    removed = backend.delete_old_executions(cutoff)
    if removed:
        log.info("retention: removed %d executions older than %d days", removed, days)
    backend.workers.prune_workers(older_than=cutoff)
    return removed
