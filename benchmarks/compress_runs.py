"""`bpd compress` itself on one task, seed by seed: what the command hands over with its defaults, judged on the
reporting episodes against issue 34's bar.

    ATEN_CPU_CAPABILITY=avx2 python benchmarks/compress_runs.py --env InvertedDoublePendulum-v5 \\
        --teacher benchmarks/teachers/InvertedDoublePendulum-v5.npz --dataset DATA.npz --runs RUNS --seeds 0 1 2 \\
        [--run] [--out benchmarks/results/compress-runs]

With --run, `bpd compress --seed S --out RUNS/seedS` is run (or resumed: compress continues its runs) for every
seed without a compress.json; without it, only the finished seeds are read. Each handed-over student
(RUNS/seedS/student.pt) and the teacher are run on the reporting episodes (--episodes from --eval-seed, seeds below
100000, which choose nothing: compress chooses on the selection seeds). Its cost is what compress measured
(`--cost m4f-cycles`: the fewest estimated Cortex-M4F cycles of the compact and the integer kernels, emulated), set
against the paper BPD's run that compress trains beside the others (its `bpd` row), measured the same way. The bar:
<= 0.5x that run's cycles, >= 99 % of the teacher's reporting return, no early end on an episode the teacher
finishes. Writes OUT/<env>.json (merged seed by seed, so a seed finished later joins the others) and OUT/<env>.md;
no path of the machine is recorded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import write_json, write_text  # noqa: E402

REFERENCE = "bpd"  # compress's run of the paper BPD: issue 34's reference
KEEP = 0.99
CYCLES_BAR = 0.5


def shown(path: str) -> str:
    """A file as results record it: relative to the repository where it lies inside, else its name alone."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def reporting(env: str, policy, episodes: int, seed: int) -> dict:
    """The reporting episodes' summary (training.envs.Episodes.summary) and their first seed."""
    from training.envs import rollouts

    return rollouts(env, policy, episodes, seed).summary() | {"seed": seed}


def check_result(res: object, where: str, env: str, dataset: str) -> dict:
    """A compress.json as seed_row reads it, or a one-line BpdError saying what is wrong."""
    if not isinstance(res, dict) or not isinstance(res.get("rows"), list):
        raise BpdError(f"{where}: not a compress.json (no rows)")
    if res.get("env_id") != env:
        raise BpdError(f"{where}: a compress of {res.get('env_id')}, not {env}")
    if res.get("cost") != "m4f-cycles":
        raise BpdError(f"{where}: chosen by {res.get('cost')}, not m4f-cycles: its costs are not cycles")
    if Path(str(res.get("dataset", ""))).name != Path(dataset).name:
        raise BpdError(f"{where}: distilled from {Path(str(res.get('dataset'))).name}, not {Path(dataset).name}")
    rows = {r.get("method"): r for r in res["rows"] if isinstance(r, dict)}
    chosen = rows.get(res.get("chosen"))
    if chosen is None or not isinstance(chosen.get("cost"), (int, float)):
        raise BpdError(f"{where}: its chosen method {res.get('chosen')!r} has no row with a measured cost")
    for r in rows.values():
        for k in ("step", "params_nonzero", "cost", "select_return", "teacher_select_return", "keep_return_met"):
            if k not in r:
                raise BpdError(f"{where}: row {r.get('method')!r} has no {k!r}")
    return res


def seed_row(res: dict, student: dict, teacher: dict) -> dict:
    """One seed's record from compress.json (res) and the reporting episodes of its student and the teacher."""
    from training.envs import early_where_teacher_finished

    rows = {r["method"]: r for r in res["rows"]}
    chosen = rows[res["chosen"]]
    ref = rows.get(REFERENCE)
    x = chosen["cost"] / ref["cost"] if ref and ref.get("cost") else None
    early = early_where_teacher_finished(student["terminated"], teacher["terminated"])
    share = student["return_mean"] / teacher["return_mean"]
    methods = [{k: r.get(k) for k in ("method", "step", "params_nonzero", "cost", "select_return",
                                      "teacher_select_return", "keep_return_met", "falls", "dense_steps")}
               | ({"confirm": r["confirm"]} if r.get("confirm") else {}) for r in res["rows"]]
    return {"chosen": res["chosen"], "kept": res["kept"], "confirmed": res.get("confirmed"),
            "confirm": res.get("confirm"), "rule": res["rule"],
            "cost": res["cost"], "cycles": chosen["cost"], "reference_cycles": ref["cost"] if ref else None,
            "cycles_vs_reference": x, "params_nonzero": chosen["params_nonzero"], "reporting": student,
            "return_vs_teacher": share, "early_ends": early,
            "meets_bar": bool(x is not None and x <= CYCLES_BAR and share >= KEEP and early == 0), "methods": methods}


