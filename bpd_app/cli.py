"""The `bpd` command: one entry point, a subcommand per stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from bpd.config import from_namespace
from bpd.errors import BpdError, Stopped
from bpd_app.parser import Commands, room_commands
from bpd_app.parser import build_parser as _build_parser


def _evaluate(ns):
    from bpd_app.evaluate import EvaluateConfig, run_evaluate
    cfg = from_namespace(EvaluateConfig, ns)
    r = run_evaluate(cfg)
    if cfg.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:>24}: {_readable(v)}")


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _note(e: BaseException) -> str:
    """What an interrupted command left behind, where it says (a trial: the stop sent, its logs kept)."""
    note = getattr(e, "bpd_note", None)
    return f": {note}" if note else ""


def _readable(v) -> str:
    """A figure of `bpd evaluate`'s table to six significant digits (--json keeps every digit)."""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list) and any(isinstance(x, float) for x in v):
        return "[" + ", ".join(_readable(x) for x in v) + "]"
    return str(v)


def _compress(ns):
    from bpd_app.compress import CompressConfig, caution, markdown, run_compress
    from firmware_host.measure.bench import policy_cost

    cfg = from_namespace(CompressConfig, ns)
    try:
        res = run_compress(cfg, policy_cost)
    except KeyboardInterrupt as e:  # the run in hand said its own (its distill's --resume): compress resumes it
        note = f"the runs so far are kept in {cfg.out}; the same `bpd compress` command resumes them (no --resume)"
        e.bpd_note = note  # type: ignore[attr-defined]
        raise
    print(markdown(res))
    print(f"student: {cfg.out}/student.pt (the comparison: {cfg.out}/compress.md)")
    if (line := caution(res)) is not None:
        print(line, file=sys.stderr)


def _experiment_run(ns):
    from bpd_app.experiment.commands import ExperimentRunConfig, cmd_run
    if cmd_run(from_namespace(ExperimentRunConfig, ns)):
        raise BpdError("some cells failed (their errors are above and in each cell.json)")


def _experiment_table(ns):
    from bpd_app.experiment.commands import ExperimentTableConfig, cmd_table
    r = cmd_table(from_namespace(ExperimentTableConfig, ns))
    print(f"table: {r['out']}/table.md ({r['rows']} cells)")


def _experiment_status(ns):
    from bpd_app.experiment.commands import ExperimentStatusConfig, cmd_status
    from bpd_app.experiment.status import status_summary
    rows = cmd_status(from_namespace(ExperimentStatusConfig, ns))
    for r in rows:
        took = f"  {'training ' if r.get('committed') else ''}{r['seconds']:.0f} s" if r["seconds"] else ""
        extra = f"  {r['error']}" if r["error"] else took
        extra += "  (committed summary)" if r.get("committed") else ""
        extra += f"  in its {r['stage']} stage" if r.get("stage") else ""
        if r["left_seconds"] is not None:
            extra += ("  past its estimate" if r["estimate"] == "overdue" else
                      f"  ~{r['left_seconds'] / 60:.0f} min left" + (" (scaled)" if r["estimate"] == "scaled" else ""))
        print(f"{r['state']:>8}  {r['cell']}{extra}")
    print(status_summary(rows))


def _configs() -> Commands:
    """subcommand -> (dotted config class, handler, help, *argument tweaks): each room's COMMANDS,
    then the top's own."""
    top: Commands = {
        "evaluate": ("bpd_app.evaluate:EvaluateConfig", _evaluate, "evaluate a teacher, student or exported policy"),
        "compress": ("bpd_app.compress:CompressConfig", _compress, "run the project's methods on one teacher and "
                     "dataset and hand over the cheapest student (Cortex-M4F cycles) that keeps the return"),
        "experiment run": ("bpd_app.experiment.commands:ExperimentRunConfig", _experiment_run,
                           "run a plan's grid of cells (environments x methods x seeds), resumably"),
        "experiment table": ("bpd_app.experiment.commands:ExperimentTableConfig", _experiment_table,
                             "write a plan's tables (markdown, CSV) and plots from its finished cells"),
        "experiment status": ("bpd_app.experiment.commands:ExperimentStatusConfig", _experiment_status,
                              "list a plan's cells, their state and an estimate of the time left"),
    }
    return room_commands() | top


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every `bpd` subcommand (only argv's command gets its flags; None: all)."""
    return _build_parser(_configs(), argv)


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
    # A SIGINT stops any command the way Ctrl-C does (a trial commands zero and keeps its logs), even where
    # bpd was started with SIGINT ignored, as a non-interactive shell starts its background jobs
    # SIGTERM and SIGHUP the same way (a trial commands zero and writes its summary, a run keeps its checkpoint),
    # unless ignored when bpd started (`nohup`: a closed terminal leaves it running); `bpd rig sim` and `rig pil`
    # install their own while they serve. All three restored after a call in this process (argv given: tests,
    # scripts). bpd.process has the handlers, and the holds they respect.
    from bpd.process import on_interrupt, on_stop, reset_stops

    reset_stops()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, on_interrupt)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if before[sig] is not signal.SIG_IGN:
            signal.signal(sig, on_stop)
    try:
        return _handle(ns)
    finally:
        if argv is not None:
            for sig, old in before.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _handle(ns) -> int:
    try:
        from bpd.io import check_outputs
        check_outputs(vars(ns))
        ns.handler(ns)
    except BpdError as e:
        print(f"bpd: error: {e}", file=sys.stderr)
        return 1
    except Stopped as e:
        print(f"bpd: stopped ({e})" + _note(e), file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt as e:
        print("bpd: interrupted" + _note(e), file=sys.stderr)
        return 130
    except BrokenPipeError as e:  # the reader of stdout went away (`bpd evaluate RUN | head`): nothing to tell it
        if _stdout_gone():
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail
            except (OSError, ValueError):
                pass
            return 128 + signal.SIGPIPE
        print(f"bpd: error: {e.filename + ': ' if e.filename else ''}{e.strerror or 'broken pipe'} (a pipe to a "
              "process that ended)", file=sys.stderr)  # another pipe than stdout: said, as any refusal is
        return 1
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
