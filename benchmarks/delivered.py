"""The delivered student: per task and seed, the cheapest student on the Cortex-M4F that keeps the return, chosen
across the rows of a plan as `bpd compress --confirm 0` chooses across methods (issue 34, "chosen by cost"; with
--confirm N as compress's default does).

    ATEN_CPU_CAPABILITY=avx2 python benchmarks/delivered.py [benchmarks/plans/students.yaml] [--keep-return 0.99]
        [--out benchmarks/results/delivered] [--table-only]

Candidates: the finished cells of the plan's BPD rows (`bpd` and its variants: its fine-tunes with the pair partners,
cut to a half and a quarter of their SMLADs and to half the bpd cell's cycles), each the student its run handed over;
another method's row of the plan (magnitude pruning, L1 then a threshold, a dense network) is set against the
delivered student as the --others plans' students are, never delivered in its place; with --any-method every row is
a candidate, as `bpd compress --confirm 0` chooses across every method it runs. A candidate
keeps the return when its return on its run's selection seeds (recorded by the run: `train.selection.select_return`)
is at least --keep-return of the teacher's return on the same seeds (evaluated here, as many episodes as the run
judged its candidates on) and it ended no selection episode early that the teacher finishes (issue 34's "no early
end" judged before the reporting episodes, as the runs with --select-no-falls record it; for runs before that check,
their early ends on those episodes, an upper bound where the teacher too ends some early, counted whole). With
--confirm, the extra episodes start after the most selection episodes any candidate of the task and seed was judged
on (so a row judged on 30 moves them). Its cost: the DSP integer kernel's estimated Cortex-M4F cycles (the kernel `bpd
export` ships on these students where it keeps the float kernel's return), measured by the cell's own export (its
bench record) or, for a cell measured before cells recorded it, by benchmarks/cost_benchmark.py (cost.json). Of a
task and seed's candidates, the cheapest that keeps the return is delivered (none: the highest selection return,
marked); a reselection's cell (a row choosing again over another cell's run) stands for that cell, which is
listed but not chosen. Its reporting return (the plan's 30 episodes, seeds disjoint from the selection seeds) and
early ends are the cell's evaluation; its cycles are set against the plan's `bpd` cell of the same seed by the
same kernel (issue 34's reference: the benchmark's BPD students, which the `bpd` row trains again under the benchmark
plan's specification). Nothing is trained here; the teacher's selection returns are the only episodes run, and they are
comparable with a cell's only on the kind of machine and torch kernels the cell ran on (ATEN_CPU_CAPABILITY as the
plan states): each cell is judged against the teacher on its own kind, evaluated here for this machine's kind and
kept in delivered.json for the kinds of earlier runs (a kind neither here nor recorded: the cell is listed, not
chosen). Writes OUT/delivered.json and OUT/delivered.md. """

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.io import write_json, write_text  # noqa: E402
from training.envs import return_floor  # noqa: E402

REFERENCE = "bpd"  # the plan row issue 34's cycles are measured against
SELECT_EPISODES = 10  # distill's --select-episodes default, for summaries that do not record theirs


def _summaries(plan) -> dict[str, dict]:
    """Cell key -> committed summary of every finished cell made under the plan's current specification."""
    from bpd_app.experiment.results import committed_result

    return {c.key: r for c in plan.cells() if (r := committed_result(plan, c)) is not None}


def _cost_rows() -> dict[str, dict]:
    p = ROOT / "benchmarks" / "results" / "cost" / "cost.json"
    return {r["cell"]: r for r in json.loads(p.read_text())["rows"]} if p.is_file() else {}


def _equal_cost_records() -> dict[str, float]:
    """Student file sha256 -> integer-kernel cycles of every side benchmarks/equal_cost.py measured."""
    p = ROOT / "benchmarks" / "results" / "equal-cost" / "equal-cost.json"
    out: dict[str, float] = {}
    if p.is_file():
        for r in json.loads(p.read_text())["rows"]:
            for side in "ABCD":
                rec = r.get(side) or {}
                if rec.get("product_sha256") and ((rec.get("kernels") or {}).get("integer") or {}).get("cycles"):
                    out[rec["product_sha256"]] = float(rec["kernels"]["integer"]["cycles"])
    return out


