"""One multi-task student against three single-task students of the same total nonzero count.

    python benchmarks/multitask_benchmark.py [--seeds 0 1 2] [--steps 20000] [--nonzero N]

Tasks: InvertedPendulum-v5, InvertedDoublePendulum-v5 and the desktop-cartpole rig
(firmware_host.rig:bpd/desktop-cartpole-v0), teachers from benchmarks/teachers/ (a missing teacher is
a one-line error naming the `bpd teacher train` command of benchmarks/teachers/teachers.yaml).
Per seed: `bpd multitask train` (Rusu's tempered KL, shared trunk, magnitude-pruned to N nonzero
parameters), `bpd multitask export` (one C entry point per task, parity against float64), and per
task `bpd baseline train --method kl` pruned to an equal share of N; every network is evaluated with
`bpd evaluate` on 30 reporting episodes. Writes benchmarks/results/multitask.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bpd.io import bpd_executable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "teachers"))
from train import committed_path  # noqa: E402  (teachers.yaml names each task's committed file)

TASKS = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5", "firmware_host.rig:bpd/desktop-cartpole-v0"]


def bpd(*args: str) -> str:
    exe = bpd_executable()
    p = subprocess.run([str(exe), *args], capture_output=True, text=True, env=dict(os.environ))
    if p.returncode != 0:
        raise SystemExit(f"multitask_benchmark: bpd {args[0]} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return p.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--nonzero", type=int, default=1500, help="total nonzero budget of the multi-task student")
    ap.add_argument("--work", default=str(REPO.parent / "bpd-runs" / "multitask"))
    a = ap.parse_args(argv)
    teachers = [committed_path(env) for env in TASKS]
    missing = [str(t.relative_to(REPO)) for t in teachers if not t.is_file()]
    if missing:
        print(f"multitask_benchmark: error: missing teachers {', '.join(missing)}; train them with `bpd teacher train` "
              "(see benchmarks/teachers/teachers.yaml)", file=sys.stderr)
        return 1
    work = Path(a.work)
    rows = []
    for seed in a.seeds:
        dss = []
        for env, t in zip(TASKS, teachers):
            ds = work / "datasets" / f"{t.stem}.npz"
            if not ds.exists():
                bpd("collect", "--teacher", str(t), "--env", env, "--out", str(ds), "--steps", "50000",
                    "--seed", "900000", "--noise", "0.1", "--no-progress")  # as the committed results
            dss.append(ds)
        run = work / f"multitask-seed{seed}"
        if not (run / "summary.json").exists():
            bpd("multitask", "train", "--teachers", *map(str, teachers), "--datasets", *map(str, dss),
                "--out", str(run), "--steps", str(a.steps), "--nonzero", str(a.nonzero), "--seed", str(seed),
                "--no-progress",
                *(["--resume"] if (run / "config.json").exists() else []))
        exp_path = run / "export" / "export.json"
        exp = json.loads(exp_path.read_text()) if exp_path.exists() else None
        if exp is None or not all(t.get("ok") for t in exp["tasks"].values()):  # a failed export is redone
            bpd("multitask", "export", str(run), "--out", str(run / "export"))
            exp = json.loads((run / "export" / "export.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        row = {"seed": seed, "multitask_nonzero": summary["params_nonzero"], "tasks": {}, "parity": exp["tasks"]}
        share = a.nonzero // len(TASKS)
        for i, (env, t, ds) in enumerate(zip(TASKS, teachers, dss)):
            ev_m = json.loads(bpd("evaluate", str(run / f"task{i}.npz"), "--env", env, "--episodes", "30", "--json"))
            single = work / f"single-{t.stem}-seed{seed}"
            if not (single / "policy.npz").exists():
                bpd("baseline", "train", "--method", "kl", "--teacher", str(t), "--dataset", str(ds), "--env", env,
                    "--out", str(single), "--steps", str(a.steps), "--nonzero", str(share), "--seed", str(seed),
                    "--no-progress", *(["--resume"] if (single / "config.json").exists() else []))
            ev_s = json.loads(bpd("evaluate", str(single / "policy.npz"), "--env", env, "--episodes", "30", "--json"))
            row["tasks"][env] = {"multitask_return": ev_m["return_mean"], "single_return": ev_s["return_mean"],
                                 "single_nonzero": ev_s["params_nonzero"]}
        rows.append(row)
    out = REPO / "benchmarks" / "results"
    from bpd.io import write_json, write_text
    write_json(out / "multitask.json", {"command": "python benchmarks/multitask_benchmark.py", "nonzero": a.nonzero,
                                        "steps": a.steps, "rows": rows})
    md = ["# Multi-task student vs three single-task students, equal total nonzero count", "",
          f"`python benchmarks/multitask_benchmark.py --seeds {' '.join(map(str, a.seeds))} --steps {a.steps} "
          f"--nonzero {a.nonzero}`; 30 reporting episodes per task and seed.", "",
          "| task | multi-task return (mean +- std over seeds; worst seed) | single-task return (same) | "
          "per seed, multi / single | C parity (max error) |",
          "|---|---|---|---|---|"]

    def spread(xs: list[float]) -> str:
        return f"{np.mean(xs):.1f} +- {np.std(xs):.1f}; {min(xs):.1f}"

    for env in TASKS:
        m = [r["tasks"][env]["multitask_return"] for r in rows]
        s = [r["tasks"][env]["single_return"] for r in rows]
        per = ", ".join(f"{r['seed']}: {a:.0f} / {b:.0f}" for r, a, b in zip(rows, m, s))
        par = max(v["max_abs_error"] for r in rows for v in r["parity"].values() if v["env_id"] == env)
        md.append(f"| {env} | {spread(m)} | {spread(s)} | {per} | {par:.1e} |")
    md += ["", f"Nonzero parameters: the multi-task student {', '.join(str(r['multitask_nonzero']) for r in rows)} "
           f"(budget {a.nonzero}, shared trunk counted once); each single-task student "
           f"{', '.join(str(v['single_nonzero']) for r in rows for v in r['tasks'].values())} "
           f"(budget {a.nonzero // len(TASKS)} each). Every network is magnitude-pruned to its budget during "
           f"{a.steps} gradient steps of Rusu's tempered KL on 50,000-step teacher datasets."]
    write_text(out / "multitask.md", "\n".join(md) + "\n")
    print(out / "multitask.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
