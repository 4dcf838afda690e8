"""Which student a distillation run hands over, and what pruning threshold it uses.

A run evaluates its collapsed student every --eval-every steps on the training-evaluation seeds
and keeps each evaluated student as a candidate (`candidates.pt`). At the end the candidates
whose training-evaluation return is near the best, and every candidate of the fine-tune (the
method's product, which a noisy periodic evaluation must not hide), are evaluated again on selection seeds, which
are disjoint from both the training evaluations and the reporting seeds (see training/envs.py),
and one is chosen by a stated rule:

  sparsest-within  the fewest nonzero parameters among candidates whose selection return is
                   within tol * |best selection return| of the best (ties: higher return)
  best             the highest selection return
  last             the last evaluated student (no selection)
  keep-return      the fewest nonzero parameters among candidates whose selection return keeps
                   at least a fraction of the teacher's return on the same seeds

The same machinery sweeps the pruning threshold (CThreshold) of a trained student without
retraining, and finds the smallest student that keeps a given share of the teacher's return.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bpd.config import check_ranges
from bpd.errors import BpdError
from bpd.io import atomic_write, path_for_record, path_from_record, read_json, write_json
from training.distill_config import PAPER, DistillConfig, pair_partners_apply
from training.envs import (
    Policy,
    early_where_teacher_finished,
    low_where_teacher_finished,
    return_floor,
    rollouts,
    select_eval_seed,
)
from training.mlp import MLPPolicy
from training.seed_blocks import TRAIN_EVAL_BASE, check_block
from training.selection_config import COSTS, Cost, SelectConfig, SweepConfig, cost_fields
from training.student import BayesianStudent, has_unit_gates

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CANDIDATES_FORMAT = "bpd-candidates"


@dataclass
class Candidate:
    step: int
    train_return: float
    params_nonzero: int
    state_dict: dict

    def to_blob(self) -> dict:
        return {"step": self.step, "train_return": self.train_return, "params_nonzero": self.params_nonzero,
                "state_dict": self.state_dict}

    @classmethod
    def from_blob(cls, b: dict) -> Candidate:
        return cls(int(b["step"]), float(b["train_return"]), int(b["params_nonzero"]), b["state_dict"])


class AllConstant(BpdError):
    """Every candidate of a run is a constant (every path from the observations to the actions pruned)."""


def save_candidates(path: Path, cands: list[Candidate]) -> None:
    blob = {"format": CANDIDATES_FORMAT, "items": [c.to_blob() for c in cands]}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_candidates(path: Path) -> list[Candidate]:
    if not path.is_file():
        return []
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
        if blob.get("format") != CANDIDATES_FORMAT:
            raise ValueError
        return [Candidate.from_blob(b) for b in blob["items"]]
    except Exception:
        raise BpdError(f"{path}: not a readable candidates file") from None


def smlad_cost(pol: MLPPolicy) -> float:
    """A collapsed policy's multiply-adds on the DSP integer kernel (training/pairs.py multiply_slots)."""
    from training.pairs import network_slots

    return float(network_slots(pol.weights))


def run_cost(run_cfg: dict) -> str:
    """The cost a distillation run chose its student by, from its config.json: smlad where it filled the pair
    partners, else nonzero (options the run predates read as the paper's BPD had them)."""
    keys = {"pair_partners", "student", "finetune", "prune_to"}
    fields = (PAPER | {k: v for k, v in run_cfg.items() if k in keys})
    return "smlad" if pair_partners_apply(DistillConfig(teacher="", dataset="", **fields)) else "nonzero"


def rule_text(rule: str, tol: float, keep_return: float | None, cost: str = "nonzero") -> str:
    if keep_return is not None:
        return (f"keep-return: the student with {COSTS[cost]} whose return on the selection "
                f"seeds is at least {100 * keep_return:g} % of the teacher's on the same seeds")
    return {"sparsest-within": f"sparsest-within: the student with {COSTS[cost]} whose return on "
                               f"the selection seeds is within {100 * tol:g} % of the best candidate's "
                               "(ties: higher return)",
            "best": "best: the student with the highest return on the selection seeds",
            "last": "last: the last evaluated student"}[rule]


