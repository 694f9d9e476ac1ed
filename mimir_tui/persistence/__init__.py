"""The persistence layer of the seed: jobs, pipelines and execution history on SQLModel."""

from .backend import PersistenceBackend, Store, open_backend
from .models import (
    FINISHED,
    JobExecutionRecord,
    MisfirePolicy,
    PipelineConfig,
    RunRequest,
    ScheduledJob,
    Status,
    StepRecord,
    TriggeredBy,
    Worker,
    new_id,
)
from .types import as_utc, utcnow

__all__ = [
    "FINISHED",
    "JobExecutionRecord",
    "MisfirePolicy",
    "PersistenceBackend",
    "PipelineConfig",
    "RunRequest",
    "ScheduledJob",
    "Status",
    "StepRecord",
    "Store",
    "TriggeredBy",
    "Worker",
    "as_utc",
    "new_id",
    "open_backend",
    "utcnow",
]
