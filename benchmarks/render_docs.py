"""Write the results documents from their templates and the committed results files.

The readings (sentences) of docs/results.md are hand-written in docs/templates/results.md; every figure in
them is a Jinja2 expression over the files under benchmarks/results/, so a figure cannot drift from the
file it comes from. README.md's headline table is the block between its `<!-- generated: NAME -->` and
`<!-- end generated -->` markers, rendered from docs/templates/NAME.md.

    python benchmarks/render_docs.py            # write the documents
    python benchmarks/render_docs.py --check    # exit 1, naming each line that differs from its render

tests/test_docs.py runs the check (and shows that editing one committed figure makes it fail).
"""

from __future__ import annotations

import argparse
import ast
import collections
import difflib
import json
import re
import shlex
import statistics
import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python benchmarks/render_docs.py"
# whole documents: template -> output, both relative to the repository
DOCUMENTS = {"docs/templates/results.md": "docs/results.md", "docs/templates/provenance.md": "docs/provenance.md"}
# generated blocks inside hand-written documents
BLOCKS = ("README.md",)
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) [^>]*-->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def f(x: float, d: int = 0) -> str:
    """A figure with d decimals and no thousands separator: 5934, 92.3."""
    return f"{x:.{d}f}"


def c(x: float, d: int = 0) -> str:
    """A count with thousands separators: 1,883."""
    return f"{x:,.{d}f}"


def pct(x: float, d: int = 1) -> str:
    """A share as a percentage figure, without the sign: 0.9232 -> 92.3."""
    return f"{100 * x:.{d}f}"


def sf(x: float, d: int = 1) -> str:
    """A signed figure with d decimals: +3.2, -0.4."""
    return f"{x:+.{d}f}"


def sci(x: float, d: int = 1) -> str:
    """Scientific notation without exponent padding: 2.0e-6."""
    mantissa, exp = f"{x:.{d}e}".split("e")
    return f"{mantissa}e{int(exp)}"


def span(xs: Iterable[float], fmt: Callable[..., str] | str = c, d: int = 0, sep: str = "-") -> str:
    """The range of figures as min-max (one figure where both ends print alike): 1,883-1,984."""
    fn = FILTERS[fmt] if isinstance(fmt, str) else fmt
    xs = list(xs)
    lo, hi = fn(min(xs), d), fn(max(xs), d)
    return lo if lo == hi else f"{lo}{sep}{hi}"


def kb(x: float, d: int = 1) -> str:
    """Bytes as kB (1000 B): 8504 -> 8.5."""
    return f"{x / 1000:.{d}f}"


def comp(x: float) -> float:
    """1 - x: a ratio below 1 as the share saved."""
    return 1 - x


def ratio(a: float, b: float, d: int = 1) -> str:
    """a / b as a factor figure: 2.5."""
    return f"{a / b:.{d}f}"


def diff(a: float, b: float) -> str:
    """a - b as the difference of the two figures as printed (rounded to units first): 6013/5934 -> 79."""
    return f"{round(a) - round(b):.0f}"


def per(a: Iterable[float], b: Iterable[float]) -> list[float]:
    """Seed by seed a / b."""
    return [x / y for x, y in zip(a, b)]


def fewer(a: Iterable[float], b: Iterable[float]) -> list[float]:
    """Seed by seed the share by which a is below b: 1 - a / b."""
    return [1 - x / y for x, y in zip(a, b)]


def minus(a: Iterable[float], b: Iterable[float]) -> list[float]:
    """Seed by seed a - b, of the figures as printed (rounded to units first)."""
    return [round(x) - round(y) for x, y in zip(a, b)]


def rates(controllers: Iterable[dict[str, Any]], conditions: Iterable[str]) -> list[float]:
    """The success rates of rotary.json's controllers under the conditions named."""
    conditions = list(conditions)
    return [ctrl["conditions"][cond]["success_rate"] for ctrl in controllers for cond in conditions]


