"""``mimir-tui retention apply [--days N] [--keep-last K] [--dry-run] [--json]``: delete
finished executions older than the policy's days, and their log files (the core is
:mod:`mimir_tui.ops.retention`)."""

from __future__ import annotations

import argparse

from ..inputs import printable
from . import Context, print_json, print_table, short_time
from .db import human_bytes

NAME = "retention"
HELP = "execution history retention: apply the policy (or --dry-run it)"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser(
        "apply",
        parents=[common],
        help="delete finished executions older than the policy's days, and their log files",
    )
    a.add_argument(
        "--days",
        metavar="N",
        type=int,
        default=None,
        help="older than N days (default persistence.retention_days; 0 keeps all)",
    )
    a.add_argument(
        "--keep-last",
        metavar="K",
        type=int,
        default=None,
        help="always keep each job's latest K runs (default persistence.retention_keep_last; 0: off)",
    )
    a.add_argument("--dry-run", action="store_true", help="say what would be deleted; change nothing")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(handler=run_apply)


def run_apply(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.retention import apply_retention, policy

    policy(ctx.settings, args.days, args.keep_last)  # bad numbers: exit 2 before the database opens
    report = apply_retention(ctx.backend, ctx.settings, days=args.days, keep_last=args.keep_last, dry_run=args.dry_run)
    if args.json:
        print_json(report)
        return 0
    if not report["days"]:
        print("retention is off (0 days): nothing deleted")
        return 0
    keep = f", keeping each job's latest {report['keep_last']}" if report["keep_last"] else ""
    print(f"policy       older than {report['days']} days (before {short_time(report['cutoff'])}){keep}")
    verb = "would delete" if report["dry_run"] else "deleted"
    print(
        f"{verb:12} {report['deleted']} execution(s), "
        f"{report['log_files']} log file(s), {human_bytes(report['log_bytes'])}"
    )
    if report["log_skipped"]:
        print(f"{'left alone':12} {report['log_skipped']} log path(s) that are not plain files in the log folder")
    if report["jobs"]:
        print()
        print_table(
            [
                [printable(j["job_id"] or "(no job)"), j["count"], short_time(j["oldest"]), short_time(j["newest"])]
                for j in report["jobs"]
            ],
            ["JOB", "RUNS", "OLDEST", "NEWEST"],
        )
    return 0
