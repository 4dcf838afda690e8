"""Subcommands of the training room: teachers, datasets, distillation, baselines, students."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bpd.config import from_namespace


def resumable(run: Callable[[], Any], checkpoint: Path, before_first: str | None = None) -> Any:
    """Run a resumable training; interrupted (Ctrl-C) once it has a checkpoint, `bpd` says after "interrupted" how
    to go on (bpd_app/cli.py prints the note); before it, before_first where given (when the first comes)."""
    try:
        return run()
    except KeyboardInterrupt as e:
        if checkpoint.is_file():
            e.bpd_note = (f"checkpoint kept in {checkpoint.parent}; "  # type: ignore[attr-defined]
                          "the same command with --resume continues from it")
        elif before_first is not None:
            e.bpd_note = f"stopped before the first checkpoint ({before_first}): nothing kept"  # type: ignore[attr-defined]
        raise


def _teacher_train(ns):
    from training.teacher import TeacherTrainConfig, train_teacher
    cfg = from_namespace(TeacherTrainConfig, ns)
    s = resumable(lambda: train_teacher(cfg, log=lambda m: print(m, flush=True)),
                  Path(cfg.work_dir or f"{cfg.out}.work") / "checkpoint.pt",
                  f"at step {cfg.checkpoint_every}, --checkpoint-every")
    f = s["final"]  # the kept actor on seeds no training evaluation used: the best return was chosen, this was not
    print(f"teacher: {s['out']}  best return {s['best_return']:.1f} at step {s['best_step']} "
          f"({s['steps']} steps, {s['seconds']:.0f} s); on {f['episodes']} held-out episode"
          f"{'s' * (f['episodes'] != 1)} (seeds {f['seeds'][0]}..{f['seeds'][1]}) {f['return_mean']:.1f} +- "
          f"{f['return_std']:.1f}, worst {f['return_min']:.1f}")


def _teacher_import(ns):
    from training.teacher import TeacherImportConfig, import_sb3, teacher_summary
    cfg = from_namespace(TeacherImportConfig, ns)
    t = import_sb3(cfg)
    t.save(cfg.out)
    s = teacher_summary(t)
    print(f"teacher: {cfg.out}  {s['algo']} on {s['env_id']}, "
          f"{'-'.join(map(str, [s['obs_dim'], *s['hidden'], s['act_dim']]))} {s['activation']} (output "
          f"{s['output']}" + (f", its mean clipped to +-{s['mean_clip']:g} first (gSDE)" if s['mean_clip'] else "")
          + f"), {s['params_total']:,} parameters, from {s['source']}")


def _collect(ns):
    from training.collect import CollectConfig, collect
    cfg = from_namespace(CollectConfig, ns)
    ds = collect(cfg)
    print(collect_line(cfg.out, ds))


def collect_line(out: str, ds) -> str:
    """What `bpd collect` wrote: its steps, its whole episodes (and the last one, cut short by --steps, which the
    dataset holds as a truncation) and their mean return."""
    whole, mean = int(ds.meta["episodes"]), ds.meta["episode_return_mean"]
    cut = int(((ds.terminals > 0) | (ds.truncations > 0)).sum()) > whole
    return (f"dataset: {out}  {len(ds):,} steps, {whole:,} whole episode{'s' if whole != 1 else ''}"
            + (" and one cut short by --steps" if cut else "")
            + (f", mean return {mean:.1f}" if mean is not None else ""))


def distill_command(ns, meter=None) -> None:
    """`bpd distill` (wired by the firmware room, which lends it the DSP kernel's meter for --prune-to-cycles)."""
    from training.distill import DistillConfig, distill
    from training.minari_io import canonical
    from training.selection_config import spread
    cfg = from_namespace(DistillConfig, ns)
    cfg.dataset = canonical(cfg.dataset)  # a Minari id alone recorded as minari:ID, not as a path
    s = resumable(lambda: distill(cfg, meter, log=lambda m: print(m, flush=True)), Path(cfg.out) / "checkpoint.pt")
    ch = s["selection"]["chosen"]
    ret = ch["select_return"] if ch["select_return"] is not None else s["final_eval_return_mean"]
    print(f"student: {os.path.join(cfg.out, s['student'])}  step {ch['step']} of {s['steps']}, return {ret:.1f}"
          f"{spread(ch)}, "
          f"{s['params_nonzero']}/{s['params_total']} parameters nonzero "
          f"({100 * s['params_nonzero'] / s['teacher_params_total']:.2f} % of the teacher's "
          f"{s['teacher_params_total']}), {s['seconds']:.0f} s")
    if s.get("layer_cycles") is not None and cfg.prune_to_cycles is not None:  # the budget asked, and what it got
        print(f"layers: {s['layer_cycles']:.0f} est. Cortex-M4F cycles of the DSP integer kernel's layers (the C "
              f"around them not counted; --prune-to-cycles {cfg.prune_to_cycles:g})")
    print(f"chosen by {s['selection']['rule']}")
    if (note := short_of_teacher(s, cfg.eta_gate)) is not None:
        print(note, file=sys.stderr)


def short_of_teacher(s: dict, eta: float) -> str | None:
    """The note for a handed-over student whose return is short of the teacher's by more than --eta-gate (the KL
    gate's own test of imitating it), the two on the same seeds: the selection's, where it ran the teacher there
    (--keep-return), else the periodic evaluations' (the student's at the chosen step against the gate's reference,
    where the run measured the teacher); None when short by no more, or when the run measured no teacher."""
    sel = s.get("selection") or {}
    ch = sel.get("chosen") or {}
    if sel.get("teacher_select_return") is not None and ch.get("select_return") is not None:
        ret, teacher, seeds = ch["select_return"], sel["teacher_select_return"], "the selection seeds"
    elif s.get("eta_gate_teacher_return") is not None and ch.get("train_return") is not None:
        ret, teacher, seeds = ch["train_return"], s["eta_gate_teacher_return"], "the periodic evaluations' seeds"
    else:
        return None
    if ret >= teacher - eta * abs(teacher):
        return None
    return (f"bpd: note: the student's return, {ret:.1f}, is short of the teacher's {teacher:.1f} ({seeds}) by more "
            f"than --eta-gate ({100 * eta:g} %): it does not imitate the teacher; a larger --prune-to-cycles or "
            "--steps, or `bpd student select --keep-return`, may")


def _baseline_train(ns):
    from training.baseline_rules import BaselineConfig
    from training.baselines import train_baseline
    from training.minari_io import canonical
    cfg = from_namespace(BaselineConfig, ns)
    cfg.dataset = canonical(cfg.dataset)
    s = resumable(lambda: train_baseline(cfg), Path(cfg.out) / "checkpoint.pt")
    print(f"baseline: {os.path.join(cfg.out, s['product'])}  {s['method']} ({s['control']} control), "
          f"{s['grad_steps']} gradient steps, {s['env_steps']} environment steps, return "
          f"{s['final_eval_return_mean']:.1f}, {s['params_nonzero']}/{s['params_total']} parameters nonzero, "
          f"{s['seconds']:.0f} s")


def _multitask_train(ns):
    from training.minari_io import canonical
    from training.multitask import MultiTaskConfig, train_multitask
    cfg = from_namespace(MultiTaskConfig, ns)
    cfg.datasets = [canonical(d) for d in cfg.datasets]
    s = resumable(lambda: train_multitask(cfg, log=lambda m: print(m, flush=True)), Path(cfg.out) / "checkpoint.pt")
    rets = ", ".join(f"{e} {r:.1f}" for e, r in s["final_eval"].items() if r is not None)
    print(f"multi-task student: {os.path.join(cfg.out, 'multitask.npz')}  {len(s['tasks'])} tasks ({rets}), "
          f"{s['params_nonzero']}/{s['params_total']} parameters nonzero, {s['seconds']:.0f} s")


def _student_sweep(ns):
    from training.selection import SweepConfig, run_sweep, sweep_note
    r = run_sweep(from_namespace(SweepConfig, ns))
    print(f"{'threshold':>9} {'nonzero':>8} {'return':>10} {'std':>8} {'min':>10} {'early':>5}")
    for x in r["rows"]:
        print(f"{x['threshold']:9.2f} {x['params_nonzero']:8d} {x['return_mean']:10.1f} {x['return_std']:8.1f} "
              f"{x['return_min']:10.1f} {x['early_terminations']:5d}")
    if (note := sweep_note(r)) is not None:
        print(note)


def report_select(r: dict) -> None:
    """Print what `bpd student select` chose (the command is wired by the firmware room, which lends it the
    emulated Cortex-M meter for --cost), its cost in the unit --cost names."""
    from training.selection_config import cost_text, spread

    ch = r["chosen"]
    head = (f"selected: {r['out']}  step {ch['step']}, threshold {ch['threshold']:g}, {ch['params_nonzero']} nonzero, "
            + (f"cost {cost_text(ch, r.get('cost') or '')}, " if "cost" in ch else "")
            + f"return {ch['select_return']:.1f}{spread(ch)}")
    if "falls" in ch:
        head += f", {ch['falls']} early ends where the teacher finishes"
    if r["teacher_select_return"] is None:  # sparsest-within: no return target
        print(f"{head} on the selection seeds ({r['rule']}, {len(r['rows'])} candidates judged)")
        return
    who = "any candidate with the fewest early ends where the teacher finishes" if "falls" in ch else "any candidate"
    met = "kept" if r["keep_return_met"] else f"NOT kept by {who}; wrote the best one"
    print(f"{head} vs teacher {r['teacher_select_return']:.1f} on the selection seeds (target {met})")


COMMANDS = {
    "teacher train": ("training.teacher:TeacherTrainConfig", _teacher_train, "train a teacher with stable-baselines3"),
    "teacher import": ("training.teacher:TeacherImportConfig", _teacher_import,
                       "import a stable-baselines3 SAC/TD3/PPO zip as a teacher"),
    "collect": ("training.collect:CollectConfig", _collect, "roll a teacher out into an offline dataset"),
    "baseline train": ("training.baseline_rules:BaselineConfig", _baseline_train,
                       "distil a student by a rule from the policy-distillation literature (Rusu et al. 2016, "
                       "Czarnecki et al. 2019)"),
    "multitask train": ("training.multitask_config:MultiTaskConfig", _multitask_train,
                        "distil several teachers into one student with a shared trunk (Rusu et al. 2016)"),
    "student sweep": ("training.selection_config:SweepConfig", _student_sweep,
                      "return and size of a trained student at other pruning thresholds (no retraining)"),
}
