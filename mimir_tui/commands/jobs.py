"""``mimir-tui jobs list|add|edit|show|enable|disable|delete|run|next``."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from ..constants import MISFIRE_POLICIES
from ..errors import BadInput
from ..inputs import printable, shown
from . import Context, print_json, print_table, short_time, to_jsonable

NAME = "jobs"
HELP = "scheduled jobs"

# The handlers import the scheduler's job functions (and with them cron and persistence) when
# they run: building this parser, for --help or a usage error, must not pay for them.


def _job_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    p.add_argument("--name", metavar="N", required=creating, help="display name")
    p.add_argument("--pipeline", metavar="P", required=creating, help="pipeline the job runs")
    p.add_argument("--cron", metavar="EXPR", required=creating, help="5 fields, or 6 with seconds last")
    p.add_argument("--tz", metavar="ZONE", default=None, help="IANA timezone (default: scheduler.timezone)")
    p.add_argument("--description", metavar="TEXT", default=None)
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=None, help="stop a run after this long")
    p.add_argument("--max-retries", metavar="N", type=int, default=None, help="retries of a failed run")
    p.add_argument(
        "--retry-backoff", metavar="SECONDS", type=float, default=None, help="first retry delay; doubles each attempt"
    )
    p.add_argument(
        "--misfire",
        choices=MISFIRE_POLICIES,
        default=None,
        help="fires later than the grace (downtime): skip them, run the latest once, or run all "
        "(up to --misfire-cap); the rest are recorded missed",
    )
    p.add_argument(
        "--misfire-grace",
        metavar="SECONDS",
        type=float,
        default=None,
        help="lateness still on time (default: scheduler.misfire_grace)",
    )
    p.add_argument(
        "--misfire-cap", metavar="N", type=int, default=None, help="most fires run by 'all' after a downtime"
    )
    p.add_argument("--max-concurrent", metavar="N", type=int, default=None, help="runs of this job at once")
    p.add_argument("--priority", metavar="N", type=int, default=None, help="higher runs first")
    p.add_argument(
        "--queue",
        metavar="NAME",
        default=None,
        help="queue its runs go to: only instances serving it run them (default: default)",
    )


_OPTION_FIELDS = {
    "description": "description",
    "timeout": "timeout_seconds",
    "max_retries": "max_retries",
    "retry_backoff": "retry_backoff_seconds",
    "misfire": "misfire_policy",
    "misfire_grace": "misfire_grace_seconds",
    "misfire_cap": "misfire_cap",
    "max_concurrent": "max_concurrent",
    "priority": "priority",
    "queue": "queue",
}


def _options(args: argparse.Namespace) -> dict:
    return {field: getattr(args, arg) for arg, field in _OPTION_FIELDS.items() if getattr(args, arg) is not None}


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", parents=[common], help="all jobs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=run_list)

    add = actions.add_parser("add", parents=[common], help="create a job")
    _job_options(add, creating=True)
    add.add_argument("--id", metavar="ID", default=None, help="job id (default: generated)")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=run_add)

    edit = actions.add_parser("edit", parents=[common], help="change a job")
    edit.add_argument("id", metavar="ID")
    _job_options(edit, creating=False)
    edit.add_argument("--json", action="store_true")
    edit.set_defaults(handler=run_edit)

    for name, handler, text in (
        ("show", run_show, "one job"),
        ("enable", run_enable, "enable a job"),
        ("disable", run_disable, "disable a job"),
        ("delete", run_delete, "delete a job and its history"),
    ):
        cmd = actions.add_parser(name, parents=[common], help=text)
        cmd.add_argument("id", metavar="ID")
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(handler=handler)

    run = actions.add_parser("run", parents=[common], help="run a job now (through the queue)")
    run.add_argument("id", metavar="ID")
    run.add_argument("--wait", action="store_true", help="wait for the run to end; exit 0 on success")
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=run_run)

    nxt = actions.add_parser("next", parents=[common], help="next fire times of a job or an expression")
    nxt.add_argument("id", metavar="ID", nargs="?", default=None)
    nxt.add_argument("--cron", metavar="EXPR", default=None)
    nxt.add_argument("--tz", metavar="ZONE", default=None)
    nxt.add_argument("--from", dest="start", metavar="ISO8601", default=None, help="instant to count from")
    nxt.add_argument("-n", metavar="N", type=int, default=5)
    nxt.add_argument("--explain", action="store_true", help="the schedule in words first")
    nxt.add_argument("--json", action="store_true")
    nxt.set_defaults(handler=run_next)


def _overdue(job, now: datetime) -> str:
    """`` (overdue 3m20s)`` after an overdue next run, else nothing."""
    from ..ops.overview import overdue

    late = overdue(job, now)
    return f" ({late})" if late else ""


def _as_json(job, now: datetime) -> dict:
    """The job's fields, and ``overdue``: its ``next_run`` passed with no instance firing it."""
    from ..scheduler.jobs import overdue_by

    return {**to_jsonable(job), "overdue": overdue_by(job, now) is not None}


def _print_jobs(jobs, now: datetime) -> None:
    print_table(
        [
            [
                j.id,
                j.name,
                j.pipeline,
                j.cron_expr,
                j.timezone,
                j.queue,
                "yes" if j.enabled else "no",
                short_time(j.next_run) + _overdue(j, now),
                short_time(j.last_run),
                j.last_result or "-",
            ]
            for j in jobs
        ],
        ["ID", "NAME", "PIPELINE", "CRON", "TZ", "QUEUE", "ENABLED", "NEXT RUN", "LAST RUN", "LAST RESULT"],
    )


