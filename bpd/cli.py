"""The `bpd` command: one entry point, a subcommand per stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, NoReturn

from bpd import __version__
from bpd.config import add_arguments, from_namespace
from bpd.errors import BpdError


def _teacher_train(ns):
    from training.teacher import TeacherTrainConfig, train_teacher
    s = train_teacher(from_namespace(TeacherTrainConfig, ns))
    print(f"teacher: {s['out']}  best return {s['best_return']:.1f} at step {s['best_step']} "
          f"({s['steps']} steps, {s['seconds']:.0f} s)")


def _teacher_import(ns):
    from training.teacher import TeacherImportConfig, import_sb3, teacher_summary
    cfg = from_namespace(TeacherImportConfig, ns)
    t = import_sb3(cfg)
    t.save(cfg.out)
    print(json.dumps(teacher_summary(t) | {"out": cfg.out}))


def _collect(ns):
    from training.collect import CollectConfig, collect
    cfg = from_namespace(CollectConfig, ns)
    ds = collect(cfg)
    print(f"dataset: {cfg.out}  {len(ds)} steps, {ds.meta['episodes']} episodes, "
          f"mean episode return {ds.meta['episode_return_mean']}")


def _distill(ns):
    from training.distill import DistillConfig, distill
    s = distill(from_namespace(DistillConfig, ns))
    print(f"student: {s['student']}  return {s['final_eval_return_mean']:.1f}, "
          f"{s['params_nonzero']}/{s['params_total']} parameters nonzero "
          f"({100 * s['params_nonzero'] / s['teacher_params_total']:.2f} % of the teacher's "
          f"{s['teacher_params_total']}), {s['seconds']:.0f} s")


def _evaluate(ns):
    from bpd.evaluate import EvaluateConfig, run_evaluate
    cfg = from_namespace(EvaluateConfig, ns)
    r = run_evaluate(cfg)
    if cfg.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:>24}: {v}")


def _configs() -> dict[str, tuple[str, Callable, str]]:
    """subcommand -> (dotted config class, handler, help)."""
    return {
        "teacher train": ("training.teacher:TeacherTrainConfig", _teacher_train,
                          "train a teacher with stable-baselines3"),
        "teacher import": ("training.teacher:TeacherImportConfig", _teacher_import,
                           "import a stable-baselines3 SAC/TD3/PPO zip as a teacher"),
        "collect": ("training.collect:CollectConfig", _collect, "roll a teacher out into an offline dataset"),
        "distill": ("training.distill:DistillConfig", _distill, "distill a sparse Bayesian student (BPD)"),
        "evaluate": ("bpd.evaluate:EvaluateConfig", _evaluate, "evaluate a teacher, student or exported policy"),
    } | _extra_commands()


def _extra_commands() -> dict:
    cmds = {}
    for module in ("export.cli", "firmware_host.cli", "hil.cli"):
        try:
            mod = __import__(module, fromlist=["COMMANDS"])
        except ImportError:
            continue
        cmds.update(mod.COMMANDS)
    return cmds


class _Parser(argparse.ArgumentParser):
    """argparse with bad flags reported as one line, like every other bad input (exit 2)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"bpd: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="bpd", description="Bayesian Policy Distillation: from a teacher "
                                     "policy to a sparse controller on a microcontroller.")
    parser.add_argument("--version", action="version", version=f"bpd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (cls_path, handler, help_, *extra) in _configs().items():
        mod_name, cls_name = cls_path.split(":")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        words = name.split()
        target = sub
        if len(words) == 2:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            target = groups[words[0]]
        p = target.add_parser(words[-1], help=help_, description=help_)
        add_arguments(p, cls)
        for tweak in extra:  # extra flags a room adds by hand (aliases)
            tweak(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not hasattr(ns, "handler"):
        parser.print_help()
        return 2
    try:
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
