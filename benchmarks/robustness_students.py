"""Robustness scores of a plan's students (issue 39): per environment of the plan with a finished cell, its
teacher and each finished cell's BPD student as its exported C, scored on the six categories of
training/robustness.py (`bpd evaluate MODEL --robustness`'s machinery) on the grid `default_grid` scales
from the task's actuators, 21 variations per sweep.

    python benchmarks/robustness_students.py [benchmarks/plans/students.yaml] [--runs DIR] [--episodes 3]
                                             [--only PREFIX ...] [--redo]
    python benchmarks/robustness_students.py --table-only    # the md and the plots again from the JSON

Controllers: the plan's teacher (its numpy actor) and, per finished cell (result.json) whose run directory
holds its export (CELL/export, which the runner writes for a plan with bench: true), the float C kernel the
export ships and the integer kernel built beside it from the same model, where there is one (CELL/export/int,
else CELL/cost/int from benchmarks/cost_benchmark.py). Every controller meets the same seeds (episode i of
every variation: seed i). Incremental and resumable: each controller's scores are written to the JSON as soon
as it is done, and a controller already there under the same grid, episode count and model
(robustness_benchmark.model_key) is kept unless --redo. Each student's row also gives its cell's return and
nonzero count from the cell's result.json (the students' table of `bpd experiment table` is the experiment
package's; this is its robustness column). Writes benchmarks/results/robustness-students.json, .md and
robustness-students/<env>.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from robustness_benchmark import (  # noqa: E402
    CATEGORY_NAMES,
    grid_line,
    kept,
    model_key,
    portable_arg,
    rel,
    say,
    seed_spread,
    summary,
)

from bpd.errors import BpdError  # noqa: E402
from bpd.io import write_json, write_text  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
NAME = "robustness-students"
KINDS = ("float C", "integer C")


def student_name(label: str, seed: int, kind: str) -> str:
    """The name robustness_benchmark.seed_spread groups by kind over seeds."""
    return f"BPD {label}-s{seed} ({kind})"


def cell_record(cell_dir: Path) -> dict:
    """A finished cell's figures from its result.json, and the exports of its student in the run directory
    (paths relative to the cell's directory): the float C export and, where it is the same model, an integer
    kernel."""
    r = json.loads((cell_dir / "result.json").read_text())
    state = json.loads((cell_dir / "cell.json").read_text()) if (cell_dir / "cell.json").is_file() else {}
    rec = {"return_mean": r["eval"]["return_mean"], "episodes": r["eval"]["episodes"],
           "return_vs_teacher": r["return_vs_teacher"], "params_nonzero": r["params_nonzero"],
           "teacher_return_mean": r["teacher"]["return_mean"], "teacher_params_total": r["teacher"]["params_total"],
           "model_hash": (r.get("export") or {}).get("model_hash"),
           "restored_from": state.get("restored_from"), "exports": {}}
    fkey = model_key(cell_dir / "export")
    if fkey and rec["model_hash"] and rec["model_hash"] in fkey:
        rec["exports"]["float C"] = "export"
        for d in ("export/int", "cost/int"):
            if model_key(cell_dir / d) == f"model {rec['model_hash']} (integer)":
                rec["exports"]["integer C"] = d
                break
    return rec


def score_env(plan, env: str, cells: list, episodes: int, res: dict, redo: bool, command: str, out: Path) -> None:
    from bpd_app.evaluate import load_any
    from training.envs import make_env
    from training.robustness import grid_for, robustness

    probe = make_env(env)
    g = grid_for(probe)
    probe.close()
    grid = g.to_dict()
    entry = res["envs"].setdefault(env, {"controllers": {}, "cells": {}})
    entry |= {"env_id": env, "grid": grid, "teacher": rel(plan.teachers[env])}
    todo: list[tuple[str, Path, str, str | None]] = [("teacher", plan.teachers[env], rel(plan.teachers[env]), None)]
    for c in cells:
        rec = entry["cells"][c.key] = cell_record(c.dir)
        for kind, d in rec["exports"].items():
            todo.append((student_name(c.label, c.seed, kind), c.dir / d, f"{res['runs']}/{c.key}/{d}", c.key))
    for name, path, source, cell in todo:
        key = model_key(path)
        old = entry["controllers"].get(name)
        if not redo and kept(old, grid, episodes, key):
            old["source"] = source  # the same model (kept checks its key), where it is now
            print(f"{env} | {name}: kept ({old['overall']:.3f})", flush=True)
            continue
        act = load_any(path).act
        t0, c0 = time.time(), time.process_time()
        r = robustness(lambda: make_env(env), act, g, episodes, 0,
                       progress=functools.partial(say, f"{env} | {name}"))
        entry["controllers"][name] = {"source": source, "cell": cell, "model_key": key, "command": command,
                                      "seconds": round(time.time() - t0, 1),
                                      "cpu_seconds": round(time.process_time() - c0, 1),
                                      "scored_at": datetime.now(UTC).isoformat(timespec="seconds")} | r
        print(f"{env} | {name}: overall {r['overall']:.3f} in {time.process_time() - c0:.0f} s of CPU", flush=True)
        render(res, out, plots=False)  # every controller as soon as it is done: a long run keeps what it has


def timing(res: dict) -> dict:
    """What the scoring costs in CPU seconds: the first controller scored, the mean per controller, and the
    whole plan once every cell has finished (per environment a teacher and each seed's student in both kernels)
    at its environment's mean where one was scored, else at the mean over all."""
    ctrl = [(env, n, c) for env, e in res["envs"].items() for n, c in e["controllers"].items() if "cpu_seconds" in c]
    if not ctrl:
        return {}
    env, name, first = min(ctrl, key=lambda t: t[2]["scored_at"])
    mean = float(np.mean([c["cpu_seconds"] for _, _, c in ctrl]))
    per_env = 1 + len(KINDS) * res["seeds"]
    plan_seconds = sum(per_env * float(np.mean([c["cpu_seconds"] for e, _, c in ctrl if e == env_id] or [mean]))
                       for env_id in res["plan_envs"])
    return {"first": {"env": env, "controller": name, "cpu_seconds": first["cpu_seconds"],
                      "episodes_per_variation": first["episodes_per_variation"]},
            "controllers_scored": len(ctrl), "cpu_seconds_mean": mean,
            "cpu_seconds_total": float(sum(c["cpu_seconds"] for _, _, c in ctrl)),
            "plan_controllers": per_env * len(res["plan_envs"]), "plan_minutes": plan_seconds / 60,
            "episodes_per_variation": first["episodes_per_variation"]}


def score(c: dict | None) -> str:
    return "-" if c is None else f"{c['overall']:.3f}"


def env_section(env: str, e: dict) -> list[str]:
    cats = list(CATEGORY_NAMES)
    ctrl = e["controllers"]
    first = next(iter(ctrl.values()))
    ticks = [v["ticks"] for v in first["categories"]["delay"]["variations"]]
    per_tick = ", ".join(f"{ticks.count(k)} of {k} tick{'s' if k != 1 else ''}" for k in sorted(set(ticks)))
    lines = [f"## {env}", "", f"Variations: {grid_line(e['grid'])}.", "",
             f"The delay sweep in whole ticks of {e['grid']['period_s'] * 1000:g} ms: {per_tick}.", "",
             f"Success: {first['success_rule']}.", "",
             "| controller | overall | " + " | ".join(CATEGORY_NAMES[c] for c in cats)
             + " | nominal success | minutes (one core) |", "|---|---|" + "---|" * len(cats) + "---|---|"]
    for name, c in sorted(ctrl.items(), key=lambda kv: -kv[1]["overall"]):
        lines.append(f"| {name} | **{c['overall']:.3f}** | "
                     + " | ".join(f"{c['categories'][k]['score']:.3f}" for k in cats)
                     + f" | {c['nominal']['success'] * 100:.0f} % | {c.get('cpu_seconds', c['seconds']) / 60:.1f} |")
    lines += summary(ctrl, cats)
    cells = e["cells"]
    if cells:
        t = next(iter(cells.values()))
        lines += ["", "Each student with its cell's return over the plan's reporting episodes and nonzero count "
                  "(the cell's result.json) beside its robustness score:", "",
                  "| student | return | % of teacher | nonzero | robustness, float C | robustness, integer C |",
                  "|---|---|---|---|---|---|",
                  f"| teacher | {t['teacher_return_mean']:,.1f} | 100.0 % | {t['teacher_params_total']:,} | "
                  f"{score(ctrl.get('teacher'))} | - |"]
        for key, r in cells.items():
            label, seed = key.split("/")[1], int(key.rsplit("seed", 1)[1])
            rob = [score(ctrl.get(student_name(label, seed, k))) for k in KINDS]
            lines.append(f"| {key} | {r['return_mean']:,.1f} ({r['episodes']} ep.) | "
                         f"{r['return_vs_teacher'] * 100:.1f} % | {r['params_nonzero']:,} | {rob[0]} | {rob[1]} |")
        missing = [(k, r) for k, r in cells.items() if len(r["exports"]) < len(KINDS)]
        for k, r in missing:
            why = ("the cell was restored from its committed summary and its run directory holds no export of its "
                   "student" if r["restored_from"] and not r["exports"] else
                   "no export of its model in its run directory" if not r["exports"] else
                   "no integer kernel of its model beside the export (benchmarks/cost_benchmark.py builds one)")
            lines.append(f"\n{k}: {', '.join(x for x in KINDS if x not in r['exports'])} not scored: {why}.")
    lines += ["", f"![success against each variation]({NAME}/{env}.png)", ""]
    return lines


def markdown(res: dict) -> str:
    commands = sorted({c["command"] for e in res["envs"].values() for c in e["controllers"].values()})
    eps = sorted({c["episodes_per_variation"] for e in res["envs"].values() for c in e["controllers"].values()})
    t = timing(res)
    lines = [f"# Robustness of the {res['plan_name']} plan's teachers and students", "",
             "Made by " + " and ".join(f"`{c}`" for c in commands) + " (the tables and plots again: "
             "`python benchmarks/robustness_students.py --table-only`), on the finished cells of "
             f"{res['plan']} in its run root ({res.get('runs', '-')}).", "",
             "Six categories after the RealAIGym double-pendulum benchmark (training/robustness.py, as `bpd evaluate "
             "MODEL --robustness` scores them), their sizes the double pendulum's scaled to each task's actuators "
             "(training.robustness.default_grid): a category's score is the share of its episodes that succeed, "
             "the overall score the mean of the six. The model category holds four sweeps (masses, inertias, "
             "damping, Coulomb friction), the others one each. Every controller meets the same seeds. Students run "
             "as their cell's exported C: the float kernel the export ships and the integer kernel of the same "
             "model (the cell's run directory holds them).", ""]
    if t:
        f = t["first"]
        n = t["episodes_per_variation"]
        fits = "fits within" if t["plan_minutes"] <= 60 else "does not fit in"
        lines += [f"Episodes per variation: {', '.join(map(str, eps))} (seeds 0 to {max(eps) - 1}), as for the rigs "
                  f"(robustness.md), so that the scores compare; the whole plan then {fits} an hour of one core. "
                  f"Measured: the first controller scored, {f['env']}'s {f['controller']}, took "
                  f"{f['cpu_seconds'] / 60:.1f} min of one core at {f['episodes_per_variation']} episodes per "
                  f"variation; over the {t['controllers_scored']} controllers scored the mean is "
                  f"{t['cpu_seconds_mean'] / 60:.1f} min ({t['cpu_seconds_total'] / 60:.0f} min in all), so the "
                  f"plan's {t['plan_controllers']} controllers once every cell has finished (per environment a "
                  "teacher and each seed's student in both kernels), each environment at its own mean where one "
                  f"was scored, come to about {t['plan_minutes']:.0f} min; {n + 2} episodes per variation would "
                  f"take about {t['plan_minutes'] * (n + 2) / n:.0f} min. The time is CPU time (the scoring ran at a "
                  "low priority beside other work).", ""]
    lines += ["| environment | teacher | students, float C: mean +- std; worst (seed) | students, integer C | "
              "finished cells (students scored) |", "|---|---|---|---|---|"]

    def cell(spread: dict, kind: str) -> str:
        s = spread.get(f"BPD students ({kind})")
        if not s:
            return "-"
        o = s["overall"]
        if len(s["seeds"]) == 1:
            return f"{o['mean']:.3f} (s{s['seeds'][0]} only)"
        return f"{o['mean']:.3f} +- {o['std']:.3f}; {o['worst']:.3f} (s{o['worst_seed']}), {len(s['seeds'])} seeds"

    envs = [(env, res["envs"][env]) for env in res.get("plan_envs", []) if env in res["envs"]]  # the plan's order
    for env, e in envs:
        spread = seed_spread(e["controllers"])
        scored = sum(1 for r in e["cells"].values() if r["exports"])
        lines.append(f"| {env} | {score(e['controllers'].get('teacher'))} | {cell(spread, 'float C')} | "
                     f"{cell(spread, 'integer C')} | {len(e['cells'])} ({scored}) |")
    lines.append("")
    for env, e in envs:
        lines += env_section(env, e)
    return "\n".join(lines)


def render(res: dict, out: Path, plots: bool = True) -> None:
    for e in res["envs"].values():
        e["students"] = seed_spread(e["controllers"])
    res["timing"] = timing(res)
    res["markdown"] = markdown(res)
    write_json(out / f"{NAME}.json", res)
    write_text(out / f"{NAME}.md", res["markdown"])
    if plots:
        from training.robustness import plot

        for env, e in res["envs"].items():
            plot(e["controllers"], out / NAME / f"{env}.png", f"{env}: success against each variation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", default=str(ROOT / "benchmarks" / "plans" / "students.yaml"))
    ap.add_argument("--runs", default=None, help="the plan's run root (default: the runner's)")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per variation")
    ap.add_argument("--only", nargs="*", default=None,
                    help="score only environments and cells whose key (ENV/LABEL/seedN) starts with one of these")
    ap.add_argument("--redo", action="store_true", help="score again the controllers already in the JSON")
    ap.add_argument("--out", type=Path, default=OUT, help="results directory")
    ap.add_argument("--table-only", action="store_true", help="rewrite the md and the plots from the JSON")
    a = ap.parse_args()
    path = a.out / f"{NAME}.json"
    res = json.loads(path.read_text()) if path.is_file() else {"envs": {}}
    if not a.table_only:
        from bpd_app.experiment import load_plan

        try:
            plan = load_plan(a.plan, a.runs)
            res |= {"plan": rel(plan.path), "plan_name": plan.name, "plan_envs": plan.envs,
                    "seeds": len(plan.seeds), "runs": rel(a.runs) if a.runs else f"$BPD_RUNS/{plan.name}"}
            command = f"python benchmarks/robustness_students.py {' '.join(portable_arg(x) for x in sys.argv[1:])}"
            for env in plan.envs:
                cells = [c for c in plan.cells() if c.env == env and (c.dir / "result.json").is_file()
                         and (a.only is None or any(c.key.startswith(o) for o in a.only))]
                if cells:
                    score_env(plan, env, cells, a.episodes, res, a.redo, command.strip(), a.out)
                    render(res, a.out)
        except BpdError as e:
            raise SystemExit(f"robustness_students: error: {e}") from None
    render(res, a.out)
    print(res["markdown"])


if __name__ == "__main__":
    main()
