"""``mimir-tui vectors collections | show NAME | get NAME ID | query NAME TEXT | create NAME |
add NAME FILE... | delete NAME [IDS...]``, each with ``--json``.

Exit 0 done, 1 the store failed (unreachable server, an embedder without its model, vectors
turned off), 2 bad input (an unknown collection or id, a bad name, filter or file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..inputs import printable
from . import Context, print_json, print_table

NAME = "vectors"
HELP = "the vector store: collections, documents, semantic queries"

EMBEDDERS = ("offline", "openai", "chroma")  # mimir_tui.vectors.EMBEDDERS, without importing it here
JSON_LINES = (".jsonl", ".ndjson")


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, handler) -> argparse.ArgumentParser:
        a = actions.add_parser(name, parents=[common], help=help)
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(handler=handler)
        return a

    action("collections", "collections with their counts, dimensions and embedders", run_collections)

    show = action("show", "a page of a collection's documents", run_show)
    show.add_argument("name", metavar="NAME")
    show.add_argument("--offset", type=int, default=0, metavar="N", help="skip N documents (default 0)")
    show.add_argument("--limit", type=int, default=20, metavar="N", help="at most N documents (default 20)")
    show.add_argument("--where", metavar="JSON", default=None, help='metadata filter, e.g. \'{"subject": "physics"}\'')
    show.add_argument("--contains", metavar="TEXT", default=None, help="only documents whose text contains TEXT")

    get = action("get", "one document, whole", run_get)
    get.add_argument("name", metavar="NAME")
    get.add_argument("id", metavar="ID")

    query = action("query", "the documents nearest to a text, with their distances", run_query)
    query.add_argument("name", metavar="NAME")
    query.add_argument("text", metavar="TEXT")
    query.add_argument("-n", type=int, default=5, metavar="N", help="how many results (default 5)")
    query.add_argument("--where", metavar="JSON", default=None, help="metadata filter (chromadb's where)")

    create = action("create", "a new collection", run_create)
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--embedder", choices=EMBEDDERS, default=None, help="default: vectors.embedding of the config (offline)"
    )

    add = action("add", "add files: text and Markdown (one document each), JSON lines (one a line)", run_add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("files", metavar="FILE", nargs="+")

    delete = action("delete", "delete documents by id, or the whole collection when no id is given", run_delete)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("ids", metavar="ID", nargs="*")


def _store(ctx: Context):
    from ..vectors import open_store

    return open_store(ctx.settings)


def _where(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"--where: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise BadInput('--where: a JSON object, e.g. \'{"subject": "physics"}\'')
    return value


def excerpt(text: str | None, width: int = 60) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _meta(metadata: dict[str, Any], width: int = 50) -> str:
    text = ", ".join(f"{k}={v}" for k, v in metadata.items())
    return excerpt(text, width) if text else "-"


def run_collections(ctx: Context, args: argparse.Namespace) -> int:
    rows = _store(ctx).collections()
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no collections")
        return 0
    table = [[r["name"], r["count"], r["dimension"] or "-", r["embedder"], _meta(r["metadata"])] for r in rows]
    print_table(table, ["NAME", "DOCUMENTS", "DIMENSION", "EMBEDDER", "METADATA"])
    return 0


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    if args.offset < 0 or not 1 <= args.limit <= 10_000:
        raise BadInput(f"--offset must be >= 0 and --limit 1 to 10000 (got {args.offset}, {args.limit})")
    store = _store(ctx)
    where = _where(args.where)
    docs = store.page(args.name, offset=args.offset, limit=args.limit, where=where, contains=args.contains)
    total = store.count(args.name)
    if args.json:
        print_json({"collection": args.name, "total": total, "offset": args.offset, "documents": docs})
        return 0
    first = args.offset + 1 if docs else args.offset
    filtered = " (filtered)" if where or args.contains else ""
    print(f"{printable(args.name)}: documents {first}-{args.offset + len(docs)}{filtered} of {total}")
    if docs:
        print_table([[d.id, excerpt(d.text), _meta(d.metadata)] for d in docs], ["ID", "TEXT", "METADATA"])
    return 0


def run_get(ctx: Context, args: argparse.Namespace) -> int:
    doc = _store(ctx).get(args.name, args.id)
    if args.json:
        print_json(doc.as_dict())
        return 0
    print(f"id        {printable(doc.id)}")
    for key, value in doc.metadata.items():
        print(printable(f"metadata  {key}: {value}"))
    print()
    print(printable(doc.text or ""))
    return 0


def run_query(ctx: Context, args: argparse.Namespace) -> int:
    if not 1 <= args.n <= 10_000:
        raise BadInput(f"-n {args.n}: give a number from 1 to 10000")
    docs = _store(ctx).query(args.name, args.text, n=args.n, where=_where(args.where))
    if args.json:
        print_json([d.as_dict() for d in docs])
        return 0
    if not docs:
        print("no results")
        return 0
    rows = [[f"{d.distance:.4f}", d.id, excerpt(d.text), _meta(d.metadata, 40)] for d in docs]
    print_table(rows, ["DISTANCE", "ID", "TEXT", "METADATA"])
    return 0


def run_create(ctx: Context, args: argparse.Namespace) -> int:
    info = _store(ctx).create(args.name, embedder=args.embedder)
    if args.json:
        print_json(info)
    else:
        print(printable(f"created collection {info['name']} (embedder {info['embedder']})"))
    return 0


def read_documents(path: Path) -> list[dict[str, Any]]:
    """A file as documents: JSON lines give one each (``{"id", "text"|"content", "metadata"}``
    or a string; the id defaults to ``NAME:LINE``), any other file is one document whose id
    is its name."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    source = str(path.resolve())
    if path.suffix.lower() not in JSON_LINES:
        kind = "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
        return [{"id": path.name, "text": text, "metadata": {"source": source, "kind": kind}}]
    docs: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: not JSON ({exc.msg})") from None
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise BadInput(f"{path}:{number}: a JSON object or string, not {type(item).__name__}")
        given = item.get("metadata")
        meta: dict[str, Any] = given if isinstance(given, dict) else {}
        docs.append(
            {
                "id": str(item.get("id") or f"{path.name}:{number}"),
                "text": next((item[k] for k in ("text", "content", "document") if k in item), None),
                "metadata": {"source": source, "line": number, **meta},
            }
        )
    return docs


def run_add(ctx: Context, args: argparse.Namespace) -> int:
    docs = [doc for name in args.files for doc in read_documents(Path(name))]
    store = _store(ctx)
    store.info(args.name)  # an unknown collection before any embedding
    count = store.add(args.name, docs)
    total = store.count(args.name)
    if args.json:
        print_json({"collection": args.name, "added": count, "total": total})
    else:
        print(printable(f"added {count} document(s) to {args.name} ({total} in all)"))
    return 0


def run_delete(ctx: Context, args: argparse.Namespace) -> int:
    store = _store(ctx)
    if not args.ids:
        store.drop(args.name)
        if args.json:
            print_json({"collection": args.name, "deleted": "collection"})
        else:
            print(printable(f"deleted collection {args.name}"))
        return 0
    deleted = store.delete(args.name, args.ids)
    missing = len(set(args.ids)) - deleted
    if args.json:
        print_json({"collection": args.name, "deleted": deleted, "not_found": missing})
    else:
        note = f" ({missing} id(s) not found)" if missing else ""
        print(printable(f"deleted {deleted} document(s) from {args.name}{note}"))
    return 0
