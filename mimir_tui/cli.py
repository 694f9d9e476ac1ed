"""Entry point ``mimir-tui``: the dashboard, ``--headless``, and the subcommands.

The command line is a contract (DESIGN.md): exit 0 done, 1 the operation failed or the system
is unhealthy, 2 bad input, with one line on stderr that names what is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .commands import COMMAND_MODULES, Context
from .errors import MimirError
from .inputs import printable

PROG = "mimir-tui"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit 2 with one line (argparse's own code is 2 too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number from 1 to 65535: {text!r}")
    return port


def common_options() -> argparse.ArgumentParser:
    """Options that may stand before or after the subcommand (``--config`` anywhere)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file to read")
    return parent


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the command line ``argv``, only the parsers it can reach.

    Building the parser of every action of every command is most of what ``--help`` costs
    beyond starting Python (argparse looks up translations for each parser). A command is
    chosen by a word of the command line equal to its name, so a command whose name is not
    in ``argv`` cannot be reached: it gets a stand-in with its name and help only, which is all
    the top-level help and the "invalid choice" error show of it.
    """
    common = common_options()
    parser = _Parser(prog=PROG, description="Mimir: data and AI pipelines on cron schedules.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--config", metavar="PATH", default=None, help="config file to read")
    parser.add_argument("--theme", metavar="NAME", default=None, help="dashboard theme")
    parser.add_argument("--demo", action="store_true", help="seed sample jobs, pipelines and runs first")
    parser.add_argument("--headless", action="store_true", help="run as a service, without the dashboard")
    parser.add_argument("--serve", action="store_true", help="serve the dashboard to a browser (textual-serve)")
    parser.add_argument("--host", default=None, help="--serve: address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=None, help="--serve: port to listen on (default 8000)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    words = None if argv is None else set(argv)
    for module in COMMAND_MODULES:
        if words is None or module.NAME in words:
            module.register(sub, common)
        else:
            sub.add_parser(module.NAME, help=module.HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.serve and (args.host is not None or args.port is not None):
        parser.error("--host and --port go with --serve")
    if args.serve and (args.headless or args.command):
        parser.error("--serve serves the dashboard: not with --headless or a command")
    ctx = Context(config_path=getattr(args, "config", None))
    handler: Callable[[Context, argparse.Namespace], int] | None = getattr(args, "handler", None)
    try:
        if handler is not None:
            return handler(ctx, args)
        if args.headless:
            from .service import run_headless

            return run_headless(ctx.settings)
        if args.serve:
            from .tui.serve import DEFAULT_HOST, DEFAULT_PORT, serve_dashboard

            if args.demo:  # once, here: the dashboards the browsers open reuse it
                from .demo import start_demo

                start_demo(ctx.backend)
                ctx.close()
            host = DEFAULT_HOST if args.host is None else args.host
            port = DEFAULT_PORT if args.port is None else args.port
            return serve_dashboard(ctx.settings, host=host, port=port, theme=args.theme)
        from .tui.app import run_dashboard

        return run_dashboard(ctx.settings, theme=args.theme, demo=args.demo)
    except MimirError as exc:  # one line: a newline or ESC in a name it quotes is escaped
        print(f"{PROG}: error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mimir-tui ... | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # a bug or an unforeseen failure: still one line, no traceback
        if os.environ.get("MIMIR_DEBUG"):
            raise
        from .secrets import mask_text

        text = printable(" ".join(str(exc).split()) or type(exc).__name__)
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {mask_text(text)} (MIMIR_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        ctx.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