def integer_cycles(key: str, summary: dict, cost_rows: dict[str, dict],
                   equal_cost: dict[str, float] | None = None) -> tuple[float | None, str]:
    """The cell's DSP integer kernel cycles and where they were measured: its export's, else cost.json's row of
    the same student (its model hash) measured with today's integer kernel."""
    ic = (summary.get("bench") or {}).get("integer")
    if ic:
        return float(ic["cycles"]), "cell export"
    row = cost_rows.get(key)
    same = row is not None and row.get("model_hash") == (summary.get("export") or {}).get("model_hash")
    c = (row.get("cortex-m4f") or {}).get("integer") if row and same and row.get("integer_form") else None
    if c:
        return float(c["cycles"]), "cost.json"
    eq = (equal_cost or {}).get(summary.get("product_sha256") or "")
    return (eq, "equal-cost.json") if eq is not None else (None, "not measured")


def machine() -> dict:
    """This machine, as cells record theirs: episodes agree to the bit only between machines of one kind."""
    from bpd_app.experiment.summary import _machine

    m = _machine()
    return {"processor": m.get("processor"), "torch_cpu_capability": m.get("torch_cpu_capability")}


def _kind(m: dict) -> tuple:
    """A machine kind as a hashable key (processor, torch kernels)."""
    return tuple(sorted((k, m.get(k)) for k in ("processor", "torch_cpu_capability")))


def teacher_cache(previous: dict | None) -> dict:
    """The teacher's selection returns of an earlier delivered.json, by (machine kind, env, seed, episodes): each
    entry on the kind recorded with it, else on the kind the earlier file was written on."""
    prev = previous or {}
    return {(_kind(t.get("machine") or prev.get("machine") or {}), t["env"], t["seed"], t["episodes"]):
            (t["return"], t["early_ends"]) for t in prev.get("teacher_select", []) if "early_ends" in t}


def teacher_select(teacher: str, env: str, run_seed: int, episodes: int) -> tuple[float, int]:
    """The teacher's mean return on a run's selection seeds, and its early ends there."""
    import numpy as np

    from training.envs import rollouts, select_eval_seed
    from training.teacher import load_teacher

    ep = rollouts(env, load_teacher(teacher).act, episodes, select_eval_seed(run_seed))
    return float(np.mean(ep.returns)), ep.early_terminations


def selection_falls(sel: dict, teacher_early: int) -> tuple[int | None, bool]:
    """A cell's early ends on its selection episodes where the teacher finishes, and whether that count is exact:
    recorded by a run with the falls check (--select-no-falls): exact; else the run's early ends there, exact where
    the teacher finished every selection episode and otherwise an upper bound (the run kept no episode's outcome:
    those early ends may include episodes the teacher ends too), counted whole (the rule errs towards rejecting).
    None: the run recorded neither."""
    if "falls" in sel:
        return int(sel["falls"]), True
    e = sel.get("early_terminations")
    return (None, False) if e is None else (int(e), teacher_early == 0 or e == 0)


def selection_episodes(summary: dict, method: str) -> int:
    """The selection episodes a cell's run judged its candidates on: its recorded selection seeds, else the plan's
    args, else what its method sets, else distill's default."""
    from bpd_app.methods import get

    seeds = (summary.get("train") or {}).get("selection_seeds")
    if seeds:
        return int(seeds[1]) - int(seeds[0]) + 1
    return int(summary.get("args", {}).get("select_episodes") or get(method).select_episodes or SELECT_EPISODES)


def supersede(plan, cands: list[dict]) -> None:
    """A finished reselection (a method that supersedes, bpd_app/methods.py) stands for the run it chose from: the
    needed cell of the same seed is marked superseded_by it and is not chosen (listed all the same)."""
    from bpd_app.methods import get

    for c in cands:
        spec = plan.methods[c["method"]]
        if get(spec.method).supersedes:
            for o in cands:
                if o["method"] in spec.needs.values():
                    o["superseded_by"] = c["method"]


def choose(cands: list[dict], keep: float) -> dict | None:
    """The cheapest candidate that keeps the return (ties: the higher selection return); none keeping it: the
    highest selection return. Candidates without a cost, or of a kind of machine the teacher's selection return is
    not known on (not comparable), are not chosen."""
    costed = [c for c in cands if c["cycles"] is not None and c["select_return"] is not None
              and c.get("comparable", True) and not c.get("superseded_by")]
    kept = [c for c in costed if c["keeps"]]
    if kept:
        return min(kept, key=lambda c: (c["cycles"], -c["select_return"]))
    return max(costed, key=lambda c: c["select_return"]) if costed else None


def kernel_form(summary: dict) -> str | None:
    """The form of the integer kernel whose cycles the cell's bench recorded (None: a bench before forms were kept)."""
    return ((summary.get("bench") or {}).get("integer") or {}).get("form")


