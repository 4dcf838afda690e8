"""Tables of BPD against the distillation baselines at equal size, from a plan's finished cells.

    python benchmarks/baselines_table.py benchmarks/plans/baselines.yaml [--runs DIR] [--out DIR]

Writes, beside the runner's own table (`bpd experiment table`, written first into the same directory):
  baselines.md / baselines.csv   per environment and method: return, % of the teacher and D4RL score
                                 (each mean +- std over seeds; worst seed), environment steps, gradient
                                 steps, training wall time, nonzero parameters (and the budget a pruned
                                 row was given: the BPD cell's count), Cortex-M4F instructions and
                                 estimated cycles (median over seeds) with the C kernel each cell's bench
                                 measured them of, control policy and the spread of the states it visited
and links the runner's <env>.env-curves.png (periodic evaluation return against environment steps for
the online variants, mean and min-max over seeds, with the teacher and BPD as references).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import write_text  # noqa: E402
from bpd_app.experiment.plan import load_plan  # noqa: E402
from bpd_app.experiment.results import collect_results  # noqa: E402
from bpd_app.experiment.stats import aggregate  # noqa: E402
from bpd_app.experiment.tables import kernels_note, spread, write_table  # noqa: E402

COLS = ["env", "label", "method", "size", "control", "seeds_done", "return_mean", "return_std", "return_worst",
        "worst_seed", "early_ends", "episodes", "vs_teacher_mean", "vs_teacher_std", "vs_teacher_worst",
        "d4rl_mean", "d4rl_std", "d4rl_worst", "env_steps", "grad_steps", "train_seconds_median", "nonzero_min",
        "nonzero_max", "nonzero_budget_min", "nonzero_budget_max", "m4f_instructions_median", "m4f_cycles_median",
        "m4f_kernel", "visited_spread_mean"]


def _stat(xs: list, f) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(f(xs)) if xs else None


def rows_of(plan) -> list[dict]:
    """Per environment and method: the runner's aggregates over seeds (experiment.stats.aggregate, the
    figures of table.md) under this table's column names, with what only this table shows."""
    results = collect_results(plan)
    out = []
    for a in aggregate(results):
        env, label = a["env"], a["label"]
        done = [r["result"] for r in results if r["env"] == env and r["label"] == label and r["result"]]
        spec = plan.methods[label]
        args = plan.env_args.get(env, {}) | spec.args
        row = {"env": env, "label": label, "method": spec.method,
               "size": args.get("size", "pruned") if spec.needs else "-",
               "control": None, "seeds_done": f"{a['done']}/{a['seeds']}",
               "teacher_returns": [(d.get("teacher") or {}).get("return_mean") for d in done],
               "per_seed": a.get("per_seed", [])}
        if done:
            tr = [d.get("train") or {} for d in done]
            row |= {"control": tr[0].get("control") or ("teacher" if spec.method == "bpd" else None),
                    "return_mean": a["return_mean"], "return_std": a["return_std"],
                    "return_worst": a["return_worst"], "worst_seed": a["worst_seed"],
                    "early_ends": a["early_where_teacher_finished"], "episodes": a["episodes"],
                    **{k: a[k] for k in ("vs_teacher_mean", "vs_teacher_std", "vs_teacher_worst",
                                         "d4rl_mean", "d4rl_std", "d4rl_worst")},
                    "env_steps": _stat([t.get("env_steps") for t in tr], np.median),
                    "grad_steps": _stat([t.get("grad_steps") or t.get("steps") for t in tr], np.median),
                    "train_seconds_median": a["seconds_median"],
                    "nonzero_min": a["nonzero_min"], "nonzero_max": a["nonzero_max"],
                    "nonzero_budget_min": _stat([t.get("nonzero_budget") for t in tr], min),
                    "nonzero_budget_max": _stat([t.get("nonzero_budget") for t in tr], max),
                    "m4f_instructions_median": _stat(a["instructions"] or [], np.median),
                    "m4f_cycles_median": _stat(a["cycles"] or [], np.median),
                    "m4f_kernel": ", ".join(a["bench_kernels"]) or None,  # the kernel those figures are of
                    "visited_spread_mean": _stat([t.get("visited_spread") for t in tr], np.mean)}
        out.append(row)
    return out


def _f(x, nd=0) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def _span(lo, hi) -> str:
    return "-" if lo is None else f"{lo:,.0f}" if lo == hi else f"{lo:,.0f}-{hi:,.0f}"


