"""How far the DSP integer kernel can go below the scalar floor on a student's mask: what the pairing of columns costs.

    python benchmarks/dsp_bound.py [benchmarks/plans/delivery.yaml] [--label bpd] [--runs DIR]
                                   [--out benchmarks/results/cost/dsp-bound] [--keep]

The DSP integer kernel (export/dsp.py) multiplies two int16 inputs by two weights in one SMLAD, one a row and pair
of columns in which the row has a weight; the columns are paired once per layer (training/pairs.py
`pair_columns`, greedy by shared rows), since each layer's inputs sit in memory as one word per pair. Where a row
keeps one weight of a pair, that pair costs the kernel one instruction for one multiply-add, as the floor counts it.
For each finished cell of the row (`--label`) whose run directory holds its student, quantised as its export is
(calibrated on the plan's dataset), this counts the SMLADs of its layers:
- with the kernel's pairing (what its export built; checked against the export report's record),
- with the best pairing of each layer's columns (a maximum-weight matching of columns by shared rows, networkx),
- with every row's weights in full pairs (ceil(nonzero / 2) a row): a pairing of its own for every row, which no
  single layout of the inputs gives: a bound below any pairing;
- with two layouts of the layer's inputs (`two_layouts`): the rows split in two groups, each reading its own copy of the
  inputs paired for its rows (pair_columns), rows moved to the copy that costs them fewer SMLADs until nothing moves;
  the second copy costs one more store an input the layer uses (the previous layer's STRH; the input stage's costs
  more, packing its pairs again: so a bound in the idea's favour),
- with half-used words joined in registers (`derived_pairs`): in each group of rows the kernel tiles, one PKHBT joins
  the halves of two words that two or more of its rows use alone, and each such row takes one SMLAD for them (greedy,
  and the best choice of joins by an integer program),
- with the loads at their least (`least_loads`): the kernel's activations, stores and the stages around its layers
  held, its multiplies and loads replaced by a pairing's multiplies (the kernel's, the best, every row's own) and the
  fewest loads any tiling of the kernel's form (R rows, C input words, G weight words in its 12 registers) could
  emit for them: where that stays above 1.0x the floor, no tiling of the form brings the kernel below it on that
  pairing with the rest held,
and sets the kernel's emulated instructions (the cell's bench, its summary's `integer` figures) less the SMLADs that
bound saves, every other instruction as it is, against the floor (firmware_host.measure.bench.arithmetic_floor).
Where that bound stays above 1.0x the floor, no choice of pairs brings the kernel's instructions below it on that
mask with its loads, activations and stores held at their present counts (the tiling, export/dsp.py, chooses its
rows, words and weight registers again for each pairing, so the loads would move too: a bound on the multiplies,
not a proof). Cells whose export built the integer kernel in an earlier form are skipped. Counts from the code the
generator emits, no timing. Writes OUT.json and OUT.md; with `--keep`, OUT.json's rows for cells whose run directories
are gone stay in it, marked `kept` (run roots do not outlive a machine).
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


def best_pairs(nz) -> list[tuple[int, int | None]]:
    """The pairing of the live columns that shares the most rows: a maximum-weight matching of largest size
    (every column paired while another is left), weights the rows both columns of a pair have a weight in."""
    import networkx as nx  # a dependency of torch, so always installed

    cols = [j for j in range(nz.shape[1]) if nz[:, j].any()]
    ov = nz[:, cols].T.astype(int) @ nz[:, cols].astype(int)
    g = nx.Graph()
    g.add_nodes_from(range(len(cols)))
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            g.add_edge(i, j, weight=int(ov[i, j]))
    m = nx.max_weight_matching(g, maxcardinality=True)
    used = {v for e in m for v in e}
    return [(cols[a], cols[b]) for a, b in m] + [(cols[a], None) for a in range(len(cols)) if a not in used]


def two_layouts(nz, rounds: int = 20) -> int:
    """SMLADs of a layer (mask nz: rows x columns) whose rows each read one of two copies of the inputs, each copy
    paired (training.pairs.pair_columns) for the rows that read it. Started from every split of the rows by one used
    column (rows with a weight there, rows without), rows move to the copy that costs them fewer until none moves (at
    most `rounds` times); the fewest over the starts. Every used column is in both copies (one a copy's rows leave
    out paired with the others left, in order)."""
    import numpy as np

    from training.pairs import pair_columns

    live = [j for j in range(nz.shape[1]) if nz[:, j].any()]

    def pairing(rows):
        p = pair_columns(nz[rows]) if len(rows) else []
        have = {c for ab in p for c in ab if c is not None}
        rest = [j for j in live if j not in have]
        return p + [(rest[i], rest[i + 1] if i + 1 < len(rest) else None) for i in range(0, len(rest), 2)]

    def costs(side):
        ps = [pairing(np.flatnonzero(side == k)) for k in (0, 1)]
        return np.array([[sum(int(nz[r, a] or (b is not None and nz[r, b])) for a, b in p) for p in ps]
                         for r in range(nz.shape[0])])

    best = None
    for j in live:
        side = nz[:, j].astype(int)
        for _ in range(rounds):
            c = costs(side)
            if (c.argmin(1) == side).all():
                break
            side = c.argmin(1)
        got = int(costs(side).min(1).sum())
        best = got if best is None else min(best, got)
    return 0 if best is None else best


def _halves(nz, pairs: list[tuple[int, int | None]], row: int) -> set[int]:
    """The columns row uses alone in their word: one whose pair partner it has no weight for, or an unpaired one."""
    out = set()
    for a, b in pairs:
        if b is not None and bool(nz[row, a]) != bool(nz[row, b]):
            out.add(a if nz[row, a] else b)
        elif b is None and nz[row, a]:
            out.add(a)
    return out


def _sharing(halves: dict[int, set[int]]) -> dict[tuple[int, int], list[int]]:
    """Each pair of columns (u < v) some row uses both halves of alone, and the rows that do."""
    share: dict[tuple[int, int], list[int]] = {}
    for row, h in halves.items():
        hs = sorted(h)
        for i, u in enumerate(hs):
            for v in hs[i + 1:]:
                share.setdefault((u, v), []).append(row)
    return share


def derived_pairs(nz, pairs: list[tuple[int, int | None]], groups: list[list[int]]) -> tuple[int, int]:
    """Half-full pairs joined in registers: in a group of rows (the kernel's tiling), where several rows each use one
    half of two different words (`_halves`), one PKHBT joins those two inputs into a word and each such row takes one
    SMLAD for its two multiply-adds instead of two SMLA<x><y>. Greedy per group (`joins_optimum` gives the best), the
    column pair shared by the most rows first, each row's half used once, while at least two rows share it. Returns
    (multiplies saved, PKHBTs added). The registers the joined words need and the weight words' packing are left
    out, in the idea's favour."""
    saved = joins = 0
    for grp in groups:
        left = {row: _halves(nz, pairs, row) for row in grp}
        while share := _sharing(left):
            (u, v), rows = max(share.items(), key=lambda kv: (len(kv[1]), -kv[0][0], -kv[0][1]))
            k = len(rows)
            if k < 2:
                break
            saved += k
            joins += 1
            for row in rows:
                left[row] -= {u, v}
    return saved, joins


def joins_optimum(nz, pairs: list[tuple[int, int | None]], groups: list[list[int]]) -> int:
    """The most instructions any choice of joins saves (multiplies saved less PKHBTs), per group an integer program
    (scipy's milp, HiGHS): a binary per column pair shared by two or more rows' halves (the join made) and per row
    and such pair (the row uses it, only where the join is made), each half of a row in at most one join it uses;
    maximise uses less joins. Registers and weight packing left out, as in derived_pairs."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    total = 0
    for grp in groups:
        share = _sharing({row: _halves(nz, pairs, row) for row in grp})
        made = [k for k, rows in share.items() if len(rows) >= 2]
        if not made:
            continue
        uses = [(row, j) for j, k in enumerate(made) for row in share[k]]
        n = len(made) + len(uses)
        r, c, v = [], [], []
        for i, (_, j) in enumerate(uses):  # a use only where its join is made
            r += [i, i]
            c += [len(made) + i, j]
            v += [1, -1]
        slot = {}
        for i, (row, j) in enumerate(uses):  # each half of a row in at most one use
            for col in made[j]:
                key = slot.setdefault((row, col), len(uses) + len(slot))
                r.append(key)
                c.append(len(made) + i)
                v.append(1)
        a = coo_matrix((v, (r, c)), shape=(len(uses) + len(slot), n)).tocsr()
        upper = np.concatenate([np.zeros(len(uses)), np.ones(len(slot))])
        res = milp(np.concatenate([np.ones(len(made)), -np.ones(len(uses))]),
                   constraints=LinearConstraint(a, -np.inf, upper), integrality=np.ones(n), bounds=Bounds(0, 1))
        if res.x is None:
            raise RuntimeError(f"joins_optimum: the solver found no solution ({res.message})")
        total += int(round(-res.fun))
    return total


def full_half(nz, pairs: list[tuple[int, int | None]] | None) -> tuple[int, int]:
    """(row, word) multiplies of a layer's mask with both weights of the word's pair (SMLAD, two multiply-adds) and
    with one (SMLA<x><y>, one), under `pairs`; None: every row's own pairs (a row's k weights in k // 2 full words
    and k % 2 half ones)."""
    if pairs is None:
        k = nz.sum(1)
        return int((k // 2).sum()), int((k % 2).sum())
    full = half = 0
    for a, b in pairs:
        if b is None:
            half += int(nz[:, a].sum())
        else:
            full += int((nz[:, a] & nz[:, b]).sum())
            half += int((nz[:, a] ^ nz[:, b]).sum())
    return full, half


def least_loads(full: int, half: int, rows: int, words: int, registers: int) -> int:
    """The fewest loads any tiling of the kernel's form can give a layer (export/dsp.py: R accumulators, C input words
    and G weight words in registers at once, R + C + G <= registers): the weight table's words (one a full multiply,
    half a word a half one, as pack_words packs them) G at a time, each group's biases R at a time, and the inputs:
    every word at least once, C at a time, and one LDM of C words feeding at most R x C multiplies. Each at its least
    at once, which one tiling need not give: a bound below the kernel's loads on that pairing, not a kernel."""
    import math

    best = None
    for r in range(1, registers - 1):
        for c in range(1, registers - r):
            g = registers - r - c
            n = (math.ceil((full + half / 2) / g) + math.ceil(rows / r)
                 + max(math.ceil((full + half) / (r * c)), math.ceil(words / c)))
            best = n if best is None else min(best, n)
    assert best is not None
    return best


