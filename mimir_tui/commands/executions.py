"""``mimir-tui executions list [--job ID] [--status S] [--limit N] [--json] | show ID [--json]
| cancel ID``."""

from __future__ import annotations

import argparse

from ..constants import STATUSES
from ..errors import BadInput, NotFound
from ..inputs import printable
from . import Context, print_json, print_table, short_time, to_jsonable

NAME = "executions"
HELP = "execution history: list, show, cancel"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", parents=[common], help="recent executions, newest first")
    ls.add_argument("--job", metavar="ID", default=None, help="only this job's")
    ls.add_argument(
        "--status",
        metavar="S",
        default=None,
        help=f"only with this status ({', '.join(STATUSES)}; several separated by commas)",
    )
    ls.add_argument("--limit", metavar="N", type=int, default=50, help="at most N (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=run_list)

    show = actions.add_parser("show", parents=[common], help="one execution, its steps and its log")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)

    cancel = actions.add_parser("cancel", parents=[common], help="ask the process running an execution to stop it")
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("--json", action="store_true", help="print JSON")
    cancel.set_defaults(handler=run_cancel)


def _duration(ms) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    return f"{ms / 1000:.1f} s"


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    statuses = None
    if args.status:
        statuses = [s.strip().lower() for s in args.status.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise BadInput(f"unknown status {unknown[0]!r}; use one of {', '.join(STATUSES)}")
    if not 0 <= args.limit <= 1_000_000:
        raise BadInput(f"--limit {args.limit}: give a number from 0 to 1000000")
    if args.job is not None:
        ctx.backend.get_job(args.job)  # an unknown job is bad input, not an empty list
    # Lean rows: a page of the history without each run's context (``show`` has it whole).
    rows = ctx.backend.executions.page(args.job, args.limit, status=statuses)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no executions")
        return 0
    table = [
        [r.id, r.pipeline, r.job_id or "-", r.status, short_time(r.start_time), _duration(r.duration), r.triggered_by]
        for r in rows
    ]
    print_table(table, ["ID", "PIPELINE", "JOB", "STATUS", "STARTED", "DURATION", "TRIGGER"])
    return 0


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    from ..pipelines.execlog import execution_log_path, no_log_reason
    from ..pipelines.summaries import one_line

    record = ctx.backend.get_execution(args.id)
    log_path = execution_log_path(ctx.settings, record.id)
    if args.json:
        data = to_jsonable(record)
        data["log_path"] = str(log_path)
        print_json(data)
        return 0
    queued = record.status == "queued"
    fields = [
        ("id", record.id),
        ("pipeline", record.pipeline),
        ("job", record.job_id or "-"),
        (
            "status",
            record.status + (" (cancel requested)" if record.cancel_requested and record.status == "running" else ""),
        ),
        ("triggered by", record.triggered_by),
        ("attempt", record.attempt),
        ("scheduled for", short_time(record.scheduled_for) if record.scheduled_for else "-"),
        ("queued at" if queued else "started", short_time(record.start_time)),
        ("ended", short_time(record.end_time)),
        ("duration", _duration(record.duration)),
        ("worker", record.worker_id or "-"),
    ]
    if queued and record.worker_id is None and record.job_id is not None:
        fields.append(("queue", _waiting_note(ctx, record.job_id)))
    for label, value in fields:
        print(f"{label:14} {printable(value)}")
    if record.error:
        print(f"{'error':14} {printable(record.error, multiline=True)}")
    steps = record.step_records()
    print(f"steps ({len(steps)}):")
    for i, step in enumerate(steps, 1):
        print(printable(f"  {i}. {step.step_name} [{step.plugin}]  {step.status}  {_duration(step.duration)}"))
        if step.error:
            print(f"     error: {printable(step.error, multiline=True)}")
        if step.output is not None:
            print(f"     output: {printable(one_line(step.output))}")
    if record.context:
        keys = ", ".join(record.context)
        print(f"{'context keys':14} {printable(keys)}")
    print(f"{'log':14} {log_path}{'' if log_path.exists() else f' ({no_log_reason(record)})'}")
    return 0


def _waiting_note(ctx: Context, job_id: str) -> str:
    """The queue a waiting run is in, and whether any instance will take it from there."""
    try:
        queue = ctx.backend.get_job(job_id).queue
    except NotFound:  # deleted since: its queued runs went with it
        return "-"
    serving = len(ctx.backend.workers.serving(queue, stale_after=ctx.settings.scheduler.stale_after))
    if serving:
        return f"{queue} ({serving} running instance(s) serve it)"
    return f"{queue} (no running instance serves it: the run waits until one starts)"


def run_cancel(ctx: Context, args: argparse.Namespace) -> int:
    record = ctx.backend.request_cancel(args.id)
    if args.json:
        print_json(record)
    elif record.status == "cancelled":
        print(printable(f"execution {record.id} ({record.pipeline}) was still queued: cancelled"))
    else:
        print(printable(f"cancel requested for execution {record.id} ({record.pipeline}); it stops within a second"))
    return 0