def choose(rows: list[dict], rule: str, tol: float, keep_return: float | None,
           teacher_return: float | None) -> tuple[int, bool | None]:
    """Index into rows (each with 'select_return' and 'params_nonzero', and 'cost' where a cost was
    measured: then the smallest cost rather than the fewest nonzero) chosen by the rule, and whether a
    keep-return target was met (None when no target was asked)."""
    if rule == "last" and keep_return is None:
        return len(rows) - 1, None
    rets = np.array([r["select_return"] for r in rows])
    nz = np.array([r.get("cost", r["params_nonzero"]) for r in rows])
    if keep_return is not None:
        if teacher_return is None:
            raise BpdError("a keep-return target needs the teacher's return")
        ok = rets >= return_floor(teacher_return, keep_return) - 1e-9 * abs(teacher_return)
        if ok.any():
            idx = np.flatnonzero(ok)
            return int(min(idx, key=lambda i: (nz[i], -rets[i]))), True
        return int(np.argmax(rets)), False
    best = float(rets.max())
    if rule == "best":
        return int(np.argmax(rets)), None
    near = np.flatnonzero(rets >= best - tol * abs(best))
    return int(min(near, key=lambda i: (nz[i], -rets[i]))), None


def constant(pol) -> bool:
    """Whether every path from the observations to the actions is pruned: the policy is a constant, which the
    export refuses (export/collapse.py), so selection sets it aside where another candidate has a path."""
    reach = np.ones(pol.weights[0].shape[1], bool)
    for w in pol.weights:
        reach = (np.abs(w[:, reach]) > 0).any(axis=1)
    return not reach.any()


def finetuned(state_dict: dict) -> bool:
    """Whether a candidate comes from the fine-tune (its layers frozen on their masks: every log sigma^2 at
    +-40, training/svdo.py freeze), the deterministic network the method's last phase trains."""
    ls = [v for k, v in state_dict.items() if k.endswith("log_sigma2") and "gate" not in k]
    return bool(ls) and all(bool((v.abs() == 40.0).all()) for v in ls)


def student_from(meta: dict, state_dict: dict, threshold: float | None = None) -> BayesianStudent:
    s = BayesianStudent(meta["obs_dim"], meta["act_dim"], meta["hidden"], meta["activation"],
                        meta["threshold"] if threshold is None else threshold, meta["log_alpha_clip"],
                        unit_gates=has_unit_gates(state_dict))
    s.load_state_dict(state_dict)
    for layer in s.layers:
        layer.threshold = meta["threshold"] if threshold is None else threshold
    return s.eval()


def falls_rule_text(falls: bool, low_share: float = 0.0) -> str:
    if not falls:
        return ""
    low = (f" or, finishing it, return less than the teacher's there minus {1 - low_share:.0%} of its magnitude"
           if low_share > 0 else "")
    return (f"; candidates that end early on a selection episode the teacher finishes{low} set aside (all do: those "
            "with the fewest such falls)")


