"""``mimir-tui config show [--json]``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse

from . import Context, print_json

NAME = "config"
HELP = "show the effective configuration"


def register(sub, common) -> None:
    p = sub.add_parser(NAME, parents=[common], help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", parents=[common], help="print the effective configuration")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    import yaml

    settings = ctx.settings
    data = settings.masked()
    sources = dict(sorted(settings.sources.items()))
    config_file = str(settings.config_path) if settings.config_path else None
    if args.json:
        no_effect = settings.without_effect()
        print_json({"config_file": config_file, "settings": data, "sources": sources, "no_effect": no_effect})
        return 0
    print(f"# config file: {config_file or 'none (defaults)'}")
    notice = settings.no_effect_notice()
    if notice:
        print(f"# warning: {notice}")
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    for line in text.splitlines():
        print(line)
    if sources:
        print("# values not at their default, and where they came from:")
        for key, source in sources.items():
            print(f"#   {key}: {source}")
    return 0