def _emit(ctx: Context, job, args, *, schedule: bool = False) -> int:
    """The job, field by field (``--json``: an object); ``schedule``: its schedule in words and
    its next three fires in its zone too (text only), and on stderr a warning when its
    expression looks written with the seconds first."""
    from ..scheduler import jobs as core

    now = ctx.backend.database_now()
    preview = core.next_fires(job.cron_expr, job.timezone, start=now, n=3) if schedule else None
    if preview is not None and preview.warning:
        print(f"warning: {printable(preview.warning)}", file=sys.stderr)
    if args.json:
        print_json(_as_json(job, now))
        return 0
    for key, value in to_jsonable(job).items():
        text = printable(value) if value is not None else "-"
        print(f"{key:22} {text}{_overdue(job, now) if key == 'next_run' else ''}")
    if preview is not None:
        print(f"{'schedule':22} {preview.explain} ({preview.timezone})")
        label = "next fires" if job.enabled else "next fires if enabled"
        for fire in preview.local():
            print(f"{label:22} {fire.isoformat()}")
            label = ""
    return 0


def run_list(ctx: Context, args) -> int:
    jobs = ctx.backend.list_jobs()
    now = ctx.backend.database_now()
    if args.json:
        print_json([_as_json(j, now) for j in jobs])
    else:
        _print_jobs(jobs, now)
    return 0


def run_add(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    options = _options(args)
    options.setdefault("misfire_grace_seconds", ctx.settings.scheduler.misfire_grace)
    job = core.create_job(
        ctx.backend,
        name=args.name,
        pipeline=args.pipeline,
        cron_expr=args.cron,
        timezone=args.tz or ctx.settings.scheduler.timezone,
        job_id=args.id,
        enabled=not args.disabled,
        **options,
    )
    return _emit(ctx, job, args, schedule=True)


def run_edit(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    changes = _options(args)
    for arg, field in (("name", "name"), ("pipeline", "pipeline"), ("cron", "cron_expr"), ("tz", "timezone")):
        if getattr(args, arg) is not None:
            changes[field] = getattr(args, arg)
    if not changes:
        raise BadInput("jobs edit: nothing to change (give --name, --cron, --tz, ...)")
    return _emit(ctx, core.update_job(ctx.backend, args.id, **changes), args, schedule=True)


def run_show(ctx: Context, args) -> int:
    return _emit(ctx, ctx.backend.get_job(args.id), args)


def run_enable(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    return _emit(ctx, core.enable_job(ctx.backend, args.id), args)


def run_disable(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    return _emit(ctx, core.disable_job(ctx.backend, args.id), args)


def run_delete(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    gone = core.delete_job(ctx.backend, ctx.settings, args.id)
    if gone.log_files_left:
        print(
            f"warning: {core.count(len(gone.log_files_left), 'log file')} not deleted, the first: "
            f"{printable(gone.log_files_left[0])}",
            file=sys.stderr,
        )
    if args.json:
        print_json(gone.as_dict())
    else:
        print(printable(gone.summary()))
    return 0


def run_run(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    request = core.run_job_now(ctx.backend, args.id)
    if not args.wait:
        if args.json:
            print_json({"queued": request.id, "execution_id": request.execution_id, "job_id": request.job_id})
        else:
            print(f"queued run of job {args.id}: execution {request.execution_id}")
        return 0
    seen: set[str] = set()

    def progress(record) -> None:
        if args.json:
            return
        for step in record.steps or []:
            key = f"{step.get('step_name')}:{step.get('status')}"
            if step.get("status") not in ("running", "queued") and key not in seen:
                seen.add(key)
                line = f"  {step.get('step_name')}: {step.get('status')} ({step.get('duration') or 0} ms)"
                print(printable(line + (f" {step.get('error')}" if step.get("error") else "")), flush=True)

    final = core.wait_for_run(ctx.backend, ctx.settings, request, on_progress=progress)
    if args.json:
        print_json(final)
    else:
        print(f"execution {final.id}: {final.status}" + (f": {printable(final.error)}" if final.error else ""))
    return 0 if final.status == "success" else 1


def _parse_instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    from ..persistence.types import as_utc

    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise BadInput(f"--from {shown(text)} is not an ISO-8601 time (e.g. 2026-03-08T01:00:00Z)") from None
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the calendar starts, in UTC
        raise BadInput(f"--from {shown(text)} is outside the years 1 to 9999 in UTC") from None


def run_next(ctx: Context, args) -> int:
    from ..scheduler import jobs as core

    if (args.id is None) == (args.cron is None):
        raise BadInput("jobs next: give a job ID or --cron EXPR (not both)")
    if args.id is not None:
        job = ctx.backend.get_job(args.id)
        expr, tz = job.cron_expr, args.tz or job.timezone
    else:
        expr, tz = args.cron, args.tz or ctx.settings.scheduler.timezone
    result = core.next_fires(expr, tz, start=_parse_instant(args.start), n=args.n)
    if result.warning:
        print(f"warning: {printable(result.warning)}", file=sys.stderr)
    data = result.as_dict()
    if args.explain:
        data["explain"] = result.explain
    if args.json:
        print_json(data)
    else:
        if args.explain:
            print(data["explain"])
        for utc, local in zip(data["fires"], data["fires_local"], strict=True):
            print(f"{local}   ({utc})")
    return 0
