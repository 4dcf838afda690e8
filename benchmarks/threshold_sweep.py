"""The CThreshold study: return and sparsity against the pruning threshold, per environment.

    python benchmarks/threshold_sweep.py [--plan benchmarks/plans/benchmark.yaml] [--runs DIR] [--out DIR]
                                         [--episodes 10]

Collapses every finished BPD student of the plan's run root at each threshold (no retraining) and
evaluates it on the reporting seeds. Writes <out>/threshold_sweep.{json,md,png} (default out:
benchmarks/results/<plan name>). Students are kept only in the run root, which can be lost: the
seeds swept before and not at hand now are kept from the committed threshold_sweep.json, so a sweep
over a new run root adds to the study instead of replacing it. Each seed records the plan whose cell
trained it and its student's sha256 (benchmarks/plans/sweep.yaml retrains the benchmark's cells
under the same specification when theirs are gone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import read_json, save_png, sha256_file, write_json, write_text  # noqa: E402
from bpd_app.experiment.plan import load_plan  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]


def aggregate(seeds: list[dict]) -> list[dict]:
    """Per threshold: return mean, std and worst over seeds, nonzero mean and range."""
    rows = []
    for i, th in enumerate(THRESHOLDS):
        rets = [x["rows"][i]["return_mean"] for x in seeds]
        nz = [x["rows"][i]["params_nonzero"] for x in seeds]
        rows.append({"threshold": th, "return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)),
                     "return_worst_seed": float(np.min(rets)), "params_nonzero": float(np.mean(nz)),
                     "params_nonzero_range": [int(min(nz)), int(max(nz))]})
    return rows


def sweep(plan, label: str, episodes: int, kept: dict) -> dict:
    """{env: {seeds, rows, per_seed}}: the students at hand swept now, the rest kept from `kept`
    (a committed threshold_sweep.json's envs) where they were swept with the same thresholds."""
    from training.selection import sweep_thresholds
    from training.student import load_student

    per_env: dict[str, dict] = {}
    for env in plan.envs:
        old = {int(x["seed"]): x for x in (kept.get(env) or {}).get("per_seed", [])
               if [r["threshold"] for r in x["rows"]] == THRESHOLDS}
        seeds = []
        for s in plan.seeds:
            student = plan.runs / env / label / f"seed{s}" / "run" / "student.pt"
            digest = sha256_file(student) if student.is_file() else None
            if digest is not None and (old.get(s) or {}).get("student_sha256") != digest:
                net, _meta, stats = load_student(student)
                old[s] = {"seed": s, "plan": plan.rel(plan.path), "student_sha256": digest,
                          "rows": sweep_thresholds(net, stats, env, THRESHOLDS, episodes, plan.eval["seed"])}
            if s in old:
                seeds.append(old[s])
        for s in sorted(set(old) - set(plan.seeds)):  # seeds another plan swept
            seeds.append(old[s])
        if seeds:
            seeds.sort(key=lambda x: x["seed"])
            per_env[env] = {"seeds": [x["seed"] for x in seeds], "rows": aggregate(seeds), "per_seed": seeds}
    for env in kept:  # environments this plan does not run
        if env not in per_env:
            per_env[env] = kept[env]
    return per_env


def markdown(per_env: dict, default_plan: str, label: str, episodes: int, command: str) -> str:
    lines = ["# CThreshold sweep", "", f"`{command}`: each finished {label} student collapsed at each log alpha "
             f"threshold, {episodes} episodes on the reporting seeds; mean over seeds +- std (worst seed); the "
             "students were trained and selected at 3.", ""]
    for env, r in per_env.items():
        by_plan: dict[str, list[int]] = {}
        for x in r["per_seed"]:
            by_plan.setdefault(x.get("plan", default_plan), []).append(x["seed"])
        src = "; ".join(f"seed{'s' if len(v) > 1 else ''} {', '.join(map(str, v))}: the cell of `{k}`"
                        for k, v in by_plan.items())
        lines += [f"## {env} (seeds {', '.join(map(str, r['seeds']))})", "", f"Students: {src}.", "",
                  "| threshold | return | worst seed | nonzero (mean, range) |", "|---|---|---|---|"]
        lines += [f"| {x['threshold']:g} | {x['return_mean']:.1f} +- {x['return_std']:.1f} | "
                  f"{x['return_worst_seed']:.1f} "
                  f"| {x['params_nonzero']:.0f} ({x['params_nonzero_range'][0]}-{x['params_nonzero_range'][1]}) |"
                  for x in r["rows"]]
        lines.append("")
    lines.append("![threshold sweep](threshold_sweep.png)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from training.selection import plot_sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(ROOT / "benchmarks" / "plans" / "benchmark.yaml"))
    ap.add_argument("--runs", default=None, help="run root (default: as for `bpd experiment run`)")
    ap.add_argument("--out", default=None, help="results directory (default: benchmarks/results/<plan name>)")
    ap.add_argument("--label", default="bpd", help="method label whose students are swept")
    ap.add_argument("--episodes", type=int, default=10)
    ns = ap.parse_args(argv)
    try:
        plan = load_plan(ns.plan, ns.runs)
        out_dir = Path(ns.out) if ns.out else plan.results_dir
        committed = read_json(out_dir / "threshold_sweep.json") if (out_dir / "threshold_sweep.json").is_file() else {}
        if committed and (committed.get("episodes") != ns.episodes or committed.get("thresholds") != THRESHOLDS):
            committed = {}  # another study: nothing of it is kept
        default_plan = committed.get("plan", plan.rel(plan.path))
        per_env = sweep(plan, ns.label, ns.episodes, committed.get("envs") or {})
    except BpdError as e:
        print(f"threshold_sweep: error: {e}", file=sys.stderr)
        return 1
    if not per_env:
        print(f"threshold_sweep: error: no finished {ns.label} students in {plan.rel(plan.runs)} and none swept "
              "before: run the plan first", file=sys.stderr)
        return 1
    write_json(out_dir / "threshold_sweep.json", {"plan": default_plan, "episodes": ns.episodes,
                                                  "eval_seed": plan.eval["seed"], "thresholds": THRESHOLDS,
                                                  "envs": per_env})
    save_png(plot_sweep(per_env), out_dir / "threshold_sweep.png")
    command = "python benchmarks/threshold_sweep.py --plan " + plan.rel(plan.path) + (
        f" --out {plan.rel(out_dir)}" if ns.out else "")
    write_text(out_dir / "threshold_sweep.md", markdown(per_env, default_plan, ns.label, ns.episodes, command))
    print(f"wrote {plan.rel(out_dir / 'threshold_sweep.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