def same_kernel(cands: list[dict], ref: dict | None) -> None:
    """Issue 34's "same kernel on both sides": a candidate whose cycles were measured with another form of the
    integer kernel than the reference cell's (a change to the kernel between their exports) has its cycles set
    aside (cycles_other_form), listed and not chosen until its cell is measured again (`bpd experiment run
    --rebench`)."""
    if ref is None:
        return
    for c in cands:
        if c["cycles"] is not None and c["kernel_form"] != ref["kernel_form"]:
            c["cycles_other_form"], c["cycles"] = c["cycles"], None


def _cycles_cell(c: dict) -> str:
    if c.get("cycles_other_form") is not None:
        return f"({_f(c['cycles_other_form'], 0)}: another form of the integer kernel than its comparison's, set aside)"
    return f"{_f(c['cycles'], 0)}{' (' + c['cycles_from'] + ')' if c['cycles'] is not None else ''}"


def _record(key: str, label: str, s: dict, cost_rows: dict[str, dict], eq: dict[str, float]) -> dict:
    cyc, where = integer_cycles(key, s, cost_rows, eq)
    return {"cell": key, "method": label, "cycles": cyc, "cycles_from": where, "kernel_form": kernel_form(s),
            "params_nonzero": s.get("params_nonzero"), "return_mean": s["eval"]["return_mean"],
            "return_std": s["eval"]["return_std"], "return_min": s["eval"].get("return_min"),
            "episodes": s["eval"]["episodes"], "return_vs_teacher": s.get("return_vs_teacher"),
            "early_ends": s.get("early_terminations_where_teacher_finished"),
            "machine": (s.get("machine") or {}).get("processor"), "product_sha256": s.get("product_sha256")}


def beaten_by(d: dict, others: list[dict]) -> list[dict]:
    """The other methods' students (this plan's other rows, other plans') of the same task and seed with at least the
    delivered student's share of the teacher's return (each against the teacher on its own machine) at fewer
    integer-kernel cycles."""
    return [o for o in others if o["cycles"] is not None and d["cycles"] is not None and o["cycles"] < d["cycles"]
            and (o["return_vs_teacher"] or 0) >= (d["return_vs_teacher"] or 0)]


STUDENT_KEYS = ("product_sha256", "params_nonzero", "return_mean")  # what tells one trained student from another


def earlier_records(previous: dict | None) -> list[dict]:
    """Every --confirm record an earlier delivered.json holds (its candidates' and those it carried forward), each
    with the cell and what identifies its student: kept in every file written after, whatever that run's options,
    so that the record of a student whose run root was lost is never lost with it."""
    prev = previous or {}
    found = [{"cell": c["cell"], **{k: c.get(k) for k in STUDENT_KEYS}, "confirm": c["confirm"]}
             for row in prev.get("rows", []) for c in row.get("candidates", [])
             if "holds" in (c.get("confirm") or {})] + list(prev.get("confirm_earlier", []))
    out, seen = [], set()
    for e in found:
        r = e["confirm"]
        key = (e["cell"], e.get("product_sha256"), e.get("params_nonzero"), e.get("return_mean"), r.get("episodes"),
               r.get("first_seed"), r.get("low_share", 0.0))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def earlier_record(earlier: list[dict], c: dict, n: int, first_seed: int, low_share: float, keep: float
                   ) -> dict | None:
    """The earlier record of candidate c's student judged as this run judges (the same episodes from the same first
    seed, the same low share), its verdict taken again at this run's keep-return from its figures; None if there is
    none. The same student: the same file digest where both record one, else the same nonzero count and return."""
    for e in earlier:
        r = e["confirm"]
        sha, c_sha = e.get("product_sha256"), c.get("product_sha256")
        same = (sha == c_sha if sha and c_sha
                else (e.get("params_nonzero"), e.get("return_mean")) == (c.get("params_nonzero"), c.get("return_mean")))
        if (e["cell"] == c["cell"] and same and r.get("episodes") == n and r.get("first_seed") == first_seed
                and r.get("low_share", 0.0) == low_share):
            falls = r["early_ends_where_teacher_finished"] + r.get("low_episodes", 0)
            return dict(r, holds=r["return"] >= return_floor(r["teacher_return"], keep) and falls == 0, reused=True)
    return None


