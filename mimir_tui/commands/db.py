"""``mimir-tui db stats|check|vacuum|analyze [--json]``: the database's storage figures, its
integrity checks, and its maintenance (the core is :mod:`mimir_tui.ops.maintenance`)."""

from __future__ import annotations

import argparse
import sys

from ..errors import DatabaseCorrupt
from ..inputs import printable
from . import Context, print_json, print_table

NAME = "db"
HELP = "the database: stats, check (exit 1 on a problem), vacuum, analyze"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text, handler in (
        ("stats", "sizes, pages and free pages, rows per table, index sizes", run_stats),
        ("check", "run the integrity checks; exit 1 naming each problem found", run_check),
        ("vacuum", "reclaim free space (VACUUM / OPTIMIZE TABLE) and refresh statistics", run_maintain),
        ("analyze", "refresh the query planner's statistics", run_maintain),
    ):
        a = actions.add_parser(action, parents=[common], help=text)
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(handler=handler)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop returns


def run_stats(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.maintenance import database_stats

    report = database_stats(ctx.backend)
    if args.json:
        print_json(report)
        return 0
    print(f"{'database':12} {printable(report['database'])} ({report['backend']})")
    print(f"{'size':12} {human_bytes(report['size_bytes'])} ({report['size_bytes']} bytes)")
    if "wal_bytes" in report:
        print(f"{'wal':12} {human_bytes(report['wal_bytes'])}")
    print(f"{'page size':12} {report['page_size']}")
    print(f"{'pages':12} {report['pages']}")
    free = report["free_pages"]
    free_text = "- (PostgreSQL keeps free space in its pages: see dead rows)" if free is None else str(free)
    print(
        f"{'free pages':12} {free_text}" + (f" ({human_bytes(report['free_bytes'])})" if report["free_bytes"] else "")
    )
    if "dead_rows" in report:
        print(f"{'dead rows':12} {report['dead_rows']}")
    print()
    print_table(
        [[t["name"], t["rows"], human_bytes(t["bytes"]), human_bytes(t["index_bytes"])] for t in report["tables"]],
        ["TABLE", "ROWS", "SIZE", "INDEXES"],
    )
    print()
    if report["index_sizes"] != "ok":
        print(f"index sizes: {report['index_sizes']}")
    else:
        print_table(
            [[i["name"], i["table"], human_bytes(i["bytes"])] for i in report["indexes"]], ["INDEX", "TABLE", "SIZE"]
        )
    return 0


def run_check(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.maintenance import check_database

    try:
        report = check_database(ctx.backend)
    except DatabaseCorrupt as exc:  # too damaged even to open: that is the check's answer
        report = {"operation": "check", "ok": False, "checks": ["open"], "problems": [str(exc)]}
    if args.json:
        print_json(report)
    else:
        print(f"checks   {', '.join(report['checks'])}")
        count = len(report["problems"])
        print(f"result   {'ok' if report['ok'] else f'{count} problem(s)'}")
        for problem in report["problems"]:
            print(f"  {printable(problem)}")
    if report["problems"]:
        more = f" (and {len(report['problems']) - 1} more)" if len(report["problems"]) > 1 else ""
        print(f"mimir-tui: error: {printable(report['problems'][0])}{more}", file=sys.stderr)
        return 1
    return 0


def run_maintain(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.maintenance import analyze, vacuum

    report = (vacuum if args.action == "vacuum" else analyze)(ctx.backend)
    if args.json:
        print_json(report)
        return 0
    print(f"{report['operation']} done in {report['seconds']:.1f} s")
    print(f"size before  {human_bytes(report['size_before'])} ({report['size_before']} bytes)")
    print(f"size after   {human_bytes(report['size_after'])} ({report['size_after']} bytes)")
    print(f"reclaimed    {human_bytes(report['reclaimed_bytes'])} ({report['reclaimed_bytes']} bytes)")
    return 0
