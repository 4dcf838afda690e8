"""The tables: markdown (per environment, and summaries by group), CSV, and the committed copies of
every finished cell's summary."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from bpd.errors import BpdError
from bpd.io import read_json, write_json, write_text
from bpd_app.experiment.plan import Plan
from bpd_app.experiment.plots import _plots
from bpd_app.experiment.results import collect_results
from bpd_app.experiment.sessions import merged_sessions, sessions_wall_seconds
from bpd_app.experiment.stats import aggregate


def kernels_note(aggs: list[dict]) -> str:
    """Which kind of torch CPU kernel each method's seeds ran with, where an environment's rows mix
    kinds (cells agree to the bit within a kind, not across kinds); empty where they do not."""
    kinds: dict[str, dict[str, list[int]]] = {}
    for a in aggs:
        for s in a.get("per_seed") or []:
            kinds.setdefault(a["label"], {}).setdefault(s.get("kernels") or "unrecorded", []).append(s["seed"])
    if len({k for by in kinds.values() for k in by}) < 2:
        return ""
    def seeds(xs: list[int]) -> str:
        return f"seed{'s' if len(xs) > 1 else ''} {', '.join(map(str, sorted(xs)))}"
    parts = [f"{label} " + "; ".join(f"{k} ({seeds(xs)})" for k, xs in sorted(by.items()))
             for label, by in kinds.items()]
    return ("The cells ran with more than one kind of torch CPU kernel (runs agree to the bit within a "
            "kind, not across kinds; unrecorded: summaries older than the record): " + ", ".join(parts) + ".")


def _fmt(x, nd=1, pct=False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{100 * x:.{nd}f} %" if pct else f"{x:,.{nd}f}"


def spread(mean, std, worst, nd=1, pct=False, done: int | None = None) -> str:
    """'mean +- std; worst' over seeds (std and worst: the population std and the lowest seed), '-' without a mean;
    one seed done has no spread to give: 'mean (1 seed)', not '+- 0.0'."""
    if mean is None:
        return "-"
    if done == 1:
        return f"{_fmt(mean, nd, pct)} (1 seed)"
    return f"{_fmt(mean, nd, pct)} +- {_fmt(std, nd, pct)}; {_fmt(worst, nd, pct)}"


def _pm(mean, std, done: int) -> str:
    """A return's 'mean +- std' over the seeds done; 'mean (1 seed)' for one."""
    return f"{_fmt(mean)} (1 seed)" if done == 1 else f"{_fmt(mean)} +- {_fmt(std)}"


def _range(xs, nd=0) -> str:
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    return f"{lo:,.{nd}f}" if lo == hi else f"{lo:,.{nd}f}-{hi:,.{nd}f}"


def robustness_scores(plan: Plan) -> dict[str, float]:
    """Model hash -> overall robustness score of its float C kernel, from the plan's `robustness:` file
    (benchmarks/robustness_students.py's JSON); empty without one. A missing or unreadable file is one line."""
    if plan.robustness is None:
        return {}
    if not plan.robustness.is_file():
        raise BpdError(f"{plan.rel(plan.robustness)}: the plan's robustness file does not exist (run "
                       "benchmarks/robustness_students.py, or leave `robustness:` out)")
    data = read_json(plan.robustness, "robustness scores")
    out = {}
    for e in (data.get("envs") or {}).values() if isinstance(data, dict) else []:
        for c in (e.get("controllers") or {}).values():
            key = str(c.get("model_key") or "")
            if key.startswith("model ") and key.endswith(" (float)"):
                out[key[len("model "):-len(" (float)")]] = float(c["overall"])
    return out


def _robustness(a: dict) -> str:
    xs = a.get("robustness") or []
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.3f} (1 of {a['done']} scored)"
    return (f"{statistics.fmean(xs):.3f} +- {statistics.pstdev(xs):.3f}; worst {min(xs):.3f} "
            f"({len(xs)} of {a['done']} scored)")