def confirmed(plan, env: str, seed: int, cands: list[dict], keep: float, first: int, n: int,
              low_share: float = 0.0, earlier: list[dict] | None = None) -> tuple[dict | None, bool | None]:
    """--confirm N: the candidates that keep the return on the run's selection seeds, cheapest first (ties: the
    higher selection return), each run with the teacher on the N selection seeds after those (seed's selection base
    + first ... + first + N - 1: disjoint from the reporting and training seeds); the first that keeps the return
    there with no early end on an episode the teacher finishes (low_share above 0: nor a return there below the
    teacher's by more than 1 - low_share of its magnitude, as `bpd compress` judges) is delivered, and True with it.
    None holding: as `bpd compress` does (bpd_app/compress.py confirm_run), the judged one with the fewest such falls
    there, then the highest return there, and False (None, None: none could be judged). compress judges the ranked
    students of its runs (the fewest selection falls first); here the candidates that keep the return, comparable and
    not superseded, are. Each judged candidate records its
    figures under "confirm" (with the machine that ran them). earlier
    (earlier_records): a candidate whose student file is missing is judged by its student's record there
    (earlier_record), in its place in the order."""
    from bpd_app.compress import least_falling
    from bpd_app.evaluate import load_any
    from bpd_app.methods import get
    from training.envs import select_eval_seed
    from training.selection import confirm
    from training.teacher import load_teacher

    order = sorted((c for c in cands if c["keeps"] and c["cycles"] is not None and c.get("comparable", True)
                    and not c.get("superseded_by")),
                   key=lambda c: (c["cycles"], -c["select_return"]))
    products = [plan.runs / env / c["method"] / f"seed{seed}" / "run" / get(plan.methods[c["method"]].method).product
                for c in order]
    start = select_eval_seed(seed) + first
    batch: list[tuple[dict, Path]] = []  # students to run, in order, before the next one judged by its record

    def run_batch() -> dict | None:
        if not batch:
            return None
        held, recs = confirm(env, load_teacher(str(plan.teachers[env])).act,
                             [(c["method"], partial(lambda q: load_any(q).act, p)) for c, p in batch], start, n, keep,
                             log=lambda m: print(f"{env} seed {seed} {m}", flush=True), low_share=low_share)
        for (c, _), rec in zip(batch, recs):
            c["confirm"] = rec | {"machine": machine()["processor"]}
        got = None if held is None else batch[held][0]
        batch.clear()
        return got

    for c, product in zip(order, products):
        if product.is_file():
            batch.append((c, product))
            continue
        rec = earlier_record(earlier or [], c, n, start, low_share, keep)
        if rec is None:
            c["confirm"] = {"error": "no student file in the run root"}
            continue
        got = run_batch()  # the cheaper ones first
        if got is not None:
            return got, True
        c["confirm"] = rec
        if rec["holds"]:
            return c, True
    got = run_batch()
    if got is not None:
        return got, True
    judged = [c for c in order if "holds" in (c.get("confirm") or {})]
    if not judged:  # none could be judged (no student file, no earlier record): nothing to hand over
        return None, None
    return least_falling(judged), False


