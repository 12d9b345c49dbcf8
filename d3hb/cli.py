"""The ``d3hb`` command: parse the words, pick a front end, run an action.

No logic lives here.  ``d3hb hot-backup query hbslave`` becomes the action
``hot-backup.query`` with ``Request(args=("hbslave",))``; the menus call the
very same action.  Exit status: 0 done, 1 failed, 2 wrong usage; every
message is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from d3hb import __version__
from d3hb.errors import D3hbError, UsageError
from d3hb.menu.registry import Context, Registry, Request, load_actions, parse_words
from d3hb.store.home import DEFAULT_SYSTEM, default_home

logger = logging.getLogger("d3hb")

# Sub-commands whose words follow D3's ``VERB arg key=value (options`` shape.
WORD_GROUPS = {"tcl": "tcl", "hot-backup": "hot-backup", "tape-socket": "tape-socket", "vault": "vault", "system": "system"}
# With no verb these open a menu.
MENU_OF = {"hot-backup": "hot-backup", "tape-socket": "tape-socket", "vault": "vault"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as everywhere else
        raise UsageError(message, f"see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="d3hb", description="Hot backup and tape-socket for a D3-style MultiValue database.")
    p.add_argument("--version", action="version", version=f"d3hb {__version__}")
    p.add_argument("--home", type=Path, help="directory holding the systems (env D3HB_HOME, default ~/.d3hb)")
    p.add_argument("--system", help=f"system to work on (env D3HB_SYSTEM, default {DEFAULT_SYSTEM})")
    p.add_argument("-y", "--yes", action="store_true", help="answer yes to confirmations (for scripts)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debugging detail to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("demo", help="the whole story on loopback: two systems, a master/slave pair, verification")
    for name, help_text in (
        ("system", "create | list | show | delete systems"),
        ("hot-backup", "hot backup servers; no verb: the Hot Backup Main Menu"),
        ("tape-socket", "tape-socket servers in D3's syntax; no command: the tape-socket menu"),
        ("vault", "saves and transaction tapes kept on another server; no verb: the Vault menu"),
    ):
        sp = sub.add_parser(name, help=help_text, prefix_chars="\0")
        sp.add_argument("words", nargs=argparse.REMAINDER)
    tcl = sub.add_parser("tcl", help="TCL commands; no verb: the interactive ':' prompt")
    tcl.add_argument("--account", default="dm", help="account to work in (default dm)")
    tcl.add_argument("--raw", action="store_true", help="item bodies as raw bytes on stdin/stdout")
    tcl.add_argument("words", nargs=argparse.REMAINDER)
    menu = sub.add_parser("menu", help="open a menu on the console, a plain line terminal, a serial port, or play a script")
    menu.add_argument("menu", nargs="?", default="hot-backup")
    how = menu.add_mutually_exclusive_group()
    how.add_argument("--line", action="store_true", help="plain line mode on stdin/stdout")
    how.add_argument("--serial", metavar="URL", help="line mode on a serial port (pyserial URL: /dev/ttyS0, loop://, socket://...)")
    how.add_argument("--script", metavar="FILE", help="play a menu script ('-' for stdin)")
    menu.add_argument("--baud", type=int, default=9600)
    menu.add_argument("--dry-run", action="store_true", help="with --script: show what would run")
    return p


def _confirm_tty(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} (Y/N) ")
    return answer.strip().lower() in ("y", "yes")


def _ask_tty(prompt: str, help_text: str) -> str | None:
    while sys.stdin.isatty():
        answer = input(f"{prompt} ").strip()
        if answer == "?":
            print(help_text)
            continue
        return None if answer.lower() == "q" else answer
    return None


def make_context(args: argparse.Namespace, server: str | None = None) -> Context:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()

    def out(line: str) -> None:
        print(line, flush=True)

    return Context(
        home=args.home or default_home(),
        system=args.system or os.environ.get("D3HB_SYSTEM") or DEFAULT_SYSTEM,
        account=getattr(args, "account", "dm"),
        server=server,
        out=out,
        stdin=sys.stdin.buffer,
        stdout=sys.stdout.buffer,
        confirm=(lambda q: True) if args.yes else _confirm_tty,
        ask=_ask_tty,
        interactive=interactive,
    )


def _run_menu(args: argparse.Namespace, registry: Registry, menu: str) -> int:
    factory = lambda server=None: make_context(args, server)  # noqa: E731
    if getattr(args, "script", None):
        from d3hb.ui import script

        source = sys.stdin.read() if args.script == "-" else Path(args.script)
        return script.run(source, factory, registry, dry_run=args.dry_run)
    if getattr(args, "serial", None):
        from d3hb.ui import serialio

        return serialio.run(args.serial, args.baud, menu, factory, registry)
    if getattr(args, "line", False) or not (sys.stdin.isatty() and sys.stdout.isatty()):
        from d3hb.ui import line

        return line.run(menu, factory, registry, sys.stdin, sys.stdout)
    from d3hb.ui import console

    return console.run(menu, factory, registry)


def dispatch(args: argparse.Namespace) -> int:
    registry = load_actions()
    if args.command == "demo":
        from d3hb.ops.demo import run_demo

        return run_demo(make_context(args))
    if args.command == "menu":
        return _run_menu(args, registry, args.menu)
    if args.command == "tcl" and not args.words:
        from d3hb.ui.tclprompt import run as tcl_prompt

        return tcl_prompt(make_context(args), registry)
    if args.command in MENU_OF and not args.words:
        return _run_menu(args, registry, MENU_OF[args.command])
    group = WORD_GROUPS[args.command]
    if not args.words:
        raise UsageError(f"{group} needs a command", f"see 'd3hb {group} help' or 'd3hb --help'")
    verb, rest = args.words[0].lower(), args.words[1:]
    if verb in ("help", "--help", "-h"):
        return _help(registry, group)
    ctx = make_context(args)
    if group == "tcl":
        request = parse_words(rest, fields=False)
        if args.raw:
            request = Request(request.args, {"raw": "yes"}, request.options)
    else:
        request = parse_words(rest)
    return registry.run(f"{group}.{verb}", ctx, request)


def _help(registry: Registry, group: str) -> int:
    for name in registry.names(group):
        a = registry.get(name)
        print(f"  {name.split('.', 1)[1]:<16} {a.usage:<28} {a.summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="d3hb: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        if args.command is None:
            build_parser().print_help()
            return 2
        return dispatch(args)
    except D3hbError as exc:
        print(f"d3hb: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("d3hb: interrupted; nothing half-done was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (d3hb ... | head): not an error worth a message.
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        crash = default_home() / "crash.log"
        try:
            crash.parent.mkdir(parents=True, exist_ok=True)
            with crash.open("a") as fh:
                traceback.print_exc(file=fh)
            where = f"details in {crash}"
        except OSError:
            where = "run with -v for details"
        print(f"d3hb: internal error ({type(exc).__name__}: {exc}); {where} — please report it", file=sys.stderr)
        return 1
