"""The plan: what a plan file holds, reading and checking it, and the specification (and digest) of each cell.

Plan format:
    name: quick                      # names the run root ($BPD_RUNS/<name>, default ../bpd-runs/<name>)
    envs: [InvertedDoublePendulum-v5]
    seeds: [0, 1, 2]
    teachers: {InvertedDoublePendulum-v5: benchmarks/teachers/InvertedDoublePendulum-v5.npz}
    dataset: {steps: 100000, noise: 0.1, seed: 900000}   # default: 100000 steps, `bpd collect`'s noise
    eval: {episodes: 30, seed: 0}    # reporting seeds, disjoint from the seeds runs choose models on
    bench: true                      # export and measure Cortex-M4F cost of every cell
    methods:                         # label -> {method: registry name, args: {option: value}}
      bpd: {}
      bpd-constant-eta: {method: bpd, args: {eta_schedule: constant}}
      bpd-noise-0.3: {method: bpd, dataset: {noise: 0.3}}   # a dataset of its own: the plan's, these keys changed
      magnitude-prune: {needs: {bpd: bpd-constant-eta}}      # the row a sized method reads (default: the one row
                                                             # of the method it needs; BPD variants only if named)
                                 # args are the options of the method's command; seed, teacher, dataset, out, env
                                 # and resume are the runner's, set for each cell
    env_args: {InvertedDoublePendulum-v5: {steps: 100000}}   # options for every method on one of the plan's
                                 # environments (online-sac-small takes no env-level steps: its budget is
                                 # environment steps)
    results: benchmarks/results/quick  # optional; where `experiment table` commits (default benchmarks/results/<name>)
    robustness: benchmarks/results/robustness-students.json  # optional: robustness scores joined by model hash
    groups:                          # optional: named sub-tables of method labels, and a summary table
      KL schedule: [bpd, bpd-constant-eta]
Relative paths in a plan are relative to the repository (the directory holding setup.cfg) when
the plan lives inside it, else to the plan's directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from bpd.errors import BpdError
from bpd.io import read_yaml


@dataclass
class MethodSpec:
    label: str
    method: str
    args: dict
    needs: dict[str, str]  # method name it needs -> plan label providing it
    dataset: dict = dc_field(default_factory=dict)  # the keys of the plan's dataset this method collects otherwise


@dataclass
class Cell:
    env: str
    label: str
    seed: int
    dir: Path

    @property
    def key(self) -> str:
        return f"{self.env}/{self.label}/seed{self.seed}"


@dataclass
class Plan:
    path: Path
    name: str
    base: Path
    runs: Path
    envs: list[str]
    seeds: list[int]
    teachers: dict[str, Path]
    dataset: dict
    eval: dict
    bench: bool
    methods: dict[str, MethodSpec]
    env_args: dict[str, dict]
    raw: dict = dc_field(default_factory=dict)
    groups: dict[str, list[str]] = dc_field(default_factory=dict)
    results: Path | None = None  # committed results (table, cell summaries); default benchmarks/results/<name>
    robustness: Path | None = None  # robustness scores (benchmarks/robustness_students.py) the table joins

    def cells(self) -> list[Cell]:
        """Method-major, so that with few workers every environment's first method finishes early."""
        return [Cell(e, m, s, self.runs / e / m / f"seed{s}") for m in self.methods for e in self.envs
                for s in self.seeds]

    def cell_dataset(self, label: str) -> dict:
        """The dataset a method's cells learn from: the plan's, with the method's own keys in its place."""
        return self.dataset | self.methods[label].dataset

    def dataset_path(self, env: str, dataset: dict | None = None) -> Path:
        """Where a dataset of the plan's run root lives: the plan's as {env}.npz, another named by what differs."""
        diff = {k: v for k, v in (dataset or {}).items() if self.dataset.get(k) != v}
        return self.runs / "datasets" / (f"{env}.npz" if not diff else
                                         env + "".join(f".{k}{diff[k]}" for k in sorted(diff)) + ".npz")

    def cell_dataset_path(self, cell: Cell) -> Path:
        return self.dataset_path(cell.env, self.cell_dataset(cell.label))

    def committed_path(self, cell: Cell) -> Path:
        """Where `experiment table` commits the cell's summary, and where a lost run root is restored from."""
        return self.results_dir / "cells" / cell.env / cell.label / f"seed{cell.seed}.json"

    @property
    def results_dir(self) -> Path:
        return self.results or self.base / "benchmarks" / "results" / self.name

    def teacher_eval_path(self, env: str) -> Path:
        return self.runs / "teachers" / f"{env}.eval.json"

    def rel(self, p: Path | str) -> str:
        """A path as recorded in results: relative to the plan's base where possible."""
        p = Path(p)
        try:
            return str(p.resolve().relative_to(self.base))
        except ValueError:
            return str(p)


