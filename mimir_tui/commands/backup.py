"""``mimir-tui backup create [--encrypt] | list [--json] | verify ARCHIVE | restore ARCHIVE
[--yes] [--force]``.

Exit 0 done; 1 the backup, the verification or the restore failed (a truncated, changed or
wrongly-encrypted archive, a live instance without ``--force``, a declined confirmation);
2 bad input (no such archive, no passphrase, a bad ``backup_path``).
"""

from __future__ import annotations

import argparse
import sys

from ..inputs import printable
from . import Context, print_json, print_table

NAME = "backup"
HELP = "online backups: create, list, verify, restore"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", parents=[common], help="write a verified archive into backup_path")
    create.add_argument("--encrypt", action="store_true", help="encrypt it (passphrase: MIMIR_BACKUP_PASSPHRASE)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", parents=[common], help="the archives: time, size, counts, verification")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run_list)

    verify = actions.add_parser("verify", parents=[common], help="check an archive's checksums and database copy")
    verify.add_argument("archive", metavar="ARCHIVE", help="a path, or a name in backup_path")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(handler=run_verify)

    restore = actions.add_parser("restore", parents=[common], help="replace the database with an archive's")
    restore.add_argument("archive", metavar="ARCHIVE", help="a path, or a name in backup_path")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument("--force", action="store_true", help="even while an instance is live")
    restore.add_argument("--json", action="store_true", help="print JSON")
    restore.set_defaults(handler=run_restore)


def _counts(counts: dict) -> str:
    return ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "-"


def run_create(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.backup import create_backup
    from ..ops.overview import size

    settings = ctx.settings
    result = create_backup(settings, ctx.backend, encrypt=True if args.encrypt else None)
    if args.json:
        print_json(result.as_dict())
    else:
        state = "verified" if result.verified else f"VERIFICATION FAILED: {result.verify_error}"
        print(printable(f"{result.path}  {size(result.size_bytes)}  {result.seconds:.1f} s  {state}"))
        print(f"rows: {_counts(result.manifest.get('row_counts', {}))}")
        for old in result.rotated:
            print(printable(f"rotated out: {old.name}"))
    if not result.verified:
        print(f"mimir-tui: error: {printable(result.verify_error or 'verification failed')}", file=sys.stderr)
        return 1
    return 0


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..ops.archive import listing
    from ..ops.overview import size

    rows = listing(Path(ctx.settings.persistence.backup_path))
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no archives in {printable(ctx.settings.persistence.backup_path)}")
        _print_safety_copies(ctx)
        return 0
    table = []
    for row in rows:
        verified = {True: "ok", False: "FAILED", None: "not yet"}[row["verified"]]
        table.append(
            [
                row["archive"],
                str(row["created"])[:19].replace("T", " ") + "Z",
                size(row["size_bytes"]),
                _counts(row["row_counts"]),
                verified,
            ]
        )
    print_table(table, ["ARCHIVE", "CREATED", "SIZE", "ROWS", "VERIFIED"])
    _print_safety_copies(ctx)
    return 0


def _print_safety_copies(ctx: Context) -> None:
    """What restores kept of the stores they replaced: never rotated, so said here."""
    from ..ops.overview import size
    from ..ops.restore import safety_copies

    copies = safety_copies(ctx.settings)
    if copies:
        print(f"\nsafety copies that restores kept of what they replaced ({len(copies)}; delete them when done):")
        for path, n in copies:
            print(printable(f"  {path}  {size(n)}"))


def run_verify(ctx: Context, args: argparse.Namespace) -> int:
    from ..ops.backup import verify_backup

    verified = verify_backup(ctx.settings, args.archive)
    if args.json:
        print_json(verified.as_dict())
    else:
        print(printable(f"{verified.archive.name}: ok ({len(verified.manifest.get('members', {}))} members checked)"))
        print(f"rows: {_counts(verified.manifest.get('row_counts', {}))}")
    return 0


def run_restore(ctx: Context, args: argparse.Namespace) -> int:
    from ..errors import BadInput
    from ..ops.restore import RestorePlan, restore_backup

    def confirm(plan: RestorePlan) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise BadInput(f"restore {plan.archive.name}: confirmation needed; pass --yes (nothing was changed)")
        print(printable(f"This will {plan.describe()}."), file=sys.stderr)
        answer = input("Restore? [y/N] ").strip().lower()
        return answer in ("y", "yes")

    result = restore_backup(ctx.settings, args.archive, force=args.force, confirm=confirm)
    if args.json:
        print_json(result.as_dict())
    else:
        print(printable(f"restored {result.archive.name} into {result.target}"))
        print(f"rows: {_counts(result.row_counts)}")
        print(printable(f"the previous database is kept at {result.safety_copy}"))
        if result.vectors_safety_copy:
            print(printable(f"vector store restored; the previous one is kept at {result.vectors_safety_copy}"))
        if result.files:
            print(printable(f"the archive's config and pipeline files (not applied) are in {result.files}"))
    return 0