def collect(plan_path: str, keep: float, previous: dict | None, other_plans: list[str] | None = None,
            confirm: int = 0, also_against: str | None = None, low_share: float = 0.0,
            any_method: bool = False, teacher_from: str | None = None) -> dict:
    from bpd.errors import BpdError
    from bpd_app.experiment import load_plan
    from bpd_app.experiment.plan import is_bpd

    plan = load_plan(plan_path)
    sums, cost_rows, eq = _summaries(plan), _cost_rows(), _equal_cost_records()
    other_sums = {}
    for op in other_plans or []:
        oplan = load_plan(op)
        for key, summ in _summaries(oplan).items():
            other_sums[(oplan.name, key)] = summ  # two plans may hold a cell of the same key (a row trained again)
    also = {}  # --also-against: that plan's reference cells, by (env, seed)
    if also_against:
        aplan = load_plan(also_against)
        for key, summ in _summaries(aplan).items():
            env_, label_, seed_ = key.split("/")
            if label_ == REFERENCE:  # its cycles and the form of the kernel its bench recorded (None: before forms)
                also[(env_, int(seed_[4:]))] = integer_cycles(key, summ, cost_rows, eq)[0], kernel_form(summ)
    here = machine()
    cache = teacher_cache(previous)
    if teacher_from:  # another out file of the same plan: its teacher's selection returns, on the kinds it holds
        try:
            other = json.loads(Path(teacher_from).read_text())
        except (OSError, ValueError) as e:
            raise BpdError(f"{teacher_from}: cannot be read as a delivered.json ({e})") from None
        if Path(ROOT / other.get("plan", "")).resolve() != Path(plan_path).resolve():
            raise BpdError(f"{teacher_from}: written for {other.get('plan')}, not {plan_path}")
        cache = teacher_cache(other) | cache
    earlier = earlier_records(previous)
    teacher_sel = []
    rows = []
    for env in plan.envs:
        for seed in plan.seeds:
            cands, rivals = [], []
            for label in plan.methods:
                key = f"{env}/{label}/seed{seed}"
                s = sums.get(key)
                if s is None:
                    continue
                if not any_method and not is_bpd(plan.methods[label].method):  # set against, never chosen
                    rivals.append(_record(key, label, s, cost_rows, eq))
                    continue
                sel = (s.get("train") or {}).get("selection") or {}
                m = s.get("machine") or {}
                kind = _kind({k: m.get(k) for k in here})
                cands.append(_record(key, label, s, cost_rows, eq) | {
                    "select_return": sel.get("select_return"), "select_record": sel,
                    "select_episodes": selection_episodes(s, plan.methods[label].method),
                    "kind": kind, "machine": m.get("processor")})
            if not cands:
                continue
            supersede(plan, cands)
            same_kernel(cands, next((c for c in cands if c["method"] == REFERENCE), None))
            for kind, episodes in sorted({(c["kind"], c["select_episodes"]) for c in cands}):  # the teacher per kind
                if (kind, env, seed, episodes) not in cache and kind == _kind(here):
                    print(f"{env} seed {seed}: the teacher on {episodes} selection seeds ...", flush=True)
                    cache[(kind, env, seed, episodes)] = teacher_select(str(plan.teachers[env]), env, seed, episodes)
                if (kind, env, seed, episodes) in cache:
                    t_ret, t_early = cache[(kind, env, seed, episodes)]
                    teacher_sel.append({"env": env, "seed": seed, "return": t_ret, "early_ends": t_early,
                                        "episodes": episodes, "machine": dict(kind)})
            for c in cands:
                got = cache.get((c["kind"], env, seed, c["select_episodes"]))
                c["comparable"] = got is not None  # the teacher known on the cell's kind of machine
                t_ret, t_early = got if got is not None else (None, 0)
                c["teacher_select_return"] = t_ret
                c["select_falls"], c["select_falls_exact"] = selection_falls(c.pop("select_record"), t_early)
                c["keeps"] = (t_ret is not None and c["select_return"] is not None
                              and c["select_return"] >= return_floor(t_ret, keep) and c["select_falls"] == 0)
                c["machine_kind"] = dict(c.pop("kind"))
            judged = [c for c in cands if c["teacher_select_return"] is not None]
            t = min(judged, key=lambda c: c["select_episodes"])["teacher_select_return"] if judged else None
            d, held = choose(cands, keep), None
            if confirm and d and d["keeps"]:  # the kept ones, cheapest first, judged again until one holds
                d, held = confirmed(plan, env, seed, cands, keep, max(c["select_episodes"] for c in cands), confirm,
                                    low_share, earlier)
            ref = next((c for c in cands if c["method"] == REFERENCE), None)
            others = rivals + [_record(k, f"{name}/{k.split('/')[1]}", o, cost_rows, eq)
                               for (name, k), o in other_sums.items()
                               if k.startswith(f"{env}/") and k.endswith(f"/seed{seed}")]
            same_kernel(others, d)  # another student measured with another form: not set against it
            rows.append({"env": env, "seed": seed, "teacher_select_return": t, "candidates": cands, "others": others,
                         "beaten_by": [o["method"] for o in beaten_by(d, others)] if d else [],
                         "others_other_form": sum(o.get("cycles_other_form") is not None for o in others),
                         "delivered": d and d["cell"], "kept": bool(d and d["keeps"]),
                         **({"confirmed": held} if held is not None else {}),
                         "cycles_vs_reference": (d["cycles"] / ref["cycles"]) if d and ref and ref["cycles"] else None})
            if also_against:  # the same student against the other plan's reference cell of the seed
                a_ref, a_form = also.get((env, seed), (None, None))
                if d and a_ref and d["kernel_form"] != a_form:  # not the same kernel on both sides: not set against
                    rows[-1]["also_other_form"], a_ref = a_ref, None
                rows[-1]["also_reference_cycles"] = a_ref
                rows[-1]["cycles_vs_also"] = (d["cycles"] / a_ref) if d and d["cycles"] and a_ref else None
                rows[-1]["meets_bar_also"] = meets_bar(rows[-1], keep, "cycles_vs_also")
            rows[-1]["meets_bar"] = meets_bar(rows[-1], keep)
    return {"plan": str(Path(plan_path).resolve().relative_to(ROOT)), "keep_return": keep, "machine": here,
            "confirm": confirm, **({"low_share": low_share} if confirm and low_share else {}),
            **({"confirm_fallback": "compress"} if confirm else {}),
            **({"any_method": True} if any_method else {}),
            **({"teacher_from": str(Path(teacher_from).resolve().relative_to(ROOT))} if teacher_from else {}),
            "also_against": str(Path(also_against).resolve().relative_to(ROOT)) if also_against else None,
            "others": [str(Path(op).resolve().relative_to(ROOT)) for op in other_plans or []],
            "reference": REFERENCE, "teacher_select": teacher_sel, "rows": rows, "confirm_earlier": earlier}


