"""``mimir-tui pipelines list [--json] | show NAME [--json] | validate FILE... | import PATH [--json]
| run NAME [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..inputs import printable
from . import Context, print_json, print_table, to_jsonable

NAME = "pipelines"
HELP = "list, show, validate, import and run pipelines"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", parents=[common], help="pipelines in the database, with load errors")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=run_list)

    show = actions.add_parser("show", parents=[common], help="one pipeline's definition")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)

    val = actions.add_parser(
        "validate", parents=[common], help="check pipeline files; exit 2 on any error (warnings: exit 0)"
    )
    val.add_argument("files", nargs="+", metavar="FILE", help="YAML files or directories")
    val.add_argument("--json", action="store_true", help="print a JSON report")
    val.set_defaults(handler=run_validate)

    imp = actions.add_parser("import", parents=[common], help="load a YAML file or a directory into the database")
    imp.add_argument("path", metavar="PATH")
    imp.add_argument("--json", action="store_true", help="print JSON")
    imp.set_defaults(handler=run_import)

    run = actions.add_parser("run", parents=[common], help="run a pipeline now; exit 0 on success, 1 on failure")
    run.add_argument("name", metavar="NAME", help="a pipeline name, or a path to a YAML file")
    run.add_argument("--pipeline", metavar="NAME", default=None, help="which pipeline of a file holding several")
    run.add_argument("--timeout", type=float, metavar="SECONDS", default=None, help="stop the run after this long")
    run.add_argument("--job", metavar="ID", default=None, help="record the run under this job")
    run.add_argument("--json", action="store_true", help="print the final record as JSON")
    run.set_defaults(handler=run_run)


def _registry(ctx: Context):
    from ..pipelines.registry import default_registry

    return default_registry(ctx.settings)


def pipeline_json(row: Any) -> dict[str, Any]:
    data = to_jsonable(row)
    try:
        data["config"] = json.loads(row.config) if row.config else None
    except ValueError:
        pass
    return data


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.backend.list_pipelines()
    if args.json:
        print_json([pipeline_json(r) for r in rows])
        return 0
    if not rows:
        print("no pipelines (import some: mimir-tui pipelines import PATH)")
        return 0
    table = []
    for r in rows:
        try:
            steps = len(json.loads(r.config).get("steps", []))
        except (ValueError, AttributeError):
            steps = 0
        state = "error: " + r.load_error.splitlines()[0] if r.load_error else "ok"
        table.append([r.name, "yes" if r.enabled else "no", str(steps), r.source_path or "-", state])
    print_table(table, ["NAME", "ENABLED", "STEPS", "SOURCE", "STATUS"])
    return 0


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    row = ctx.backend.get_pipeline(args.name)
    if args.json:
        print_json(pipeline_json(row))
        return 0
    print(f"name         {printable(row.name)}")
    print(f"description  {printable(row.description or '', multiline=True)}")
    print(f"enabled      {'yes' if row.enabled else 'no'}")
    print(f"source       {printable(row.source_path or '-')}")
    print(f"updated      {to_jsonable(row.updated_at)}")
    if row.load_error:
        print("load error   (the last good version below is what runs)")
        for line in row.load_error.splitlines():
            print(f"  {printable(line)}")
    try:
        config = json.loads(row.config)
    except ValueError:
        config = None
    if config:
        import yaml

        print("definition:")
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
        for line in text.splitlines():
            print(f"  {printable(line)}")
    return 0


def run_validate(ctx: Context, args: argparse.Namespace) -> int:
    from ..pipelines.spec import validate_files

    reports = validate_files(args.files, _registry(ctx), ctx.settings.pipelines.max_file_bytes)
    if not reports:
        raise BadInput(f"no pipeline files (*.yaml, *.yml) in {', '.join(args.files)}")
    bad = False
    for report in reports:
        for issue in report.issues:
            print(printable(issue), file=sys.stderr)
            bad = True
        for warning in report.warnings:  # risks, not errors: the exit status stays 0
            print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(
            [
                {
                    "path": r.path,
                    "ok": r.ok,
                    "pipelines": [s.name for s in r.pipelines],
                    "errors": [i.to_dict() for i in r.issues],
                    "warnings": [w.to_dict() for w in r.warnings],
                }
                for r in reports
            ]
        )
    else:
        for report in reports:
            if report.ok:
                names = ", ".join(s.name for s in report.pipelines)
                print(printable(f"ok  {report.path}: {len(report.pipelines)} pipeline(s): {names}"))
    return 2 if bad else 0


def run_import(ctx: Context, args: argparse.Namespace) -> int:
    from ..pipelines.store import import_path

    result = import_path(ctx.backend, args.path, _registry(ctx), max_bytes=ctx.settings.pipelines.max_file_bytes)
    for issue in result.issues:
        print(printable(issue), file=sys.stderr)
    if args.json:
        print_json(result.to_dict())
    else:
        for label, names in (
            ("added", result.added),
            ("updated", result.updated),
            ("unchanged", result.unchanged),
            ("removed", result.removed),
        ):
            for name in names:
                print(f"{label:9}  {printable(name)}")
        if not (result.added or result.updated or result.unchanged or result.removed) and result.ok:
            print("nothing to import")
    return 0 if result.ok else 2


def _resolve(ctx: Context, args: argparse.Namespace, registry):
    from ..pipelines.spec import load_file

    ref = args.name
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml") or (path.exists() and path.is_file()):
        if not path.is_file():
            raise BadInput(f"{ref}: no such file")
        specs = load_file(path, registry, ctx.settings.pipelines.max_file_bytes)
        if args.pipeline:
            chosen = [s for s in specs if s.name == args.pipeline]
            if not chosen:
                names = ", ".join(repr(s.name) for s in specs)
                raise BadInput(f"{ref}: no pipeline named {args.pipeline!r} (it has {names})")
            return chosen[0]
        if len(specs) != 1:
            names = ", ".join(repr(s.name) for s in specs)
            raise BadInput(f"{ref}: holds {len(specs)} pipelines ({names}); choose one with --pipeline NAME")
        return specs[0]
    from ..pipelines.store import get_spec

    return get_spec(ctx.backend, ref)


def run_run(ctx: Context, args: argparse.Namespace) -> int:
    from ..scheduler.executor import run_pipeline_now

    registry = _registry(ctx)
    spec = _resolve(ctx, args, registry)
    out = sys.stderr if args.json else sys.stdout
    total = len(spec.steps)

    def on_step(step, record) -> None:
        if step.status == "running":
            return
        duration = step.duration if step.duration is not None else "-"
        # The step's number is its place in the record (a step that fails before it starts, on
        # a template error, is reported once: failed).
        line = f"step {len(record.steps or [])}/{total}  {step.step_name}  {step.status}  {duration} ms"
        if step.error:
            line += f"  {step.error}"
        print(printable(line), file=out, flush=True)

    # A stop signal (SIGHUP too) cancels the run: it ends recorded, and the command exits 1.
    finished = run_pipeline_now(
        ctx.backend,
        ctx.settings,
        spec,
        registry=registry,
        job_id=args.job,
        timeout=args.timeout,
        on_step=on_step,
        handle_signals=True,
    )
    record = finished.record
    if args.json:
        data = to_jsonable(record)
        data["log_path"] = str(finished.log_path)
        print_json(data)
    else:
        print(f"execution {record.id}: {record.status} in {record.duration} ms")
        if record.error:
            print(f"error: {printable(record.error, multiline=True)}")
        print(f"log: {finished.log_path}")
    return 0 if record.status == "success" else 1
