"""The headless path (service, scheduler, jobs CLI) never imports Textual, even while it runs."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys, tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mimir_tui.service, mimir_tui.scheduler.core, mimir_tui.scheduler.jobs, mimir_tui.commands.jobs
from mimir_tui.config import load_settings
from mimir_tui.persistence import open_backend
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.pipelines.store import save_spec
from mimir_tui.scheduler import jobs
from mimir_tui.scheduler.clock import FakeClock
from mimir_tui.scheduler.core import Scheduler
from mimir_tui.service import Service

root = Path(tempfile.mkdtemp())
settings = load_settings(use_search=False, environ={})
settings.persistence.database_path = str(root / "mimir.db")
settings.pipelines.directory = str(root / "pipelines")
settings.pipelines.watch = True
settings.logging.executions_dir = str(root / "executions")
backend = open_backend(settings)
save_spec(
    backend, PipelineSpec(name="ok", steps=[{"name": "w", "plugin": "Data_Processing.delay", "config": {"seconds": 0}}])
)
t0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
job = jobs.create_job(backend, name="j", pipeline="ok", cron_expr="* * * * *", now=t0)
clock = FakeClock(t0 + timedelta(minutes=1))
report = Scheduler(backend, settings, clock=clock, inline=True).tick()
assert [r.status for r in backend.list_executions(job.id, 5)] == ["success"], report
service = Service(settings, backend=backend)
service.start()
service.stop()
from mimir_tui.cli import main
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["jobs", "next", "--cron", "* * * * *", "-n", "2", "--json"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))))
"""


def test_service_and_scheduler_run_without_textual() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"textual imported by the headless path: {loaded[:5]}"
