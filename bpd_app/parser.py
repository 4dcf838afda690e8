"""The `bpd` command line as argparse sees it: the rooms' commands, the one-line error on a bad flag,
and a check of a command line without running it (the experiment runner checks a plan's cells so)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from bpd import __version__
from bpd.config import add_arguments
from bpd.errors import BpdError

ROOMS = ("training.cli", "export.cli", "firmware_host.cli", "hil.cli")
# subcommand -> (dotted config class, handler, help, *argument tweaks)
Commands = dict[str, tuple[str, Callable, str, *tuple[Callable[[argparse.ArgumentParser], None], ...]]]
# what each group of two-word commands is about, after its subcommands' names in `bpd --help`
GROUPS = {
    "teacher": "the policy to distill",
    "baseline": "students by the rules of the policy-distillation literature",
    "multitask": "one student for several tasks",
    "student": "a trained run's students, at other thresholds or chosen again",
    "firmware": "Cortex-M images of an export",
    "rig": "a rig simulated, in QEMU, or commissioned",
    "classical": "a classical controller (swing-up + LQR) as an export",
    "hil": "hardware-in-the-loop trials",
    "experiment": "grids of runs (plans) and their tables",
}
EPILOG = ("Each command's options and defaults: bpd COMMAND --help (in a group: bpd teacher train --help). Bad input "
          "ends with one line `bpd: error: ...` and a non-zero exit; `bpd: internal error` (exit 70) is a bug: "
          "BPD_DEBUG=1 shows its traceback. The user's guide is README.md.")


def room_commands() -> Commands:
    """Each room's COMMANDS. A room that fails to import is a fault of the installation: reported in
    one line, never a command that silently vanishes."""
    import importlib

    cmds: dict = {}
    for module in ROOMS:
        try:
            cmds.update(importlib.import_module(module).COMMANDS)
        except ImportError as e:
            raise BpdError(f"the {module.split('.')[0]} commands cannot load ({e}); reinstall bpd "
                           "(make venv)") from None
    return cmds


class Parser(argparse.ArgumentParser):
    """argparse with bad flags reported as one line, like every other bad input (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self._fail(self.prog, message)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but a flag no parser knew is named with its subcommand's help (argparse leaves it to
        the top parser, whose help would be `bpd --help`)."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            argv = list(sys.argv[1:] if args is None else args)
            words = [w for w in (getattr(ns, "command", None), getattr(ns, "subcommand", None)) if w]
            before = argv[:argv.index(words[0])] if words and words[0] in argv else []
            if before:  # bpd's own flags come before the command, and none of them takes a run there
                self._fail(self.prog, f"unrecognized arguments: {' '.join(before)}")
            self._fail(" ".join([self.prog, *words]), f"unrecognized arguments: {' '.join(extra)}")
        return ns

    def _fail(self, prog: str, message: str) -> NoReturn:
        message = " ".join(message.split())
        command = prog.removeprefix("bpd").strip()  # named as every other error names it: bpd: error: export: ...
        self.exit(2, f"bpd: error: {command + ': ' if command else ''}{message} (see {prog} --help)\n")


class _CheckParser(Parser):
    """The same parser, its complaint raised instead of printed (check_command)."""

    def _fail(self, prog: str, message: str) -> NoReturn:
        raise BpdError(" ".join(message.split()))


def build_parser(commands: Commands, argv: list[str] | None = None,
                 parser_class: type[Parser] = Parser) -> argparse.ArgumentParser:
    """The parser of every subcommand. Only the subcommand argv names gets its flags (importing its
    configuration's module, which may load torch); the others are listed with their help, so that
    `bpd --help` or `bpd rig sim` starts without loading what other commands need. argv None: all."""
    import importlib

    parser = parser_class(prog="bpd", description="Bayesian Policy Distillation: from a teacher "
                                     "policy to a sparse controller on a microcontroller.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"bpd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    members: dict[str, list[str]] = {}
    for name in commands:
        if len(words := name.split()) == 2:
            members.setdefault(words[0], []).append(words[1])
    for name, (cls_path, handler, help_, *extra) in commands.items():
        words = name.split()
        target = sub
        if len(words) == 2:
            if words[0] not in groups:
                about = ", ".join(members[words[0]]) + (f": {GROUPS[words[0]]}" if words[0] in GROUPS else "")
                g = sub.add_parser(words[0], help=about, description=about)
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            target = groups[words[0]]
        p = target.add_parser(words[-1], help=help_, description=help_)
        if argv is not None and argv[:len(words)] != words:
            continue  # not the command asked for: argparse never parses its flags
        mod_name, cls_name = cls_path.split(":")
        add_arguments(p, getattr(importlib.import_module(mod_name), cls_name))
        for tweak in extra:  # extra flags a room adds by hand (aliases)
            tweak(p)
        p.set_defaults(handler=handler)
    return parser


def check_command(argv: list[str], where: str) -> None:
    """Parse a command line of a room's command (distill, baseline train, ...) without running it: an
    unknown subcommand or option, a value of the wrong type or a non-finite number is a one-line
    BpdError naming `where`."""
    try:
        ns = build_parser(room_commands(), argv, _CheckParser).parse_args(argv)
    except BpdError as e:
        raise BpdError(f"{where}: bpd {' '.join(argv[:2])}: {e}") from None
    for k, v in vars(ns).items():
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, float) and not math.isfinite(x):
                raise BpdError(f"{where}: --{k.replace('_', '-')} must be a finite number (got {x})")
