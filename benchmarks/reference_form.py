"""The delivered students against the benchmark's own BPD students, on the kernel those were measured with.

    python benchmarks/reference_form.py --old-tree DIR [--out benchmarks/results/cost/delivered-vs-benchmark]

Issue 34's bar sets the delivered student's Cortex-M4F cycles against "the BPD students in
benchmarks/results/benchmark/table.md (same kernel on both sides)". benchmarks/delivered.py sets them against each
plan's own `bpd` cells (the same specification, measured with the current integer kernel), because the benchmark's
student files are gone and their integer-kernel cycles (benchmarks/results/cost/cost.json) exist only in the
kernel's form of the day they were measured. This script makes the other comparison: every task-seed's delivered
student (the `*-compress-confirmed200/delivered.json` files of the README's compress table, seeds 0-2) exported again
by the code of that day (DIR: a git worktree at the commit that measured them; its code is put first on PYTHONPATH,
as the installed entry point would otherwise run this checkout's) with `bpd export --kernel integer` on the same
calibration dataset as its cell's export, and measured by that code's `kernel_cost` (emulated, Cortex-M4F), beside the
benchmark student's figure in cost.json of the same task and seed. The form recorded by both must be the same string;
a row where it is not is an error. Writes OUT.json and OUT.md; the exports go under $BPD_RUNS or ../bpd-runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.io import write_json, write_text  # noqa: E402

PLANS = [("hopper-dense", "Hopper-v5"), ("hc-dense", "HalfCheetah-v5"), ("idp-dense-long", "InvertedDoublePendulum-v5"),
         ("loco-dense", "Walker2d-v5")]
COST = ROOT / "benchmarks" / "results" / "cost" / "cost.json"
BAR = 0.5


def regenerate_args(policy_c: Path) -> tuple[str, str]:
    """The student and the calibration dataset of a cell's export, from its `regenerate with:` line."""
    line = next((ln for ln in policy_c.read_text().splitlines() if "regenerate with:" in ln), "")
    m = re.search(r"bpd export (\S+) .*--dataset (\S+)", line)
    if not m:
        raise SystemExit(f"reference_form: {policy_c}: no `regenerate with` line naming the student and dataset")
    return m.group(1), m.group(2)


def old_cost(tree: Path, student: str, dataset: str, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), ATEN_CPU_CAPABILITY=os.environ.get("ATEN_CPU_CAPABILITY", "avx2"))
    bpd = Path(sys.executable).parent / "bpd"
    if not (out / "export_report.json").is_file():
        subprocess.run([str(bpd), "export", student, "--out", str(out), "--kernel", "integer", "--episodes", "0",
                        "--dataset", dataset], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    code = ("import json, sys; from pathlib import Path; from firmware_host.measure.bench import kernel_cost; "
            "c = kernel_cost(Path(sys.argv[1])); "
            "r = json.loads((Path(sys.argv[1]) / 'export_report.json').read_text()); "
            "print(json.dumps({'cost': c, 'form': r['kernel']['form']}))")
    got = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree, env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-tree", type=Path, required=True, help="a git worktree at the commit that measured cost.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost" / "delivered-vs-benchmark")
    a = ap.parse_args()
    tree = a.old_tree.resolve()
    got_commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    if got_commit.returncode or not (tree / "bpd_app").is_dir():
        sys.exit(f"reference_form: --old-tree {a.old_tree}: not a checkout of this project")
    commit = got_commit.stdout.strip()
    ref = {r["cell"]: r for r in json.loads(COST.read_text())["rows"]}
    runs = Path(os.environ.get("BPD_RUNS", ROOT.parent / "bpd-runs"))
    rows = []
    for plan, env in PLANS:
        res = json.loads((ROOT / "benchmarks" / "results" / f"{plan}-compress-confirmed200" / "delivered.json")
                         .read_text())
        for r in sorted((r for r in res["rows"] if r["env"] == env), key=lambda r: r["seed"]):
            d = next(c for c in r["candidates"] if c["cell"] == r["delivered"])
            student, dataset = regenerate_args(runs / plan / r["delivered"] / "export" / "policy.c")
            print(f"{plan} {r['delivered']} ...", flush=True)
            try:
                got = old_cost(tree, student, dataset, runs / "reference-form" / plan / r["delivered"])
            except subprocess.CalledProcessError as e:
                sys.exit(f"reference_form: {r['delivered']}: the old code's {e.cmd[1] if len(e.cmd) > 1 else ''} "
                         f"failed (exit {e.returncode})")
            b = ref[f"{env}/bpd/seed{r['seed']}"]
            if got["form"] != b["integer_form"]:
                raise SystemExit(f"reference_form: {r['delivered']}: form {got['form']!r}, the benchmark's "
                                 f"{b['integer_form']!r}: not the code that measured cost.json")
            bc = float(b["cortex-m4f"]["integer"]["cycles"])
            rows.append({"plan": plan, "env": env, "seed": r["seed"], "delivered": r["delivered"],
                         "cycles_now": d["cycles"], "cycles_then": got["cost"]["cycles"],
                         "instructions_then": got["cost"]["instructions"], "benchmark_cycles": bc,
                         "ratio": got["cost"]["cycles"] / bc, "meets_bar_here": r["meets_bar"],
                         "within": got["cost"]["cycles"] / bc <= BAR})
    out = {"old_commit": commit, "form": got["form"], "bar": BAR, "rows": rows}  # every row's, checked above
    write_json(a.out.with_suffix(".json"), out)
    L = ["# The delivered students against the benchmark's BPD students, on the kernel those were measured with", "",
         f"Written by `python benchmarks/reference_form.py --old-tree DIR` with DIR a worktree at {commit[:10]} (see "
         f"its docstring). Kernel form on both sides: {out['form']}. Delivered: the `*-compress-confirmed200` "
         "files' students (the README's compress table, seeds 0-2); benchmark: benchmarks/results/cost/cost.json's "
         "`bpd` rows (the students of benchmarks/results/benchmark/table.md). Estimated Cortex-M4F cycles "
         "(emulated).", "",
         "| task | seed | delivered | cycles, current kernel | cycles, that day's kernel | benchmark BPD student's "
         "| ratio | <= 0.5 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['env']} | {r['seed']} | `{r['delivered'].split('/')[1]}` | {r['cycles_now']:,.0f} "
                 f"| {r['cycles_then']:,.0f} | {r['benchmark_cycles']:,.0f} | {r['ratio']:.2f} "
                 f"| {'yes' if r['within'] else '**no**'} |")
    L += ["", f"Within 0.5x on {sum(r['within'] for r in rows)} of {len(rows)} task-seeds."]
    write_text(a.out.with_suffix(".md"), "\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
