"""Export benchmark: export every student of the training benchmark and check its forms.

    python benchmarks/export_benchmark.py [--work benchmarks/work]

For each seed: `bpd export RUN --int8` (parity of onnxruntime, ReferenceEvaluator and C against the
collapsed torch student on 10,000 states; returns of torch, C and int8 C over 10 episodes) and
the flash of the student against the dense float32 teacher. Writes benchmarks/results/export.json/.md.
"""

from __future__ import annotations

import json
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
        (args.out / "export.md").write_text(markdown(json.loads((args.out / "export.json").read_text())))
        return
    exe = bpd_executable()
    rows = []
    for seed_dir in seeds_with(args.work, "run/student.pt"):
        run = seed_dir / "run"
        out = seed_dir / "export"
        subprocess.run([exe, "export", str(run), "--out", str(out), "--int8", "--episodes", "10"], check=True,
                       capture_output=True)
        r = json.loads((out / "export_report.json").read_text())
        ret = r["returns"]
        rows.append({"seed": seed_dir.name, "widths_before": r["widths_before"], "widths_after": r["widths_after"],
                     "parity": {k: v for k, v in r["parity"].items() if "_vs_" in k},
                     "return_torch": ret["torch"]["return_mean"], "return_c": ret["c"]["return_mean"],
                     "return_c_int8": ret["c_int8"]["return_mean"],
                     "c_return_within_1pct": abs(ret["c"]["return_mean"] - ret["torch"]["return_mean"])
                     <= 0.01 * abs(ret["torch"]["return_mean"]),
                     "flash_bytes": r["totals"]["flash_bytes"], "flash_bytes_int8": r["int8"]["totals"]["flash_bytes"],
                     "teacher_flash_bytes": r["dense_teacher"]["flash_bytes"],
                     "flash_vs_teacher": r["flash_vs_teacher"], "macs": r["totals"]["macs"],
                     "teacher_macs": r["dense_teacher"]["macs"],
                     "int8_max_abs_error": r["int8"]["max_abs_error_vs_torch"]})
    ok = bool(rows) and all(max(x["parity"].values()) <= 1e-5 and x["c_return_within_1pct"]
                            and x["flash_vs_teacher"] <= 0.02 for x in rows)
    res = {"command": "python benchmarks/export_benchmark.py", "rows": rows, "tolerance": 1e-5,
           "criteria": "parity <= 1e-5 on 10,000 states, C return within 1 % of torch, flash <= 2 % of teacher",
           "all_pass": ok}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "export.md").write_text(markdown(res))
    print(markdown(res))


def markdown(res: dict) -> str:
    """export.md from export.json's figures."""
    lines = [command_line(res, "export.json"), "",
             "| seed | widths after collapse | max parity error | return torch / C / int8 C | flash B (int8) | "
             "teacher flash B | flash vs teacher | MACs (teacher) |", "|---|---|---|---|---|---|---|---|"]
    for x in res["rows"]:
        lines.append(f"| {x['seed']} | {'-'.join(map(str, x['widths_after']))} | {max(x['parity'].values()):.1e} | "
                     f"{x['return_torch']:.0f} / {x['return_c']:.0f} / {x['return_c_int8']:.0f} | "
                     f"{x['flash_bytes']} ({x['flash_bytes_int8']}) | {x['teacher_flash_bytes']} | "
                     f"{100 * x['flash_vs_teacher']:.3f} % | {x['macs']} ({x['teacher_macs']}) |")
    lines.append(f"\nAll criteria met: {res['all_pass']}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
