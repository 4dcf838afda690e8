"""What the microcontroller pays for each kernel, on the students of a plan's finished cells.

    python benchmarks/cost_benchmark.py [benchmarks/plans/students.yaml] [--runs DIR] [--out benchmarks/results/cost]

For every finished cell whose run directory holds its student (run/student.pt), the student is exported
as `bpd export` does by default (`--kernel auto`, which builds the generic, compact and generated kernels,
checks each against torch and measures each on an emulated Cortex-M4F) with `--int` beside it, and the
integer kernel is measured on the Cortex-M4F and the Cortex-M0+; then exported again with a flash budget of
1.5x the generic kernel's flash (issue 33's bound), where the straight-line integer kernel does not fit and
the export builds the integer kernel's table form fitted to the budget (export/int_table.py), whose
least-flash build is measured on both cores too. Per student: exact instructions
(unicorn), estimated cycles (firmware_host/measure/cycle_model.py; docs/cycle_model.md), the flash of the
policy's own code and data in the linked image, and the scalar arithmetic floor (one instruction per
nonzero multiply-add, bias, activation and output operation: `firmware_host.measure.bench.arithmetic_floor`).
Writes OUT/cost.json and OUT/cost.md (regenerated from cost.json by `--table-only`; `--refresh-m0`
measures again only the Cortex-M0+ integer kernel of the rows there, after a change to its Thumb-1 form). Numbers come
from emulation and the cycle model, never from timing: the same export gives the same figures on any
machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from cost_mix import dsp_mix, mix_table  # noqa: E402

from bpd.io import path_from_record, read_json, write_json, write_text  # noqa: E402

KINDS = ("generic", "compact", "compact-table", "generated", "generated-table")
SMALL = 1.5  # the second export's flash budget, a multiple of the generic kernel's flash (issue 33's bound)
LABELS = {f"{t}/integer-table-least": f"{t}/integer, tables (least flash)" for t in ("cortex-m4f", "cortex-m0plus")} \
    | {"cortex-m4f/integer-table": f"cortex-m4f/integer, tables at {SMALL:g}x the generic kernel's flash",
       "cortex-m4f/integer-interp": "cortex-m4f/integer, tanh interpolated"}


RETURN_EPISODES = 300  # paired episodes comparing the integer kernel's closed-loop return with the float kernel's
REPORT_Z = 2.0  # the interval stated on their mean difference, +- REPORT_Z standard errors (one look: about 95 %)


def returns(env_id: str, float_dir: Path, int_dir: Path, episodes: int, seed: int) -> dict:
    """Closed-loop return of two exports' C kernels (host builds), float and integer, over the same reporting
    episodes (paired: both from the same starts), and the paired difference's interval and verdict
    (export.kernels.return_check at its last batch, one look at REPORT_Z standard errors: it keeps unless
    the interval lies below the 1 % margin; the table judges the target on the ratio of the means). A
    task whose episodes sometimes fail has an episode spread near 12 % of its return, which 30 episodes
    cannot resolve to the 1 % the target asks: hence RETURN_EPISODES."""
    import numpy as np

    from export.c_export import CPolicy
    from export.kernels import return_check
    from training.envs import evaluate

    out: dict = {}
    per: dict[str, list[float]] = {}
    for name, d in (("float", float_dir), ("integer", int_dir)):
        r, lengths = evaluate(env_id, CPolicy(d).act, episodes, seed=seed)
        per[name] = [float(x) for x in r]
        out[name] = {"return_mean": float(np.mean(r)), "return_std": float(np.std(r)), "return_min": float(np.min(r)),
                     "episodes": episodes, "lengths_min": int(min(lengths))}
    diff = np.subtract(per["integer"], per["float"])
    keep, why = return_check(per["integer"], per["float"], final=True, z=REPORT_Z)
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("inf")
    return out | {"paired": {"difference": float(diff.mean()), "half_width": REPORT_Z * se, "keeps": keep,
                             "verdict": why}}


def float_dir(run: Path, out: Path, rep: dict) -> tuple[str, Path]:
    """The float kernel the export's rule picks among the float ones (rep: the row's export report), and the
    directory holding it (an export of its own for the generic kernel, whose files the shipped kernel's
    replaced)."""
    from export.export import ExportConfig, run_export
    from export.kernels import choose

    k = rep["kernel"]
    floats = {n: c["cost"] for n, c in k["candidates"].items() if not n.startswith("integer")}
    best = choose(floats, k["flash_budget"])[0]
    if k["variant"] == best:
        return best, out
    if best != "generic":
        return best, out / "build" / "kernels" / best
    fdir = out / "float"
    if not (fdir / "export_report.json").is_file() or \
            read_json(fdir / "export_report.json")["model_hash"] != rep["model_hash"]:
        shutil.rmtree(fdir, ignore_errors=True)  # none yet, or of a student the cell held before
        run_export(ExportConfig(source=str(run / "student.pt"), out=str(fdir), episodes=0, kernel="generic"))
    return best, fdir


def with_returns(row: dict, run: Path, out: Path, env_id: str, episodes: int, seed: int) -> dict:
    """The row with the integer kernel's return against the float kernel's (out: the row's export)."""
    best, fdir = float_dir(run, out, read_json(out / "export_report.json"))
    r = returns(env_id, fdir, out / "int", episodes, seed)
    return row | {"float_kernel": best, "returns": r,
                  "integer_over_float_return": r["integer"]["return_mean"] / r["float"]["return_mean"]}


def refresh_returns(run: Path, out: Path, env_id: str, episodes: int, seed: int, row: dict) -> dict:
    """The row's returns measured again on its own export (out, checked to hold the student it measured)."""
    from bpd.errors import BpdError

    if not (out / "export_report.json").is_file():
        raise BpdError(f"{row['cell']}: its export ({out}) is gone")
    if read_json(out / "export_report.json")["model_hash"] != row["model_hash"]:
        raise BpdError(f"{row['cell']}: the export there is not of the student measured (model hash differs)")
    return with_returns(row, run, out, env_id, episodes, seed) | {"returns_refreshed": True}


def measure_student(run: Path, out: Path, dataset: str | None, env_id: str, episodes: int, seed: int,
                    with_return: bool = True) -> dict:
    from export.export import ExportConfig, run_export
    from firmware_host.measure.bench import arithmetic_floor, kernel_cost

    # the export's own closed-loop episodes (the plan's count) let its rule weigh the integer kernel, as the
    # runner's cells do
    rep = run_export(ExportConfig(source=str(run / "student.pt"), out=str(out), episodes=episodes, integer=True,
                                  dataset=dataset, seed=seed), meter=kernel_cost)
    k = rep["kernel"]
    row = {"model_hash": rep["model_hash"], "widths": rep["widths_after"],
           "nonzero_weights": rep["totals"]["nonzero_weights"], "floor": arithmetic_floor(rep)["instructions"],
           "default": k["variant"], "rule": k["rule"], "flash_budget": k.get("flash_budget"),
           "tanh": {n: c.get("tanh") for n, c in k["candidates"].items()},
           "integer_verdict": (k["candidates"].get("integer") or {}).get("verdict"),
           "cortex-m4f": {n: c["cost"] for n, c in k["candidates"].items()}}
    for target in ("cortex-m4f", "cortex-m0plus"):
        c = kernel_cost(out / "int", target)
        row.setdefault(target, {})["integer"] = c
    row["dsp_mix"] = dsp_mix(rep, row["cortex-m4f"]["integer"]["instructions"])
    row["integer_error_vs_action_range"] = rep["int"]["max_error_vs_action_range"]
    row["integer_form"] = rep["int"].get("form")
    from export.onnx_export import onnx_weights
    from training.pairs import network_slots

    row["smlad_slots"] = network_slots([w != 0 for w in onnx_weights(out / "policy.onnx")])  # one a row and pair
    row["integer_fpu_inputs"] = bool(rep["int"].get("fpu_inputs") or (rep["int"].get("table") or {}).get("fpu_inputs"))
    if episodes and with_return:  # the float kernel the rule picks among the float ones and the integer kernel,
        # on the plan's reporting seeds
        row = with_returns(row, run, out, env_id, RETURN_EPISODES, seed)
    # the default where the budget is 1.5x the generic kernel's flash: the table form fitted to it, and its
    # least-flash build on both cores
    budget = int(SMALL * row["cortex-m4f"]["generic"]["flash_bytes"])
    small = out.parent / (out.name + "-small")
    srep = run_export(ExportConfig(source=str(run / "student.pt"), out=str(small), episodes=episodes, dataset=dataset,
                                   seed=seed, flash_budget=budget), meter=kernel_cost)
    sk = srep["kernel"]
    t = sk["candidates"].get("integer-table")
    row["small_budget"] = {"flash_budget": budget, "default": sk["variant"], "rule": sk["rule"],
                           "cortex-m4f": {n: c["cost"] for n, c in sk["candidates"].items()},
                           "integer_table": t and {"plan": t["table"]["plan"], "fit": t["fit"],
                                                   "verdict": t.get("verdict"), "form": t["form"]}}
    if t:
        least = small / "build" / "kernels" / "integer-table-least"
        for target in ("cortex-m4f", "cortex-m0plus"):
            row[target]["integer-table-least"] = kernel_cost(least, target)
        row["cortex-m4f"]["integer-table"] = t["cost"]
    return row


def refresh_kernels(run: Path, out: Path, dataset: str | None, env_id: str, episodes: int, seed: int,
                  row: dict) -> dict:
    """The row measured again in full but for its 300 paired returns (after a change to the integer kernel's
    assembly, not to the integers it computes), checking that every integer build on the emulated cores gives the
    host C kernel's outputs exactly. Where the student is the one the row measured and its integer model's error
    against the float student is the row's to the bit, the returns (of the host builds) stand; where either
    differs (the cell trained again to another student, or the integers changed), the row is measured in full,
    returns too, and says so (`remeasured`)."""
    from bpd.errors import BpdError

    if shutil.which("arm-none-eabi-gcc") is None:
        raise BpdError("--refresh-table and --refresh-kernels measure on an emulated core: arm-none-eabi-gcc is not "
                       "installed")
    new = measure_student(run, out, dataset, env_id, episodes, seed, with_return=False)
    off = [f"{t} {k}" for t in ("cortex-m4f", "cortex-m0plus") for k, c in new[t].items()
           if k.startswith("integer") and c.get("max_abs_error_vs_host_c") != 0.0]
    if off:
        raise BpdError(f"{row['cell']}: {', '.join(off)} not the host C kernel's outputs to the bit")
    why = None
    if new["model_hash"] != row["model_hash"]:
        why = "the student is not the one measured (model hash differs)"
    elif new["integer_error_vs_action_range"] != row["integer_error_vs_action_range"]:
        why = "the integer model changed (its error against the float student differs)"
    if why:
        print(f"  {row['cell']}: {why}: measured in full, returns too", flush=True)
        full = with_returns(new, run, out, env_id, RETURN_EPISODES, seed) if episodes else new
        return {"cell": row["cell"]} | full | {"remeasured": why}
    kept = {k: row[k] for k in ("float_kernel", "returns", "integer_over_float_return") if k in row}
    return {"cell": row["cell"]} | new | kept | {"table_refreshed": True}


def _small_table(row: dict) -> dict:
    """What the row's export at the small budget recorded of the integer kernel's table form ({}: none built)."""
    return (row.get("small_budget") or {}).get("integer_table") or {}


def table_form_of(row: dict) -> str | None:
    return _small_table(row).get("form")


def uses_table(row: dict) -> bool:
    """Whether the row measured the integer kernel's table form (its default, or at the small budget)."""
    return row["default"] == "integer-table" or bool(_small_table(row))


def save_so_far(out: Path, rows: list[dict], old: dict[str, dict]) -> None:
    """cost.json with the rows measured so far, each kept as it lands, and the rows not reached yet as they were."""
    done = {r["cell"] for r in rows}
    so_far = rows + [r for k, r in old.items() if k not in done]
    prev = read_json(out / "cost.json") if (out / "cost.json").is_file() else {}
    write_json(out / "cost.json", prev | {"rows": so_far, "summary": summarise(so_far)})


def refresh_m0(run: Path, out: Path, dataset: str | None, row: dict) -> dict:
    """The row's Cortex-M0+ integer figures measured again on a fresh integer export (the generic float kernel
    beside it, no episodes), after checking that its Cortex-M4F build is the one the row measured (the same
    instructions): what an M0+-only change to the integer kernel leaves of the row, re-measured."""
    from bpd.errors import BpdError
    from export.export import ExportConfig, run_export
    from firmware_host.measure.bench import kernel_cost

    rep = run_export(ExportConfig(source=str(run / "student.pt"), out=str(out), episodes=0, integer=True,
                                  kernel="generic", dataset=dataset))
    if rep["model_hash"] != row["model_hash"]:
        raise BpdError(f"{row['cell']}: the student is not the one measured (model hash differs)")
    m4 = kernel_cost(out / "int", "cortex-m4f")
    if m4["instructions"] != row["cortex-m4f"]["integer"]["instructions"]:
        raise BpdError(f"{row['cell']}: the Cortex-M4F integer kernel changed ({m4['instructions']} instructions, "
                       f"{row['cortex-m4f']['integer']['instructions']} measured): measure the row again in full")
    return row | {"cortex-m0plus": row["cortex-m0plus"] | {"integer": kernel_cost(out / "int", "cortex-m0plus")},
                  "integer_form": rep["int"].get("form")}


def summarise(rows: list[dict]) -> dict:
    """Medians and worst cases over students of each kernel's instructions against the floor and flash
    against the generic kernel's."""
    out: dict = {}
    for target, kinds in (("cortex-m4f", (*KINDS, "integer", "integer-interp", "integer-table-least", "integer-table")),
                          ("cortex-m0plus", ("integer", "integer-table-least"))):
        for kind in kinds:
            rs = [r for r in rows if (r.get(target) or {}).get(kind)]
            if not rs:
                continue
            vs_floor = [r[target][kind]["instructions"] / r["floor"] for r in rs]
            entry = {"students": len(rs), "instructions_vs_floor_median": statistics.median(vs_floor),
                     "instructions_vs_floor_worst": max(vs_floor)}
            gen = [r for r in rs if r.get("cortex-m4f", {}).get("generic")]
            if target == "cortex-m4f" and gen:
                entry["cycles_vs_generic_median"] = statistics.median(
                    r[target][kind]["cycles"] / r[target]["generic"]["cycles"] for r in gen)
                entry["flash_vs_generic_median"] = statistics.median(
                    r[target][kind]["flash_bytes"] / r[target]["generic"]["flash_bytes"] for r in gen)
                entry["flash_vs_generic_worst"] = max(
                    r[target][kind]["flash_bytes"] / r[target]["generic"]["flash_bytes"] for r in gen)
            out[f"{target}/{kind}"] = entry
    ratios = [r["integer_over_float_return"] for r in rows if "integer_over_float_return" in r]
    if ratios:
        out["integer_over_float_return"] = {"min": min(ratios), "median": statistics.median(ratios),
                                            "students": len(ratios)}
    d = [r for r in rows if r.get("default")]
    if d:
        out["default"] = {"chosen": {k: sum(r["default"] == k for r in d)
                                     for k in (*KINDS, "integer", "integer-interp", "integer-table")},
                          "instructions_vs_floor": [round(r["cortex-m4f"][r["default"]]["instructions"] / r["floor"], 2)
                                                    for r in d],
                          "cycles_vs_generic": [round(r["cortex-m4f"][r["default"]]["cycles"]
                                                      / r["cortex-m4f"]["generic"]["cycles"], 3) for r in d],
                          "flash_vs_generic": [round(r["cortex-m4f"][r["default"]]["flash_bytes"]
                                                     / r["cortex-m4f"]["generic"]["flash_bytes"], 2) for r in d]}
    return out


LOCOMOTION = ("Hopper", "HalfCheetah", "Walker2d", "Ant")


def targets(rows: list[dict]) -> list[dict]:
    """Issue 33's targets, each judged on the rows it concerns: how many meet it, and the worst figure."""
    def judge(name: str, rs: list[dict], figure, limit: float, below: bool = True) -> dict:
        vals = [(r["cell"], figure(r)) for r in rs]
        ok = [v for _, v in vals if (v < limit if below else v >= limit)]
        worst = (max if below else min)(vals, key=lambda cv: cv[1]) if vals else None
        return {"target": name, "students": len(vals), "met": len(ok), "limit": limit,
                "worst": None if worst is None else {"cell": worst[0], "value": round(worst[1], 3)}}

    loco = [r for r in rows if r["cell"].startswith(LOCOMOTION)]
    small = [r for r in rows if r["nonzero_weights"] < 200]
    m4 = lambda r, k: r["cortex-m4f"][k]  # noqa: E731
    out = [judge("default kernel, instructions / floor, locomotion (< 2.0)", loco,
                 lambda r: m4(r, r["default"])["instructions"] / r["floor"], 2.0),
           judge("default kernel, instructions / floor, students below 200 weights (< 4.0)", small,
                 lambda r: m4(r, r["default"])["instructions"] / r["floor"], 4.0),
           judge("default kernel, flash / generic kernel's (<= 1.5)", rows,
                 lambda r: m4(r, r["default"])["flash_bytes"] / m4(r, "generic")["flash_bytes"], 1.5 + 1e-9),
           judge("Cortex-M4F integer kernel, instructions / floor, locomotion (< 1.0)",
                 [r for r in loco if r.get("integer_form")], lambda r: m4(r, "integer")["instructions"] / r["floor"],
                 1.0),
           judge("integer kernel's return against the float kernel's, (int - float) / abs(float) (>= -0.01)",
                 [r for r in rows if "returns" in r], lambda r: (r["returns"]["integer"]["return_mean"]
                                                                 - r["returns"]["float"]["return_mean"])
                 / max(abs(r["returns"]["float"]["return_mean"]), 1e-9), -0.01 - 1e-12, below=False),
           judge("Cortex-M0+ integer kernel, instructions / floor (< 5.0)", [r for r in rows if r.get("integer_form")],
                 lambda r: r["cortex-m0plus"]["integer"]["instructions"] / r["floor"], 5.0)]
    # issue 33's bounds on the default hold at no more than 1.5x the generic kernel's flash: the default of the
    # export whose --flash-budget is that, and the integer kernel's table form at its least flash
    sb = [r for r in rows if r.get("small_budget")]
    at = lambda r: r["small_budget"]["cortex-m4f"][r["small_budget"]["default"]]  # noqa: E731
    out[3:3] = [judge(f"default at a flash budget of {SMALL:g}x the generic kernel's, instructions / floor, "
                      "locomotion (< 2.0)", [r for r in sb if r in loco], lambda r: at(r)["instructions"] / r["floor"],
                      2.0),
                judge(f"default at a flash budget of {SMALL:g}x the generic kernel's, instructions / floor, students "
                      "below 200 weights (< 4.0)", [r for r in sb if r in small],
                      lambda r: at(r)["instructions"] / r["floor"], 4.0),
                judge("integer kernel's table form at its least flash, flash / generic kernel's (<= 1.5)",
                      [r for r in rows if m4_get(r, "integer-table-least")],
                      lambda r: m4(r, "integer-table-least")["flash_bytes"] / m4(r, "generic")["flash_bytes"],
                      1.5 + 1e-9)]
    return out


def replaced(res: dict) -> set[str]:
    """The rows' cells whose student is no longer the plan's: the cell's result in the run root (the runner's default
    one), else its committed summary (the plan's results, cells/), names another model than the row measured; the
    cell was trained again since. Nothing where the plan cannot be read (said in a line)."""
    from bpd.errors import BpdError
    from bpd_app.experiment import load_plan

    try:
        plan = load_plan(ROOT / res["plan"])
    except BpdError as e:
        print(f"cost_benchmark: {e}: rows not checked against the plan's cells", file=sys.stderr)
        return set()
    out = set()
    for r in res["rows"]:
        run = plan.runs / r["cell"] / "result.json"
        p = run if run.is_file() else Path(plan.results_dir) / "cells" / f"{r['cell']}.json"
        try:
            h = (read_json(p).get("export") or {}).get("model_hash") if p.is_file() else None
        except BpdError:
            h = None
        if h and r.get("model_hash") and h != r["model_hash"]:
            out.add(r["cell"])
    return out


def method_of(r: dict) -> str:
    """The plan's method (its row label) that trained a row's student: the middle of its cell key."""
    return r["cell"].split("/")[1]


def _met(t: dict) -> str:
    w = t["worst"]
    return "-" if w is None else f"{t['met']} of {t['students']}; {w['value']:.3f} ({w['cell'].split('/', 1)[0]} " \
        f"{w['cell'].rsplit('/', 1)[1]})"


def m4_get(r: dict, kind: str) -> dict | None:
    return (r.get("cortex-m4f") or {}).get(kind)


def _returns(r: dict) -> str:
    if "returns" not in r:
        return "-"
    f, i = r["returns"]["float"], r["returns"]["integer"]
    p = r["returns"].get("paired")
    spread = (f"; difference {p['difference']:+.1f} +- {p['half_width']:.1f}" if p else "")
    return (f"{f['return_mean']:.1f} / {i['return_mean']:.1f} ({r['integer_over_float_return']:.3f}) over "
            f"{f['episodes']} episodes{spread}")


REFRESHED = ("; its Cortex-M0+ integer figures measured again with `--refresh-m0` after the kernel's Thumb-1 form "
             "(the Cortex-M4F build checked unchanged; the table form's Cortex-M0+ column as first measured, "
             "before the C's output conversion lost a few instructions there)")


def markdown(res: dict) -> str:
    L = ["# What the microcontroller pays, per kernel", "",
         "Written by `python benchmarks/cost_benchmark.py " + res["plan"] + "` (this file again from its cost.json: "
         "`--table-only`)" + (REFRESHED if res.get("m0_refreshed") else "") + ".", "",
         f"Students: the finished cells of {res['plan']} ({len(res['rows'])}). Cortex-M4F at "
         "168 MHz and Cortex-M0+ at 48 MHz, emulated (unicorn): instructions exact, cycles estimated from the "
         "instruction mix (docs/cycle_model.md: zero-wait memory, every branch taken, ratios good to about "
         "+-20-30 %), flash = the policy's own code and data in the linked image. Floor: one instruction per "
         "nonzero multiply-add, bias, activation and output operation. The default is what `bpd export` ships "
         "without flags: the fewest estimated Cortex-M4F cycles within the flash budget among the float kernels "
         "and, where it stays within --int-budget, runs its assembly bit for bit and keeps 99 % of that float "
         "kernel's return in the export's closed-loop check (paired episodes in batches of the plan's count, "
         "export/kernels.py `return_check`), the integer kernel, held to 1.5x the generic kernel's flash "
         "(`--int-flash-ratio`): tanh by one lookup in its 4 kB table where that fits, else interpolated between "
         "128 knots (512 B, the same integers; four instructions a tanh unit more), else its table form fitted "
         "to that limit. Each row's rule and the integer "
         "kernel's verdict are in cost.json. The last column compares the two kernels on the plan's reporting "
         "episodes, "
         "paired (both from the same starts): means, their ratio, and the mean difference +- two standard "
         "errors. Multiply-adds per SMLAD: the nonzero weights over the DSP integer kernel's multiplies (one a row "
         "and pair of columns with a weight: an SMLAD, or where the pair carries one weight an SMLA<w><x> on half a "
         "table word; 2.00 when every pair is full, nearer 1 where pairs carry one weight: what the DSP kernel's "
         "ratio to the floor turns on; - for rows measured before it was recorded).", "",
         "| student | widths | nonzero | multiply-adds per SMLAD | floor | default "
         "| M4F instructions / cycles / flash B: generic "
         "| compact | compact, table tanh | generated | generated, table tanh | integer | integer, tanh interpolated "
         "| integer, tables (least flash) | M0+ integer | M0+ integer, tables | default vs floor (instr) "
         "| default vs generic (cycles, flash) | return float C / integer (ratio) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(c: dict | None) -> str:
        return "-" if not c else f"{c['instructions']} / {c['cycles']:.0f} / {c['flash_bytes']}"

    from export.fixed_point import int_form
    from export.int_table import TABLE_FORM

    current = int_form(True)
    old_table = [r for r in res["rows"] if uses_table(r) and table_form_of(r) != TABLE_FORM]
    gone = replaced(res)
    for r in res["rows"]:
        m4, d = r["cortex-m4f"], r["default"]
        mark = "" if r.get("integer_form") == current else " (b)" if r.get("integer_form") else " (a)"
        mark += (" (c)" if r in old_table else "") + (" (d)" if r["cell"] in gone else "")
        fill = f"{r['nonzero_weights'] / r['smlad_slots']:.2f}" if r.get("smlad_slots") else "-"
        L.append(f"| {r['cell']}{mark} | {'-'.join(map(str, r['widths']))} | {r['nonzero_weights']} | {fill} "
                 f"| {r['floor']} "
                 f"| {d} | " + " | ".join(cell(m4.get(k))
                                         for k in (*KINDS, "integer", "integer-interp", "integer-table-least"))
                 + " | " + " | ".join(cell(r["cortex-m0plus"].get(k)) for k in ("integer", "integer-table-least"))
                 + " "
                 f"| {m4[d]['instructions'] / r['floor']:.2f}x "
                 f"| {m4[d]['cycles'] / m4['generic']['cycles']:.2f}x, "
                 f"{m4[d]['flash_bytes'] / m4['generic']['flash_bytes']:.2f}x | {_returns(r)} |")
    L += ["", "Every kernel over all the rows above, the plan's methods pooled (the targets below are judged apart for "
          "each method):", "", "| kernel | students | instructions / floor (median, worst) | cycles / generic (median) "
          "| flash / generic (median, worst) |", "|---|---|---|---|---|"]
    for k, e in res["summary"].items():
        if k in ("default", "integer_over_float_return"):
            continue
        L.append(f"| {LABELS.get(k, k)} | {e['students']} | {e['instructions_vs_floor_median']:.2f}x, "
                 f"{e['instructions_vs_floor_worst']:.2f}x | "
                 + (f"{e['cycles_vs_generic_median']:.2f}x | {e['flash_vs_generic_median']:.2f}x, "
                    f"{e['flash_vs_generic_worst']:.2f}x |" if "cycles_vs_generic_median" in e else "- | - |"))
    if any(not r.get("integer_form") for r in res["rows"]):
        L += ["", "(a) measured with the integer kernel before the DSP assembly and before its table form (its run "
              "root was since lost, so it could not be measured again); every other row's integer figures are the "
              "assembly's."]
    earlier = sorted({r["integer_form"] for r in res["rows"] if r.get("integer_form") not in (None, current)})
    if earlier:
        L += ["", f"(b) measured with an earlier form of the integer kernel ({'; '.join(earlier)}), not yet measured "
              f"again with the current one ({current}; its tanh by lookup or interpolated, the integers of 128 knots' "
              "interpolation): its figures and the default chosen then are that form's."]
    if old_table:
        forms = sorted({table_form_of(r) or "unrecorded" for r in old_table})
        L += ["", f"(c) the integer kernel's table form measured in an earlier form ({'; '.join(forms)}), not yet "
              f"measured again with the current one ({TABLE_FORM}): its table-form figures, and the default where "
              "that is the table form, are that form's."]
    if gone:
        L += ["", "(d) a student its cell no longer holds: the cell was trained again since, and its result (the run "
              "root's, else the committed summary) names another model (`export.model_hash`); the row's figures are "
              "the earlier student's, and the targets below leave it out (`--only CELL` measures the new one where "
              "the run root holds it)."]
    sb = [r for r in res["rows"] if r.get("small_budget")]
    if sb:
        L += ["", f"At a flash budget of {SMALL:g}x the generic kernel's flash (`bpd export --flash-budget B`): the "
              "straight-line integer kernel does not fit, and the export builds the integer kernel's table form "
              "(export/int_table.py) fitted to the budget: the weights in tables, and as many layers, and the first "
              "rows of one more, as the room allows as straight-line code (export/int_plan.py). The same integers "
              "as the integer kernel's, bit for bit.", "",
              "| student | budget B | default | the table form's plan | default: M4F instructions / cycles / flash B "
              "| vs floor (instr) | vs generic (cycles, flash) | table form's verdict |",
              "|---|---|---|---|---|---|---|---|"]
        for r in sb:
            b = r["small_budget"]
            c, g = b["cortex-m4f"][b["default"]], r["cortex-m4f"]["generic"]
            t = b["integer_table"] or {}
            L.append(f"| {r['cell']} | {b['flash_budget']} | {b['default']} | {t.get('plan', '-')} | {cell(c)} "
                     f"| {c['instructions'] / r['floor']:.2f}x | {c['cycles'] / g['cycles']:.2f}x, "
                     f"{c['flash_bytes'] / g['flash_bytes']:.2f}x | {t.get('verdict') or '-'} |")
    L += mix_table(res["rows"])
    now = [r for r in res["rows"] if r["cell"] not in gone]  # the students the plan reports
    groups = {m: [r for r in now if method_of(r) == m] for m in dict.fromkeys(map(method_of, res["rows"]))}
    judged = {m: targets(rs) for m, rs in groups.items()}
    L += ["", "Targets (issue 33), judged on the rows each concerns, apart for each method's students (the plan's "
          "row: how the students were trained); a cell: met of the students it concerns, and the worst figure:", "",
          "| target | " + " | ".join(f"`{m}`" for m in groups) + " |", "|---|" + "---|" * len(groups)]
    for i, t in enumerate(next(iter(judged.values()), [])):
        L.append(f"| {t['target']} | " + " | ".join(_met(judged[m][i]) for m in groups) + " |")
    again = [r["cell"] for r in res["rows"] if r.get("returns_refreshed")]
    if again:
        L += ["", f"Returns measured again over {RETURN_EPISODES} paired episodes (`--refresh-returns`) on the export "
              "each row measured, whose default the export's check of then chose (the mean over the plan's "
              "episodes, one batch): " + ", ".join(again) + "."]
    ir = res["summary"].get("integer_over_float_return")
    if ir:
        L += ["", f"Integer kernel's closed-loop return over the float kernel's: median {ir['median']:.3f}, worst "
              f"{ir['min']:.3f} ({ir['students']} student{'s' if ir['students'] != 1 else ''})."]
    return "\n".join(L) + "\n"


def run_config(plan, c) -> tuple[dict, Path]:
    """The run configuration of a cell and the directory its paths are relative to: its own run's, or for a cell
    that trained nothing (a reselection: its run holds the student and summary alone) the run of the cell it
    needs, of the same environment and seed."""
    run = c.dir / "run"
    if (run / "config.json").is_file():
        return json.loads((run / "config.json").read_text()), run
    for d in [c.dir.parent.parent / label / c.dir.name / "run" for label in plan.methods[c.label].needs.values()]:
        if (d / "config.json").is_file():
            return json.loads((d / "config.json").read_text()), d
    sys.exit(f"cost_benchmark: {c.key}: no run configuration (config.json) in its run or the runs it needs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", default=str(ROOT / "benchmarks" / "plans" / "students.yaml"))
    ap.add_argument("--runs", default=None, help="the plan's run root (default: the runner's)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cost"))
    ap.add_argument("--only", nargs="*", default=None,
                    help="measure only cells whose key (ENV/LABEL/seedN) starts with one of these")
    ap.add_argument("--table-only", action="store_true", help="rewrite cost.md from cost.json")
    ap.add_argument("--refresh-returns", action="store_true",
                    help=f"measure again only the integer and float kernels' returns of the rows in cost.json, over "
                    f"{RETURN_EPISODES} paired reporting episodes, on the exports the rows measured")
    ap.add_argument("--refresh-table", action="store_true",
                    help="measure again the rows of cost.json that built the integer kernel's table form (after a "
                    "change to it alone), all but their returns, checking that the straight-line integer kernel is "
                    "unchanged")
    ap.add_argument("--refresh-kernels", action="store_true",
                    help="measure again every row of cost.json but for its returns (after a change to the integer "
                    "kernel's assembly, not to its integers), checking that every integer build gives the host C "
                    "kernel's outputs to the bit; a row whose student or integer model is not the one it measured "
                    "(its cell trained again to another student) is measured in full, returns too, as is a finished "
                    "cell with no row")
    ap.add_argument("--refresh-m0", action="store_true",
                    help="measure again only the Cortex-M0+ integer kernel of the rows in cost.json (after a change "
                    "to its Thumb-1 form), checking that the Cortex-M4F build is unchanged")
    a = ap.parse_args()
    out = Path(a.out)
    again = a.refresh_table or a.refresh_kernels or a.refresh_returns
    if (a.table_only or again or a.refresh_m0) and not (out / "cost.json").is_file():
        sys.exit(f"cost_benchmark: {out / 'cost.json'} not found: measure the rows first (without --table-only or "
                 "--refresh-*)")
    if a.table_only:
        res = json.loads((out / "cost.json").read_text())
        res["summary"] = summarise(res["rows"])  # in its own order (the file's keys are sorted)
    else:
        from bpd_app.experiment import load_plan

        plan = load_plan(a.plan, a.runs)
        old = {r["cell"]: r for r in json.loads((out / "cost.json").read_text())["rows"]} \
            if (out / "cost.json").is_file() else {}
        rows = []
        for c in plan.cells():
            if a.only is not None and not any(c.key.startswith(o) for o in a.only):
                if c.key in old:
                    rows.append(old[c.key])  # not measured this time: its row kept as it was
                continue
            run = c.dir / "run"
            if not (c.dir / "result.json").is_file() or not (run / "student.pt").is_file():
                if c.key in old:
                    rows.append(old[c.key])  # measured before, its run root since lost: kept, not dropped
                continue
            cfg, cfg_dir = run_config(plan, c)
            print(f"{c.key} ...", flush=True)
            ds = cfg.get("dataset")
            ds = str(path_from_record(ds, cfg_dir)) if ds and not ds.startswith("minari:") else ds
            if a.refresh_returns:
                if c.key in old:
                    from bpd.errors import BpdError
                    try:
                        rows.append(refresh_returns(run, c.dir / "cost", c.env, RETURN_EPISODES, plan.eval["seed"],
                                                    old[c.key]))
                    except BpdError as e:
                        print(f"  kept as it was: {e}", flush=True)
                        rows.append(old[c.key])
                continue
            if a.refresh_table or (a.refresh_kernels and c.key in old):  # a cell with no row: measured in full
                if c.key in old and (a.refresh_kernels or uses_table(old[c.key])):
                    from bpd.errors import BpdError
                    try:
                        rows.append(refresh_kernels(run, c.dir / "cost", ds, c.env, plan.eval["episodes"],
                                                  plan.eval["seed"], old[c.key] | {"cell": c.key}))
                    except BpdError as e:
                        print(f"  kept as it was: {e}", flush=True)
                        rows.append(old[c.key])
                elif c.key in old:
                    rows.append(old[c.key])
                save_so_far(out, rows, old)
                continue
            if a.refresh_m0:
                if c.key in old:
                    from bpd.errors import BpdError
                    try:
                        rows.append(refresh_m0(run, c.dir / "cost-m0", ds, old[c.key] | {"cell": c.key}))
                    except BpdError as e:
                        print(f"  kept as it was: {e}", flush=True)
                        rows.append(old[c.key])
                continue
            rows.append({"cell": c.key} | measure_student(run, c.dir / "cost", ds, c.env,
                                                          plan.eval["episodes"], plan.eval["seed"]))
            save_so_far(out, rows, old)
        from export.fixed_point import int_form

        # the integer kernel's form now: rows measured with another are marked in the table (b)
        res = {"plan": str(Path(a.plan).resolve().relative_to(ROOT)), "rows": rows, "summary": summarise(rows),
               "integer_form": int_form(True)}
        prev = json.loads((out / "cost.json").read_text()) if (out / "cost.json").is_file() else {}
        if a.refresh_m0 or ((a.only is not None or again) and prev.get("m0_refreshed")):
            res["m0_refreshed"] = True
        write_json(out / "cost.json", res)
    write_text(out / "cost.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