def markdown_table(plan: Plan, aggs: list[dict]) -> str:
    lines = []
    rob = plan.robustness is not None
    for env in plan.envs:
        rows = [a for a in aggs if a["env"] == env]
        if not rows:
            continue
        t = next((a for a in rows if a.get("teacher_return") is not None), {})
        seen = sorted({x for a in rows for x in a.get("teacher_returns") or []})
        machines = ("" if len(seen) < 2 else
                    f" Its evaluation differs between the machines the cells ran on ({_fmt(seen[0])} to "
                    f"{_fmt(seen[-1])}, {100 * (seen[-1] / seen[0] - 1):.2f} %): floating point differs between "
                    "kinds of torch CPU kernel and the episodes diverge; each cell's % of teacher divides by the "
                    "teacher's return evaluated in its own run root.")
        kinds = kernels_note(rows)
        machines += f" {kinds}" if kinds else ""
        lines += [f"### {env}", "",
                  f"Teacher: return {_fmt(t.get('teacher_return'))} over {plan.eval['episodes']} episodes "
                  f"(seeds {plan.eval['seed']}-{plan.eval['seed'] + plan.eval['episodes'] - 1}), "
                  f"{t.get('teacher_params', '-')} parameters.{machines}", "",
                  "| method | seeds done | return (mean +- std) | worst seed | IQM [95 % CI] "
                  "| % of teacher (mean +- std; worst seed) | D4RL score (mean +- std; worst seed) "
                  "| weights removed (min): of the teacher's / of the student's | nonzero | collapsed widths "
                  "| early ends where teacher finished | M4F instructions | M4F cycles (est.) | kernel "
                  "| M4F cycles, integer kernel (est.) | policy flash B | policy RAM B | distill s (median) | bar |"
                  + (" robustness, float C (mean +- std; worst) |" if rob else ""),
                  "|" + "---|" * (20 if rob else 19)]
        for a in rows:
            if not a["done"]:
                lines.append(f"| {a['label']} | 0/{a['seeds']} ({a['failed']} failed) |" + " - |" * (18 if rob else 17))
                continue
            ci = a["return_iqm_ci"]
            failed = f" ({a['failed']} failed)" if a["failed"] else ""
            lines.append(
                f"| {a['label']} | {a['done']}/{a['seeds']}{failed} "
                f"| {_pm(a['return_mean'], a['return_std'], a['done'])} "
                f"| {_fmt(a['return_worst'])} (seed {a['worst_seed']}) "
                f"| {_fmt(a['return_iqm'])} [{_fmt(ci[0])}, {_fmt(ci[1])}] "
                f"| {spread(a['vs_teacher_mean'], a['vs_teacher_std'], a['vs_teacher_worst'], 1, True, a['done'])} "
                f"| {spread(a['d4rl_mean'], a['d4rl_std'], a['d4rl_worst'], done=a['done'])} "
                f"| {_fmt(a['weights_removed_min'], 2, pct=True)} / "
                f"{_fmt(a['removed_vs_student_min'], 1, pct=True)} "
                f"| {_range([s['nonzero'] for s in a['per_seed']])} | {', '.join(a['widths']) or '-'} "
                f"| {a['early_where_teacher_finished']} of {a['episodes']} | {_range(a['instructions'] or [])} "
                f"| {_range(a['cycles'] or [])} | {', '.join(a['bench_kernels']) or '-'} "
                f"| {_integer_cycles(a)} "
                f"| {_range(a['policy_bytes'] or [])} | {_range(a['policy_ram_bytes'] or [])} "
                f"| {_fmt(a['seconds_median'], 0)} | {a['bar']} |" + (f" {_robustness(a)} |" if rob else ""))
        lines.append("")
    if plan.robustness is not None:
        lines += [f"Robustness: the overall score (training/robustness.py) of each finished seed's float C kernel, "
                  f"from {plan.rel(plan.robustness)}, joined by the export's model hash; seeds without a score "
                  "there are left out and counted.", ""]
    lines += ["Bar: mean return >= 95 % of the teacher's, no seed below 90 %, >= 95 % of the teacher's weights "
              "removed, no early termination on an episode the teacher finishes; open: seeds still to run and no "
              "finished seed has broken a per-seed part of it yet. +- std: the population standard deviation over "
              "seeds (the squared deviations averaged over the n seeds, not over n - 1 as a spreadsheet's STDEV: "
              "two seeds of 1000 and 100 give +- 450, not 636); a row of one seed done has none to give (1 seed). IQM: "
              "interquartile mean over "
              "seeds (rliable's definition; with fewer than 4 seeds it equals the mean) with a percentile-bootstrap "
              "95 % interval over seeds (2000 resamples), wide with 3 seeds.", ""]
    return "\n".join(lines)


