"""The CThreshold study: return and sparsity against the pruning threshold, per environment.

    python benchmarks/threshold_sweep.py [--plan benchmarks/plans/benchmark.yaml] [--episodes 10]

Collapses every finished BPD student of the plan at each threshold (no retraining) and evaluates
it on the reporting seeds. Writes benchmarks/results/<plan>/threshold_sweep.{json,md,png}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bpd.io import save_png, write_json, write_text
from bpd_app.experiment import load_plan
from training.selection import plot_sweep, sweep_thresholds
from training.student import load_student

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(ROOT / "benchmarks" / "plans" / "benchmark.yaml"))
    ap.add_argument("--label", default="bpd", help="method label whose students are swept")
    ap.add_argument("--episodes", type=int, default=10)
    ns = ap.parse_args()
    plan = load_plan(ns.plan)
    out_dir = ROOT / "benchmarks" / "results" / plan.name
    per_env: dict[str, dict] = {}
    for env in plan.envs:
        seeds = []
        for s in plan.seeds:
            run = plan.runs / env / ns.label / f"seed{s}" / "run" / "student.pt"
            if not run.exists():
                continue
            student, meta, stats = load_student(run)
            seeds.append({"seed": s, "rows": sweep_thresholds(student, stats, env, THRESHOLDS, ns.episodes,
                                                              plan.eval["seed"])})
        if not seeds:
            continue
        rows = []
        for i, th in enumerate(THRESHOLDS):
            rets = [x["rows"][i]["return_mean"] for x in seeds]
            nz = [x["rows"][i]["params_nonzero"] for x in seeds]
            rows.append({"threshold": th, "return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)),
                         "return_worst_seed": float(np.min(rets)), "params_nonzero": float(np.mean(nz)),
                         "params_nonzero_range": [int(min(nz)), int(max(nz))]})
        per_env[env] = {"seeds": [x["seed"] for x in seeds], "rows": rows, "per_seed": seeds}
    if not per_env:
        raise SystemExit(f"no finished {ns.label} cells in {plan.rel(plan.runs)}: run the plan first")
    write_json(out_dir / "threshold_sweep.json", {"plan": plan.rel(plan.path), "episodes": ns.episodes,
                                                  "eval_seed": plan.eval["seed"], "thresholds": THRESHOLDS,
                                                  "envs": per_env})
    save_png(plot_sweep(per_env), out_dir / "threshold_sweep.png")
    lines = ["# CThreshold sweep", "", f"`python benchmarks/threshold_sweep.py --plan {plan.rel(plan.path)}`: each "
             f"finished {ns.label} student collapsed at each log alpha threshold, {ns.episodes} episodes on the "
             "reporting seeds; mean over seeds +- std (worst seed); the students were trained and selected at 3.", ""]
    for env, r in per_env.items():
        lines += [f"## {env} (seeds {', '.join(map(str, r['seeds']))})", "",
                  "| threshold | return | worst seed | nonzero (mean, range) |", "|---|---|---|---|"]
        lines += [f"| {x['threshold']:g} | {x['return_mean']:.1f} +- {x['return_std']:.1f} | "
                  f"{x['return_worst_seed']:.1f} "
                  f"| {x['params_nonzero']:.0f} ({x['params_nonzero_range'][0]}-{x['params_nonzero_range'][1]}) |"
                  for x in r["rows"]]
        lines.append("")
    lines.append("![threshold sweep](threshold_sweep.png)")
    write_text(out_dir / "threshold_sweep.md", "\n".join(lines) + "\n")
    print(f"wrote {plan.rel(out_dir / 'threshold_sweep.md')}")


if __name__ == "__main__":
    main()
