"""The rotary swing-up from distill's defaults (issue 34): which of the hand-set options the defaults lack.

    python benchmarks/rotary_defaults.py [--work $BPD_RUNS/rotary-defaults] [--only CONFIG ...] [--seeds 0 1 2]
        [--out benchmarks/results/rotary-defaults] [--table-only]

The committed rotary students come from a recipe (benchmarks/rotary_benchmark.py: 200,000 collected steps at
noise 0.1, 60,000 gradient steps, KL weight 0.1, the student chosen on the nominal plant). Here every stage
runs at its defaults but for each configuration's options: `bpd collect --seed S` (50,000 steps, noise 0.3),
`bpd distill --seed S` and the configuration's flags. The student the run hands over is then run on the
nominal plant from hanging, episodes 0-29 (the reporting seeds; the run chose it on its own evaluation and
selection seeds): swing-ups (upright within the rig's band for the last second of the episode), return
against the teacher's on the same episodes, nonzero parameters. Every stage whose output exists is reused,
an interrupted distillation resumes. Writes OUT/rotary-defaults.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bpd.io import portable_path, write_json, write_text  # noqa: E402
from bpd_app.methods import flags as option_flags  # noqa: E402
from training.distill_config import PAPER as PAPER_OPTIONS  # noqa: E402
from training.distill_config import DistillConfig  # noqa: E402

TEACHER = ROOT / "benchmarks" / "teachers" / "rotary-pendulum.npz"
# the paper's BPD: distill's defaults before the pair-partner fine-tune became them (training.distill_config.PAPER),
# which the configurations below other than "defaults" were run with and keep
PAPER = option_flags(PAPER_OPTIONS, DistillConfig)
CONFIGS = {  # name: distill's flags beyond its defaults
    "defaults": [],
    "gated": [*PAPER, "--eta-schedule", "gated"],
    "steps-60k": [*PAPER, "--steps", "60000"],
    "gated-steps-60k": [*PAPER, "--eta-schedule", "gated", "--steps", "60000"],
    "defaults-gated": ["--eta-schedule", "gated"],
    "defaults-gated-60k": ["--eta-schedule", "gated", "--steps", "60000"],
    "defaults-gated-100k": ["--eta-schedule", "gated", "--steps", "100000"],
}
EPISODES = 30


def train(work: Path, config: str, seed: int) -> Path:
    from rotary_benchmark import bpd

    data = work / f"data-s{seed}.npz"
    if not data.is_file():
        bpd("collect", "--teacher", str(TEACHER), "--out", str(data), "--seed", str(seed), "--no-progress")
    run = work / f"{config}-s{seed}"
    if not (run / "student.pt").is_file():
        resume = ["--resume"] if run.exists() else []
        bpd("distill", "--teacher", str(TEACHER), "--dataset", str(data), "--out", str(run), "--seed", str(seed),
            "--no-progress", *CONFIGS[config], *resume)
    return run


def measure(run: Path) -> dict:
    from rotary_benchmark import run_episodes

    from bpd_app.evaluate import load_any

    pol = load_any(str(run / "student.pt"))
    r = run_episodes(pol.act, EPISODES, {})
    summary = json.loads((run / "summary.json").read_text())
    return r | {"params_nonzero": int(pol.params_nonzero), "steps": summary.get("steps"),
                "chosen_step": (summary.get("selection") or {}).get("step"), "run": portable_path(run.resolve())}


def markdown(res: dict) -> str:
    t = res["teacher"]
    L = ["# Rotary swing-up from distill's defaults", "",
         "Written by `python benchmarks/rotary_defaults.py` (again from rotary-defaults.json: `--table-only`). "
         f"Each stage at its defaults but the configuration's distill flags; the handed-over student on the nominal "
         f"plant from hanging, episodes 0-{EPISODES - 1}. Teacher on the same episodes: return "
         f"{t['return_mean']:.1f}, {round(t['success_rate'] * EPISODES)} of {EPISODES} swing-ups. Issue 34's bar: "
         f"every episode a swing-up, within 1 % of the teacher's return.", "",
         "| configuration | distill flags | seed | swing-ups | return (mean +- std) | % of teacher | nonzero "
         "| meets the bar |", "|---|---|---|---|---|---|---|---|"]
    for name, flags in CONFIGS.items():
        for seed in res["seeds"]:
            r = res["cells"].get(f"{name}/seed{seed}")
            if r is None:
                L.append(f"| {name} | `{' '.join(flags) or '(none)'}` | {seed} | not run | - | - | - | - |")
                continue
            share = r["return_mean"] / t["return_mean"]
            ok = r["success_rate"] == 1.0 and share >= 0.99
            L.append(f"| {name} | `{' '.join(flags) or '(none)'}` | {seed} | {round(r['success_rate'] * EPISODES)} of "
                     f"{EPISODES} | {r['return_mean']:.1f} +- {r['return_std']:.1f} | {100 * share:.2f} % "
                     f"| {r['params_nonzero']} | {'yes' if ok else 'no'} |")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    runs = Path(os.environ["BPD_RUNS"]) if os.environ.get("BPD_RUNS") else ROOT.parent / "bpd-runs"
    ap.add_argument("--work", type=Path, default=runs / "rotary-defaults")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rotary-defaults")
    ap.add_argument("--only", nargs="*", default=None, choices=list(CONFIGS), help="configurations to train")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--measure-only", action="store_true", help="train nothing: measure the finished runs")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    a = ap.parse_args()
    path = a.out / "rotary-defaults.json"
    if a.table_only:
        res = json.loads(path.read_text())
    else:
        from rotary_benchmark import run_episodes

        from training.teacher import load_teacher

        res = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
        res["seeds"] = sorted(set(res.get("seeds", [])) | set(a.seeds))
        if "teacher" not in res:
            res["teacher"] = run_episodes(load_teacher(str(TEACHER)).act, EPISODES, {})
        a.work.mkdir(parents=True, exist_ok=True)
        for name in a.only or CONFIGS:
            for seed in a.seeds:
                run = a.work / f"{name}-s{seed}"
                if not a.measure_only:
                    train(a.work, name, seed)
                if (run / "student.pt").is_file() and (run / "summary.json").is_file():
                    res["cells"][f"{name}/seed{seed}"] = measure(run)
                    write_json(path, res)  # each measured run kept as it lands
        write_json(path, res)
    write_text(a.out / "rotary-defaults.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