def select(cands: list[Candidate], meta: dict, stats: dict, env_id: str, run_seed: int, rule: str, tol: float,
           episodes: int, shortlist: int | None, keep_return: float | None = None,
           teacher_act: Policy | None = None, thresholds: list[float] | None = None,
           cost_fn: Callable[[MLPPolicy], Cost] | None = None, cost: str = "nonzero",
           no_falls: bool = False, low_share: float = 0.0) -> dict:
    """Evaluate the shortlisted candidates (x thresholds) on the selection seeds and choose one. The
    shortlist is the candidates whose periodic return is near the best (at most `shortlist` of them),
    and every candidate of the fine-tune (the method's product: a periodic evaluation of 5 episodes must
    not keep it from being judged, nor hand over a student from before its partners were filled);
    every candidate where `shortlist` is None or a keep-return target is set (the smallest that keeps
    it may be anywhere). cost_fn: the size the rule minimises in place of the nonzero count (cost: its
    name in COSTS, for the rule's text), or the meter's record of it naming the kernel measured (`cost_fields`).
    no_falls: the teacher is run on the selection seeds too, each row counts its early ends on episodes the teacher
    finishes ('falls'), and the rule chooses among the rows with none (where every row has some: among those with
    the fewest); low_share above 0: an episode the teacher finishes whose return falls short of the teacher's on
    that seed by more than (1 - low_share) of its magnitude is a fall too (training.envs.low_where_teacher_finished).

    Returns {"rule", "chosen" (row), "rows", "teacher_select_return", "keep_return_met"}."""
    if not cands:
        raise BpdError("no evaluated student to choose from")
    seed = select_eval_seed(run_seed)
    if rule == "last" and keep_return is None and not thresholds and not no_falls:
        c = cands[-1]
        row = {"step": c.step, "threshold": meta["threshold"], "train_return": c.train_return,
               "params_nonzero": c.params_nonzero, "select_return": None}
        return {"rule": rule_text(rule, tol, keep_return, cost), "chosen": row, "rows": [row],
                "teacher_select_return": None, "keep_return_met": None, "select_seeds": None}
    if (keep_return is not None or no_falls) and teacher_act is None:
        raise BpdError("a keep-return target or the falls check needs the teacher")
    if shortlist is None or keep_return is not None or rule == "last":
        near = list(cands)
    else:
        best_train = max(c.train_return for c in cands)
        near = [c for c in cands if c.train_return >= best_train - 2 * tol * abs(best_train) - 1e-9]
        near = sorted(near, key=lambda c: -c.train_return)[:max(1, shortlist)]
        near += [c for c in cands if finetuned(c.state_dict) and all(c is not n for n in near)]
    near.sort(key=lambda c: c.step)
    teacher_ep = rollouts(env_id, teacher_act, episodes, seed) if teacher_act is not None and (
        keep_return is not None or no_falls) else None
    rows = []
    for c in near:
        for th in (thresholds or [meta["threshold"]]):
            pol = student_from(meta, c.state_dict, th).collapse(**stats)
            ep = rollouts(env_id, pol.act, episodes, seed)
            rows.append({"step": c.step, "threshold": float(th), "train_return": c.train_return,
                         "params_nonzero": pol.params_nonzero, "select_return": float(np.mean(ep.returns)),
                         "select_std": float(np.std(ep.returns)), "select_min": float(np.min(ep.returns)),
                         "early_terminations": ep.early_terminations}
                        | (cost_fields(cost_fn(pol), cost) if cost_fn else {})
                        | ({"constant": True} if constant(pol) else {})
                        | ({"falls": early_where_teacher_finished(ep.terminated, teacher_ep.terminated)
                                     + low_where_teacher_finished(ep, teacher_ep, low_share)}
                           if no_falls and teacher_ep is not None else {}))
    teacher_ret = float(np.mean(teacher_ep.returns)) if teacher_ep is not None and keep_return is not None else None
    pool = [k for k, r in enumerate(rows) if not r.get("constant")] or list(range(len(rows)))  # no export of one
    if no_falls:
        least = min(r["falls"] for r in rows)
        pool = [k for k in pool if rows[k]["falls"] == least]
    i, met = choose([rows[k] for k in pool], rule, tol, keep_return, teacher_ret)
    i = pool[i]
    out = {"rule": rule_text(rule, tol, keep_return, cost) + falls_rule_text(no_falls, low_share), "chosen": rows[i],
           "rows": rows, "teacher_select_return": teacher_ret, "keep_return_met": met,
           "select_seeds": [seed, seed + episodes - 1]}
    if no_falls and teacher_ep is not None:
        out["teacher_select_early_terminations"] = teacher_ep.early_terminations
    return out


