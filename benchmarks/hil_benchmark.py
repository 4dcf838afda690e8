"""HIL benchmark: a student distilled for desktop-cartpole, driven in host mode over a pseudo-terminal
against the simulated rig in real time, 10 episodes at 200 Hz and 10 at 1 kHz.

    python benchmarks/hil_benchmark.py [--work benchmarks/work/cartpole]

The teacher is trained on the rig's own Gymnasium environment (firmware_host.rig:bpd/desktop-cartpole-v0),
rolled out, distilled and exported with the same `bpd` commands a user runs; stages whose outputs
exist are reused. Writes benchmarks/results/hil/<rate>/summary.json (+ plots) and hil.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bpd.io import bpd_executable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain import command_line  # noqa: E402

HERE = Path(__file__).resolve().parent
ENV = "firmware_host.rig:bpd/desktop-cartpole-v0"
RATES = {"200hz": 5000, "1khz": 1000}


def bpd(*args: str) -> str:
    exe = bpd_executable()
    p = subprocess.run([exe, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bpd {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout


def _verified(export_dir: Path) -> bool:
    from bpd.errors import BpdError
    from export.verify import verify_export

    try:
        verify_export(export_dir)
        return True
    except BpdError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "work" / "cartpole")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--table-only", action="store_true", help="rewrite hil.md from hil.json, run nothing")
    args = ap.parse_args()
    if args.table_only:
        (args.out / "hil.md").write_text(markdown(json.loads((args.out / "hil.json").read_text())))
        return
    w = args.work
    w.mkdir(parents=True, exist_ok=True)
    if not (w / "teacher.npz").exists():
        bpd("teacher", "train", "--env", ENV, "--out", str(w / "teacher.npz"), "--steps", "60000",
            "--eval-every", "5000", "--target-return", "1000", "--no-progress")
    if not (w / "dataset.npz").exists():
        bpd("collect", "--teacher", str(w / "teacher.npz"), "--out", str(w / "dataset.npz"), "--noise", "0.1",
            "--seed", "0", "--no-progress")  # the noise and seed the committed results were measured with
    if not (w / "run" / "student.pt").exists():
        shutil.rmtree(w / "run", ignore_errors=True)
        bpd("distill", "--teacher", str(w / "teacher.npz"), "--dataset", str(w / "dataset.npz"),
            "--out", str(w / "run"), "--no-progress")
    if not _verified(w / "export"):  # missing, or made by an older bpd without the records consumers check
        bpd("export", str(w / "run"), "--out", str(w / "export"))
    teacher = json.loads(bpd("evaluate", str(w / "teacher.npz"), "--episodes", "10", "--json"))
    student = json.loads(bpd("evaluate", str(w / "export"), "--episodes", "10", "--json"))
    rows = {}
    for name, period in RATES.items():
        out = args.out / "hil" / name
        shutil.rmtree(out, ignore_errors=True)
        bpd("hil", "run", "--port", "sim", "--rig", "desktop-cartpole", "--policy", str(w / "export"),
            "--mode", "host", "--episodes", str(args.episodes), "--period-us", str(period), "--out", str(out))
        (out / "ticks.csv").unlink()  # large; the summary and plots are what we keep
        for p in out.glob("trajectory_ep*.png"):
            if p.name != "trajectory_ep0.png":
                p.unlink()
        s = json.loads((out / "summary.json").read_text())
        t = s["timing"]
        rows[name] = {"period_us": period, "returns": [e["return"] for e in s["episodes"]],
                      "lengths": [e["length"] for e in s["episodes"]], "ended": [e["ended"] for e in s["episodes"]],
                      "achieved_rate_hz": t["achieved_rate_hz"], "deadline_miss_rate": t["deadline_miss_rate"],
                      "deadline_misses": t["deadline_misses"], "ticks": t["ticks"],
                      "host_step_us": t["host_step_us"], "host_compute_us": t["host_compute_us"],
                      "period_jitter_us": t["jitter_us"], "rtt_us": t["rtt_us"]}
    r200 = rows["200hz"]
    crit = {"all_200hz_episodes_full": all(l == 1000 for l in r200["lengths"]),
            "deadline_miss_rate_200hz_le_0.1pct": r200["deadline_miss_rate"] <= 0.001,
            "host_step_p99_200hz_le_1ms": r200["host_step_us"]["p99"] <= 1000}
    res = {"command": "python benchmarks/hil_benchmark.py", "env": ENV, "teacher_return": teacher["return_mean"],
           "student_c_return": student["return_mean"], "student_params_nonzero": student["params_nonzero"],
           "rates": rows, "criteria": crit}
    (args.out / "hil.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "hil.md").write_text(markdown(res))
    print(markdown(res))


def markdown(res: dict) -> str:
    """hil.md from hil.json's figures."""
    lines = [command_line(res, "hil.json"), "",
             f"desktop-cartpole, host mode, simulated rig in real time over a pseudo-terminal "
             f"(teacher return {res['teacher_return']:.0f}, exported student {res['student_c_return']:.0f} "
             f"in the Gymnasium env, {res['student_params_nonzero']} nonzero parameters).", "",
             "| rate | episodes full (1000 ticks) | achieved Hz | deadline misses | host step p50 / p99 / max us | "
             "host compute p50 us | device round trip p50 / p99 us | period jitter p99 us |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in res["rates"].items():
        full = sum(l == 1000 for l in r["lengths"])
        hs, rt = r["host_step_us"], r["rtt_us"]
        lines.append(f"| {name} | {full}/{len(r['lengths'])} | {r['achieved_rate_hz']:.1f} | {r['deadline_misses']} "
                     f"({100 * r['deadline_miss_rate']:.3f} %) | "
                     f"{hs['median']:.0f} / {hs['p99']:.0f} / {hs['max']:.0f} | "
                     f"{r['host_compute_us']['median']:.0f} | {rt.get('median', 0):.0f} / {rt.get('p99', 0):.0f} | "
                     f"{r['period_jitter_us']['p99']:.0f} |")
    lines += ["", "Criteria (200 Hz): " + json.dumps(res["criteria"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
