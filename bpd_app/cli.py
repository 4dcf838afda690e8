"""The `bpd` command: one entry point, a subcommand per stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from bpd import __version__
from bpd.config import add_arguments, from_namespace
from bpd.errors import BpdError


def _evaluate(ns):
    from bpd_app.evaluate import EvaluateConfig, run_evaluate
    cfg = from_namespace(EvaluateConfig, ns)
    r = run_evaluate(cfg)
    if cfg.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:>24}: {v}")


def _compress(ns):
    from bpd_app.compress import CompressConfig, markdown, run_compress
    from firmware_host.measure import policy_cost

    cfg = from_namespace(CompressConfig, ns)
    res = run_compress(cfg, policy_cost)
    print(markdown(res))
    print(f"student: {cfg.out}/student.pt (the comparison: {cfg.out}/compress.md)")


def _experiment_run(ns):
    from bpd_app.experiment import ExperimentRunConfig, cmd_run
    if cmd_run(from_namespace(ExperimentRunConfig, ns)):
        raise BpdError("some cells failed (their errors are above and in each cell.json)")


def _experiment_table(ns):
    from bpd_app.experiment import ExperimentTableConfig, cmd_table
    r = cmd_table(from_namespace(ExperimentTableConfig, ns))
    print(f"table: {r['out']}/table.md ({r['rows']} cells)")


def _experiment_status(ns):
    from bpd_app.experiment import ExperimentStatusConfig, cmd_status, status_summary
    rows = cmd_status(from_namespace(ExperimentStatusConfig, ns))
    for r in rows:
        extra = f"  {r['error']}" if r["error"] else (f"  {r['seconds']:.0f} s" if r["seconds"] else "")
        if r["left_seconds"] is not None:
            extra += ("  past its estimate" if r["estimate"] == "overdue" else
                      f"  ~{r['left_seconds'] / 60:.0f} min left" + (" (scaled)" if r["estimate"] == "scaled" else ""))
        print(f"{r['state']:>8}  {r['cell']}{extra}")
    print(status_summary(rows))


ROOMS = ("training.cli", "export.cli", "firmware_host.cli", "hil.cli")


def _configs() -> dict[str, tuple[str, Callable, str, *tuple[Callable[[argparse.ArgumentParser], None], ...]]]:
    """subcommand -> (dotted config class, handler, help, *argument tweaks): each room's COMMANDS,
    then the top's own. A room that fails to import is a fault of the installation: reported in one
    line, never a command that silently vanishes."""
    import importlib

    cmds: dict = {}
    for module in ROOMS:
        try:
            cmds.update(importlib.import_module(module).COMMANDS)
        except ImportError as e:
            raise BpdError(f"the {module.split('.')[0]} commands cannot load ({e}); reinstall bpd "
                           "(make venv)") from None
    top: dict = {
        "evaluate": ("bpd_app.evaluate:EvaluateConfig", _evaluate, "evaluate a teacher, student or exported policy"),
        "compress": ("bpd_app.compress:CompressConfig", _compress, "run the project's methods on one teacher and "
                     "dataset and hand over the cheapest student (Cortex-M4F cycles) that keeps the return"),
        "experiment run": ("bpd_app.experiment:ExperimentRunConfig", _experiment_run,
                           "run a plan's grid of cells (environments x methods x seeds), resumably"),
        "experiment table": ("bpd_app.experiment:ExperimentTableConfig", _experiment_table,
                             "write a plan's tables (markdown, CSV) and plots from its finished cells"),
        "experiment status": ("bpd_app.experiment:ExperimentStatusConfig", _experiment_status,
                              "list a plan's cells, their state and an estimate of the time left"),
    }
    return cmds | top


class _Parser(argparse.ArgumentParser):
    """argparse with bad flags reported as one line, like every other bad input (exit 2)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"bpd: error: {self.prog}: {message} (see {self.prog} --help)\n")


class _CheckParser(_Parser):
    """The same parser, its complaint raised instead of printed (check_command)."""

    def error(self, message: str) -> NoReturn:
        raise BpdError(" ".join(message.split()))


def check_command(argv: list[str], where: str) -> None:
    """Parse a `bpd` command line without running it: an unknown subcommand or option, a value of the
    wrong type or a non-finite number is a one-line BpdError naming `where`."""
    import math

    try:
        ns = build_parser(argv, _CheckParser).parse_args(argv)
    except BpdError as e:
        raise BpdError(f"{where}: bpd {' '.join(argv[:2])}: {e}") from None
    for k, v in vars(ns).items():
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, float) and not math.isfinite(x):
                raise BpdError(f"{where}: --{k.replace('_', '-')} must be a finite number (got {x})")


def build_parser(argv: list[str] | None = None, parser_class: type[_Parser] = _Parser) -> argparse.ArgumentParser:
    """The parser of every subcommand. Only the subcommand argv names gets its flags (importing its
    configuration's module, which may load torch); the others are listed with their help, so that
    `bpd --help` or `bpd rig sim` starts without loading what other commands need. argv None: all."""
    import importlib

    parser = parser_class(prog="bpd", description="Bayesian Policy Distillation: from a teacher "
                                     "policy to a sparse controller on a microcontroller.")
    parser.add_argument("--version", action="version", version=f"bpd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (cls_path, handler, help_, *extra) in _configs().items():
        words = name.split()
        target = sub
        if len(words) == 2:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=f"{words[0]} commands")
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


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser(sys.argv[1:] if argv is None else argv)
    except BpdError as e:
        print(f"bpd: error: {e}", file=sys.stderr)
        return 1
    ns = parser.parse_args(argv)
    if not hasattr(ns, "handler"):
        parser.print_help()
        return 2
    if not os.environ.get("BPD_DEBUG"):  # a library's deprecation notice is not the user's business
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
    try:
        from bpd.io import check_outputs
        check_outputs(vars(ns))
        ns.handler(ns)
    except BpdError as e:
        print(f"bpd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bpd: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the environment refused: a full disk, a read-only place, a vanished file
        where = f"{e.filename}: " if e.filename else ""
        print(f"bpd: error: {where}{e.strerror or e.__class__.__name__}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not bad input: one line unless asked for the traceback
        if os.environ.get("BPD_DEBUG"):
            raise
        print(f"bpd: internal error: {e.__class__.__name__}: {e} (set BPD_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 70
    return 0


if __name__ == "__main__":
    sys.exit(main())