def _integer_cycles(a: dict) -> str:
    """The integer kernel's estimated cycles over the seeds whose export measured it ("k of n" where not all)."""
    ic = a.get("integer_cycles") or []
    if not ic:
        return "-"
    return _range(ic) + ("" if len(ic) == a["done"] else f" ({len(ic)} of {a['done']} seeds)")


def summary_table(plan: Plan, aggs: list[dict], labels: list[str] | None = None) -> str:
    """One row per environment and method: the ablation plans' metrics side by side."""
    lines = ["| environment | method | seeds | % of teacher (mean +- std over seeds; worst seed) "
             "| D4RL score (mean +- std; worst seed) "
             "| early ends where teacher finished | spread of last 3 evaluations (% of teacher) "
             "| largest drop below the running best, 2nd half (% of teacher) "
             "| weights pruned (student) | nonzero "
             "| pruning rule | M4F instructions | M4F cycles (est.) | kernel | M4F cycles, integer kernel (est.) "
             "| policy flash B | policy RAM B | distill s (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in aggs:
        if labels is not None and a["label"] not in labels:
            continue
        if not a["done"]:
            lines.append(f"| {a['env']} | {a['label']} | 0/{a['seeds']} |" + " - |" * 15)
            continue
        lines.append(
            f"| {a['env']} | {a['label']} | {a['done']}/{a['seeds']} "
            f"| {spread(a['vs_teacher_mean'], a['vs_teacher_std'], a['vs_teacher_worst'], 1, True, a['done'])} "
            f"| {spread(a['d4rl_mean'], a['d4rl_std'], a['d4rl_worst'], done=a['done'])} "
            f"| {a['early_where_teacher_finished']} of {a['episodes']} "
            f"| {_fmt(a['last_evals_spread'], pct=True)} | {_fmt(a['largest_drop'], pct=True)} "
            f"| {_fmt(a['sparsity_mean'], pct=True)} | {_range([x['nonzero'] for x in a['per_seed']])} "
            f"| {(a['pruning_rule'] or '-').replace('|', chr(92) + '|')} | {_range(a['instructions'] or [])} "
            f"| {_range(a['cycles'] or [])} "
            f"| {', '.join(a['bench_kernels']) or '-'} | {_integer_cycles(a)} "
            f"| {_range(a['policy_bytes'] or [])} | {_range(a['policy_ram_bytes'] or [])} "
            f"| {_fmt(a['seconds_median'], 0)} |")
    return "\n".join(lines) + "\n"


def write_table(plan: Plan, out: Path) -> dict:
    """table.md, table.csv (one row per method), cells.csv (one row per seed), plots and a copy of
    every finished cell's result.json under cells/ (small, committed)."""
    import csv
    import io

    rows = collect_results(plan)
    aggs = aggregate(rows)
    scores = robustness_scores(plan)
    for a in aggs:  # each finished seed's score, joined by its export's model hash
        a["robustness"] = [scores[h] for r in rows if r["env"] == a["env"] and r["label"] == a["label"] and r["result"]
                           and (h := (r["result"].get("export") or {}).get("model_hash")) in scores]
    out.mkdir(parents=True, exist_ok=True)
    sessions = merged_sessions(plan, out)
    stopped = sum(r["state"] == "interrupted" for r in rows)
    cpu_seconds = sum(r["result"]["train"]["seconds"] or 0 for r in rows if r["result"])
    md = [f"# {plan.name}", "", f"Plan: `{plan.rel(plan.path)}`; regenerate with `bpd experiment run "
          f"{plan.rel(plan.path)}` then `bpd experiment table {plan.rel(plan.path)} --out {plan.rel(out)}`.", "",
          f"Cells: {sum(r['state'] == 'done' for r in rows)} done, {sum(r['state'] == 'failed' for r in rows)} failed, "
          + (f"{stopped} interrupted (the same `bpd experiment run` resumes them), " if stopped else "")
          + f"{sum(r['state'] not in ('done', 'failed', 'interrupted') for r in rows)} not run, of {len(rows)}. "
          f"Training time summed over finished cells: {cpu_seconds / 3600:.2f} h; runner wall time "
          f"{sessions_wall_seconds(sessions) / 3600:.2f} h over "
          f"{sum(s.get('invocations', 1) for s in sessions)} invocation(s) "
          f"on {sessions[-1]['cpus'] if sessions else '-'} cores."
          + "".join(f" {s['note']}" for s in sessions if s.get("note")), ""]
    if plan.groups:
        md += ["## Summary", "", summary_table(plan, aggs)]
        for g, labels in plan.groups.items():
            md += [f"## {g}", "", summary_table(plan, aggs, labels),
                   markdown_table(plan, [a for a in aggs if a["label"] in labels])]
    else:
        md.append(markdown_table(plan, aggs))
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        md += ["## Failed cells", ""] + [f"- `{r['cell']}`: {r['error']}" for r in failed] + [""]
    unexported = [r for r in rows if r["result"] and r["result"].get("export_error")]
    if unexported:
        md += ["## Cells trained and evaluated whose export or measurement failed", ""] + [
            f"- `{r['cell']}`: {r['result']['export_error']}" for r in unexported] + [""]
    plots = _plots(plan, rows, aggs, out)
    md += [f"![{p}]({p})" for p in plots]
    write_text(out / "table.md", "\n".join(md) + "\n")
    cols = ["env", "label", "seeds", "done", "failed", "teacher_return", "return_mean", "return_std", "return_worst",
            "worst_seed", "return_iqm", "vs_teacher_mean", "vs_teacher_std", "vs_teacher_worst", "d4rl_mean",
            "d4rl_std", "d4rl_worst", "nonzero_mean", "weights_removed_min", "early_where_teacher_finished",
            "seconds_median", "meets_bar"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(aggs)
    write_text(out / "table.csv", buf.getvalue())
    buf = io.StringIO()
    cw = csv.writer(buf)
    cw.writerow(["env", "label", "seed", "state", "return_mean", "return_std", "return_min", "vs_teacher",
                "params_nonzero", "weights_removed", "early_where_teacher_finished", "train_seconds",
                "m4f_instructions", "policy_bytes", "policy_ram_bytes", "error"])
    for r in rows:
        d = r["result"] or {}
        ev, b = d.get("eval") or {}, d.get("bench") or {}
        cw.writerow([r["env"], r["label"], r["seed"], r["state"], ev.get("return_mean"), ev.get("return_std"),
                    ev.get("return_min"), d.get("return_vs_teacher"), d.get("params_nonzero"),
                    d.get("weights_removed_vs_teacher"), d.get("early_terminations_where_teacher_finished"),
                    (d.get("train") or {}).get("seconds"), b.get("instructions"), b.get("policy_bytes"),
                    b.get("policy_ram_bytes"), r["error"]])
    write_text(out / "cells.csv", buf.getvalue())
    for r in rows:
        if r["result"]:
            write_json(out / "cells" / r["env"] / r["label"] / f"seed{r['seed']}.json", r["result"])
    write_json(out / "table.json", {"plan": plan.rel(plan.path), "aggregates": aggs})
    write_json(out / "sessions.json", {"sessions": sessions})
    return {"out": str(out), "rows": len(rows), "aggregates": aggs}
