"""Which kernel is the fastest on every student the plans' run roots hold: the exports' own measurements, gathered.

    python benchmarks/fastest_kernel.py [PLAN ...] [--out benchmarks/results/cost/fastest-kernel]

Every `bpd export` builds its candidate kernels and measures each on the emulated Cortex-M4F (instructions exact,
cycles by the cycle model, docs/cycle_model.md), and records them in export_report.json under `kernel.candidates`.
For every finished cell of the plans (default: every plan in benchmarks/plans) whose run directory holds its export,
this reads those figures, whatever kernel the export shipped (a flash budget may ship a slower one), and counts the
students on which the straight-line integer kernel (`integer`) has the fewest estimated cycles, with the fastest other
kernel's cycles over its own. Nothing is measured here: the figures are the exports', each of the integer kernel's
form at the time (recorded per student). A cell whose run root is gone is not counted, unless `--keep` keeps its row
from OUT.json's earlier run (marked `kept`; run roots do not outlive a machine). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.io import write_results  # noqa: E402


def gather(plans: list[Path]) -> list[dict]:
    from bpd_app.experiment import load_plan

    rows: list[dict] = []
    seen: set[Path] = set()
    for p in plans:
        plan = load_plan(p)
        for c in plan.cells():
            rep = c.dir / "export" / "export_report.json"
            if not rep.is_file() or rep.resolve() in seen:
                continue
            seen.add(rep.resolve())
            kernel = json.loads(rep.read_text()).get("kernel") or {}
            cand = kernel.get("candidates") or {}
            cycles = {k: float(v["cost"]["cycles"]) for k, v in cand.items()
                      if isinstance(v, dict) and (v.get("cost") or {}).get("cycles")}
            if "integer" not in cycles:
                continue
            others = {k: v for k, v in cycles.items() if k != "integer"}
            best_other = min(others, key=others.__getitem__) if others else None
            floats = {k: v for k, v in cycles.items() if not k.startswith("integer")}
            best_float = min(floats, key=floats.__getitem__) if floats else None
            rows.append({"plan": str(p.resolve().relative_to(ROOT)), "cell": c.key, "env": c.env,
                         "fastest": min(cycles, key=cycles.__getitem__), "integer_cycles": cycles["integer"],
                         "best_other": best_other, "best_other_cycles": others.get(best_other) if best_other else None,
                         "best_float": best_float, "best_float_cycles": floats.get(best_float) if best_float else None,
                         "shipped": kernel.get("shipped") or kernel.get("chosen"),
                         "integer_form": cand["integer"].get("form")})
    return rows


def table(res: dict) -> str:
    rows = res["rows"]
    fastest = [r for r in rows if r["fastest"] == "integer"]
    ratios = [r["best_other_cycles"] / r["integer_cycles"] for r in rows if r["best_other_cycles"]]
    fl = [r["best_float_cycles"] / r["integer_cycles"] for r in rows if r["best_float_cycles"]]
    lines = ["# The fastest kernel on every student at hand", "",
             f"Written by `{res['command']}` (see its docstring): the estimated Cortex-M4F cycles each export measured "
             "for its candidate kernels, read from the cells' export reports in the plans' run roots"
             + (f" ({sum(bool(r.get('kept')) for r in rows)} of the {len(rows)} students' rows kept from an earlier "
                "run of this script, their run roots since lost)" if any(r.get("kept") for r in rows) else "")
             + ".", "",
             f"**The straight-line integer kernel has the fewest cycles on {len(fastest)} of {len(rows)} students**; "
             + (f"the fastest other kernel (another integer form, where built) takes {min(ratios):.2f}-"
                f"{max(ratios):.2f}x its cycles" if ratios else "")
             + (f", the fastest float kernel {min(fl):.2f}-{max(fl):.2f}x." if fl else "."),
             "", "| plan | students | integer fastest | fastest other kernel (x integer's cycles) | "
             "fastest float kernel (x) |", "|---|---|---|---|---|"]
    for plan in sorted({r["plan"] for r in rows}):
        pr = [r for r in rows if r["plan"] == plan]
        rr = [r["best_other_cycles"] / r["integer_cycles"] for r in pr if r["best_other_cycles"]]
        rf = [r["best_float_cycles"] / r["integer_cycles"] for r in pr if r["best_float_cycles"]]
        lines.append(f"| {plan} | {len(pr)} | {sum(r['fastest'] == 'integer' for r in pr)} | "
                     + (f"{min(rr):.2f}-{max(rr):.2f}x" if rr else "-") + " | "
                     + (f"{min(rf):.2f}-{max(rf):.2f}x" if rf else "-") + " |")
    slower = [r for r in rows if r["fastest"] != "integer"]
    if slower:
        lines += ["", "Where another kernel is faster: " + "; ".join(f"{r['plan']} {r['cell']}: {r['fastest']}"
                                                                  for r in slower) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plans", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost" / "fastest-kernel")
    ap.add_argument("--keep", action="store_true",
                    help="keep OUT.json's rows for the plans' cells whose run roots are gone (bpd.io.kept_rows)")
    a = ap.parse_args()
    from bpd.errors import BpdError
    from bpd.io import kept_rows

    plans = a.plans or sorted((ROOT / "benchmarks" / "plans").glob("*.yaml"))
    try:
        rows = gather(plans)
        if not rows:
            raise BpdError("no finished cell of these plans holds its export in its run root")
        if a.keep:
            from bpd_app.experiment import load_plan

            order = {(str(p.resolve().relative_to(ROOT)), c.key): None for p in plans for c in load_plan(p).cells()}
            order = {k: i for i, k in enumerate(order)}  # the plans' cells in the order gather reads them
            rows += kept_rows(a.out, rows, ("plan", "cell"), {}, lambda r: (r["plan"], r["cell"]) in order)
            rows.sort(key=lambda r: order[(r["plan"], r["cell"])])
    except BpdError as e:
        sys.exit(f"fastest_kernel: {e}")
    res = {"command": "python benchmarks/fastest_kernel.py" + "".join(
        f" {p.resolve().relative_to(ROOT)}" for p in a.plans) + (" --keep" if a.keep else ""), "rows": rows}
    write_results(a.out, res, table(res))


if __name__ == "__main__":
    main()