def teacher_note(rows: list[dict]) -> str | None:
    """A sentence for an environment whose cells measured their teacher differently (cells that ran on
    different machines): each figure with the cell count and methods behind it, so that '% of teacher'
    is read against the right one. None when they agree."""
    seen: dict[float, list[str]] = {}
    for r in rows:
        for t in r.get("teacher_returns") or []:
            if t is not None:
                seen.setdefault(round(float(t), 1), []).append(r["label"])
    if len(seen) < 2:
        return None
    parts = []
    for t, labels in sorted(seen.items(), key=lambda kv: -len(kv[1])):
        names = list(dict.fromkeys(labels))
        parts.append(f"{t:,.1f} ({len(labels)} cell{'s' if len(labels) > 1 else ''}: {', '.join(names)})")
    return ("The teacher's return on the same evaluation episodes was measured as " + "; ".join(parts)
            + ": these cells ran on different machines. '% of teacher' is each cell's return against its own "
            "measurement of the teacher.")


def markdown(plan, rows: list[dict]) -> str:
    lines = [f"# {plan.name}: BPD and the distillation baselines at equal size", "",
             f"Plan `{plan.rel(plan.path)}`; regenerate with `bpd experiment run {plan.rel(plan.path)}` then "
             f"`python benchmarks/baselines_table.py {plan.rel(plan.path)}`. Size: pruned = BPD's architecture "
             "magnitude-pruned to the BPD cell's nonzero count (the budget column), which counts the weights the "
             "pruning left on units without an input or an output: the collapsed network drops them, and the nonzero "
             "column counts what it keeps, as BPD's does; dense = BPD's collapsed widths; large = the "
             "teacher's widths. Environment steps: the dataset's for teacher-driven (offline) methods, those "
             "collected for the online ones. Visited spread: per-dimension std of the states the control policy "
             "visited, in units of the teacher data's.", ""]
    for env in plan.envs:
        rs = [r for r in rows if r["env"] == env]
        lines += [f"## {env}", ""]
        note = " ".join(filter(None, [teacher_note(rs), kernels_note(rs)]))
        if note:
            lines += [note, ""]
        lines += ["| method | rule | size | control | seeds | return (mean +- std over seeds; worst seed) "
                  "| % of teacher (mean +- std; worst seed) | early ends where teacher finished "
                  "| D4RL (mean +- std; worst seed) | env steps | grad steps | train s (median) | nonzero | budget "
                  "| M4F instr. (median) | M4F cycles, est. (median) | their kernel | visited spread |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            nz, budget = (_span(r.get(f"{k}_min"), r.get(f"{k}_max")) for k in ("nonzero", "nonzero_budget"))
            vs = spread(r.get("vs_teacher_mean"), r.get("vs_teacher_std"), r.get("vs_teacher_worst"), pct=True)
            ret = "-" if r.get("return_mean") is None else (
                f"{_f(r['return_mean'], 1)} +- {_f(r['return_std'], 1)}; {_f(r['return_worst'], 1)} "
                f"(seed {r['worst_seed']})")
            early = "-" if r.get("episodes") is None else f"{r['early_ends']} of {r['episodes']}"
            d4rl = spread(r.get("d4rl_mean"), r.get("d4rl_std"), r.get("d4rl_worst"))
            lines.append(f"| {r['label']} | {r['method']} | {r['size']} | {r['control'] or '-'} | {r['seeds_done']} "
                         f"| {ret} | {vs} | {early} | {d4rl} | {_f(r.get('env_steps'))} "
                         f"| {_f(r.get('grad_steps'))} | {_f(r.get('train_seconds_median'))} | {nz} | {budget} "
                         f"| {_f(r.get('m4f_instructions_median'))} | {_f(r.get('m4f_cycles_median'))} "
                         f"| {r.get('m4f_kernel') or '-'} | {_f(r.get('visited_spread_mean'), 2)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan")
    ap.add_argument("--runs", default=None, help="run root (default: as for `bpd experiment run`)")
    ap.add_argument("--out", default=None, help="output directory (default: benchmarks/results/<plan name>)")
    a = ap.parse_args(argv)
    try:
        plan = load_plan(a.plan, a.runs)
    except BpdError as e:
        print(f"baselines_table: error: {e}", file=sys.stderr)
        return 1
    out = Path(a.out) if a.out else plan.results_dir
    write_table(plan, out)
    rows = rows_of(plan)
    md = markdown(plan, rows)
    curves = [f"{env}.env-curves.png" for env in plan.envs if (out / f"{env}.env-curves.png").is_file()]
    md += "\n" + "\n".join(f"![{p}]({p})" for p in curves) + "\n"  # drawn by write_table
    write_text(out / "baselines.md", md)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(out / "baselines.csv", buf.getvalue())
    print(f"{out / 'baselines.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