def measure(student: Path, dataset: Path, bench: dict, report: dict) -> dict:
    import numpy as np

    from bpd.errors import BpdError
    from bpd_app.methods import collapsed_student
    from export.dsp import POOL, SPARE, group_rows, words
    from export.fixed_point import quantise
    from training.collect import load_dataset
    from training.pairs import multiply_slots, pair_columns

    net = collapsed_student(student)
    q = quantise(net, load_dataset(str(dataset), net.obs_dim).observations, f"dataset {dataset}")
    layers = (((report.get("kernel") or {}).get("candidates") or {}).get("integer") or {}).get("dsp_layers") or []
    now = best = full = nonzero = two = stores = joined = joins = optimum = tiled = 0
    least = {"kernel": 0, "best": 0, "own": 0}  # multiplies + loads at their least, per pairing
    for i, L in enumerate(q.layers):
        nz = np.asarray(L.wq) != 0
        nonzero += int(nz.sum())
        pairs = pair_columns(nz)
        bp = best_pairs(nz)
        now += multiply_slots(nz, pairs)
        best += multiply_slots(nz, bp)
        for k, p in (("kernel", pairs), ("best", bp), ("own", None)):
            f, h = full_half(nz, p)
            n_words = (int(nz.any(0).sum()) + 1) // 2 if p is None else len(p)  # own pairs: the fewest words
            least[k] += f + h + least_loads(f, h, nz.shape[0], n_words, len(POOL) + len(SPARE))
        full += int(np.ceil(nz.sum(1) / 2).sum())
        two += two_layouts(nz)
        stores += int(nz.any(0).sum())
        if i < len(layers) and layers[i].get("rows_per_group"):
            groups = group_rows(words(np.asarray(L.wq), pairs) != 0, int(layers[i]["rows_per_group"]))
            s, j = derived_pairs(nz, pairs, groups)
            joined += s
            joins += j
            optimum += joins_optimum(nz, pairs, groups)
            tiled += 1
    recorded = sum(L["mix"]["multiplies"] for L in layers)
    if recorded and recorded != now:
        raise BpdError(f"{student}: {now} SMLADs counted here, {recorded} in its export's report "
                       "(another quantisation?)")
    floor = int(bench["arithmetic_floor"]["instructions"])
    total = int(bench["integer"]["instructions"])
    # the kernel less its multiplies, loads and r2/r3 reloads (the activations, stores and the stages around the layers
    # held), plus the multiplies and the least loads of each pairing
    held = None
    if layers and len(layers) == len(q.layers):
        if any("mix" not in L for L in layers) or total < sum(int(L["instructions"]) for L in layers):
            raise BpdError(f"{student}: its export report's layers do not match its bench's integer kernel "
                           f"({total} instructions)")
        held = total - sum(L["mix"][k] for L in layers for k in ("multiplies", "weight_loads", "input_loads", "other"))
    return {"widths": list(net.widths), "nonzero": nonzero, "floor": floor, "instructions": total,
            "multiplies": now, "multiplies_recorded": recorded or None, "multiplies_best_pairs": best,
            "multiplies_full_pairs": full, "multiplies_two_layouts": two, "second_layout_stores": stores,
            "two_layouts": total - now + two + stores, "joined_multiplies_saved": joined, "joins": joins,
            "joins_optimum": optimum if tiled == len(q.layers) else None,
            "joined": total - joined + joins if tiled == len(q.layers) else None, "bound": total - (now - full),
            "vs_floor": total / floor, "bound_vs_floor": (total - (now - full)) / floor,
            "least": {k: held + v for k, v in least.items()} if held is not None else None}