def update(doc: dict, results: dict[int, tuple[str, dict]], seeds: list[int], student_episodes, teacher_episodes,
           machine: str | None) -> dict:
    """doc (the results file so far, {} for none) with the seeds of `results` (seed -> (where, compress.json) of
    the finished runs) it does not hold yet: each handed-over student run on the reporting episodes by
    student_episodes(where) and set against the teacher's (teacher_episodes(), run once a file). `seeds`: the seeds
    asked for, joined to the file's."""
    rows = dict(doc.get("rows", {}))
    todo = sorted(s for s in results if str(s) not in rows)
    teacher = doc.get("teacher_reporting") or (teacher_episodes() if todo else None)
    for s in todo:
        assert teacher is not None
        where, res = results[s]
        rows[str(s)] = seed_row(res, student_episodes(where), teacher) | {"evaluated_on": machine}
        r = rows[str(s)]
        print(f"seed {s}: {r['chosen']}, {100 * r['return_vs_teacher']:.1f} % of the teacher, bar "
              f"{'met' if r['meets_bar'] else 'missed'}", flush=True)
    return doc | {"seeds": sorted(set(doc.get("seeds", [])) | set(seeds)), "teacher_reporting": teacher,
                  "rows": rows}


def markdown(doc: dict) -> str:
    env = doc["env"]
    t = doc["teacher_reporting"]
    L = [f"# `bpd compress` on {env}, with its defaults", "",
         f"Written by `python benchmarks/compress_runs.py --env {env} --teacher {doc['teacher']} --dataset "
         f"{doc['dataset']} --runs RUNS --seeds {' '.join(str(s) for s in doc['seeds'])}` (the data: `bpd collect`'s "
         f"defaults, {doc['dataset_note']}); every seed's `bpd compress --seed S` with its defaults, its handed-over "
         f"student evaluated on {', '.join(sorted({str(r.get('evaluated_on')) for r in doc['rows'].values()}))}. The "
         f"student and the teacher on {t['episodes']} reporting episodes (seeds {t['seed']}-"
         f"{t['seed'] + t['episodes'] - 1}, which choose nothing); the teacher {t['return_mean']:,.1f} +- "
         f"{t['return_std']:,.1f}. Cost: what compress measured "
         "(estimated Cortex-M4F cycles, the cheaper of the compact and integer kernels, emulated), against its own run "
         f"of the paper BPD (`{REFERENCE}`) measured the same way. Issue 34's bar: <= {CYCLES_BAR}x those cycles, >= "
         f"{100 * KEEP:g} % of the teacher's reporting return, no early end where the teacher finishes.", "",
         "| seed | handed over | nonzero | est. M4F cycles (x the paper BPD's run) | reporting return (mean +- std) "
         "| % of teacher | early ends | bar |", "|---|---|---|---|---|---|---|---|"]
    for s in sorted(doc["rows"], key=int):
        r = doc["rows"][s]
        rep = r["reporting"]
        note = "" if r["kept"] and r.get("confirmed") is not False else (
            " (none kept the return)" if not r["kept"] else " (unconfirmed)")
        x = "-" if r["cycles_vs_reference"] is None else f"{r['cycles_vs_reference']:.2f}x"
        L.append(f"| {s} | `{r['chosen']}`{note} | {r['params_nonzero']} | {r['cycles']:,.0f} ({x}) | "
                 f"{rep['return_mean']:,.1f} +- {rep['return_std']:,.1f} | {100 * r['return_vs_teacher']:.1f} % | "
                 f"{r['early_ends']} of {rep['episodes']} | {'meets' if r['meets_bar'] else 'misses'} |")
    met = sum(r["meets_bar"] for r in doc["rows"].values())
    L += ["", f"The bar met on {met} of {len(doc['rows'])} seeds run, of {len(doc['seeds'])}.", ""]
    for s in sorted(doc["rows"], key=int):
        r = doc["rows"][s]
        L += [f"## Seed {s}: every method compress ran", "", f"Rule: {r['rule']}.", "",
              "| method | gradient steps given | nonzero | est. M4F cycles | selection return (% of teacher's) | keeps "
              "| falls | judged again |", "|---|---|---|---|---|---|---|---|"]
        for m in r["methods"]:
            c = m.get("confirm")
            again = "-" if not c else (f"{100 * c['return'] / c['teacher_return']:.1f} %, "
                                       f"{c['early_ends_where_teacher_finished']} falls of {c['episodes']}: "
                                       + ("holds" if c["holds"] else "does not hold"))
            given = f"{m['dense_steps']:,}" if m.get("dense_steps") else "its schedule"
            L.append(f"| `{m['method']}` | {given} | "
                     f"{m['params_nonzero']} | {m['cost']:,.0f} | {m['select_return']:,.1f} "
                     f"({100 * m['select_return'] / m['teacher_select_return']:.1f} %) | "
                     f"{'yes' if m['keep_return_met'] else 'no'} | {'-' if m['falls'] is None else m['falls']} | "
                     f"{again} |")
        L.append("")
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--dataset", required=True, help="the dataset compress distils from")
    ap.add_argument("--dataset-note", default="100,000 environment steps at 0.3 collection noise",
                    help="how the dataset was made, for the text")
    ap.add_argument("--runs", type=Path, required=True, help="compress's output root: RUNS/seed<S>")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--run", action="store_true", help="run (or resume) `bpd compress` for the seeds not finished")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compress-runs")
    a = ap.parse_args()
    try:
        from bpd.io import bpd_executable, sha256_file
        from bpd_app.evaluate import load_any
        from bpd_app.experiment.summary import _machine
        from training.teacher import load_teacher

        if a.episodes < 1 or a.eval_seed < 0 or a.eval_seed + a.episodes > 100000:
            raise BpdError("reporting episodes: at least one, on seeds from 0 to below 100000 (the selection seeds "
                           "start there)")
        if not Path(a.teacher).is_file():
            raise BpdError(f"{a.teacher}: no such teacher file")
        for s in a.seeds:
            out = a.runs / f"seed{s}"
            if a.run and not (out / "compress.json").is_file():
                cmd = [bpd_executable(), "compress", "--teacher", a.teacher, "--dataset", a.dataset, "--out", str(out),
                       "--seed", str(s)]
                print(" ".join(cmd), flush=True)
                if subprocess.run(cmd).returncode != 0:
                    raise BpdError(f"seed {s}: bpd compress failed; run this again to resume it")
        path = a.out / f"{a.env}.json"
        same = {"env": a.env, "teacher": shown(a.teacher), "teacher_sha256": sha256_file(a.teacher),
                "dataset": shown(a.dataset), "episodes": a.episodes, "eval_seed": a.eval_seed}
        try:
            doc = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError) as e:
            raise BpdError(f"{path}: unreadable ({e})") from None
        if doc and any(doc.get(k) != v for k, v in same.items() if k != "teacher"):
            raise BpdError(f"{path}: written for another teacher, dataset or reporting episodes; give another --out")
        results = {}
        for s in a.seeds:
            res_path = a.runs / f"seed{s}" / "compress.json"
            if res_path.is_file() and str(s) not in doc.get("rows", {}):
                try:
                    raw = json.loads(res_path.read_text())
                except (OSError, ValueError) as e:
                    raise BpdError(f"{res_path}: unreadable ({e})") from None
                results[s] = (str(res_path.parent), check_result(raw, str(res_path), a.env, a.dataset))
        if not doc.get("rows") and not results:
            raise BpdError(f"no finished compress run under {a.runs} (seeds {a.seeds}); give --run to run them")
        doc = update(doc | same | {"dataset_note": a.dataset_note}, results, a.seeds,
                     lambda where: reporting(a.env, load_any(str(Path(where) / "student.pt")).act, a.episodes,
                                             a.eval_seed),
                     lambda: reporting(a.env, load_teacher(a.teacher).act, a.episodes, a.eval_seed),
                     _machine().get("processor"))
        write_json(path, doc)
        write_text(a.out / f"{a.env}.md", markdown(doc))
        print(f"wrote {path}")
    except BpdError as e:
        sys.exit(f"compress_runs: {e}")


if __name__ == "__main__":
    main()