def dense(widths: list[int]) -> int:
    """The weights and biases of a dense network of these widths."""
    return sum(i * o + o for i, o in zip(widths[:-1], widths[1:]))


def quartiles(xs: Iterable[float]) -> list[float]:
    """The lower quartile, median and upper quartile (statistics.quantiles, exclusive method)."""
    return statistics.quantiles(list(xs), n=4)


def steps_apart(curve: dict[str, list[float]], after: float) -> list[float]:
    """The changes of return between consecutive periodic evaluations of a curve, from env step `after` on."""
    pts = [(s, r) for s, r in zip(curve["env_steps"], curve["return"]) if s >= after]
    return [abs(b[1] - a[1]) for a, b in zip(pts, pts[1:])]


def yaml_file(rel: str) -> Any:
    """A YAML file of the repository (a plan, a rig, the teachers' configuration), relative to its root, read as the
    project reads it (bpd.io.read_yaml: 5e-4 a number); a rig with its `base:` under it (rig_yaml.py)."""
    from bpd.io import read_yaml
    from firmware_host.rig.rig_yaml import RIGS, read_rig_yaml

    p = ROOT / rel
    return read_rig_yaml(p)[0] if p.resolve().parent == RIGS else read_yaml(p)


def _module(spec: str) -> tuple[ast.Module, str]:
    """"training.distill_config:DistillConfig" -> the parsed source of training/distill_config.py and the name."""
    module, name = spec.split(":")
    return ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text()), name


def defaults(spec: str) -> dict[str, Any]:
    """A configuration dataclass's defaults, read from the code's own definition (its `name: T = field(DEFAULT,
    ...)` or `name: T = DEFAULT` lines, DEFAULT a literal or a module-level constant's name, without importing it):
    defaults("training.distill_config:DistillConfig")."""
    tree, name = _module(spec)
    module = spec.split(":")[0]
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise KeyError(f"no class {spec}")
    out: dict[str, Any] = {}
    for st in cls.body:
        if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
            value = st.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "field":
                if not value.args:
                    continue
                value = value.args[0]
            try:
                out[st.target.id] = (constant(f"{module}:{value.id}") if isinstance(value, ast.Name)
                                     else ast.literal_eval(value))
            except (ValueError, KeyError):
                continue
    return out


