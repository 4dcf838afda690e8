"""BPD against L1 then a threshold at equal size and cost, with both measured by the same kernels (issue 34).

    python benchmarks/equal_cost.py [--env HalfCheetah-v5] [--out benchmarks/results/equal-cost]

Side A: the l1-threshold cells of benchmarks/plans/hc-equal-cost.yaml (the ablation's cells trained again with
the same options and seeds, so that their students exist to be measured). Side B: the bpd-finetune-l1-size
cells of benchmarks/plans/ablations.yaml (BPD whose fine-tune starts from its mask cut by log alpha to the
nonzero count of the ablation's l1-threshold cell of the same seed); C: also to its hidden units; D: the
bpd-finetune-l1-cycles cells of hc-equal-cost.yaml (cut to side A's SMLADs on the DSP integer kernel and its
units, the pair partners then trained: equal integer-kernel cost); E: the bpd-finetune-l1-dsp-cycles cells
(cut instead to the estimated cycles of side A's student on the DSP kernel's layers); F and G: the students plan's
cut to 0.49x its own bpd cell's cycles, the delivered students of issue 34 (G with the fine-tune's visits), on the
same teacher, dataset and reporting episodes as A, not cut to A's cost; H: G's recipe cut instead to E's budget
(side A's student's estimated DSP-kernel cycles and its hidden units). Per seed: each side's
return over the plan's 30 reporting episodes (seeds disjoint from those the runs chose their students on),
nonzero parameters, early ends, and the Cortex-M4F instructions, estimated cycles and flash of every kernel
the cell's bench measured (the integer kernel, the compact float kernel with its table tanh, ...), so the two
sides meet on the same kernel. Whether the retrained L1 cell reproduced the ablation's (the same student
file, by its sha256) is stated per seed. Writes OUT/equal-cost.json and OUT/equal-cost.md (again from the
JSON with --table-only). Cells not finished are listed as such, never dropped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.io import write_json, write_text  # noqa: E402

KERNELS = ("integer", "compact-table", "compact", "generic")  # the kernels both sides are compared on
SIDES = {"A": ("benchmarks/plans/hc-equal-cost.yaml", "l1-threshold", "L1 then a threshold (trained again)"),
         "B": ("benchmarks/plans/ablations.yaml", "bpd-finetune-l1-size", "BPD at L1's size (bpd-finetune-l1-size)"),
         "C": ("benchmarks/plans/ablations.yaml", "bpd-finetune-l1-shape",
               "BPD at L1's size and number of hidden units (bpd-finetune-l1-shape)"),
         "D": ("benchmarks/plans/hc-equal-cost.yaml", "bpd-finetune-l1-cycles",
               "BPD at L1's integer-kernel cost (bpd-finetune-l1-cycles)"),
         "E": ("benchmarks/plans/hc-equal-cost.yaml", "bpd-finetune-l1-dsp-cycles",
               "BPD at L1's integer-kernel cycles (bpd-finetune-l1-dsp-cycles)"),
         "F": ("benchmarks/plans/students.yaml", "bpd-units-finetune-pairs-warmup-c50-long",
               "BPD at 0.49x the bpd cell's integer-kernel cycles (bpd-units-finetune-pairs-warmup-c50-long)"),
         "G": ("benchmarks/plans/students.yaml", "bpd-units-finetune-pairs-warmup-c50-visits",
               "the same with environment steps of its own states labelled by the teacher "
               "(bpd-units-finetune-pairs-warmup-c50-visits)"),
         "H": ("benchmarks/plans/hc-equal-cost.yaml", "bpd-units-finetune-pairs-warmup-l1-dsp-visits",
               "G's recipe cut to L1's integer-kernel cycles (bpd-units-finetune-pairs-warmup-l1-dsp-visits)")}
BPD_SIDES = ("B", "C", "D", "E", "F", "G", "H")
CUT_TO_A = ("D", "E", "H")  # cut to side A's student's cost: a kept record belongs to the A it was cut against
ORIGINAL = ("benchmarks/plans/ablations.yaml", "l1-threshold")  # the cells side A trains again


def cell_record(plan, env: str, label: str, seed: int) -> dict:
    """What the comparison needs of one cell: None fields where it has not finished."""
    cell = next((c for c in plan.cells() if c.env == env and c.label == label and c.seed == seed), None)
    if cell is None or not (cell.dir / "result.json").is_file():
        return {"finished": False}
    r = json.loads((cell.dir / "result.json").read_text())
    bench = cell.dir / "bench" / "bench.json"
    kernels = {}
    if bench.is_file():
        cands = json.loads(bench.read_text())["export_kernels"]["candidates"]
        kernels = {k: {f: cands[k][f] for f in ("instructions", "cycles", "flash_bytes")}
                   for k in KERNELS if cands.get(k)}
    from bpd_app.experiment.cells import integer_form

    form = integer_form(cell.dir / "export")  # the form of the integer kernel the bench measured
    ev = r["eval"]
    onnx_path = cell.dir / "export" / "policy.onnx"
    smlads = None
    if onnx_path.is_file():
        from export.onnx_export import onnx_weights
        from training.pairs import network_slots

        smlads = network_slots(onnx_weights(onnx_path))
    return {"smlads": smlads, "finished": True, "return_mean": ev["return_mean"], "return_std": ev["return_std"],
            "episodes": ev["episodes"], "return_vs_teacher": r["return_vs_teacher"],
            "early_ends_where_teacher_finished": r["early_terminations_where_teacher_finished"],
            "params_nonzero": r["params_nonzero"], "product_sha256": r.get("product_sha256"),
            "hidden_units": sum((r.get("export") or {}).get("widths", [0, 0])[1:-1]),
            "teacher_return": r["teacher"]["return_mean"], "kernels": kernels, "integer_form": form}


def kept(new: dict, old: dict | None) -> dict:
    """A side's record: the run root's, unless it lost what the committed record measured (a run root laid anew
    holds the restored summary without its export and measurements, or nothing): then the committed one. A cell
    trained again into another model (its product's hash differs) is the new record."""
    if not old or not old.get("finished"):
        return new
    if not new.get("finished"):
        return old | {"kept": True}
    same = new.get("product_sha256") is not None and new.get("product_sha256") == old.get("product_sha256")
    return old | {"kept": True} if same and old.get("kernels") and not new.get("kernels") else new


def collect(env: str, previous: dict | None = None) -> dict:
    from bpd_app.experiment import load_plan

    plans = {s: load_plan(str(ROOT / p)) for s, (p, _, _) in SIDES.items()}
    original = load_plan(str(ROOT / ORIGINAL[0]))
    seeds = plans["B"].seeds
    before = {r["seed"]: r for r in (previous or {}).get("rows", [])} if (previous or {}).get("env") == env else {}
    rows = []
    for seed in seeds:
        row: dict = {"seed": seed}
        for s, (_, label, _) in SIDES.items():
            row[s] = kept(cell_record(plans[s], env, label, seed), before.get(seed, {}).get(s))
        for s in CUT_TO_A:  # a record without its measurements (restored from a summary) cannot be checked
            # against the A it was cut to: once A is trained again it is no longer a comparison at equal cost
            if (row[s].get("kept") and row["A"].get("product_sha256") != (before.get(seed, {}).get("A") or {}).get(
                    "product_sha256")) or (row[s].get("finished") and not row[s].get("kernels")):
                row[s] = {"finished": False, "why": "cut to an L1 student since trained again; not measured"}
        orig = cell_record(original, env, ORIGINAL[1], seed)
        row["original_l1"] = kept({k: orig.get(k) for k in ("finished", "return_mean", "params_nonzero",
                                                          "product_sha256")}, before.get(seed, {}).get("original_l1"))
        rows.append(row)
    return {"env": env, "sides": {s: {"plan": p, "label": lab, "name": n} for s, (p, lab, n) in SIDES.items()},
            "rows": rows}


def verdicts(row: dict, side: str) -> dict:
    """Per seed, where both sides finished: the BPD side's return minus A's, and per kernel its cycles over A's."""
    a, b = row["A"], row[side]
    if not (a["finished"] and b["finished"]):
        return {}
    se = (a["return_std"] ** 2 / a["episodes"] + b["return_std"] ** 2 / b["episodes"]) ** 0.5
    out = {"return_b_minus_a": b["return_mean"] - a["return_mean"], "standard_error": se,
           "return_level": b["return_mean"] >= a["return_mean"],
           "within_two_standard_errors": abs(b["return_mean"] - a["return_mean"]) <= 2 * se,
           "nonzero_b_over_a": b["params_nonzero"] / a["params_nonzero"], "cycles_b_over_a": {}}
    for k in KERNELS:  # the integer kernel's cycles compared only where both sides built it in the same form
        if k in a["kernels"] and k in b["kernels"] and (k != "integer" or same_integer_form(a, b)):
            out["cycles_b_over_a"][k] = b["kernels"][k]["cycles"] / a["kernels"][k]["cycles"]
    return out


def same_integer_form(a: dict, b: dict) -> bool:
    """Whether two sides' integer kernels were built in one form (a record kept from a run root since lost names
    none: built before the form was recorded, so before the observations' FPU stage)."""
    return a.get("integer_form") is not None and a.get("integer_form") == b.get("integer_form")


def markdown(res: dict) -> str:
    sides = res["sides"]
    A = sides["A"]
    L = [f"# BPD against L1 then a threshold at equal size and cost: {res['env']}", "",
         "Written by `python benchmarks/equal_cost.py` (again from equal-cost.json: `--table-only`).", "",
         f"A: {A['name']}, the `{A['label']}` cells of `{A['plan']}`. "
         + " ".join(f"{s}: {sides[s]['name']}, the `{sides[s]['label']}` cells of `{sides[s]['plan']}`."
                    for s in BPD_SIDES if s in sides)
         + " Their fine-tune starts from BPD's mask cut by log alpha to the nonzero count of the ablation's "
         "l1-threshold cell of the same seed (C: and to its number of hidden units, the units of least signal "
         "removed first; D: instead to as many SMLADs of the DSP integer kernel, one a row and pair of columns, as "
         "side A's student of the same seed costs, and to its hidden units, then the pair partner of every kept "
         "weight trained too, at no SMLAD more; E: as D, but to the estimated Cortex-M4F cycles of the DSP "
         "kernel's layers that side A's student costs, read off their generated code for each mask, "
         "firmware_host/measure/dsp_meter.py; F: the students plan's BPD with the pair-partner fine-tune after "
         "the gated warm-up, its fine-tune the last half of training on the mask cut to 0.49 of its `bpd` "
         "cell's estimated cycles, hidden units chosen too: not cut to side A's cost but below it; G: F with "
         "environment steps of the cut student's own states labelled by the teacher (--finetune-visits: the row's "
         "count in its --help), a budget beyond the "
         "dataset's); H: G's recipe cut instead to E's budget, side A's cycles and hidden units. All: the same "
         "teacher, dataset (100,000 steps), "
         "100,000 gradient steps and evaluation (30 episodes on seeds disjoint from the model choice); cost "
         "measured by each cell's bench on the emulated Cortex-M4F (instructions exact, cycles estimated: "
         "docs/cycle_model.md), the same kernels on both sides.", "",
         "| seed | side | return (mean +- std over episodes) | % of teacher | early ends | nonzero | SMLADs | "
         + " | ".join(f"M4F {k}: instr / cycles / flash B" for k in KERNELS) + " |",
         "|---|---|---|---|---|---|---|" + "---|" * len(KERNELS)]
    for row in res["rows"]:
        for s in ("A", *BPD_SIDES):
            if s not in row:
                continue
            c = row[s]
            if not c["finished"]:
                why = c.get("why", "not finished")
                L.append(f"| {row['seed']} | {s} | {why} | - | - | - | - |" + " - |" * len(KERNELS))
                continue
            ks = " | ".join(("-" if k not in c["kernels"] else
                             f"{c['kernels'][k]['instructions']} / {c['kernels'][k]['cycles']:.0f} / "
                             f"{c['kernels'][k]['flash_bytes']}") for k in KERNELS)
            L.append(f"| {row['seed']} | {s} | {c['return_mean']:.1f} +- {c['return_std']:.1f} | "
                     f"{100 * c['return_vs_teacher']:.1f} % | {c['early_ends_where_teacher_finished']} | "
                     f"{c['params_nonzero']} | {c.get('smlads') if c.get('smlads') is not None else '-'} | {ks} |")
    L += ["", "X - A: the difference of the two means over the 30 episodes, with its standard error (each side's "
          "episode std / sqrt(30), added in quadrature); a difference within two standard errors is one the "
          "episodes cannot tell from zero. SMLADs: the DSP integer kernel's multiply-adds, one a row and pair of "
          "columns (training/pairs.py), counted on the export's weights."]
    earlier = sorted({s for row in res["rows"] for s in ("A", *BPD_SIDES)
                      if (row.get(s) or {}).get("finished") and "integer" in row[s]["kernels"]
                      and not row[s].get("integer_form")})
    if earlier:
        L += ["", f"Sides {', '.join(earlier)}: their integer kernel measured in an earlier form (before the "
              "observations' FPU stage, export/fp_inputs.py), kept from a run root since lost, so not measured again "
              "(their students are gone): their integer-kernel cycles are not compared with a side of the current "
              "form (a '-' below); their float kernels' are."]
    for side in BPD_SIDES:
        if side not in res["sides"]:
            continue
        L += ["", f"**{side} against A**", "",
              f"| seed | {side} - A return (standard error) | {side} >= A in return | within 2 standard errors | "
              f"{side} / A nonzero | " + " | ".join(f"{side} / A cycles, {k}" for k in KERNELS)
              + " | A reproduced the ablation's cell |",
              "|---|---|---|---|---|" + "---|" * len(KERNELS) + "---|"]
        done = []
        for row in res["rows"]:
            v = verdicts(row, side) if side in row else {}
            o, a = row["original_l1"], row["A"]
            same = ("-" if not (o["finished"] and a["finished"]) else
                    "yes (the same student file)" if o["product_sha256"] == a["product_sha256"] else
                    f"no: return {a['return_mean']:.1f} against {o['return_mean']:.1f}, nonzero "
                    f"{a['params_nonzero']} against {o['params_nonzero']}")
            if not v:
                L.append(f"| {row['seed']} | - | - | - | - |" + " - |" * len(KERNELS) + f" {same} |")
                continue
            done.append(v)
            L.append(f"| {row['seed']} | {v['return_b_minus_a']:+.1f} ({v['standard_error']:.1f}) | "
                     f"{'yes' if v['return_level'] else 'no'} | {'yes' if v['within_two_standard_errors'] else 'no'} | "
                     f"{v['nonzero_b_over_a']:.3f} | "
                     + " | ".join(f"{v['cycles_b_over_a'][k]:.3f}" if k in v["cycles_b_over_a"] else "-"
                                  for k in KERNELS) + f" | {same} |")
        if done:
            diffs = [v["return_b_minus_a"] for v in done]
            L += ["", f"Over the {len(done)} seed(s) where both finished: {side} - A return "
                  f"{statistics.mean(diffs):+.1f} on average (std {statistics.pstdev(diffs):.1f} over seeds; worst "
                  f"seed {min(diffs):+.1f}); {side} level or above in return on {sum(v['return_level'] for v in done)}"
                  f" of {len(done)}, within two standard errors of A on "
                  f"{sum(v['within_two_standard_errors'] for v in done)} of {len(done)}; " + (
                      f"at fewer or as many integer kernel cycles on "
                      f"{sum(v['cycles_b_over_a']['integer'] <= 1 for v in both)} of {len(both)}."
                      if (both := [v for v in done if "integer" in v["cycles_b_over_a"]]) else
                      "integer kernel cycles not compared (the two sides' kernels of different forms).")]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "equal-cost")
    ap.add_argument("--table-only", action="store_true", help="rewrite equal-cost.md from equal-cost.json")
    a = ap.parse_args()
    if a.table_only:
        res = json.loads((a.out / "equal-cost.json").read_text())
    else:
        prev = a.out / "equal-cost.json"
        res = collect(a.env, json.loads(prev.read_text()) if prev.is_file() else None)
        write_json(a.out / "equal-cost.json", res)
    write_text(a.out / "equal-cost.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
