"""Processor-in-the-loop benchmark: the Cortex-M4F firmware image (STM32F405 board layer) in QEMU
against the host-built simulated rig, 10 episodes per rig and mode, lockstep, same seeds; and the
image's instructions per control tick, split into the policy call and the rest of the tick.

    python benchmarks/pil_benchmark.py [--episodes 10]

The policy is the committed benchmark export (tests/fixtures/pendulum_export, trained on
InvertedPendulum-v5). On desktop-cartpole it is a policy for another plant: what that row measures is
the agreement between image and host build. Writes benchmarks/results/pil.json
and pil.md (per-episode returns are in the JSON).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.io import bpd_executable, portable_argv, write_json, write_text  # noqa: E402

RIGS = ("gym-inverted-pendulum", "desktop-cartpole")
MODES = ("device", "host")


def bpd(*args: str) -> None:
    exe = bpd_executable()
    p = subprocess.run([exe, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bpd {' '.join(args)} failed:\n{p.stderr}")


def export_dir(work: Path) -> Path:
    """The committed export with the current kernel beside it, in its file record as `bpd export` adds it (as the
    tests use it, tests/conftest.py pendulum_export): made anew each run, so a work directory of an earlier kernel
    does not stay. Without the record every trial failed ('export.json's file list leaves out policy.c')."""
    d = work / "pendulum_export"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(ROOT / "tests" / "fixtures" / "pendulum_export", d)
    info = json.loads((d / "export.json").read_text())
    for f in ("policy.c", "policy.h"):
        shutil.copyfile(ROOT / "export" / f, d / f)
        info["files"][f] = hashlib.sha256((d / f).read_bytes()).hexdigest()
    (d / "export.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return d


def trial(port: str, rig: str, mode: str, policy: Path, out: Path, episodes: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    # lockstep is not real time: a long stall timeout, so a busy machine cannot end an episode
    extra = ["--stall-timeout", "10"] + (["--lockstep"] if port == "sim" else [])
    bpd("hil", "run", "--port", port, "--rig", rig, "--policy", str(policy), "--mode", mode, "--episodes",
        str(episodes), "--seed", "0", "--out", str(out), "--no-plots", *extra)
    s = json.loads((out / "summary.json").read_text())
    res = {"returns": [e["return"] for e in s["episodes"]], "ended": s["ended"],
           "bad_frames": s["bad_frames"]["host_parser"]}
    if (out / "ticks_pil.csv").exists():
        with open(out / "ticks_pil.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        tick = np.array([int(r["tick_instructions"]) for r in rows])
        pol = np.array([int(r["policy_instructions"]) for r in rows])
        res["instructions_per_tick"] = {"ticks": len(rows), "tick_median": float(np.median(tick)),
                                        "tick_p99": float(np.percentile(tick, 99)),
                                        "policy_median": float(np.median(pol)),
                                        "rest_median": float(np.median(tick - pol))}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "pil")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    # argv with its paths portable (as typed, a machine's absolute --out or --work went into pil.json)
    command = " ".join(["python benchmarks/pil_benchmark.py", *portable_argv(sys.argv[1:])])
    args.work.mkdir(parents=True, exist_ok=True)
    policy = export_dir(args.work)
    rows = []
    for rig in RIGS:
        for mode in MODES:
            pil = trial("pil", rig, mode, policy, args.work / f"{rig}-{mode}-pil", args.episodes)
            sim = trial("sim", rig, mode, policy, args.work / f"{rig}-{mode}-sim", args.episodes)
            diff = np.abs(np.array(pil["returns"]) - np.array(sim["returns"]))
            row = {"rig": rig, "mode": mode, "pil": pil, "sim": sim, "max_abs_return_diff": float(diff.max()),
                   "episodes_equal": int((diff == 0).sum())}
            print(json.dumps({k: row[k] for k in ("rig", "mode", "max_abs_return_diff", "episodes_equal")}), flush=True)
            rows.append(row)
    write_json(args.out / "pil.json", {"command": command,
                                       "policy": "tests/fixtures/pendulum_export", "seeds": "0..episodes-1",
                                       "rows": rows})
    lines = ["# Processor-in-the-loop: the firmware image in QEMU against the simulated rig", "",
             "Cortex-M4F image with the STM32F405 board layer on QEMU's netduinoplus2 (`bpd rig pil`, lockstep, "
             "`-icount shift=0`), against the host-built simulated rig in lockstep (`bpd rig sim --lockstep`); "
             f"{args.episodes} episodes each, seeds 0-{args.episodes - 1}, policy tests/fixtures/pendulum_export "
             "(trained on InvertedPendulum-v5; on desktop-cartpole a policy for another plant, so that row "
             "measures agreement, not a controller made for the rig). "
             f"`{command}`.", "",
             "| rig | mode | PIL return mean | sim return mean | episodes with equal return | max abs difference "
             "| instructions per tick (median) | of which policy | rest of the tick |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ipt = r["pil"]["instructions_per_tick"]
        lines.append(f"| {r['rig']} | {r['mode']} | {np.mean(r['pil']['returns']):.1f} | "
                     f"{np.mean(r['sim']['returns']):.1f} "
                     f"| {r['episodes_equal']}/{len(r['pil']['returns'])} | {r['max_abs_return_diff']:.0f} "
                     f"| {ipt['tick_median']:,.0f} | {ipt['policy_median']:,.0f} | {ipt['rest_median']:,.0f} |")
    lines += ["", "Instructions are the image's SysTick cycle counts under `-icount shift=0` (one instruction per "
              "virtual nanosecond; resolution about 6 instructions at 168 MHz). The tick counts the whole "
              "`bpd_fw_tick`: sensors, observation, limits, the policy (device mode), the STATE frame and its "
              "transmission on the USART."]
    write_text(args.out / "pil.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
