"""``mimir-tui migrate --to URL [--force] [--batch N] [--json]``: copy every Mimir table from the
configured database to another (any backend), then verify counts and checksums."""

from __future__ import annotations

import argparse
import sys

from ..errors import BadInput, PersistenceError
from ..inputs import printable
from . import Context, print_json, print_table

NAME = "migrate"
HELP = "copy jobs, pipelines, executions, workers and queued runs to another database, then verify"


def _batch(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"--batch {value!r}: give a whole number from 1 to 100000")
    return n


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP, description=HELP)
    p.add_argument(
        "--to",
        metavar="URL",
        required=True,
        help="the target: sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB or mysql://USER:PASSWORD@HOST/DB",
    )
    p.add_argument("--force", action="store_true", help="empty the target's Mimir tables first if they hold rows")
    p.add_argument("--batch", metavar="N", type=_batch, default=1000, help="rows per transaction (default 1000)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.migrate import migrate, same_database, target_settings
    from ..persistence import open_backend
    from ..persistence.engine import display_url
    from .progress import ProgressReport

    source_settings = ctx.settings.persistence
    target_cfg = target_settings(args.to, source_settings)
    if same_database(source_settings, target_cfg):
        raise BadInput(f"--to {display_url(target_cfg)!r} is the configured database itself")
    source = ctx.backend
    try:
        target = open_backend(target_cfg)
    except PersistenceError as exc:
        raise PersistenceError(f"target: {exc}") from None
    progress = ProgressReport(sys.stderr, NAME)
    try:
        report = migrate(
            source, target, force=args.force, batch=args.batch, progress=progress.report, on_start=progress.start
        )
    finally:
        progress.finish()
        target.close()
    if args.json:
        print_json(report.as_dict())
    else:
        print(printable(f"migrated {report.source} -> {report.target}"))
        if report.cleared:
            print(f"emptied first: {sum(report.cleared.values())} rows (--force)")
        rows = [
            [t["table"], t["rows"], t["target_rows"], t["sha256"][:16], "ok" if t["match"] else "DIFFERS"]
            for t in report.as_dict()["tables"]
        ]
        print_table(rows, ["table", "rows", "target rows", "sha256", "check"])
        if report.verified:
            print("verified: every table's row count and checksum are equal in the target")
    if not report.verified:
        print(
            printable(f"mimir-tui: error: the target differs from the source: {'; '.join(report.problems)}"),
            file=sys.stderr,
        )
        return 1
    return 0
