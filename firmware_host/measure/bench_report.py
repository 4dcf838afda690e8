"""`bpd bench`'s report: the markdown table and notes of a bench's results (bench.md), and its plot (bench.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firmware_host.measure.build import TARGETS

# the summary row of OUT/int's integer kernel (`bpd export --int`), beside the shipped kernel's (bpd-integer too, where
# the export ships an integer form): named as bench.md names its network
INT_ROW = "student_int bpd-integer"


def _or_dash(v) -> str:
    """A figure (a float to the nearest whole), or '-' where not measured (a stack the compiler leaves unbounded)."""
    return "-" if v is None else str(round(v)) if isinstance(v, float) else str(v)


def _label(res: dict, name: str, impl: str) -> str:
    """A runtime's name, with the form of the kernel the export shipped where the name gives only its family
    (bpd-integer for the integer-table form)."""
    shipped = (res.get("export_kernels") or {}).get("shipped")
    if name == "student" and shipped and impl.startswith("bpd-") and impl != f"bpd-{shipped}" \
            and shipped.startswith(impl.removeprefix("bpd-")):
        return f"{impl} ({shipped})"
    return impl


def markdown(res: dict) -> str:
    ts, who = res["targets"], "teacher" if res.get("kind") == "teacher" else "student"  # the export's network
    head = "| network | runtime | host ns (median) | host instr (callgrind) | " + " | ".join(
        f"{t} instr / est. cycles / est. us / image flash B / RAM B / stack B" for t in ts) + " |"
    lines = [head, "|" + "---|" * (4 + len(ts))]
    for name, net in res["networks"].items():
        for impl, r in net["runtimes"].items():
            host = r.get("host", {})
            ns = host.get("median_ns", r.get("host_median_ns"))
            ci = host.get("callgrind_instructions")
            cells = [f"{r[t]['instructions_median']} / {_or_dash(r[t].get('cycles_estimate'))} / "
                     f"{r[t]['us_estimate']:.1f} / {r[t]['flash_bytes']} / "
                     f"{r[t]['ram_bytes']} / {_or_dash(r[t].get('stack_bytes'))}" if t in r else "-" for t in ts]
            lines.append(f"| {who if name == 'student' else name} {'-'.join(map(str, net['widths']))} | "
                         f"{_label(res, name, impl)} | {ns:.0f} | "
                         f"{f'{ci:.0f}' if ci else '-'} | " + " | ".join(cells) + " |")
    ek = res.get("export_kernels")
    if ek:
        n = ((ek["candidates"].get(ek["shipped"]) or {}).get("samples"))  # the export's observations (recorded since)
        lines += ["", f"Kernels the export built and measured ({ek['measured_on'] or 'not measured'}"
                  + (f", the median call of the export's own {n or 'few'} observations: the shipped kernel's figures "
                     "may differ a little from its row above, the median of the bench's --samples"
                     if ek["measured_on"] else "") + f"); it ships **{ek['shipped']}**: {ek['rule']}.", "",
                  "| kernel | instructions | cycles (est.) | policy flash B |", "|---|---|---|---|"]
        lines += [f"| {n}{' (shipped)' if n == ek['shipped'] else ''} | {c['instructions']} | {c['cycles']:.0f} "
                  f"| {c['flash_bytes']} |" if c else f"| {n} | - | - | - |" for n, c in ek["candidates"].items()]
        if ek.get("verdicts"):  # what the export's report says of each kernel it did not ship
            lines += ["", "Not shipped:"] + [f"- {n}: {why}" for n, why in ek["verdicts"].items()]
    f = res.get("arithmetic_floor")
    if f:
        lines.append(f"\nArithmetic floor of the {who}: {f['instructions']} instructions ({f['macs']} nonzero "
                     f"multiply-adds, {f['bias_adds']} bias adds, {f['activations']} activations, "
                     f"{f['output_ops']} output ops).")
    for t, variants in res.get("summary", {}).items():
        for variant, r in variants.items():
            parts = [f"{r['instructions']} instructions, {r['flash_bytes']} B image flash",
                     f"{r['instructions_vs_floor']:.1f}x the floor"]
            if "teacher_over_student_instructions" in r:
                parts.append(f"{r['teacher_over_student_instructions']:.0f}x fewer instructions than the teacher, "
                             f"policy flash {100 * r['student_over_teacher_policy_flash']:.2f} % of the teacher's")
            parts += [f"{k}: {v['instructions_over_bpd']:.2f}x the instructions, {v['flash_over_bpd']:.2f}x the flash"
                      for k, v in r.items() if isinstance(v, dict)]
            parts += [f"{_label(res, 'student', k.split(' instructions / ')[0])} instructions / {INT_ROW}'s {v:.1f}x"
                      for k, v in r.items() if k.endswith(f"/ {INT_ROW}")]
            lines.append(f"- {t}, {_label(res, 'student', variant)}: " + "; ".join(parts) + ".")
    if res.get("teacher_note"):
        lines.append(f"\nTeacher: {res['teacher_note']}.")
    if res.get("source_note"):
        lines.append(f"\nNote: {res['source_note']}.")
    clocks = ", ".join(f"{t} {TARGETS[t]['clock_mhz']} MHz" for t in ts)
    lines.append("\nInstruction counts are exact for the emulated code (measured); cycles are estimated from the "
                 "instruction mix by the cycle model (docs/cycle_model.md: zero-wait memory, every branch taken) and "
                 f"microseconds are those cycles at the model's clock ({clocks}). Image flash, RAM and stack are the "
                 "whole bench image's, from the linked ELF: the policy and the harness around it (vector table, "
                 "startup, main, memcpy/memset); the policy's own code and data alone is policy_bytes in bench.json, "
                 "the policy flash of the kernels table and of export_report.json (a firmware image's policy part, "
                 "`bpd firmware build`, also holds the model hash string the firmware reports). A stack of '-': "
                 "code whose stack use the compiler leaves unbounded, not measured." + (
                     " A host instr of '-': not counted, valgrind (callgrind) is not installed (apt-get install "
                     "valgrind)." if any("median_ns" in r.get("host", {}) and "callgrind_instructions" not in r["host"]
                                         for n in res["networks"].values() for r in n["runtimes"].values()) else ""))
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    labels: list[str] = []
    values: dict[str, list[float]] = {t: [] for t in res["targets"]}
    for name, net in res["networks"].items():
        for impl, r in net["runtimes"].items():
            if all(t in r for t in res["targets"]):
                labels.append(name.replace("_", "\n") + f"\n{impl}")  # student_masked: two short lines
                for t in res["targets"]:
                    values[t].append(r[t]["instructions_median"])
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(labels)), 4.5))
    x, w = np.arange(len(labels)), 0.8 / max(len(res["targets"]), 1)
    for i, t in enumerate(res["targets"]):
        ax.bar(x + i * w, values[t], w, label=t)
    ax.set_yscale("log")
    ax.set_xticks(x + w * (len(res["targets"]) - 1) / 2, labels, fontsize=7)
    ax.set_ylabel("instructions per inference (emulated)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the axes: never over a bar
    ax.set_title("Inference cost per network and runtime")
    save_png(fig, path)
