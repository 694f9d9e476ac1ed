"""``mimir-tui health [--json]``: exit 0 healthy, 1 not."""

from __future__ import annotations

import argparse
import sys

from ..errors import BadInput, MimirError
from ..inputs import printable
from . import Context, print_json

NAME = "health"
HELP = "check the database (and show the vector store); exit 0 healthy, 1 not"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings  # a bad config is exit 2, not "unhealthy"
    from ..health import check_health

    try:
        report = check_health(ctx.backend, stale_after=settings.scheduler.stale_after)
    except BadInput:  # e.g. a malformed connection_string: bad config, exit 2
        raise
    except MimirError as exc:
        report = {"status": "unhealthy", "backend": settings.persistence.backend, "error": str(exc)}
    from ..vectors.status import status_line, vector_status

    report["vectors"] = vector_status(settings)  # shown; its absence does not make Mimir unhealthy
    if args.json:
        print_json(report)
    else:
        for key in ("status", "backend", "database", "latency_ms", "integrity", "size_bytes", "schema_version"):
            if key in report:
                print(f"{key:15} {printable(report[key])}")
        for table, count in report.get("row_counts", {}).items():
            print(f"{'rows.' + table:15} {count}")
        if "instances" in report:
            print(f"{'instances':15} {len(report['instances'])} live")
            for w in report["instances"]:
                load = f"{w['runs']}/{w['run_slots']} run slots taken" if w["run_slots"] is not None else "runs inline"
                served = f", queues {','.join(w['queues'])}" if w["queues"] else ""
                print(printable(f"  {w['id']}  {w['status']}, {load}{served}, last beat {w['heartbeat_age_s']} s ago"))
        for name, q in report.get("queues", {}).items():
            idle = (q["jobs"] or q["queued"]) and not q["instances"]
            note = "  (no running instance serves it: nothing runs these)" if idle else ""
            print(
                f"{'queue.' + name:15} {q['jobs']} enabled job(s), {q['queued']} queued run(s), "
                f"{q['instances']} instance(s){note}"
            )
        print(f"{'vectors':15} {printable(status_line(report['vectors']))}")
    if "error" in report:  # with --json too: the one line on stderr that names the problem
        print(f"mimir-tui: error: {printable(report['error'])}", file=sys.stderr)
    return 0 if report["status"] == "healthy" else 1