BAR_CYCLES = 0.5  # issue 34's bar: at most this share of the reference cell's cycles, keeping --keep-return of the
# teacher's reporting return with no early end on an episode the teacher finishes


def meets_bar(r: dict, keep: float, ratio: str = "cycles_vs_reference") -> bool | None:
    """Whether a task and seed's delivered student meets issue 34's bar on the reporting episodes (None: nothing
    delivered, or no reference cell measured to set its cycles against); ratio: its cycles against the plan's own
    reference cell, or ("cycles_vs_also") against --also-against's."""
    d = next((c for c in r["candidates"] if c["cell"] == r["delivered"]), None)
    if d is None or r.get(ratio) is None:
        return None
    return bool(r[ratio] <= BAR_CYCLES and (d["return_vs_teacher"] or 0) >= keep and d["early_ends"] == 0)


def _rival_sources(res: dict, done: list[dict]) -> list[str]:
    """Where the students set against the delivered ones come from: this plan's other methods' rows (where it has
    any), then the --others plans."""
    own = any("/" not in o["method"] for r in done for o in r["others"])
    return (["this plan's other rows"] if own else []) + list(res.get("others", []))


def _also(res: dict, done: list[dict]) -> str:
    """The delivered students' cycles against --also-against's reference cells, and the bar judged by those."""
    parts = [f"seed {r['seed']}: "
             + (f"{_f(r['also_other_form'], 0)} cycles with another form of the integer kernel, not set against"
                if r.get("also_other_form") else f"{_f(r.get('also_reference_cycles'), 0)} cycles, "
                + ("-" if r.get("cycles_vs_also") is None else f"{r['cycles_vs_also']:.2f}x")) for r in done]
    bars = [r.get("meets_bar_also") for r in done]
    return (f" Against the `{res['reference']}` cells of {res['also_against']} (the same specification, trained "
            f"elsewhere): {'; '.join(parts)}; the bar by those met on {bars.count(True)} of {len(bars)} seeds.")


def _f(x, nd=1) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def _kinds(res: dict) -> str:
    """The machine kinds the teacher's selection returns were taken on, this run's named first."""
    here = res["machine"]["processor"]
    seen = dict.fromkeys([here] + [(t.get("machine") or res["machine"])["processor"]
                                   for t in res.get("teacher_select", [])])
    earlier = f"from {res['teacher_from']}" if res.get("teacher_from") else "kept from an earlier run"
    return ", ".join(f"{k} (here)" if k == here else f"{k} ({earlier})" for k in seen)


