"""Choosing by a return target after training: `bpd student select --keep-return` on a plan's students.

    python benchmarks/keep_return_study.py [--plan benchmarks/plans/benchmark.yaml] [--label bpd]
                                           [--keep-return 0.95] [--runs DIR] [--out DIR]

A distillation run hands over the student its stated rule chose (sparsest within 2 % of the best on
the selection seeds, among the candidates whose periodic evaluation was near the best). A user can
instead ask afterwards for the smallest evaluated student that keeps a share of the teacher's return
on the selection seeds (`bpd student select RUN --keep-return X`), judging every candidate. For each
finished cell of the plan this runs that selection (10 episodes on the run's selection seeds, which
are disjoint from the reporting seeds), evaluates the chosen student on the plan's reporting episodes
and puts it beside the student the run handed over: return, share of the teacher's, early ends where
the teacher finished, nonzero parameters and the step it came from. The choice is cached in the cell
(keep-return-<X>.json, keyed by the candidates file's hash).

Writes benchmarks/results/<plan>/keep_return.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import read_json, write_json, write_text  # noqa: E402
from bpd_app.evaluate import EvaluateConfig, run_evaluate  # noqa: E402
from bpd_app.experiment import collect_results, load_plan  # noqa: E402
from export.collapse import collapse  # noqa: E402
from export.export import load_source  # noqa: E402
from training.selection import SelectConfig, run_select  # noqa: E402

SELECT_EPISODES = 10


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_nonzero(student: Path) -> int:
    """Nonzero parameters of the network the export would ship (dead units removed), as the tables count."""
    return collapse(load_source(student).policy).params_nonzero


def early_where_teacher_finished(terminated: list[bool], teacher_terminated: list[bool]) -> int:
    return sum(1 for s, t in zip(terminated, teacher_terminated) if s and not t)


def keep_return_cell(cell_dir: Path, env: str, keep: float, episodes: int, seed: int,
                     teacher_eval_path: Path) -> dict:
    """The keep-return choice of one finished cell and its reporting evaluation in env (cached in the cell)."""
    teacher_eval = read_json(teacher_eval_path)
    run = cell_dir / "run"
    cache = cell_dir / f"keep-return-{keep:g}.json"
    key = {"candidates_sha256": _sha(run / "candidates.pt"), "keep_return": keep, "select_episodes": SELECT_EPISODES,
           "episodes": episodes, "seed": seed, "env": env, "teacher_eval_sha256": _sha(teacher_eval_path)}
    old = read_json(cache) if cache.is_file() else None
    if old and old.get("key") == key:
        return old
    out = f"keep-return-{keep:g}.pt"
    sel = run_select(SelectConfig(run=str(run), keep_return=keep, episodes=SELECT_EPISODES, out=out))
    ev = run_evaluate(EvaluateConfig(model=str(run / out), env=env, episodes=episodes, seed=seed))
    rec = {"key": key, "chosen": sel["chosen"], "keep_return_met": sel["keep_return_met"],
           "teacher_select_return": sel["teacher_select_return"], "candidates": len(sel["rows"]),
           "rows": [{k: x[k] for k in ("step", "threshold", "select_return", "params_nonzero")} for x in sel["rows"]],
           "eval": {k: ev[k] for k in ("return_mean", "return_std", "return_min", "early_terminations", "terminated")},
           "params_nonzero": shipped_nonzero(run / out),
           "early_where_teacher_finished": early_where_teacher_finished(ev["terminated"],
                                                                        teacher_eval.get("terminated", []))}
    write_json(cache, rec)
    return rec


def _spread(xs: list[float]) -> str:
    return f"{np.mean(xs):,.1f} +- {np.std(xs):,.1f} (worst {np.min(xs):,.1f})"


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(root / "benchmarks" / "plans" / "benchmark.yaml"))
    ap.add_argument("--label", default="bpd", help="method label whose runs are re-selected")
    ap.add_argument("--keep-return", type=float, default=0.95, help="share of the teacher's selection return")
    ap.add_argument("--runs", default=None, help="run root (default: as for `bpd experiment run`)")
    ap.add_argument("--envs", nargs="*", default=None, help="only these environments (the files then hold only them)")
    ap.add_argument("--out", default=None, help="output directory (default: benchmarks/results/<plan name>)")
    ns = ap.parse_args()
    try:
        plan = load_plan(ns.plan, ns.runs)
        if ns.label not in plan.methods:
            raise BpdError(f"{plan.rel(plan.path)} has no method labelled {ns.label!r}")
        if not 0 < ns.keep_return <= 2:
            raise BpdError("--keep-return is a fraction of the teacher's return, e.g. 0.95")
        envs: dict[str, list[dict]] = {}
        for r in collect_results(plan):
            if r["label"] != ns.label or not r["result"] or (ns.envs and r["env"] not in ns.envs):
                continue
            cell_dir = plan.runs / r["env"] / r["label"] / f"seed{r['seed']}"
            if not (cell_dir / "run" / "candidates.pt").is_file():
                continue
            k = keep_return_cell(cell_dir, r["env"], ns.keep_return, plan.eval["episodes"], plan.eval["seed"],
                                 plan.teacher_eval_path(r["env"]))
            res = r["result"]
            t_ret = res["teacher"]["return_mean"]
            row = {"seed": r["seed"], "teacher_return": t_ret,
                   "handed_over": {"step": ((res.get("train") or {}).get("selection") or {}).get("step"),
                                   "return": res["eval"]["return_mean"], "vs_teacher": res["return_vs_teacher"],
                                   "early": res["early_terminations_where_teacher_finished"],
                                   "nonzero": res["params_nonzero"]},
                   "keep_return": {"step": k["chosen"]["step"], "return": k["eval"]["return_mean"],
                                   "vs_teacher": k["eval"]["return_mean"] / t_ret,
                                   "early": k["early_where_teacher_finished"],
                                   "nonzero": k["params_nonzero"], "met_on_selection": k["keep_return_met"],
                                   "select_return": k["chosen"]["select_return"],
                                   "teacher_select_return": k["teacher_select_return"],
                                   "candidates": k["candidates"]}}
            envs.setdefault(r["env"], []).append(row)
            print(f"{r['env']} seed {r['seed']}: handed over {row['handed_over']['return']:.1f} "
                  f"({row['handed_over']['nonzero']} nonzero), keep-return {row['keep_return']['return']:.1f} "
                  f"({row['keep_return']['nonzero']} nonzero, step {row['keep_return']['step']})", flush=True)
        if not envs:
            raise BpdError(f"no finished {ns.label} cells with candidates in {plan.rel(plan.runs)}: run the plan first")
    except BpdError as e:
        raise SystemExit(f"keep_return_study: error: {e}") from None
    out = Path(ns.out) if ns.out else root / "benchmarks" / "results" / plan.name
    write_json(out / "keep_return.json", {"plan": plan.rel(plan.path), "label": ns.label,
                                          "keep_return": ns.keep_return, "select_episodes": SELECT_EPISODES,
                                          "eval": plan.eval, "envs": envs})
    cmd = f"python benchmarks/keep_return_study.py --plan {plan.rel(plan.path)} --keep-return {ns.keep_return:g}"
    cmd += f" --label {ns.label}" if ns.label != "bpd" else ""
    cmd += f" --envs {' '.join(ns.envs)}" if ns.envs else ""
    lines = [f"# Choosing by a return target after training ({plan.name}, {ns.label})", "",
             f"`{cmd}`: for each finished cell, `bpd student select RUN --keep-return {ns.keep_return:g}` (the "
             f"fewest nonzero parameters among every evaluated student whose return on {SELECT_EPISODES} selection "
             "episodes keeps that share of the teacher's on the same episodes; where none does, 'met' is no and "
             "the one with the highest selection return is chosen), then the chosen student on the "
             f"plan's {plan.eval['episodes']} reporting episodes, beside the student the run handed over by its "
             "own rule. Early ends: episodes ending early where the teacher finished.", ""]
    for env, rows in envs.items():
        h = [x["handed_over"] for x in rows]
        k = [x["keep_return"] for x in rows]
        lines += [f"## {env} (seeds {', '.join(str(x['seed']) for x in rows)})", "",
                  "| student | return: mean +- std over seeds (worst seed) | % of teacher (worst) | early ends "
                  "| nonzero |", "|---|---|---|---|---|"]
        for name, xs in (("handed over (run's rule)", h), (f"keep-return {ns.keep_return:g}", k)):
            lines.append(f"| {name} | {_spread([x['return'] for x in xs])} "
                         f"| {100 * np.mean([x['vs_teacher'] for x in xs]):.1f} % "
                         f"({100 * np.min([x['vs_teacher'] for x in xs]):.1f} %) "
                         f"| {sum(x['early'] for x in xs)} of {plan.eval['episodes'] * len(xs)} "
                         f"| {min(x['nonzero'] for x in xs):,}-{max(x['nonzero'] for x in xs):,} |")
        lines += ["", "| seed | handed over: step, return, early ends, nonzero | keep-return: step, return, early "
                  "ends, nonzero, met on the selection seeds |", "|---|---|---|"]
        for x in rows:
            a, b = x["handed_over"], x["keep_return"]
            step = "-" if a["step"] is None else f"{a['step']:,}"
            lines.append(f"| {x['seed']} | {step}, {a['return']:,.1f}, "
                         f"{a['early']}, {a['nonzero']:,} | {b['step']:,}, "
                         f"{b['return']:,.1f}, {b['early']}, {b['nonzero']:,}, "
                         f"{'yes' if b['met_on_selection'] else 'no'} |")
        lines.append("")
    write_text(out / "keep_return.md", "\n".join(lines))
    print(f"wrote {out / 'keep_return.md'}")


if __name__ == "__main__":
    main()