def _repo_root(start: Path) -> Path | None:
    for d in [start, *start.parents]:
        if (d / "setup.cfg").is_file() and (d / "training").is_dir():
            return d
    return None


def is_bpd(method: str) -> bool:
    """Whether a registered method is BPD's (`bpd` or one of its variants, `bpd-...`): what may stand for the `bpd`
    cell a method sized from any BPD student needs, and what the delivered student's rule chooses among."""
    return method == "bpd" or method.startswith("bpd-")


def load_plan(path: str | Path, runs: str | None = None) -> Plan:
    """Read and check a plan; every problem is one line naming the plan."""
    from bpd_app.methods import get

    p = Path(path)
    if not p.is_file():
        raise BpdError(f"{p}: no such plan file")
    raw = read_yaml(p)
    if not isinstance(raw, dict):
        raise BpdError(f"{p}: a plan is a mapping with envs, seeds, teachers and methods")
    unknown = set(raw) - {"name", "envs", "seeds", "teachers", "dataset", "eval", "bench", "methods", "env_args",
                          "description", "runs", "groups", "results", "robustness"}
    if unknown:
        raise BpdError(f"{p}: unknown plan keys: {', '.join(sorted(unknown))}")
    _check_plan_values(p, raw)
    base = _repo_root(p.resolve().parent) or p.resolve().parent

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in raw:
            raise BpdError(f"{p}: plan has no {key!r}")
        if not isinstance(raw[key], kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise BpdError(f"{p}: {key!r} must be a {' or a '.join(k.__name__ for k in kinds)}")
        return raw[key]

    name = str(raw.get("name") or p.stem)
    envs = [str(e) for e in need("envs", list)]
    seeds = need("seeds", list)
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise BpdError(f"{p}: seeds must be distinct non-negative integers")
    from training.seed_blocks import check_run_seed

    for s in seeds:
        try:
            check_run_seed(s, "seeds")
        except BpdError as err:
            raise BpdError(f"{p}: {err}") from None
    teachers = {str(k): (base / str(v)) for k, v in need("teachers", dict).items()}
    for e in envs:
        if e not in teachers:
            raise BpdError(f"{p}: no teacher for {e}")
    methods_raw = need("methods", (dict, list))
    if isinstance(methods_raw, list):
        methods_raw = {str(m): {} for m in methods_raw}
    methods_raw = {str(k): v for k, v in methods_raw.items()}
    if not envs or not methods_raw:
        raise BpdError(f"{p}: {'envs' if not envs else 'methods'} is empty: a plan runs at least one cell")
    for label in methods_raw:  # a label names a directory of every environment's cells
        if not PLAN_NAME.fullmatch(label) or ".." in label:
            raise BpdError(f"{p}: method label {label[:60]!r} must start with a letter or digit and hold only "
                           "letters, digits, '-', '_' or '.' (it names its cells' directories)")
    methods: dict[str, MethodSpec] = {}
    for label, spec in methods_raw.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise BpdError(f"{p}: method {label!r} takes method, args, needs and dataset")
        if extra := sorted(map(str, set(spec) - {"method", "args", "needs", "dataset"})):
            raise BpdError(f"{p}: method {label!r} takes method, args, needs and dataset, not {', '.join(extra)}"
                           " (a method's options go under args:)")
        m = _method(p, str(label), str(spec.get("method", label)))
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise BpdError(f"{p}: args of {label!r} must be a mapping")
        _check_runner_args(p, args, f"args of {label!r}")
        given = spec.get("needs") or {}
        if not isinstance(given, dict):
            raise BpdError(f"{p}: needs of {label!r} maps a method it needs to a plan label ({{bpd: LABEL}})")
        if stray := sorted(map(str, set(given) - set(m.needs))):
            what = f"needs only {', '.join(m.needs)}" if m.needs else "needs no other cell"
            raise BpdError(f"{p}: needs of {label!r} names {', '.join(stray)}, but method {m.name!r} {what}")
        own = spec.get("dataset") or {}
        _check_dataset(p, own, f"dataset of {label!r}")
        methods[str(label)] = MethodSpec(str(label), m.name, dict(args), {}, dict(own))
    for ms in methods.values():  # resolve what each method needs to plan labels
        m = get(ms.method)
        given = (methods_raw[ms.label] or {}).get("needs") or {}
        for need_name in m.needs:
            if need_name in given:
                label = str(given[need_name])
                if label not in methods:
                    raise BpdError(f"{p}: {ms.label!r} needs: {{{need_name}: {label}}} names no method of the plan "
                                   f"(its labels: {', '.join(methods)})")
            else:
                providers = [x.label for x in methods.values() if x.method == need_name]
                label = need_name if need_name in providers else (providers[0] if len(providers) == 1 else "")
            variant = (need_name == "bpd" and need_name in given and m.sized_by_any_bpd  # a BPD variant, named,
                       and label in methods and is_bpd(methods[label].method))  # for a method reading any
            if label not in methods or not (methods[label].method == need_name or variant):
                raise BpdError(f"{p}: {ms.label!r} needs a {need_name!r} cell; add one to methods "
                               f"or name it with needs: {{{need_name}: LABEL}}")
            ms.needs[need_name] = label
        if m.needs_bench and raw.get("bench") is not True:
            raise BpdError(f"{p}: method {ms.label!r} is sized from its {', '.join(ms.needs.values())} cell's "
                           "export or measured cycles, which only a plan with bench: true makes")
    from training.collect import CollectConfig
    fields = CollectConfig.__dataclass_fields__  # `bpd collect`'s defaults, one source
    noise, seed = fields["noise"].default, fields["seed"].default
    dataset = {"steps": 100_000, "noise": noise, "seed": seed} | (raw.get("dataset") or {})
    ev = {"episodes": 30, "seed": 0} | (raw.get("eval") or {})
    if int(ev["episodes"]) < 1:
        raise BpdError(f"{p}: eval episodes must be at least 1")
    if int(ev["seed"]) + int(ev["episodes"]) > 100_000:
        raise BpdError(f"{p}: evaluation seeds must stay below 100000 (higher seeds choose models in training)")
    env_args = {str(k): dict(v or {}) for k, v in (raw.get("env_args") or {}).items()}
    for e, a in env_args.items():
        if e not in envs:
            raise BpdError(f"{p}: env_args names {e}, which is not among the plan's envs ({', '.join(envs)})")
        _check_runner_args(p, a, f"env_args of {e}")
    groups_raw = raw.get("groups") or {}
    if not isinstance(groups_raw, dict) or not all(isinstance(v, list) for v in groups_raw.values()):
        raise BpdError(f"{p}: groups maps a table name to a list of method labels")
    groups = {str(g): [str(x) for x in labels] for g, labels in groups_raw.items()}
    for g, labels in groups.items():
        missing = [x for x in labels if x not in methods]
        if missing:
            raise BpdError(f"{p}: group {g!r} names labels that are not in methods: {', '.join(missing)}")
    root = Path(runs) if runs else Path(os.environ.get("BPD_RUNS", base.parent / "bpd-runs")) / name
    for key in ("results", "robustness"):
        v = raw.get(key)
        if v and (Path(str(v)).is_absolute() or ".." in Path(str(v)).parts):
            inside = "the repository" if _repo_root(p.resolve().parent) else "the plan's directory"
            raise BpdError(f"{p}: {key} must be a relative path inside {inside}, {base} (no '..'), "
                           f"got {str(v)[:60]!r}")
    results = base / str(raw["results"]) if raw.get("results") else None
    robustness = base / str(raw["robustness"]) if raw.get("robustness") else None
    plan = Plan(p, name, base, root, envs, [int(s) for s in seeds], teachers, dataset, ev,
                bool(raw.get("bench", False)), methods, env_args, raw, groups, results, robustness)
    check_plan_commands(plan)
    return plan


PLAN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a plan's name names directories


def _check_plan_values(p: Path, raw: dict) -> None:
    """What a plan holds, checked whole when it is read (not when each cell runs): a name that stays a
    single directory, no NaN or Inf anywhere, known environments, whole numbers where counts go."""
    name = str(raw.get("name") or p.stem)
    if not PLAN_NAME.fullmatch(name) or ".." in name:
        raise BpdError(f"{p}: plan name {name[:60]!r} must be letters, digits, '-', '_' or '.' (it names the "
                       "plan's run root and results directory)")

    def finite(v: Any, where: str) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise BpdError(f"{p}: {where} must be a finite number (got {v})")
        for k, x in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
            finite(x, f"{where}.{k}" if where else str(k))

    finite(raw, "")
    block = raw.get("eval") or {}
    if not isinstance(block, dict):
        raise BpdError(f"{p}: eval must be a mapping")
    if unknown := sorted(map(str, set(block) - {"episodes", "seed"})):
        raise BpdError(f"{p}: eval takes episodes and seed, not {', '.join(unknown)}")
    if not isinstance(raw.get("bench", False), bool):
        raise BpdError(f"{p}: bench must be true or false (got {str(raw['bench'])[:40]!r})")
    _check_whole(p, block, ("episodes", "seed"), "eval")
    _check_dataset(p, raw.get("dataset") or {}, "dataset")
    env_args = raw.get("env_args") or {}
    if not isinstance(env_args, dict) or not all(isinstance(v, dict) or v is None for v in env_args.values()):
        raise BpdError(f"{p}: env_args maps an environment to a mapping of options")


# options the runner sets for every cell itself: a plan that set them would train every seed alike, or from a file
# that is not the cell's (a method's own dataset is its `dataset:` key, not an arg)
RUNNER_ARGS = ("seed", "teacher", "dataset", "out", "env", "resume")


def _check_runner_args(p: Path, args: dict, where: str) -> None:
    if taken := [str(k) for k in args if str(k).replace("-", "_") in RUNNER_ARGS]:
        hint = " (a method's own dataset: its `dataset:` key beside args)" if "dataset" in taken else ""
        raise BpdError(f"{p}: {where} set {', '.join(taken)}, which the runner sets for each cell{hint}")


def _method(p: Path, label: str, name: str):
    """The registered method a plan's label names, or one line naming the label and the closest names."""
    import difflib

    from bpd_app.methods import METHODS, get

    if name in METHODS:
        return get(name)
    close = difflib.get_close_matches(name, list(METHODS), n=3)
    hint = (f"did you mean {' or '.join(map(repr, close))}? bpd_app/methods.py registers every method" if close
            else f"known: {', '.join(sorted(METHODS))}")
    where = f"method {label!r}: " if name != label else ""
    raise BpdError(f"{p}: {where}unknown method {name!r} ({hint})")


def _check_whole(p: Path, block: dict, fields: tuple[str, ...], where: str) -> None:
    for f in fields:
        if f in block and (isinstance(block[f], bool) or not isinstance(block[f], int) or block[f] < 0):
            raise BpdError(f"{p}: {where}.{f} must be a whole number >= 0 (got {str(block[f])[:40]!r})")


def _check_dataset(p: Path, block: Any, where: str) -> None:
    """A dataset block (the plan's, or a method's own keys): steps and seed whole numbers, noise a number >= 0."""
    if not isinstance(block, dict):
        raise BpdError(f"{p}: {where} must be a mapping")
    unknown = set(block) - {"steps", "noise", "seed"}
    if unknown:
        raise BpdError(f"{p}: {where} takes steps, noise and seed, not {', '.join(sorted(map(str, unknown)))}")
    _check_whole(p, block, ("steps", "seed"), where)
    noise = block.get("noise", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise BpdError(f"{p}: {where}.noise must be a number >= 0 (got {str(noise)[:40]!r})")


def _check_env_id(env_id: str, p: Path) -> None:
    """A registered Gymnasium id (a `module:` prefix imported first); nothing is built."""
    import importlib

    import gymnasium as gym

    from training.envs import RIG_ENV

    if env_id.startswith(RIG_ENV):
        raise BpdError(f"{p}: environment {env_id!r}: a rig's YAML path is an environment of the commands, not of a "
                       "plan (a plan's environments name its run and results directories)")
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (ImportError, gym.error.Error) as e:
        raise BpdError(f"{p}: unknown or unavailable environment {env_id!r} ({str(e).splitlines()[0][:80]})") from None


# what a needed cell's result.json holds that the sized methods read (its nonzero count, widths, export), so that
# the args of a method sized from it are checked when the plan is read, not hours later when that cell has trained
STAND_IN_RESULT = {"params_nonzero": 100, "train": {"hidden": [8, 8]}, "export": {"widths": [1, 8, 8, 1]}}


def check_plan_commands(plan: Plan) -> None:
    """Every method's command line, as a cell would run it, parses as `bpd` would parse it: an unknown
    option, a value of the wrong type or a non-finite number in a method's args is refused now. A method
    sized from a needed cell's result (the baselines' size and size_from) is built on a stand-in of that result
    with the environment's teacher, and refused where that fails, unless it reads the needed cell's files too."""
    from bpd_app.methods import REFERENCE_ARG, CellInputs, get, reference_cycles
    from bpd_app.parser import check_command
    from training.teacher import load_teacher

    metas = {}  # the teachers that can be read (a missing or broken one is refused before a run: check_plan_teachers)
    for e in plan.envs:
        try:
            metas[e] = {"train": load_teacher(plan.teachers[e]).train}
        except BpdError:
            pass
    for ms in plan.methods.values():
        m = get(ms.method)
        for env in plan.envs:
            args = {k: v for k, v in plan.env_args.get(env, {}).items() if k not in m.skips_env_args} | ms.args
            if REFERENCE_ARG in args:  # read now, not when the cell runs after its bpd cell has trained
                for seed in plan.seeds:
                    try:
                        reference_cycles(CellInputs(env, seed, "", "", plan.runs, args))
                    except BpdError as e:
                        raise BpdError(f"{plan.path}: method {ms.label!r}: {e}") from None
            teacher = str(plan.teachers[env]) if env in metas else "teacher.npz"
            inputs = CellInputs(env, plan.seeds[0], teacher, "dataset.npz", plan.runs / "check", args,
                                teacher_meta=metas.get(env, {}))
            where = f"{plan.path}: method {ms.label!r} for {env}"
            error: Exception | None = None
            try:
                argv = m.command(inputs)
            except Exception as e:
                error = e
            if error is not None and ms.needs:  # sized from a needed cell's result: checked on a stand-in result
                stand_in = replace(inputs, deps={label: STAND_IN_RESULT for label in ms.needs.values()})
                try:
                    argv, error = m.command(stand_in), None
                except Exception as e:
                    if m.reads_needed_products or env not in metas:
                        continue  # reads the needed cell's files (or the teacher's) too: checked when it runs
                    error = e
            if error is not None:
                why = str(error).splitlines()[0][:80] if str(error) else error.__class__.__name__
                raise BpdError(f"{where}: its args do not make a command ({why})") from None
            check_command(argv, where)


def check_plan_envs(plan: Plan) -> None:
    """Every environment of the plan is a registered Gymnasium id (the commands check this when they read
    a plan; nothing is built)."""
    for e in plan.envs:
        _check_env_id(e, plan.path)


def check_plan_teachers(plan: Plan) -> None:
    """Before a run: every environment's teacher file is there, and the plan's reporting episodes are none of those
    that chose it (its training evaluations' seeds, which its file records)."""
    from bpd_app.evaluate import seed_ranges
    from training.teacher import load_teacher

    first, last = int(plan.eval["seed"]), int(plan.eval["seed"]) + int(plan.eval["episodes"]) - 1
    for e in plan.envs:
        if not plan.teachers[e].is_file():
            raise BpdError(f"{plan.path}: the teacher of {e}, {plan.rel(plan.teachers[e])}, is missing")
        train = load_teacher(plan.teachers[e]).train
        for _, lo, hi in seed_ranges([("", (train if isinstance(train, dict) else {}).get("train_eval_seeds"))]):
            if first <= hi and lo <= last:
                raise BpdError(f"{plan.path}: eval seeds {first}..{last} overlap {lo}..{hi}, the seeds that chose the "
                               f"teacher of {e} (its training evaluations); move eval's seed")


def cell_spec(plan: Plan, cell: Cell) -> dict:
    """Everything that defines a cell's result; a finished cell is reused only if this matches."""
    from bpd.io import sha256_file
    from bpd_app.methods import REFERENCE_ARG, CellInputs, get, reference_cycles

    ms = plan.methods[cell.label]
    method = get(ms.method)
    teacher = plan.teachers[cell.env]
    env_args = {k: v for k, v in plan.env_args.get(cell.env, {}).items() if k not in method.skips_env_args}
    spec = {"env": cell.env, "label": cell.label, "method": ms.method, "seed": cell.seed,
            "args": env_args | ms.args, "needs": ms.needs,
            "teacher_sha256": sha256_file(teacher) if teacher.is_file() else None,
            "dataset": plan.cell_dataset(cell.label), "eval": plan.eval, "bench": plan.bench}
    args = env_args | ms.args
    revision = method.revision_of(args) if method.revision_of else method.revision
    if revision > 1:  # a method's first version leaves the key out, so its cells keep their digests
        spec["method_revision"] = revision
    if REFERENCE_ARG in args:  # the figure the cut is sized to, so that a new reference makes the cell stale
        spec["reference_cycles"] = reference_cycles(CellInputs(cell.env, cell.seed, "", "", cell.dir, args))
    return spec


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _dep_cell(plan: Plan, cell: Cell, label: str) -> Cell:
    return Cell(cell.env, label, cell.seed, plan.runs / cell.env / label / f"seed{cell.seed}")


def stale_reason(plan: Plan, cell: Cell, res: dict, digest: str | None = None) -> str | None:
    """Why a finished cell's summary no longer answers the plan, or None when it does: it was made
    under another specification, or from a cell it needs (BPD's, which sizes the baselines) that has
    since been run under another one, or trained again into another student (needs_products: the hash of
    the student it was sized from). Summaries written before they recorded what they were made from
    (needs_digests, needs_products) are judged by their own specification alone."""
    if res.get("spec_digest") not in (None, digest or _digest(cell_spec(plan, cell))):
        return "was run with another specification"
    made_from = res.get("needs_digests")
    if made_from is not None:
        for label in plan.methods[cell.label].needs.values():
            if made_from.get(label) != _digest(cell_spec(plan, _dep_cell(plan, cell, label))):
                return f"was made from a {label} cell that has since been run with another specification"
    for label, sha in (res.get("needs_products") or {}).items():
        now = _needed_product(plan, _dep_cell(plan, cell, label)) if label in plan.methods else None
        if sha and now and now != sha:
            return f"was made from a {label} cell that has since been trained again into another student"
    return None


def _needed_product(plan: Plan, dep: Cell) -> str | None:
    """The hash of the student a needed cell holds now: its run root's result, else its committed summary."""
    for path in (dep.dir / "result.json", plan.committed_path(dep)):
        try:
            res = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(res, dict) and isinstance(res.get("product_sha256"), str):
            return res["product_sha256"]
    return None
