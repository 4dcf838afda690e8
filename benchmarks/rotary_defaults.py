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

Cost per tick (`--cost`, for every measured run that lacks it): the student exported by `bpd export` at its
defaults (the kernel its rule picks), its Cortex-M4F instructions (exact, emulated) and estimated cycles
per control tick on observations of a nominal swing-up (rotary_benchmark.device_cost), against issue 34's
5,000 instructions a tick.
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
# the paper's BPD: distill's defaults before the pair-partner fine-tune and the gated warm-up became them
# (training.distill_config.PAPER), which "gated", "steps-60k" and "gated-steps-60k" were run with and keep
PAPER = option_flags(PAPER_OPTIONS, DistillConfig)
NO_WARMUP = ["--kl-warmup", "none"]  # the defaults between the pair-partner fine-tune and the warm-up
CONFIGS = {  # name: distill's flags beyond its defaults
    "defaults": [],
    "defaults-no-warmup": NO_WARMUP,
    "defaults-gated": [*NO_WARMUP, "--eta-schedule", "gated"],
    "defaults-gated-60k": [*NO_WARMUP, "--eta-schedule", "gated", "--steps", "60000"],
    "defaults-gated-100k": [*NO_WARMUP, "--eta-schedule", "gated", "--steps", "100000"],
    "defaults-warmup": ["--kl-warmup", "gate"],
    "gated": [*PAPER, "--eta-schedule", "gated"],
    "steps-60k": [*PAPER, "--steps", "60000"],
    "gated-steps-60k": [*PAPER, "--eta-schedule", "gated", "--steps", "60000"],
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
                "chosen_step": ((summary.get("selection") or {}).get("chosen") or {}).get("step"),
                "run": portable_path(run.resolve())}


TICK_BUDGET = 5000  # issue 34: Cortex-M4F instructions a tick


def classical(work: Path) -> tuple[dict, object]:
    """The energy + LQR controller's C (rotary_benchmark's) and its cost per tick on the observations of its
    own nominal swing-up, and those observations: every controller's cost here is measured on them."""
    from rotary_benchmark import RIG, cost_states, device_cost, load_controller

    from firmware_host.rig.classical import export_classical

    cx = work / "classical_export"
    export_classical(RIG, cx)
    states = cost_states(load_controller(str(cx))[0])
    return device_cost(cx, states, work / "cost-classical"), states


def cost(run: Path, states) -> dict:
    """The default export of the run's student (made once, in run/export) and its cost per tick on states."""
    from rotary_benchmark import bpd, device_cost

    export = run / "export"
    if not (export / "export.json").is_file():
        bpd("export", str(run / "student.pt"), "--out", str(export))
    kernel = json.loads((export / "export_report.json").read_text())["kernel"]
    return device_cost(export, states, run / "cost") | {"kernel": kernel["variant"]}


def land(path: Path, res: dict, key: str, cell: dict) -> dict:
    """res with `key`'s cell, written over the cells the file holds now (another pass may be adding its own):
    each run or cost kept as it lands."""
    res = res | {"cells": (json.loads(path.read_text())["cells"] if path.is_file() else res["cells"]) | {key: cell}}
    write_json(path, res)
    return res


def markdown(res: dict) -> str:
    t = res["teacher"]
    L = ["# Rotary swing-up from distill's defaults", "",
         "Written by `python benchmarks/rotary_defaults.py` (again from rotary-defaults.json: `--table-only`). "
         f"Each stage at its defaults but the configuration's distill flags; the handed-over student on the nominal "
         f"plant from hanging, episodes 0-{EPISODES - 1}. Teacher on the same episodes: return "
         f"{t['return_mean']:.1f}, {round(t['success_rate'] * EPISODES)} of {EPISODES} swing-ups. Issue 34's bar: "
         f"every episode a swing-up, within 1 % of the teacher's return, at most {TICK_BUDGET:,} Cortex-M4F "
         "instructions a tick. Cost per tick: the student's default export (the kernel `bpd export` picks), exact "
         "emulated instructions and estimated cycles (docs/cycle_model.md) on observations of a nominal swing-up "
         "(`--cost`; '-': not measured)."
         + (f" The energy + LQR controller's C on the same observations: {lqr['instructions_median']:,} instructions "
            f"(median; {lqr['instructions_max']:,} at most) and {lqr['cycles_estimate']:,.0f} estimated cycles a tick, "
            f"{lqr['policy_flash_bytes']:,} B of flash." if (lqr := res.get("energy_lqr_cost")) else ""), "",
         "| configuration | distill flags | seed | swing-ups | return (mean +- std) | % of teacher | nonzero "
         "| kernel | M4F instructions / cycles a tick | meets the bar |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, flags in CONFIGS.items():
        for seed in res["seeds"]:
            r = res["cells"].get(f"{name}/seed{seed}")
            if r is None:
                L.append(f"| {name} | `{' '.join(flags) or '(none)'}` | {seed} | not run | - | - | - | - | - | - |")
                continue
            share = r["return_mean"] / t["return_mean"]
            c = r.get("device_cost")
            ok = r["success_rate"] == 1.0 and share >= 0.99
            verdict = "no" if not ok else "yes" if c and c["instructions_max"] <= TICK_BUDGET else \
                "no (over the instructions)" if c else "in return (cost not measured)"
            tick = f"{c['instructions_median']:,} / {c['cycles_estimate']:,.0f}" if c else "-"
            L.append(f"| {name} | `{' '.join(flags) or '(none)'}` | {seed} | {round(r['success_rate'] * EPISODES)} of "
                     f"{EPISODES} | {r['return_mean']:.1f} +- {r['return_std']:.1f} | {100 * share:.2f} % "
                     f"| {r['params_nonzero']} | {c['kernel'] if c else '-'} | {tick} | {verdict} |")
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
    ap.add_argument("--cost", action="store_true", help="train nothing: export and measure the cost per tick of "
                    "every measured run that lacks it")
    a = ap.parse_args()
    path = a.out / "rotary-defaults.json"
    if a.table_only:
        res = json.loads(path.read_text())
    elif a.cost:
        lqr, states = classical(a.work)
        res = json.loads(path.read_text()) | {"energy_lqr_cost": lqr}
        write_json(path, res)
        for key, r in list(res["cells"].items()):
            name, seed = key.rsplit("/seed", 1)
            if r.get("device_cost") is None and (a.only is None or name in a.only):
                print(f"{key}: cost ...", flush=True)
                res = land(path, res, key, r | {"device_cost": cost(a.work / f"{name}-s{seed}", states)})
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
                    res = land(path, res, f"{name}/seed{seed}", measure(run))
        write_json(path, res)
    write_text(a.out / "rotary-defaults.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