def markdown(res: dict) -> str:
    k = 100 * res["keep_return"]
    L = ["# The delivered student: the cheapest that keeps the return", "",
         f"Written by `ATEN_CPU_CAPABILITY={res['machine']['torch_cpu_capability'].lower()} python "
         f"benchmarks/delivered.py {res['plan']}"
         + (f" --also-against {res['also_against']}" if res.get("also_against") else "")
         + (f" --confirm {res['confirm']}" if res.get("confirm") else "")
         + (" --any-method" if res.get("any_method") else "")
         + (f" --teacher-from {res['teacher_from']}" if res.get("teacher_from") else "")
         + (f" --out {res['out']}" if res.get("out") else "")
         + "` (again from delivered.json: `--table-only`). "
         + (f"Every row of the plan is a candidate, whatever its method (as `bpd compress --confirm {res['confirm']}` "
            "chooses across the methods it runs); "
            if res.get("any_method") else
            "BPD's rows are the candidates (`bpd` and its variants; the plan's other rows are set against the "
            "delivered student, never delivered); ")
         + f"per task and seed, among the plan's finished cells: the cheapest by the DSP integer kernel's estimated "
         f"Cortex-M4F cycles whose return on its run's selection seeds keeps {k:g} % of the teacher's on the same "
         f"seeds with no early end there on an episode the teacher finishes ('falls': recorded by runs with the "
         f"falls check, else the run's early ends there, an upper bound, marked <=, where the teacher too ended some "
         f"selection episode early: counted whole; a run with --select-low-share counts among them also the episodes "
         f"the teacher finishes where its return fell below the teacher's by more than that share's complement) "
         f"(each cell against the teacher on the kind of machine it ran on, "
         f"since episodes diverge between kinds: {_kinds(res)}; a cell of a kind the teacher was not run on is "
         f"listed but not chosen); its "
         f"reporting return (the plan's episodes, seeds disjoint from the selection seeds) and its cycles against "
         f"the `{res['reference']}` cell of the same seed, by the same kernel. Nothing trained here."
         + (f" With --confirm {res['confirm']}: the candidates that keep it, cheapest first, run again with the "
            f"teacher on the {res['confirm']} selection seeds after the run's; the first that keeps {k:g} % there "
            "with no early end where the teacher finishes"
            + (f" nor a return below the teacher's there by more than {1 - res['low_share']:.0%} of its magnitude "
               "(`bpd compress`'s default)" if res.get("low_share") else "")
            + " is delivered (its figures in the column 'confirmed'; "
            + ("none holding, the judged one with the fewest such falls there, then the highest return there, as "
               "`bpd compress` hands over, marked unconfirmed)." if res.get("confirm_fallback") == "compress"
               else "none: nothing is delivered).")
            if res.get("confirm") else ""), ""]
    for env in dict.fromkeys(r["env"] for r in res["rows"]):
        L += [f"## {env}", "", "| seed | cell | selection return (% of teacher's), episodes, falls | keeps "
              "| integer-kernel cycles | nonzero | reporting return (mean +- std) | % of teacher | early ends "
              "| delivered |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in res["rows"] if r["env"] == env):
            for c in r["candidates"]:
                sr, t = c["select_return"], c.get("teacher_select_return", r["teacher_select_return"])
                share = "the teacher not run on its kind of machine" if t is None else f"{100 * sr / t:.1f} %"
                sel = "-" if sr is None else (f"{_f(sr)} ({share}) on {c['select_episodes']}, "
                                              + ("falls -" if c.get("select_falls") is None
                                                 else ("" if c.get("select_falls_exact", True) else "<= ")
                                                 + f"{c['select_falls']} falls"))
                mark = ("**yes**" + ("" if r["kept"] else " (none keeps it: the highest selection return among "
                                          "the comparable measured cells)")
                        + (" (unconfirmed: none held on the further episodes)" if r.get("confirmed") is False else "")
                        if c["cell"] == r["delivered"] else "")
                keeps = ("yes" if c["keeps"] else "no") + ("" if c.get("comparable", True) else
                                                           f" (ran on {c.get('machine')}: not comparable)") \
                    + (f"; set aside: {c['superseded_by']} chose again from its run" if c.get("superseded_by") else "")
                if c.get("confirm"):
                    cf = c["confirm"]
                    keeps += (f"; confirmed: {cf['error']}" if "error" in cf else
                              f"; confirmed: {100 * cf['return'] / cf['teacher_return']:.1f} %, "
                              f"{cf['early_ends_where_teacher_finished']} early ends"
                              + (f", {cf['low_episodes']} low" if "low_episodes" in cf else "")
                              + f" of {cf['episodes']}"
                              + ("" if cf["holds"] else " (fails)")
                              + (" (an earlier run's record)" if cf.get("reused") else ""))
                L.append(f"| {r['seed']} | {c['method']} | {sel} | {keeps} "
                         f"| {_cycles_cell(c)} | {c['params_nonzero']} "
                         f"| {_f(c['return_mean'])} +- {_f(c['return_std'])} "
                         f"| {_f(100 * c['return_vs_teacher'] if c['return_vs_teacher'] is not None else None)} % "
                         f"| {c['early_ends']} of {c['episodes']} | {mark} |")
            for o in r.get("others", []):
                whose = "another plan" if "/" in o["method"] else "another method"
                L.append(f"| {r['seed']} | {o['method']} ({whose}) | - | - "
                         f"| {_cycles_cell(o)} | {o['params_nonzero']} "
                         f"| {_f(o['return_mean'])} +- {_f(o['return_std'])} "
                         f"| {_f(100 * o['return_vs_teacher'] if o['return_vs_teacher'] is not None else None)} % "
                         f"| {o['early_ends']} of {o['episodes']} "
                         f"| {'beats it' if o['method'] in r['beaten_by'] else ''} |")
        L.append("")
        done = [r for r in res["rows"] if r["env"] == env and r["delivered"]]
        if done:
            ratios = [r["cycles_vs_reference"] for r in done if r["cycles_vs_reference"] is not None]
            names = ", ".join(f"seed {r['seed']}: {r['delivered'].split('/')[1]}" for r in done)
            L += [f"Delivered ({names}); cycles against the `{res['reference']}` cell of the same seed: "
                  + (", ".join(f"{x:.2f}x" for x in ratios) if ratios else "-")
                  + f"; keeps {k:g} % on the selection seeds on {sum(r['kept'] for r in done)} of {len(done)}."
                  + (f" A student of another method ({', '.join(_rival_sources(res, done))}) reaches at least its "
                     "share of "
                     f"the teacher's return at fewer cycles on {sum(bool(r['beaten_by']) for r in done)} of "
                     f"{len(done)} seeds" + (f" (of its {sum(len(r['others']) for r in done)} students "
                                            f"{sum(r.get('others_other_form', 0) for r in done)} measured with another "
                                            "form of the integer kernel, not set against them)"
                                            if any(r.get("others_other_form") for r in done) else "") + "."
                     if any(r.get("others") for r in done) else ""), ""]
            bars = [meets_bar(r, res["keep_return"]) for r in done]
            L += [f"Issue 34's bar (the delivered student at <= {BAR_CYCLES:g}x the `{res['reference']}` cell's cycles "
                  f"keeps >= {k:g} % of the teacher's reporting return with no early end where the teacher finishes):"
                  f" met on {bars.count(True)} of {len(bars)} seeds"
                  + (f" ({bars.count(None)} without a measured `{res['reference']}` cell)" if None in bars else "")
                  + "." + (_also(res, done) if res.get("also_against") else ""), ""]
    allbars = [meets_bar(r, res["keep_return"]) if r["delivered"] else False for r in res["rows"]
               if r["delivered"] or any(c.get("confirm") for c in r["candidates"])]  # none confirmed: not met
    L += [f"Over every task: the bar met on {allbars.count(True)} of {len(allbars)} task-seeds"
          + (f" ({sum(r.get('meets_bar_also') is True for r in res['rows'])} against "
             f"the `{res['reference']}` cells of {res['also_against']})" if res.get("also_against") else "")
          + ".", ""]
    return "\n".join(L) + "\n"


def main() -> None:
    from training.envs import LOW_SHARE  # `bpd compress`'s default too
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", default=str(ROOT / "benchmarks" / "plans" / "students.yaml"))
    ap.add_argument("--keep-return", type=float, default=0.99)
    ap.add_argument("--others", nargs="*", default=[str(ROOT / "benchmarks" / "plans" / f"{p}.yaml")
                                                    for p in ("hc-equal-cost", "hc-l1", "l1")],
                    help="plans whose students of the same task and seed are set against the delivered one")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "delivered")
    ap.add_argument("--table-only", action="store_true", help="rewrite delivered.md from delivered.json")
    ap.add_argument("--confirm", type=int, default=0, metavar="N",
                    help="judge the candidates that keep the return again on N more selection episodes, cheapest "
                         "first, and deliver the first that keeps it there with no early end where the teacher "
                         "finishes (the students' files in the plan's run root, else the out file's earlier records of "
                         "them); none holding, the judged one with the fewest falls there, then the highest return "
                         "there, as `bpd compress` hands over, marked unconfirmed")
    ap.add_argument("--low-share", type=float, default=LOW_SHARE, metavar="S",
                    help="with --confirm: also a fall there, an episode the teacher finishes at a return below the "
                         "teacher's by more than 1 - S of its magnitude (default: `bpd compress`'s, %(default)s; 0: "
                         "early ends alone)")
    ap.add_argument("--also-against", metavar="PLAN", default=None,
                    help="set the delivered students' cycles also against this plan's reference cells of the same "
                         "seeds (another run of the same specification) and judge the bar by those too")
    ap.add_argument("--any-method", action="store_true",
                    help="every row of the plan is a candidate, as `bpd compress` chooses across its methods (by "
                         "default BPD's rows alone, the others set against the delivered student)")
    ap.add_argument("--teacher-from", metavar="FILE", default=None,
                    help="another delivered.json of the same plan whose teacher's selection returns are reused (on the "
                         "kinds of machine it recorded them on: cells of a kind not this machine's are judged by "
                         "them), recorded in the output")
    a = ap.parse_args()
    prev_path = a.out / "delivered.json"
    prev = json.loads(prev_path.read_text()) if prev_path.is_file() else None
    from bpd.errors import BpdError

    try:
        res = prev if a.table_only else collect(a.plan, a.keep_return, prev, a.others, a.confirm, a.also_against,
                                                         a.low_share, a.any_method, a.teacher_from)
    except BpdError as e:  # a plan that cannot be read: one line, not a traceback
        raise SystemExit(f"delivered: error: {e}") from None
    if res is None:
        raise SystemExit(f"{prev_path}: no results to rewrite the table from")
    if not a.table_only:
        out = a.out.resolve()
        if out != (ROOT / "benchmarks" / "results" / "delivered").resolve() and out.is_relative_to(ROOT):
            res["out"] = str(out.relative_to(ROOT))
        write_json(prev_path, res)
    write_text(a.out / "delivered.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
