"""Choosing again after training: `bpd student select` on a plan's students, judged on the reporting seeds.

    python benchmarks/reselect_study.py [--plan benchmarks/plans/benchmark.yaml] [--label bpd]
                                        [--rule keep-return|sparsest-within] [--keep-return 0.95]
                                        [--tol 0.02] [--runs DIR] [--envs ENV ...] [--out DIR]

A distillation run hands over the student its stated rule chose: the sparsest within 2 % of the best
on the selection seeds, among the candidates whose periodic evaluation (5 episodes) was near the
best. Its evaluated students are kept (`candidates.pt`), so a user can choose again without
retraining (`bpd student select RUN`), judging every candidate on the selection seeds:
  keep-return      the fewest nonzero parameters whose selection return keeps a share of the
                   teacher's on the same episodes (where none does: the best, flagged)
  sparsest-within  the run's own rule, the fewest nonzero within a tolerance of the best, but over
                   every candidate rather than the periodic near-best shortlist
For each finished cell of the plan this runs that choice (10 episodes on the run's selection seeds,
disjoint from the reporting seeds), evaluates the chosen student on the plan's reporting episodes and
puts it beside the student the run handed over: return, share of the teacher's, early ends where the
teacher finished, nonzero parameters (counted as the export ships them) and the step it came from.
Each choice is cached in its cell (<rule>-<value>.json, keyed by the candidates' and the teacher
evaluation's hashes).

Writes benchmarks/results/<plan>/reselect-<rule>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import read_json, sha256_file, write_json, write_text  # noqa: E402
from bpd_app.evaluate import EvaluateConfig, run_evaluate  # noqa: E402
from bpd_app.experiment.plan import load_plan  # noqa: E402
from bpd_app.experiment.results import collect_results  # noqa: E402
from bpd_app.experiment.summary import early_where_teacher_finished  # noqa: E402
from export.collapse import collapse  # noqa: E402
from export.export import load_source  # noqa: E402
from training.selection import SelectConfig, load_candidates, run_select  # noqa: E402

SELECT_EPISODES = 10
RULES = ("keep-return", "sparsest-within")


def shipped_nonzero(student: Path) -> int:
    """Nonzero parameters of the network the export would ship (dead units removed), as the tables count."""
    return collapse(load_source(student).policy).params_nonzero


def reselect_cell(cell_dir: Path, env: str, rule: str, value: float, episodes: int, seed: int,
                  teacher_eval_path: Path) -> dict:
    """The rule's choice among one finished cell's candidates and its reporting evaluation in env
    (cached in the cell)."""
    run = cell_dir / "run"
    name = f"{rule}-{value:g}"
    cache = cell_dir / f"{name}.json"
    key = {"candidates_sha256": sha256_file(run / "candidates.pt"), "rule": rule, "value": value,
           "select_episodes": SELECT_EPISODES, "episodes": episodes, "seed": seed, "env": env,
           "teacher_eval_sha256": sha256_file(teacher_eval_path)}
    old = read_json(cache) if cache.is_file() else None
    if old and old.get("key") == key:
        return old
    cfg = SelectConfig(run=str(run), rule=rule, episodes=SELECT_EPISODES, out=f"{name}.pt",
                       **({"keep_return": value} if rule == "keep-return" else {"tol": value}))
    sel = run_select(cfg)
    ev = run_evaluate(EvaluateConfig(model=str(run / cfg.out), env=env, episodes=episodes, seed=seed))
    rec = {"key": key, "rule": sel["rule"], "chosen": sel["chosen"], "keep_return_met": sel["keep_return_met"],
           "teacher_select_return": sel["teacher_select_return"], "candidates": len(sel["rows"]),
           "rows": [{k: x[k] for k in ("step", "threshold", "select_return", "params_nonzero")} for x in sel["rows"]],
           "eval": {k: ev[k] for k in ("return_mean", "return_std", "return_min", "early_terminations", "terminated")},
           "params_nonzero": shipped_nonzero(run / cfg.out),
           "early_where_teacher_finished": early_where_teacher_finished(
               ev["terminated"], read_json(teacher_eval_path).get("terminated", []))}
    write_json(cache, rec)
    return rec


def _judged(run: Path, rows: list[dict]) -> list[dict]:
    periodic = {c.step: c.train_return for c in load_candidates(run / "candidates.pt")}
    return [{"step": r["step"], "periodic_return": periodic.get(r["step"]), "select_return": r["select_return"],
             "params_nonzero": r["params_nonzero"]} for r in rows]


def _spread(xs: list[float]) -> str:
    return f"{np.mean(xs):,.1f} +- {np.std(xs):,.1f} (worst {np.min(xs):,.1f})"


def markdown(plan, ns, value: float, envs: dict[str, list[dict]]) -> str:
    name = f"{ns.rule} {value:g}"
    cmd = f"python benchmarks/reselect_study.py --plan {plan.rel(plan.path)} --rule {ns.rule}"
    cmd += f" --keep-return {value:g}" if ns.rule == "keep-return" else f" --tol {value:g}"
    cmd += f" --label {ns.label}" if ns.label != "bpd" else ""
    cmd += f" --envs {' '.join(ns.envs)}" if ns.envs else ""
    what = (f"the fewest nonzero parameters among every evaluated student whose return on {SELECT_EPISODES} "
            f"selection episodes keeps {100 * value:g} % of the teacher's on the same episodes (where none does, "
            "'met' is no and the one with the highest selection return is chosen)" if ns.rule == "keep-return" else
            f"the fewest nonzero parameters among every evaluated student whose return on {SELECT_EPISODES} "
            f"selection episodes is within {100 * value:g} % of the best candidate's: the run's own rule, without "
            "its shortlist of the candidates whose periodic evaluation was near the best")
    lines = [f"# Choosing again after training: {name} ({plan.name}, {ns.label})", "",
             f"`{cmd}`: for each finished cell, `bpd student select RUN --rule {ns.rule}` ({what}), then the chosen "
             f"student on the plan's {plan.eval['episodes']} reporting episodes, beside the student the run handed "
             "over by its own rule. Early ends: episodes ending early where the teacher finished. Nonzero: as the "
             "export ships the network.", ""]
    for env, rows in envs.items():
        h = [x["handed_over"] for x in rows]
        k = [x["reselected"] for x in rows]
        lines += [f"## {env} (seeds {', '.join(str(x['seed']) for x in rows)})", "",
                  "| student | return: mean +- std over seeds (worst seed) | % of teacher (worst) | early ends "
                  "| nonzero |", "|---|---|---|---|---|"]
        for label, xs in (("handed over (run's rule)", h), (name, k)):
            lines.append(f"| {label} | {_spread([x['return'] for x in xs])} "
                         f"| {100 * np.mean([x['vs_teacher'] for x in xs]):.1f} % "
                         f"({100 * np.min([x['vs_teacher'] for x in xs]):.1f} %) "
                         f"| {sum(x['early'] for x in xs)} of {plan.eval['episodes'] * len(xs)} "
                         f"| {min(x['nonzero'] for x in xs):,}-{max(x['nonzero'] for x in xs):,} |")
        met = ", met on the selection seeds" if ns.rule == "keep-return" else ""
        lines += ["", f"| seed | handed over: step, return, early ends, nonzero | {name}: step, return, early ends, "
                  f"nonzero{met} |", "|---|---|---|"]
        for x in rows:
            a, b = x["handed_over"], x["reselected"]
            step = "-" if a["step"] is None else f"{a['step']:,}"
            tail = f", {'yes' if b['met_on_selection'] else 'no'}" if ns.rule == "keep-return" else ""
            lines.append(f"| {x['seed']} | {step}, {a['return']:,.1f}, {a['early']}, {a['nonzero']:,} "
                         f"| {b['step']:,}, {b['return']:,.1f}, {b['early']}, {b['nonzero']:,}{tail} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(root / "benchmarks" / "plans" / "benchmark.yaml"))
    ap.add_argument("--label", default="bpd", help="method label whose runs are chosen among again")
    ap.add_argument("--rule", default="keep-return", choices=RULES)
    ap.add_argument("--keep-return", type=float, default=0.95, help="keep-return: share of the teacher's return")
    ap.add_argument("--tol", type=float, default=0.02, help="sparsest-within: tolerance below the best return")
    ap.add_argument("--runs", default=None, help="run root (default: as for `bpd experiment run`)")
    ap.add_argument("--envs", nargs="*", default=None, help="only these environments (the files then hold only them)")
    ap.add_argument("--out", default=None, help="output directory (default: benchmarks/results/<plan name>)")
    ns = ap.parse_args()
    value = ns.keep_return if ns.rule == "keep-return" else ns.tol
    try:
        plan = load_plan(ns.plan, ns.runs)
        if ns.label not in plan.methods:
            raise BpdError(f"{plan.rel(plan.path)} has no method labelled {ns.label!r}")
        if ns.rule == "keep-return" and not 0 < value <= 2:
            raise BpdError("--keep-return is a fraction of the teacher's return, e.g. 0.95")
        if ns.rule == "sparsest-within" and not 0 <= value < 1:
            raise BpdError("--tol is a fraction of the best return, at least 0 and below 1, e.g. 0.02")
        envs: dict[str, list[dict]] = {}
        for r in collect_results(plan):
            if r["label"] != ns.label or not r["result"] or (ns.envs and r["env"] not in ns.envs):
                continue
            cell_dir = plan.runs / r["env"] / r["label"] / f"seed{r['seed']}"
            if not (cell_dir / "run" / "candidates.pt").is_file():
                continue
            k = reselect_cell(cell_dir, r["env"], ns.rule, value, plan.eval["episodes"], plan.eval["seed"],
                              plan.teacher_eval_path(r["env"]))
            res = r["result"]
            t_ret = res["teacher"]["return_mean"]
            row = {"seed": r["seed"], "teacher_return": t_ret,
                   "handed_over": {"step": ((res.get("train") or {}).get("selection") or {}).get("step"),
                                   "return": res["eval"]["return_mean"], "vs_teacher": res["return_vs_teacher"],
                                   "early": res["early_terminations_where_teacher_finished"],
                                   # counted as for the re-selected student (a plan with bench: false
                                   # records the evaluated network's count, before dead units go)
                                   "nonzero": shipped_nonzero(cell_dir / "run" / "student.pt")},
                   "reselected": {"step": k["chosen"]["step"], "return": k["eval"]["return_mean"],
                                  "vs_teacher": k["eval"]["return_mean"] / t_ret,
                                  "early": k["early_where_teacher_finished"], "nonzero": k["params_nonzero"],
                                  "met_on_selection": k["keep_return_met"],
                                  "select_return": k["chosen"]["select_return"],
                                  "teacher_select_return": k["teacher_select_return"],
                                  "candidates": k["candidates"],
                                  # every candidate: its periodic evaluation during training, its return on
                                  # the selection episodes and its size
                                  "judged": _judged(cell_dir / "run", k["rows"])}}
            envs.setdefault(r["env"], []).append(row)
            print(f"{r['env']} seed {r['seed']}: handed over {row['handed_over']['return']:.1f} "
                  f"({row['handed_over']['nonzero']} nonzero), {ns.rule} {row['reselected']['return']:.1f} "
                  f"({row['reselected']['nonzero']} nonzero, step {row['reselected']['step']})", flush=True)
        if not envs:
            raise BpdError(f"no finished {ns.label} cells with candidates in {plan.rel(plan.runs)}: run the plan first")
    except BpdError as e:
        raise SystemExit(f"reselect_study: error: {e}") from None
    out = Path(ns.out) if ns.out else root / "benchmarks" / "results" / plan.name
    write_json(out / f"reselect-{ns.rule}.json", {"plan": plan.rel(plan.path), "label": ns.label, "rule": ns.rule,
                                                  "value": value, "select_episodes": SELECT_EPISODES,
                                                  "eval": plan.eval, "envs": envs})
    write_text(out / f"reselect-{ns.rule}.md", markdown(plan, ns, value, envs))
    print(f"wrote {out / f'reselect-{ns.rule}.md'}")


if __name__ == "__main__":
    main()