def table(res: dict) -> str:
    rows = res["rows"]
    kept = sum(bool(r.get("kept")) for r in rows)  # rows of an earlier run whose run directories are gone
    L = ["# How far the DSP integer kernel can go below the floor: the pairing of columns", "",
         f"Integer kernel's form: {res.get('form')}.", "",
         f"Written by `python benchmarks/dsp_bound.py {res['plan']} --label {res['label']}"
         + (f" --out {res['out']}" if res.get("out") else "")
         + (" --keep" if kept else "") + "` (see its docstring). "
         + (f"Students: the `{res['label']}` cells of {res['plan']}, {len(rows)}: {len(rows) - kept} measured from the "
            f"run directories that hold them, {kept} kept from an earlier run of this script (their run directories "
            "since lost); " if kept else
            f"Students: the `{res['label']}` cells of {res['plan']} whose run directories hold them ({len(rows)}), ")
         + "quantised as their exports are. SMLADs of the layers with the kernel's pairing of columns (greedy, what "
         "the export built), with the best pairing (maximum-weight matching), and with every row's weights in full "
         "pairs (a pairing of its own for every row, which one layout of the inputs cannot give: a bound below any "
         "pairing); the Cortex-M4F instructions of the DSP integer kernel (emulated, the cell's bench) and the same "
         "less the SMLADs that bound saves, against the scalar floor. Two layouts: the SMLADs with two copies of "
         "every layer's inputs, each paired for the rows that read it, and the stores the second copy costs (one "
         "an input a layer uses); the kernel with both (x floor), loads held at their present counts. Joined in "
         "registers: in each group of rows the kernel tiles, two half-used words joined by one PKHBT where two or "
         "more rows use those halves (`derived_pairs`, greedy): the multiplies saved and the PKHBTs added, the "
         "kernel with both (x floor), and the kernel less the most any choice of joins saves (`joins_optimum`, an "
         "integer program per group; x floor); registers and weight packing left out, in the idea's favour. "
         "Loads at their least (`least_loads`): the kernel's activations, stores and the stages around its layers "
         "held, its multiplies and loads replaced by a pairing's multiplies and the fewest loads any tiling of the "
         "kernel's form could give them (the weight words G at a time, the biases R at a time, every input word "
         "once and C at a time, an input load feeding at most R x C multiplies, R + C + G at most the 12 registers; "
         "each at its least at once, which one tiling need not give), for the kernel's pairing, the best one and every "
         "row's own pairs (x floor): where even that stays above 1.0x, no tiling of that pairing brings the kernel "
         "below the floor.", "",
         "| student | widths | nonzero | floor | DSP kernel instructions (x floor) | SMLADs: kernel's pairs "
         "| best pairs | every row's own pairs | kernel less what every row's own pairs save (x floor) "
         "| two layouts: SMLADs + stores | kernel with two layouts (x floor) "
         "| joined in registers: multiplies saved, PKHBTs | kernel with joins (x floor) "
         "| kernel with the best joins (x floor) | loads at their least: kernel's pairs, best pairs, every row's own "
         "pairs (x floor) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        two = (f"| {r['multiplies_two_layouts']} + {r['second_layout_stores']} | {r['two_layouts']} "
               f"({r['two_layouts'] / r['floor']:.2f}x) |" if "two_layouts" in r else "| - | - |")
        two += (f" {r['joined_multiplies_saved']}, {r['joins']} | {r['joined']} ({r['joined'] / r['floor']:.2f}x) "
                f"| {r['instructions'] - r['joins_optimum']} "
                f"({(r['instructions'] - r['joins_optimum']) / r['floor']:.2f}x) |"
                if r.get("joined") is not None else " - | - | - |")
        least = [f"{r['least'][k]} ({r['least'][k] / r['floor']:.2f}x)" for k in ("kernel", "best", "own")] \
            if r.get("least") else ["-"]
        two += " " + ", ".join(least) + " |"
        L.append(f"| {r['cell']} | {'-'.join(map(str, r['widths']))} | {r['nonzero']} | {r['floor']} "
                 f"| {r['instructions']} ({r['vs_floor']:.2f}x) | {r['multiplies']} | {r['multiplies_best_pairs']} "
                 f"| {r['multiplies_full_pairs']} | {r['bound']} ({r['bound_vs_floor']:.2f}x) " + two)
    if rows:
        vs = [r["vs_floor"] for r in rows]
        bs = [r["bound_vs_floor"] for r in rows]
        gain = [1 - r["multiplies_best_pairs"] / r["multiplies"] for r in rows]
        L += ["", f"The kernel: {min(vs):.2f}-{max(vs):.2f}x the floor. The best pairing saves "
              f"{100 * min(gain):.1f}-{100 * max(gain):.1f} % of the kernel's SMLADs. With every row's weights in "
              f"full pairs and the loads, activations and stores held at their present counts: "
              f"{min(bs):.2f}-{max(bs):.2f}x the floor, above 1.0x on {sum(b > 1 for b in bs)} of {len(bs)} "
              "students."]
        tw = [r for r in rows if "two_layouts" in r]
        if tw:
            L += [f"Two layouts: {sum(r['two_layouts'] < r['instructions'] for r in tw)} of {len(tw)} students "
                  "would take fewer instructions than the kernel's one (the SMLADs saved, "
                  f"{min(r['multiplies'] - r['multiplies_two_layouts'] for r in tw)}-"
                  f"{max(r['multiplies'] - r['multiplies_two_layouts'] for r in tw)}, against the second copy's "
                  f"stores, {min(r['second_layout_stores'] for r in tw)}-"
                  f"{max(r['second_layout_stores'] for r in tw)})."]
        jn = [r for r in rows if r.get("joined") is not None]
        if jn:
            net = [r["joined_multiplies_saved"] - r["joins"] for r in jn]
            cap = [(r["instructions"] - r["joins_optimum"]) / r["floor"] for r in jn]
            L += [f"Joined in registers (greedy): {min(net)}-{max(net)} instructions fewer; the kernel then at "
                  f"{min(r['joined'] / r['floor'] for r in jn):.2f}-{max(r['joined'] / r['floor'] for r in jn):.2f}x "
                  f"the floor, above 1.0x on {sum(r['joined'] > r['floor'] for r in jn)} of {len(jn)} students. The "
                  f"best joins: {min(cap):.2f}-{max(cap):.2f}x the floor, above 1.0x on {sum(c > 1 for c in cap)} of "
                  f"{len(jn)}."]
        ls = [r for r in rows if r.get("least")]
        if ls:
            parts = []
            for k, name in (("kernel", "the kernel's pairing"), ("best", "the best pairing"),
                            ("own", "every row's own pairs")):
                x = [r["least"][k] / r["floor"] for r in ls]
                lo, hi = f"{min(x):.2f}", f"{max(x):.2f}"
                parts.append(f"{name} {lo if lo == hi else lo + '-' + hi}x the floor, above 1.0x on "
                             f"{sum(v > 1 for v in x)} of {len(x)}")
            L += ["Loads at their least (the activations, stores and the stages around the layers held): "
                  + "; ".join(parts) + "."]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", default=str(ROOT / "benchmarks" / "plans" / "delivery.yaml"))
    ap.add_argument("--label", default="bpd", help="the plan row whose cells are measured")
    ap.add_argument("--runs", type=Path, default=None, help="the plan's run root (default: the runner's)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost" / "dsp-bound")
    ap.add_argument("--keep", action="store_true",
                    help="keep OUT.json's rows for the cells this run root no longer holds (bpd.io.kept_rows)")
    a = ap.parse_args()
    from bpd.errors import BpdError
    from bpd.io import kept_rows
    from bpd_app.experiment import load_plan
    from export.fixed_point import int_form

    try:
        plan = load_plan(a.plan, str(a.runs) if a.runs else None)
        if a.label not in plan.methods:
            raise BpdError(f"{a.plan}: no row {a.label!r}")
        rows = []
        for c in plan.cells():
            student = c.dir / "run" / "student.pt"
            bench_p, rep_p, res_p = (c.dir / "bench" / "bench.json", c.dir / "export" / "export_report.json",
                                     c.dir / "result.json")
            if c.label != a.label or not all(p.is_file() for p in (student, bench_p, rep_p, res_p)):
                continue
            integer = (json.loads(res_p.read_text()).get("bench") or {}).get("integer") or {}
            if not integer.get("instructions") or integer.get("form") != int_form(True):
                continue  # no integer kernel measured, or one of an earlier form
            bench = {"arithmetic_floor": json.loads(bench_p.read_text())["arithmetic_floor"], "integer": integer}
            print(f"{c.key} ...", flush=True)
            rows.append({"cell": c.key, "env": c.env} | measure(student, plan.cell_dataset_path(c), bench,
                                                   json.loads(rep_p.read_text())))
        if not rows:  # nothing measured: the committed results are left as they are
            raise BpdError(f"no finished `{a.label}` cell in {plan.runs} holds its student, export and bench with the "
                           "current integer kernel")
        res = {"plan": str(Path(a.plan).resolve().relative_to(ROOT)), "label": a.label, "form": int_form(True)}
        if a.keep:  # the rest of the row's cells from the earlier results, where the same plan, row and kernel form
            order = {c.key: i for i, c in enumerate(plan.cells()) if c.label == a.label}
            rows = sorted(rows + kept_rows(a.out, rows, ("cell",), res, lambda r: r["cell"] in order),
                          key=lambda r: order[r["cell"]])
    except BpdError as e:
        sys.exit(f"dsp_bound: {e}")
    res["rows"] = rows
    default_out = (ROOT / "benchmarks" / "results" / "cost" / "dsp-bound").resolve()
    if a.out.resolve() != default_out and a.out.resolve().is_relative_to(ROOT):
        res["out"] = str(a.out.resolve().relative_to(ROOT))
    write_results(a.out, res, table(res))


if __name__ == "__main__":
    main()