def confirm(env_id: str, teacher_act: Policy, students: list[tuple[str, Callable[[], Policy]]], seed: int,
            episodes: int, keep_return: float, log: Callable[[str], None] | None = None,
            low_share: float = 0.0) -> tuple[int | None, list[dict]]:
    """Judge students again, in the order given (each a name and a loader of its policy), beside the teacher on
    `episodes` selection episodes from `seed` (seeds no selection before used): a student holds when its return
    there is at least keep_return of the teacher's and it ends no episode early that the teacher finishes. Stops at
    the first that holds; returns its index (None: none held) and the records of those judged, in order. low_share
    above 0: an episode the teacher finishes at a return below the teacher's there by more than (1 - low_share) of
    its magnitude is a fall too ('low_episodes'; training.envs.low_where_teacher_finished)."""
    teacher = rollouts(env_id, teacher_act, episodes, seed)
    t_ret = float(np.mean(teacher.returns))
    recs: list[dict] = []
    for i, (name, load) in enumerate(students):
        ep = rollouts(env_id, load(), episodes, seed)
        early = early_where_teacher_finished(ep.terminated, teacher.terminated)
        low = low_where_teacher_finished(ep, teacher, low_share)
        ret = float(np.mean(ep.returns))
        recs.append({"episodes": episodes, "first_seed": seed, "return": ret, "teacher_return": t_ret,
                     "early_ends_where_teacher_finished": early}
                    | ({"low_episodes": low, "low_share": low_share} if low_share > 0 else {})
                    | {"holds": ret >= return_floor(t_ret, keep_return) and early + low == 0})
        if log is not None:
            log(f"{name}: {ret:.1f} against the teacher's {t_ret:.1f} on {episodes} more selection episodes, "
                f"{early} early ends where the teacher finishes"
                + (f", {low} finished below the teacher's return minus {1 - low_share:.0%}" if low_share > 0 else ""))
        if recs[-1]["holds"]:
            return i, recs
    return None, recs


def sweep_thresholds(student: BayesianStudent, stats: dict, env_id: str, thresholds: list[float],
                     episodes: int, seed: int) -> list[dict]:
    """Return distribution and size of one trained student collapsed at each threshold."""
    rows = []
    saved = [layer.threshold for layer in student.layers]
    try:
        for th in thresholds:
            for layer in student.layers:
                layer.threshold = th
            pol = student.collapse(**stats)
            ep = rollouts(env_id, pol.act, episodes, seed)
            s = ep.summary()
            rows.append({"threshold": float(th), "params_nonzero": pol.params_nonzero,
                         "params_total": pol.params_total, "sparsity_weights": student.sparsity()} | {k: s[k] for k in (
                             "return_mean", "return_std", "return_min", "return_median", "early_terminations")})
    finally:
        for layer, th in zip(student.layers, saved):
            layer.threshold = th
    return rows


# --------------------------------------------------------------------------- commands


def _student_path(run: Path) -> Path:
    from training.checkpoint import check_finished

    check_finished(run)
    return run / "student.pt" if run.is_dir() else run


def check_env(env: str | None, meta: dict) -> None:
    """--env of `student sweep` and `student select`: an environment of the student's observations and actions."""
    if env:
        from training.envs import env_dims
        shape = env_dims(env)
        if shape != (meta["obs_dim"], meta["act_dim"]):
            raise BpdError(f"--env {env} has {shape[0]} observations and {shape[1]} actions, the student "
                           f"{meta['obs_dim']} and {meta['act_dim']}")


def run_sweep(cfg: SweepConfig) -> dict:
    from bpd.io import save_png
    from training.student import load_student

    check_ranges(cfg, {"episodes": (1, 10_000), "seed": (0, 2**31 - 1), "thresholds": (-50, 50)})
    if cfg.seed + cfg.episodes > TRAIN_EVAL_BASE:  # what it writes is a report: bpd evaluate refuses these too
        raise BpdError(f"--seed {cfg.seed} with --episodes {cfg.episodes} reaches seed {cfg.seed + cfg.episodes - 1}:"
                       f" a sweep reports, on seeds below {TRAIN_EVAL_BASE}; those above are the ones runs choose "
                       "their students on (training evaluations, selection)")
    student, meta, stats = load_student(_student_path(Path(cfg.run)))
    env_id = cfg.env or meta["env_id"]
    check_env(cfg.env, meta)
    rows = sweep_thresholds(student, stats, env_id, sorted(cfg.thresholds), cfg.episodes, cfg.seed)
    result = {"run": cfg.run, "env_id": env_id, "trained_threshold": meta["threshold"], "episodes": cfg.episodes,
              "seeds": [cfg.seed, cfg.seed + cfg.episodes - 1], "rows": rows,
              "mask_frozen": finetuned(student.state_dict()),
              "log_alpha_clip": next((float(getattr(m, "log_alpha_clip")) for m in student.modules()  # noqa: B009
                                      if hasattr(m, "log_alpha_clip")), None)}
    if cfg.out:
        write_json(cfg.out, result)
        save_png(plot_sweep({env_id: result}), Path(cfg.out).with_suffix(".png"))
    return result