def constant(spec: str) -> Any:
    """A module-level constant of the code, read from its definition (followed through a `from M import NAME` of the
    module to M's): constant("bpd_app.experiment.stats:BAR")."""
    tree, name = _module(spec)
    for st in tree.body:
        targets = st.targets if isinstance(st, ast.Assign) else [st.target] if isinstance(st, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and st.value is not None:
            return ast.literal_eval(st.value)
        if isinstance(st, ast.ImportFrom) and st.module and not st.level and any(
                a.name == name and a.asname is None for a in st.names):
            return constant(f"{st.module}:{name}")
    raise KeyError(f"no constant {spec}")


def common_form(res: dict) -> str | None:
    """The integer kernel's form most of a delivered.json's candidates were measured with (None: none recorded)."""
    forms = collections.Counter(c["kernel_form"] for r in res["rows"] for c in r["candidates"] if c.get("kernel_form"))
    return forms.most_common(1)[0][0] if forms else None


def same_student(a: dict, b: dict) -> bool:
    """Two delivered.json records of one cell are the same student (its nonzero count and reporting return to the
    bit): a cell trained again on the same kind of machine reproduces them; one cut to other cycles does not."""
    return a["params_nonzero"] == b["params_nonzero"] and a["return_mean"] == b["return_mean"]


def script_options(rel: str) -> dict[str, Any]:
    """A script's command-line defaults, read from its own `add_argument(..., default=...)` calls (without
    running it): {"--distill-steps": 60000, ...}."""
    out: dict[str, Any] = {}
    for node in ast.walk(ast.parse((ROOT / rel).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for kw in node.keywords:
                if kw.arg == "default":
                    try:
                        value = ast.literal_eval(kw.value)
                    except ValueError:
                        continue
                    out.update({n: value for n in names})
    return out


def command_options(command: str, rel: str) -> dict[str, Any]:
    """The options a recorded command line of script `rel` ran with: the script's defaults, overridden by the
    options the command gives (a flag alone: True; one value: of its default's type; more: a list)."""
    opts = script_options(rel)
    tokens = shlex.split(command)
    for i, tok in enumerate(tokens):
        if not tok.startswith("--"):
            continue
        values = []
        for v in tokens[i + 1:]:
            if v.startswith("--"):
                break
            values.append(v)
        default = opts.get(tok)
        if not values:
            opts[tok] = True
        elif len(values) == 1 and isinstance(default, (int, float)) and not isinstance(default, bool):
            opts[tok] = type(default)(values[0])
        else:
            opts[tok] = values[0] if len(values) == 1 else values
    return opts


def script_call(rel: str, first: str, func: str = "bpd") -> dict[str, str]:
    """The options a script passes as literals in its `func(first, ...)` call (say `bpd("distill", ...)`, or
    `bpd("student", "select", ...)` for first="student select"): {"--gamma": "0.998", ...}; options whose value
    the call computes are left out."""
    words = first.split()
    for node in ast.walk(ast.parse((ROOT / rel).read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == func):
            continue
        args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
        if args[:len(words)] == words:
            return {a: b for a, b in zip(args, args[1:])
                    if isinstance(a, str) and a.startswith("--") and isinstance(b, str) and not b.startswith("--")}
    raise KeyError(f"{rel} has no {func}({first!r}, ...) call")


FILTERS: dict[str, Callable[..., str]] = {"f": f, "c": c, "pct": pct, "span": span, "kb": kb, "sci": sci, "sf": sf}


class Results:
    """The committed results files under one root, read once each."""

    def __init__(self, root: Path):
        self.root = root
        self._read: dict[str, Any] = {}

    def json(self, rel: str) -> Any:
        if rel not in self._read:
            self._read[rel] = json.loads((self.root / rel).read_text())
        return self._read[rel]

    def optional(self, rel: str) -> Any:
        """A results file a document mentions only once it exists (a plan still running): None until then."""
        return self.json(rel) if (self.root / rel).is_file() else None

    def row(self, plan: str, env: str, label: str) -> dict[str, Any]:
        """One row of a plan's table (`bpd experiment table`'s aggregates), with its per-seed figures as lists
        (r: return, vs: share of the teacher, nz: nonzero, early: early ends where the teacher finishes)."""
        rows = [a for a in self.json(f"{plan}/table.json")["aggregates"] if a["env"] == env and a["label"] == label]
        if len(rows) != 1:
            raise KeyError(f"{plan}/table.json has {len(rows)} rows for {env} {label}")
        a = dict(rows[0])
        seeds = sorted(a.get("per_seed", []), key=lambda s: s["seed"])
        for key, field in (("r", "return"), ("vs", "vs_teacher"), ("nz", "nonzero"), ("early", "early")):
            a[key] = [s[field] for s in seeds]
        return a

    def control(self, plan: str, env: str, label: str) -> dict[str, Any]:
        """One row of a plan's control-policy comparison (benchmarks/control_policy.py), with the mean and
        population std over seeds of its nominal and randomised returns and, per seed, randomised / nominal."""
        rows = [r for r in self.json(f"{plan}/control.json")["rows"] if r["env"] == env and r["label"] == label]
        if len(rows) != 1:
            raise KeyError(f"{plan}/control.json has {len(rows)} rows for {env} {label}")
        r = dict(rows[0])
        for key in ("nominal", "randomised"):
            if r[key]:
                r[f"{key}_mean"], r[f"{key}_std"] = statistics.fmean(r[key]), statistics.pstdev(r[key])
        r["kept"] = [b / a for a, b in zip(r["nominal"], r["randomised"])]
        return r

    def cells(self, plan: str, env: str, label: str) -> list[dict[str, Any]]:
        """A row's committed cell summaries, by seed, each with `density`: its nonzero parameters over a dense
        network of its collapsed widths (the share of weights kept between the units that remain) and `removed`:
        the share of the student's parameters pruned; `with_units`: the share of those that went with a whole unit."""
        out = []
        for p in sorted((self.root / plan / "cells" / env / label).glob("seed*.json"), key=lambda p: int(p.stem[4:])):
            cell = dict(self.json(str(p.relative_to(self.root))))
            cell["removed"] = 1 - cell["params_nonzero"] / cell["params_total"]
            if cell.get("export"):
                kept = dense(cell["export"]["widths"])
                cell["density"] = cell["export"]["params_nonzero"] / kept
                pruned = cell["params_total"] - cell["params_nonzero"]
                cell["with_units"] = (cell["params_total"] - kept) / pruned if pruned else None
            out.append(cell)
        return out


CUT = "bpd-units-finetune-pairs-warmup"
# The equal-cost plans' budgets (hopper-dense, hc-dense): per share of the `bpd` cells' cycles, BPD's rows at it and
# the dense rows at it in order of preference: the one chosen as the -sure cuts are (30 selection episodes, falls set
# aside), so that the comparison differs in the student alone, where the plan runs it; a plan is judged on the budgets
# whose rows it runs
DENSE_BUDGETS = (("0.49", [f"{CUT}-c50-visits-sure"], ["dense-c50-sure", "dense-c50"]),
                 ("0.3", [f"{CUT}-c30-visits-sure", f"{CUT}-c30-visits-sure-dense"], ["dense-c30-sure", "dense-c30"]))


def confirm_falls(rec: dict[str, Any]) -> int:
    """A confirm record's falls (benchmarks/delivered.py, `bpd compress --confirm`): its early ends where the teacher
    finished and its low-return episodes."""
    return int(rec["early_ends_where_teacher_finished"]) + int(rec.get("low_episodes", 0))


def kept(cell: dict[str, Any]) -> bool:
    """A cell that kept 99 % of the teacher's reporting return with no early end where the teacher finished."""
    return cell["return_vs_teacher"] >= 0.99 and cell["early_terminations_where_teacher_finished"] == 0


def rising(cell: dict[str, Any]) -> bool:
    """A cell whose periodic evaluation return rose between its run's last two evaluations (still learning)."""
    r = ((cell.get("train") or {}).get("curve") or {}).get("return") or []
    return len(r) >= 2 and r[-1] > r[-2]


def equal_cost(res: Results, plan: str, env: str) -> list[dict[str, Any]]:
    """Per budget of DENSE_BUDGETS where the plan runs a dense row and at least one of BPD's rows (rows matched by
    the method they run, whatever their labels): the dense row judged (the first of the budget's the plan runs),
    the seeds every judged row has run, on those the seeds each BPD row and the dense row kept the return, whether
    the dense network kept it on as many or more than every BPD row, each BPD row's share of the teacher's return
    less the dense row's, seed by seed (gap), and whether every row has run every seed of the plan (complete: what a
    verdict needs)."""
    spec = yaml_file(f"benchmarks/plans/{plan}.yaml")
    labels: dict[str, list[str]] = {}  # method -> the plan's rows running it (a row's label names its method or not)
    for label, row in spec["methods"].items():
        labels.setdefault((row or {}).get("method", label), []).append(label)
    out = []
    for share, every, denses in DENSE_BUDGETS:
        bpds = [lab for m in every for lab in labels.get(m, [])]
        dn = next((lab for d in denses for lab in labels.get(d, [])), None)
        if dn is None or not bpds:
            continue
        rows = {lab: {x["seed"]: x for x in res.cells(plan, env, lab)} for lab in [*bpds, dn]}
        planned = bpds
        complete = all(sorted(r) == sorted(spec["seeds"]) for r in rows.values())
        bpds = [b for b in bpds if rows[b]] or bpds  # a BPD row none of whose cells has run yet is left out
        rows = {lab: rows[lab] for lab in [*bpds, dn]}
        ran = sorted(set.intersection(*(set(r) for r in rows.values())))
        n = {lab: sum(kept(r[sd]) for sd in ran) for lab, r in rows.items()}
        gap = {b: [rows[b][sd]["return_vs_teacher"] - rows[dn][sd]["return_vs_teacher"] for sd in ran] for b in bpds}
        out.append({"share": share, "seeds": ran, "dense_row": dn, "dense": n[dn], "bpd": [n[b] for b in bpds],
                    "bpd_rows": bpds, "gap": gap,
                    "dense_as_good": n[dn] >= max(n[b] for b in bpds), "complete": complete,
                    "not_run": [b for b in planned if b not in bpds],
                    "none_kept": n[dn] == 0 and max(n[b] for b in bpds) == 0})
    return out


def environment(results: Path) -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, loader=jinja2.FileSystemLoader(ROOT),
                             extensions=["jinja2.ext.do"])
    res = Results(results)
    env.tests["kept"] = kept
    env.tests["rising"] = rising
    env.filters.update(FILTERS, comp=comp, share_of=lambda x, total: x / total, absdiff=lambda x, y: abs(x - y),
                       multiply=lambda x, k: x * k,
                       rowmean=lambda label, plan, task: res.row(plan, task, label)["return_mean"])
    env.globals.update(FILTERS, ratio=ratio, diff=diff, per=per, fewer=fewer, minus=minus, dense=dense, rates=rates,
                       json=res.json, optional=res.optional, row=res.row, cells=res.cells, control=res.control,
                       equal_cost=partial(equal_cost, res), kept=kept, confirm_falls=confirm_falls,
                       min=min, max=max, sum=sum,
                       len=len, sorted=sorted, abs=abs, round=round, zip=zip, mean=statistics.fmean,
                       pstd=statistics.pstdev, median=statistics.median, quartiles=quartiles, steps_apart=steps_apart,
                       yaml=yaml_file, plan=lambda name: yaml_file(f"benchmarks/plans/{name}.yaml"),
                       defaults=defaults, constant=constant, script_options=script_options,
                       command_options=command_options, script_call=script_call,
                       common_form=common_form, same_student=same_student)
    return env


def render(results: Path = ROOT / "benchmarks" / "results") -> dict[str, str]:
    """Every generated document's text, keyed by its path relative to the repository."""
    env = environment(results)
    out: dict[str, str] = {}
    for template, doc in DOCUMENTS.items():
        banner = f"<!-- generated by `{COMMAND}` from {template} and benchmarks/results/: edit those, not this -->\n"
        out[doc] = banner + env.get_template(template).render()
    for doc in BLOCKS:
        text = (ROOT / doc).read_text()
        out[doc] = BLOCK.sub(lambda m: m[1] + env.get_template(f"docs/templates/{m['name']}.md").render() + m[4],
                             text)
    return out


def check(results: Path = ROOT / "benchmarks" / "results") -> list[str]:
    """The lines where a committed document differs from its render, as unified-diff lines (none: in step)."""
    problems: list[str] = []
    for doc, text in render(results).items():
        have = (ROOT / doc).read_text()
        if have != text:
            problems += list(difflib.unified_diff(have.splitlines(), text.splitlines(), f"{doc} (committed)",
                                                  f"{doc} (rendered)", n=0, lineterm=""))
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                    help="the results files to render from")
    args = ap.parse_args()
    if args.check:
        problems = check(args.results)
        print("\n".join(problems) if problems else "documents in step with their results files")
        sys.exit(1 if problems else 0)
    for doc, text in render(args.results).items():
        (ROOT / doc).write_text(text)
        print(f"wrote {doc}")


if __name__ == "__main__":
    main()
