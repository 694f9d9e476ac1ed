#!/usr/bin/env python3
"""The peer of bench/scheduler.py: APScheduler 3 in a process of its own, driven over stdin.

    python bench/peer.py --db PATH [--threads 4] [--misfire-grace 60]

A ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` on a SQLite file in WAL mode, cron
triggers, a pool of ``--threads`` threads; its jobs run :func:`stamp` (they return the time).
It imports nothing of Mimir: its memory and CPU are APScheduler's, Python's and SQLAlchemy's.

Commands, one a line on stdin; each answers one line on stdout:

- ``arm N T1,T2,...``: N jobs whose cron trigger fires at exactly those instants (UNIX seconds,
  whole): ``armed``; then ``round`` each time N more of their fires have run or were missed,
  and ``done`` instead for the last N.
- ``every A B``: one job on a trigger of every second from A to B: ``armed``.
- ``wake``: look at the job store now (a job added by another process): ``woken``.
- ``stop``: shut down, waiting for running jobs, then one JSON line: ``runs`` (job id, the
  scheduled instant, the time the job ran) and ``missed``, ``errors``.

Needs APScheduler 3 (the bench extra: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import UTC, datetime

try:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger
except ImportError:  # pragma: no cover - said to the operator by bench/scheduler.py
    sys.exit("APScheduler 3 is not installed: pip install -e '.[bench]' (or 'apscheduler>=3.11,<4')")
from sqlalchemy import create_engine, event


def stamp() -> float:
    """The one-step job: stamps the time."""
    return time.time()


def pinned(instants: list[int]) -> CronTrigger:
    """A cron trigger that fires at those instants (and at no other before a year has passed:
    the cross product of their fields adds only instants in the past or an hour and more later)."""
    times = [datetime.fromtimestamp(t, UTC) for t in instants]

    def field(name: str) -> str:
        return ",".join(str(v) for v in sorted({getattr(t, name) for t in times}))

    return CronTrigger(
        year=field("year"),
        month=field("month"),
        day=field("day"),
        hour=field("hour"),
        minute=field("minute"),
        second=field("second"),
        timezone=UTC,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--misfire-grace", type=int, default=60)
    args = parser.parse_args()

    engine = create_engine(f"sqlite:///{args.db}")

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn: object, _record: object) -> None:
        cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    runs: list[tuple[str, float, float]] = []
    counts = {"missed": 0, "errors": 0}
    expected = [0, 0]  # fires armed; fires a round
    lock = threading.Lock()

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def on_event(ev: object) -> None:
        with lock:
            code = ev.code  # type: ignore[attr-defined]
            if code == EVENT_JOB_EXECUTED:
                runs.append((ev.job_id, ev.scheduled_run_time.timestamp(), ev.retval))  # type: ignore[attr-defined]
            elif code == EVENT_JOB_MISSED:
                counts["missed"] += 1
            else:
                counts["errors"] += 1
            seen = len(runs) + counts["missed"] + counts["errors"]
            if expected[0] and seen >= expected[0]:
                expected[0] = 0
                out("done")
            elif expected[0] and seen % expected[1] == 0:
                out("round")

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)},
        executors={"default": ThreadPoolExecutor(args.threads)},
        job_defaults={"misfire_grace_time": args.misfire_grace, "coalesce": False, "max_instances": 1},
        timezone=UTC,
    )
    scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler.start()
    out("ready")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "arm":
            count, instants = int(words[1]), [int(t) for t in words[2].split(",")]
            with lock:
                expected[:] = [count * len(instants), count]
            trigger = pinned(instants)
            for i in range(count):
                scheduler.add_job(stamp, trigger, id=f"peer-{i:04d}", replace_existing=True)
            out("armed")
        elif words[0] == "every":
            start, end = (datetime.fromtimestamp(int(t), UTC) for t in words[1:3])
            trigger = CronTrigger(second="*", start_date=start, end_date=end, timezone=UTC)
            scheduler.add_job(stamp, trigger, id="every-second", replace_existing=True)
            out("armed")
        elif words[0] == "wake":
            scheduler.wakeup()
            out("woken")
        elif words[0] == "stop":
            break
    scheduler.shutdown(wait=True)
    with lock:
        out(json.dumps({"runs": runs, **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