def sweep_note(result: dict) -> str | None:
    """The line `bpd student sweep` adds where the student's mask was frozen by the fine-tune: its weights' log
    alpha sit at the clip, -clip kept and +clip pruned (training/svdo.py freeze sets log sigma^2 to -+40), so the
    thresholds between give the same network."""
    if not result.get("mask_frozen"):
        return None
    c = result.get("log_alpha_clip") or 10.0
    return ("note: this student was fine-tuned on a frozen mask (--finetune, distill's default): its weights' log "
            f"alpha sit at the clip, -{c:g} (kept) or +{c:g} (pruned), so thresholds between them give the same "
            "network; to see "
            "other sizes, choose among the run's candidates with `bpd student select`, or sweep a run distilled "
            "with --finetune 0")


def plot_sweep(results: dict[str, dict]) -> Figure:
    """Return (left) and nonzero parameters (right) against the threshold, one line per environment."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in results.items():
        th = [x["threshold"] for x in r["rows"]]
        a1.errorbar(th, [x["return_mean"] for x in r["rows"]], yerr=[x["return_std"] for x in r["rows"]],
                    marker="o", capsize=3, label=name)
        a2.plot(th, [x["params_nonzero"] for x in r["rows"]], marker="s", label=name)
    a1.set_xlabel("pruning threshold on log alpha")
    a1.set_ylabel("return (mean +- std)")
    a2.set_xlabel("pruning threshold on log alpha")
    a2.set_ylabel("nonzero parameters")
    a2.set_yscale("log")
    for a in (a1, a2):
        a.axvline(3.0, color="grey", ls=":", lw=1)
        a.legend(fontsize=7)
    return fig


SELECTED = "selected.pt"  # --out's default name, also the file a directory given as --out gets
RUN_FILES = ("config.json", "student.pt", "candidates.pt", "checkpoint.pt", "metrics.csv", "summary.json")


def _select_out(run: Path, out: str) -> Path:
    """Where `student select` writes: a relative --out inside the run directory (never above it), and
    never over one of the run's own files; a directory (one that exists, or a path ending in /) gets the default
    file name in it (DIR/selected.pt), not a file named as the directory."""
    from bpd.io import check_output_path

    p = Path(out)
    if out.endswith(("/", os.sep)) or (p if p.is_absolute() else run / p).is_dir():
        p = p / SELECTED
    if not p.is_absolute():
        if ".." in p.parts:
            raise BpdError(f"--out {out}: a relative path stays inside the run directory (no '..'); "
                           "give an absolute path to write elsewhere")
        p = run / p
    if p.parent.resolve() == run.resolve() and p.name in RUN_FILES:
        raise BpdError(f"{p}: is one of the run's own files; choose another --out")
    check_output_path(p)
    return p


def _not_a_run(run: Path) -> str:
    """Why a directory without candidates is none `student select` can choose in: a `bpd compress` directory (its
    runs one level down), no run at all, or a run of a version before candidates.pt."""
    if (run / "compress.json").is_file():
        runs = sorted(p.name for p in run.iterdir() if (p / "candidates.pt").is_file())
        return ("a `bpd compress` directory, not a run: choose within one of its runs"
                + (f" ({', '.join(runs)}), e.g. {run / runs[0]}" if runs else ""))
    if not (run / "config.json").is_file():
        return "not a distillation run (no config.json, no candidates.pt); give the directory `bpd distill --out` wrote"
    return "no candidates.pt (a run of this version keeps its evaluated students there)"


def run_select(cfg: SelectConfig, meter: Callable[[str], Callable[[MLPPolicy], Cost]] | None = None) -> dict:
    """`bpd student select`; meter(cost) gives the cost function of --cost other than nonzero (the firmware
    room's, which wires the command)."""
    from training.checkpoint import check_finished
    from training.student import load_student, save_student
    from training.teacher import load_teacher

    run = Path(cfg.run)
    check_ranges(cfg, {"episodes": (1, 10_000), "keep_return": (0, 1, "open"), "thresholds": (-50, 50),
                       "low_share": (0, 1)})
    check_block(cfg.episodes, "--episodes", "the selection")
    if cfg.low_share and not cfg.no_falls:
        raise BpdError("--low-share widens the falls --no-falls sets aside: give --no-falls too")
    if not 0 <= cfg.tol < 1:
        raise BpdError("--tol is a fraction of the best return, at least 0 and below 1, e.g. 0.02")
    if not run.is_dir():  # a student file or a teacher given for its run: said so, not as an unwritable --out
        raise BpdError(f"{run}: " + ("not a directory; give the run directory `bpd distill --out` wrote"
                                     if run.exists() else "no such run directory"))
    check_finished(run)
    out = _select_out(run, cfg.out)
    summary = _select_out(run, cfg.summary) if cfg.summary else None
    if summary is not None and summary.resolve() == out.resolve():
        raise BpdError(f"--summary {cfg.summary}: the same file as --out; name another")
    run_summary = read_json(run / "summary.json", "run summary") if summary is not None else None
    cands = load_candidates(_student_path(run).parent / "candidates.pt")
    if not cands:
        raise BpdError(f"{run}: {_not_a_run(run)}")
    student, meta, stats = load_student(run / "student.pt")
    try:
        import json
        run_cfg = json.loads((run / "config.json").read_text())
        tpath = str(path_from_record(run_cfg["teacher"], run))
        run_seed = int(run_cfg["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BpdError(f"{run}/config.json: unreadable run configuration") from None
    cost = cfg.cost or run_cost(run_cfg)
    env_id = cfg.env or meta["env_id"]
    check_env(cfg.env, meta)
    cost_fn: Callable[[MLPPolicy], Cost] | None = None
    if cost == "smlad":
        cost_fn = smlad_cost
    elif cost != "nonzero":
        if meter is None:
            raise BpdError(f"--cost {cost} needs the emulated Cortex-M meter (run it as `bpd student select`)")
        cost_fn = meter(cost)
    t0 = time.time()
    if cfg.rule == "keep-return":  # the teacher is needed only to set the target
        res = select(cands, meta, stats, env_id, run_seed, "sparsest-within", 0.0, cfg.episodes,
                     None, cfg.keep_return, load_teacher(tpath).act, cfg.thresholds, cost_fn, cost,
                     no_falls=cfg.no_falls, low_share=cfg.low_share)
        res["rule"] = (rule_text("sparsest-within", 0.0, cfg.keep_return, cost)
                       + falls_rule_text(cfg.no_falls, cfg.low_share))
    else:
        res = select(cands, meta, stats, env_id, run_seed, "sparsest-within", cfg.tol, cfg.episodes,
                     None, None, load_teacher(tpath).act if cfg.no_falls else None, cfg.thresholds, cost_fn,
                     cost, no_falls=cfg.no_falls, low_share=cfg.low_share)
        res["rule"] = (rule_text("sparsest-within", cfg.tol, None, cost) + "; every candidate judged"
                       + (f"; smallest by {cost}" if cost_fn else "") + falls_rule_text(cfg.no_falls, cfg.low_share))
    ch = res["chosen"]
    if ch.get("constant"):  # every candidate: what the export refuses, so nothing is written
        ths = sorted({r["threshold"] for r in res["rows"]})
        raise AllConstant(f"every candidate at threshold {', '.join(f'{t:g}' for t in ths)} is a constant (every path "
                       "from the observations to the actions pruned), which the export refuses: nothing written; "
                       f"try a higher --thresholds (the run's: {meta['threshold']:g})")
    chosen = student_from(meta, next(c.state_dict for c in cands if c.step == ch["step"]), ch["threshold"])
    out.parent.mkdir(parents=True, exist_ok=True)
    # the run it came from, relative to the file (written elsewhere, `bpd export` finds the run's data and teacher
    # through it: export.export.student_run)
    save_student(out, chosen, meta | {"threshold": ch["threshold"], "step": ch["step"],
                                      "selection": {k: v for k, v in res.items() if k != "rows"}
                                      | {"env": env_id, "run": path_for_record(run, out.parent)}}, stats)
    if summary is not None and run_summary is not None:  # the run's summary with this selection in its place
        seconds = time.time() - t0
        summary.parent.mkdir(parents=True, exist_ok=True)
        write_json(summary, run_summary | {
            "selection": res, "select_seconds": round(seconds, 2), "params_nonzero": ch["params_nonzero"],
            "seconds": round(float(run_summary.get("seconds") or 0.0) + seconds, 1), "reselected": True})
    return res | {"out": str(out), "cost": cost}
