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
    cfg = from_namespace(DistillConfig, ns)
    s = distill(cfg)
    ch = s["selection"]["chosen"]
    ret = ch["select_return"] if ch["select_return"] is not None else s["final_eval_return_mean"]
    print(f"student: {os.path.join(cfg.out, s['student'])}  step {ch['step']} of {s['steps']}, return {ret:.1f}, "
          f"{s['params_nonzero']}/{s['params_total']} parameters nonzero "
          f"({100 * s['params_nonzero'] / s['teacher_params_total']:.2f} % of the teacher's "
          f"{s['teacher_params_total']}), {s['seconds']:.0f} s")
    print(f"chosen by {s['selection']['rule']}")


def _baseline_train(ns):
    from training.baselines import BaselineConfig, train_baseline
    cfg = from_namespace(BaselineConfig, ns)
    s = train_baseline(cfg)
    print(f"baseline: {os.path.join(cfg.out, s['product'])}  {s['method']} ({s['control']} control), "
          f"{s['grad_steps']} gradient steps, {s['env_steps']} environment steps, return "
          f"{s['final_eval_return_mean']:.1f}, {s['params_nonzero']}/{s['params_total']} parameters nonzero, "
          f"{s['seconds']:.0f} s")


def _multitask_train(ns):
    from training.multitask import MultiTaskConfig, train_multitask
    cfg = from_namespace(MultiTaskConfig, ns)
    s = train_multitask(cfg)
    rets = ", ".join(f"{e} {r:.1f}" for e, r in s["final_eval"].items() if r is not None)
    print(f"multi-task student: {os.path.join(cfg.out, 'multitask.npz')}  {len(s['tasks'])} tasks ({rets}), "
          f"{s['params_nonzero']}/{s['params_total']} parameters nonzero, {s['seconds']:.0f} s")


def _multitask_export(ns):
    from export.multitask import MultiTaskExportConfig, run_multitask_export
    cfg = from_namespace(MultiTaskExportConfig, ns)
    r = run_multitask_export(cfg)
    for name, t in r["tasks"].items():
        print(f"{t['entry_point']}: {t['env_id']}, C vs float64 max error {t['max_abs_error']:.2e} on {t['samples']} states")
    print(f"export written to {cfg.out}/ ({r['weights_flash_bytes']} bytes of weights, {r['params_nonzero']} nonzero)")


def _evaluate(ns):
    from bpd.evaluate import EvaluateConfig, run_evaluate
    cfg = from_namespace(EvaluateConfig, ns)
    r = run_evaluate(cfg)
    if cfg.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:>24}: {v}")


def _student_sweep(ns):
    from training.selection import SweepConfig, run_sweep
    r = run_sweep(from_namespace(SweepConfig, ns))
    print(f"{'threshold':>9} {'nonzero':>8} {'return':>10} {'std':>8} {'min':>10} {'early':>5}")
    for x in r["rows"]:
        print(f"{x['threshold']:9.2f} {x['params_nonzero']:8d} {x['return_mean']:10.1f} {x['return_std']:8.1f} "
              f"{x['return_min']:10.1f} {x['early_terminations']:5d}")


def _student_select(ns):
    from training.selection import SelectConfig, run_select
    r = run_select(from_namespace(SelectConfig, ns))
    ch = r["chosen"]
    met = "kept" if r["keep_return_met"] else "NOT kept by any candidate; wrote the best one"
    print(f"selected: {r['out']}  step {ch['step']}, threshold {ch['threshold']:g}, {ch['params_nonzero']} nonzero, "
          f"return {ch['select_return']:.1f} vs teacher {r['teacher_select_return']:.1f} on the selection seeds "
          f"(target {met})")


def _experiment_run(ns):
    from bpd.experiment import ExperimentRunConfig, cmd_run
    if cmd_run(from_namespace(ExperimentRunConfig, ns)):
        raise BpdError("some cells failed (their errors are above and in each cell.json)")


def _experiment_table(ns):
    from bpd.experiment import ExperimentTableConfig, cmd_table
    r = cmd_table(from_namespace(ExperimentTableConfig, ns))
    print(f"table: {r['out']}/table.md ({r['rows']} cells)")


def _experiment_status(ns):
    from bpd.experiment import ExperimentStatusConfig, cmd_status
    rows = cmd_status(from_namespace(ExperimentStatusConfig, ns))
    for r in rows:
        extra = f"  {r['error']}" if r["error"] else (f"  {r['seconds']:.0f} s" if r["seconds"] else "")
        print(f"{r['state']:>8}  {r['cell']}{extra}")
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "failed", "running", "interrupted", "pending")}
    print(", ".join(f"{v} {k}" for k, v in counts.items()))


def _configs() -> dict[str, tuple[str, Callable, str]]:
    """subcommand -> (dotted config class, handler, help)."""
    return {
        "teacher train": ("training.teacher:TeacherTrainConfig", _teacher_train,
                          "train a teacher with stable-baselines3"),
        "teacher import": ("training.teacher:TeacherImportConfig", _teacher_import,
                           "import a stable-baselines3 SAC/TD3/PPO zip as a teacher"),
        "collect": ("training.collect:CollectConfig", _collect, "roll a teacher out into an offline dataset"),
        "distill": ("training.distill:DistillConfig", _distill, "distill a sparse Bayesian student (BPD)"),
        "baseline train": ("training.baselines:BaselineConfig", _baseline_train,
                           "distil a student by a rule from the policy-distillation literature (Rusu et al. 2016, "
                           "Czarnecki et al. 2019)"),
        "multitask train": ("training.multitask:MultiTaskConfig", _multitask_train,
                            "distil several teachers into one student with a shared trunk (Rusu et al. 2016)"),
        "multitask export": ("export.multitask:MultiTaskExportConfig", _multitask_export,
                             "a multi-task student to C, one entry point per task, parity checked"),
        "evaluate": ("bpd.evaluate:EvaluateConfig", _evaluate, "evaluate a teacher, student or exported policy"),
        "experiment run": ("bpd.experiment:ExperimentRunConfig", _experiment_run,
                           "run a plan's grid of cells (environments x methods x seeds), resumably"),
        "experiment table": ("bpd.experiment:ExperimentTableConfig", _experiment_table,
                             "write a plan's tables (markdown, CSV) and plots from its finished cells"),
        "experiment status": ("bpd.experiment:ExperimentStatusConfig", _experiment_status,
                              "list a plan's cells and their state"),
        "student sweep": ("training.selection:SweepConfig", _student_sweep,
                          "return and size of a trained student at other pruning thresholds (no retraining)"),
        "student select": ("training.selection:SelectConfig", _student_select,
                           "the smallest evaluated student that keeps a share of the teacher's return"),
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
