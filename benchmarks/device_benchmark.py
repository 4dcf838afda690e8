"""Device benchmark: `bpd bench` on each student of the training benchmark against its teacher.

    python benchmarks/device_benchmark.py [--work benchmarks/work]

Needs the exports of benchmarks/export_benchmark.py. Emulated instruction counts are exact and
deterministic; microseconds are estimates (docs/cycle_model.md); host nanoseconds are medians on a
shared machine. Writes benchmarks/results/device.json and device.md (and each seed's bench.md/png).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bpd.io import bpd_executable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain import chain_args, command_line, seeds_with  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    args = chain_args(__doc__)
    if args.table_only:
        (args.out / "device.md").write_text(markdown(json.loads((args.out / "device.json").read_text())))
        return
    exe = bpd_executable()
    rows, per_seed = [], {}
    for seed_dir in seeds_with(args.work, "export/export.json"):
        exp = seed_dir / "export"
        out = args.out / "device" / seed_dir.name
        subprocess.run([exe, "bench", str(exp), "--out", str(out)], check=True, capture_output=True)
        r = json.loads((out / "bench.json").read_text())
        per_seed[seed_dir.name] = r["summary"]
        m4 = r["summary"]["cortex-m4f"]
        for variant, v in m4.items():
            rows.append({"seed": seed_dir.name, "variant": variant} | {k: v[k] for k in (
                "instructions", "flash_bytes", "instructions_vs_floor", "teacher_over_student_instructions",
                "student_over_teacher_policy_flash", "student_over_teacher_image_flash")}
                | {f"{k} instructions_over_bpd": v[k]["instructions_over_bpd"] for k in v if isinstance(v[k], dict)}
                | {f"{k} flash_over_bpd": v[k]["flash_over_bpd"] for k in v if isinstance(v[k], dict)})
        shutil.rmtree(out / "work", ignore_errors=True)
    fast = [r for r in rows if r["variant"] == "bpd-fast-tanh"]
    libm = [r for r in rows if r["variant"] == "bpd"]
    crit = {
        "m4f_teacher_over_student_instructions_min_fast_tanh":
            min(r["teacher_over_student_instructions"] for r in fast),
        "m4f_teacher_over_student_instructions_min_libm": min(r["teacher_over_student_instructions"] for r in libm),
        "m4f_policy_flash_vs_teacher_max": max(r["student_over_teacher_policy_flash"] for r in rows),
        "fast_tanh_beats_each_peer_on_the_collapsed_student": all(
            r[f"{p} on student instructions_over_bpd"] > 1 and r[f"{p} on student flash_over_bpd"] > 1
            for r in fast for p in ("emx-onnx-cgen", "emlearn")),
        "libm_beats_each_peer_on_the_collapsed_student": all(
            r[f"{p} on student instructions_over_bpd"] > 1 and r[f"{p} on student flash_over_bpd"] > 1
            for r in libm for p in ("emx-onnx-cgen", "emlearn")),
    }
    res = {"command": "python benchmarks/device_benchmark.py", "target_for_criteria": "cortex-m4f", "rows": rows,
           "criteria": crit, "per_seed_summary": per_seed}
    (args.out / "device.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "device.md").write_text(markdown(res))
    print(markdown(res))


def markdown(res: dict) -> str:
    """device.md from device.json's figures."""
    lines = [command_line(res, "device.json"), "", "Cortex-M4F, emulated (instructions exact, per inference):", "",
             "| seed | bpd variant | instructions | image flash B | teacher / student instr. | policy flash vs teacher "
             "| x floor | emx on student: instr / flash vs bpd | emlearn on student | emx on masked student | "
             "emlearn on masked student |", "|" + "---|" * 10]

    def peer(r: dict, p: str, n: str) -> str:
        return f"{r[f'{p} on {n} instructions_over_bpd']:.2f}x / {r[f'{p} on {n} flash_over_bpd']:.2f}x"

    for r in res["rows"]:
        lines.append(f"| {r['seed']} | {r['variant']} | {r['instructions']} | {r['flash_bytes']} | "
                     f"{r['teacher_over_student_instructions']:.0f}x | "
                     f"{100 * r['student_over_teacher_policy_flash']:.2f} % "
                     f"| {r['instructions_vs_floor']:.1f} | {peer(r, 'emx-onnx-cgen', 'student')} | "
                     f"{peer(r, 'emlearn', 'student')} | {peer(r, 'emx-onnx-cgen', 'student_masked')} | "
                     f"{peer(r, 'emlearn', 'student_masked')} |")
    lines += ["", "A peer ratio above 1 means the peer needs more than bpd. 'masked student' is the student with "
              "pruned weights zeroed but dead units kept: what a dense exporter is handed without bpd's collapse.",
              "", "Criteria: " + json.dumps(res["criteria"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
