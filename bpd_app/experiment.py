"""`bpd experiment`: grids of runs (environments x methods x seeds x overrides) and their tables.

A plan is a YAML file (see benchmarks/plans/). Every cell is an ordinary run directory under the
plan's run root, trained by the `bpd` command its method builds (bpd_app/methods.py) and then
evaluated, exported and measured by `bpd evaluate`, `bpd export` and `bpd bench`. The runner only
schedules: a cell whose result.json exists is skipped, an interrupted one resumes (each stage
skips what it finished; distillation and teacher training resume from their checkpoints), a
failed one records its error in cell.json and the others go on. Cells run in local worker
threads, each driving `bpd` subprocesses, or as Ray tasks on a cluster (`--engine ray`; the run
root must then be a path every node sees).

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
    env_args: {Hopper-v5: {steps: 100000}}   # options for every method on one environment (online-sac-small
                                             # takes no env-level steps: its budget is environment steps)
    results: benchmarks/results/quick  # optional; where `experiment table` commits (default benchmarks/results/<name>)
    groups:                          # optional: named sub-tables of method labels, and a summary table
      KL schedule: [bpd, bpd-constant-eta]
Relative paths in a plan are relative to the repository (the directory holding setup.cfg) when
the plan lives inside it, else to the plan's directory.

The run root is disposable; the committed results are not. `experiment table` commits every finished
cell's summary (result.json: the figures, the specification it ran under and its digest, its
evaluation curve) under the plan's results directory. A cell whose run directory is missing but
whose committed summary was made under the plan's current specification counts as done: `experiment
run` restores it into the run root (cells that need it read it there) and does not train it again,
and `experiment table` and `status` read it. Only what the summary holds survives a lost run root:
checkpoints, logs and datasets do not.

A cell sized from another (a baseline or ablation from BPD's cell) records that cell's digest
(needs_digests). When the cell it needs is later run under another specification, its own result
no longer answers the plan: it is neither restored, nor counted as done, nor tabulated, and the
table names it among the failed cells. A table never writes a summary made under another
specification over a committed one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import numpy as np

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import bpd_executable, read_yaml, write_json, write_text

# D4RL normalisation references (random, expert) for the locomotion tasks.
D4RL_REFS = {"HalfCheetah": (-280.178953, 12135.0), "Hopper": (-20.272305, 3234.3),
             "Walker2d": (1.629008, 4592.3)}
BENCH_TARGET = "cortex-m4f"


def d4rl_score(env_id: str, ret: float) -> float | None:
    key = env_id.split("-")[0]
    if key not in D4RL_REFS:
        return None
    lo, hi = D4RL_REFS[key]
    return 100.0 * (ret - lo) / (hi - lo)


# --------------------------------------------------------------------------- the plan


@dataclass
class MethodSpec:
    label: str
    method: str
    args: dict
    needs: dict[str, str]  # method name it needs -> plan label providing it


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

    def cells(self) -> list[Cell]:
        """Method-major, so that with few workers every environment's first method finishes early."""
        return [Cell(e, m, s, self.runs / e / m / f"seed{s}") for m in self.methods for e in self.envs
                for s in self.seeds]

    def dataset_path(self, env: str) -> Path:
        return self.runs / "datasets" / f"{env}.npz"

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
                          "description", "runs", "groups", "results"}
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
    teachers = {str(k): (base / str(v)) for k, v in need("teachers", dict).items()}
    for e in envs:
        if e not in teachers:
            raise BpdError(f"{p}: no teacher for {e}")
    methods_raw = need("methods", (dict, list))
    if isinstance(methods_raw, list):
        methods_raw = {str(m): {} for m in methods_raw}
    methods: dict[str, MethodSpec] = {}
    for label, spec in methods_raw.items():
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"method", "args", "needs"}:
            raise BpdError(f"{p}: method {label!r} takes method, args and needs")
        m = get(str(spec.get("method", label)))
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise BpdError(f"{p}: args of {label!r} must be a mapping")
        methods[str(label)] = MethodSpec(str(label), m.name, dict(args), {})
    for ms in methods.values():  # resolve what each method needs to plan labels
        m = get(ms.method)
        given = (methods_raw[ms.label] or {}).get("needs") or {}
        for need_name in m.needs:
            if need_name in given:
                label = str(given[need_name])
            else:
                providers = [x.label for x in methods.values() if x.method == need_name]
                label = need_name if need_name in providers else (providers[0] if len(providers) == 1 else "")
            if label not in methods or methods[label].method != need_name:
                raise BpdError(f"{p}: {ms.label!r} needs a {need_name!r} cell; add one to methods "
                               f"or name it with needs: {{{need_name}: LABEL}}")
            ms.needs[need_name] = label
    from training.collect import CollectConfig
    noise = CollectConfig.__dataclass_fields__["noise"].default  # `bpd collect`'s default, one source
    dataset = {"steps": 100_000, "noise": noise, "seed": 900_000} | (raw.get("dataset") or {})
    ev = {"episodes": 30, "seed": 0} | (raw.get("eval") or {})
    if int(ev["episodes"]) < 1:
        raise BpdError(f"{p}: eval episodes must be at least 1")
    if int(ev["seed"]) + int(ev["episodes"]) > 100_000:
        raise BpdError(f"{p}: evaluation seeds must stay below 100000 (higher seeds choose models in training)")
    env_args = {str(k): dict(v or {}) for k, v in (raw.get("env_args") or {}).items()}
    groups_raw = raw.get("groups") or {}
    if not isinstance(groups_raw, dict) or not all(isinstance(v, list) for v in groups_raw.values()):
        raise BpdError(f"{p}: groups maps a table name to a list of method labels")
    groups = {str(g): [str(x) for x in labels] for g, labels in groups_raw.items()}
    for g, labels in groups.items():
        missing = [x for x in labels if x not in methods]
        if missing:
            raise BpdError(f"{p}: group {g!r} names labels that are not in methods: {', '.join(missing)}")
    root = Path(runs) if runs else Path(os.environ.get("BPD_RUNS", base.parent / "bpd-runs")) / name
    if raw.get("results") and (Path(str(raw["results"])).is_absolute() or ".." in Path(str(raw["results"])).parts):
        raise BpdError(f"{p}: results must be a path inside the project (no '..'), got {str(raw['results'])[:60]!r}")
    results = base / str(raw["results"]) if raw.get("results") else None
    plan = Plan(p, name, base, root, envs, [int(s) for s in seeds], teachers, dataset, ev,
                bool(raw.get("bench", False)), methods, env_args, raw, groups, results)
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
    for key, fields in (("eval", ("episodes", "seed")), ("dataset", ("steps", "seed"))):
        block = raw.get(key) or {}
        if not isinstance(block, dict):
            raise BpdError(f"{p}: {key} must be a mapping")
        for f in fields:
            if f in block and (isinstance(block[f], bool) or not isinstance(block[f], int) or block[f] < 0):
                raise BpdError(f"{p}: {key}.{f} must be a whole number >= 0 (got {str(block[f])[:40]!r})")
    noise = (raw.get("dataset") or {}).get("noise", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise BpdError(f"{p}: dataset.noise must be a number >= 0 (got {str(noise)[:40]!r})")
    env_args = raw.get("env_args") or {}
    if not isinstance(env_args, dict) or not all(isinstance(v, dict) or v is None for v in env_args.values()):
        raise BpdError(f"{p}: env_args maps an environment to a mapping of options")


def _check_env_id(env_id: str, p: Path) -> None:
    """A registered Gymnasium id (a `module:` prefix imported first); nothing is built."""
    import importlib

    import gymnasium as gym

    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (ImportError, gym.error.Error) as e:
        raise BpdError(f"{p}: unknown or unavailable environment {env_id!r} ({str(e).splitlines()[0][:80]})") from None


def check_plan_commands(plan: Plan) -> None:
    """Every method's command line, as a cell would run it, parses as `bpd` would parse it: an unknown
    option, a value of the wrong type or a non-finite number in a method's args is refused now."""
    from bpd_app.methods import CellInputs, get
    from bpd_app.parser import check_command

    for ms in plan.methods.values():
        m = get(ms.method)
        for env in plan.envs:
            args = {k: v for k, v in plan.env_args.get(env, {}).items() if k not in m.skips_env_args} | ms.args
            inputs = CellInputs(env, plan.seeds[0], "teacher.npz", "dataset.npz", plan.runs / "check", args)
            where = f"{plan.path}: method {ms.label!r} for {env}"
            try:
                argv = m.command(inputs)
            except Exception as e:
                if ms.needs:  # built from a needed cell's result: checked when that cell has finished
                    continue
                why = str(e).splitlines()[0][:80] if str(e) else e.__class__.__name__
                raise BpdError(f"{where}: its args do not make a command ({why})") from None
            check_command(argv, where)


def check_plan_envs(plan: Plan) -> None:
    """Every environment of the plan is a registered Gymnasium id (the commands check this when they read
    a plan; nothing is built)."""
    for e in plan.envs:
        _check_env_id(e, plan.path)


def check_plan_teachers(plan: Plan) -> None:
    """Before a run: every environment's teacher file is there."""
    for e in plan.envs:
        if not plan.teachers[e].is_file():
            raise BpdError(f"{plan.path}: the teacher of {e}, {plan.rel(plan.teachers[e])}, is missing")


def cell_spec(plan: Plan, cell: Cell) -> dict:
    """Everything that defines a cell's result; a finished cell is reused only if this matches."""
    from bpd.io import sha256_file
    from bpd_app.methods import get

    ms = plan.methods[cell.label]
    method = get(ms.method)
    teacher = plan.teachers[cell.env]
    env_args = {k: v for k, v in plan.env_args.get(cell.env, {}).items() if k not in method.skips_env_args}
    spec = {"env": cell.env, "label": cell.label, "method": ms.method, "seed": cell.seed,
            "args": env_args | ms.args, "needs": ms.needs,
            "teacher_sha256": sha256_file(teacher) if teacher.is_file() else None,
            "dataset": plan.dataset, "eval": plan.eval, "bench": plan.bench}
    revision = method.revision
    if revision > 1:  # a method's first version leaves the key out, so its cells keep their digests
        spec["method_revision"] = revision
    return spec


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _dep_cell(plan: Plan, cell: Cell, label: str) -> Cell:
    return Cell(cell.env, label, cell.seed, plan.runs / cell.env / label / f"seed{cell.seed}")


def stale_reason(plan: Plan, cell: Cell, res: dict, digest: str | None = None) -> str | None:
    """Why a finished cell's summary no longer answers the plan, or None when it does: it was made
    under another specification, or from a cell it needs (BPD's, which sizes the baselines) that has
    since been run under another one. Summaries written before they recorded what they were made
    from (needs_digests) are judged by their own specification alone."""
    if res.get("spec_digest") not in (None, digest or _digest(cell_spec(plan, cell))):
        return "was run with another specification"
    made_from = res.get("needs_digests")
    if made_from is not None:
        for label in plan.methods[cell.label].needs.values():
            if made_from.get(label) != _digest(cell_spec(plan, _dep_cell(plan, cell, label))):
                return f"was made from a {label} cell that has since been run with another specification"
    return None


# --------------------------------------------------------------------------- executing one cell


class StageFailed(Exception):
    pass


def _run(argv: list[str], log: Path, stdout: Path | None = None, cwd: Path | None = None) -> None:
    """Run `bpd argv`, appending its output to the cell log; stdout optionally captured to a file."""
    cmd = [bpd_executable(), *argv]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "a") as lf:
        lf.write(f"$ bpd {' '.join(argv)}\n")
        lf.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE if stdout else lf, stderr=subprocess.PIPE, text=True,
                           cwd=cwd, env=env)
        lf.write(p.stderr)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise StageFailed(f"bpd {argv[0]} exited {p.returncode}: {last}")
    if stdout is not None:
        write_text(stdout, p.stdout)


def prepare_env(plan: Plan, env: str) -> None:
    """The shared dataset and the teacher's evaluation on the reporting seeds, once per environment."""
    teacher = plan.teachers[env]
    if not teacher.is_file():
        raise StageFailed(f"{plan.rel(teacher)}: no such teacher file")
    log = plan.runs / "prepare.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    from bpd_app.methods import get

    ds = plan.dataset_path(env)
    if any(get(m.method).uses_dataset for m in plan.methods.values()) and not ds.exists():
        d = plan.dataset
        _run(["collect", "--teacher", str(teacher), "--out", str(ds), "--steps", str(d["steps"]),
              "--noise", str(d["noise"]), "--seed", str(d["seed"]), "--no-progress"], log)
    te = plan.teacher_eval_path(env)
    if not te.exists():
        _run(["evaluate", str(teacher), "--env", env, "--episodes", str(plan.eval["episodes"]),
              "--seed", str(plan.eval["seed"]), "--json"], log, stdout=te)


def _read_json(p: Path) -> dict | None:
    """A JSON object from p; None where there is none (missing, corrupt, not an object)."""
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return obj if isinstance(obj, dict) else None


def _cycles(bench: dict) -> float | None:
    """Estimated Cortex-M4F cycles of a cell's bench figures (older summaries kept only the microseconds the
    same cycle model gave at the target's clock)."""
    from firmware_host.build import TARGETS

    if bench.get("cycles") is not None:
        return float(bench["cycles"])
    us = bench.get("us_estimate")
    return None if us is None else round(us * TARGETS[BENCH_TARGET]["clock_mhz"])


def _bench_figures(bench: dict) -> dict:
    """Cortex-M4F cost of the student from a `bpd bench` result: the bpd kernel with the fewest estimated
    cycles (the export's own kernel; for the generic one, the cheaper of its two tanh builds)."""
    net = (bench.get("networks") or {}).get("student") or {}
    best = None
    for impl, per_target in (net.get("runtimes") or {}).items():
        if not impl.startswith("bpd"):
            continue
        r = (per_target or {}).get(BENCH_TARGET)
        cost = lambda x: (x.get("cycles_estimate") or 0, x["instructions_median"])
        if r and (best is None or cost(r) < cost(best[1])):
            best = (impl, r)
    if best is None:
        return {}
    impl, r = best
    scratch = (net.get("flash_report") or {}).get("ram_activation_bytes")
    stack = r.get("policy_stack_bytes")
    return {"kernel": impl, "instructions": r["instructions_median"], "us_estimate": r.get("us_estimate"),
            "cycles": r.get("cycles_estimate"),
            "policy_bytes": r.get("policy_bytes"), "image_flash_bytes": r.get("flash_bytes"),
            "weights_flash_bytes": (net.get("flash_report") or {}).get("flash_bytes"),
            # the policy's RAM: the caller's scratch (two activation buffers, from the export) and the static
            # worst-case stack of bpd_policy_run and its callees in the linked image
            "scratch_bytes": scratch, "policy_stack_bytes": stack,
            "policy_ram_bytes": scratch + stack if scratch is not None and stack is not None else None}


def execute_cell(plan_path: str, cell_key: str, runs: str | None = None) -> dict:
    """Train, evaluate, export and measure one cell; returns its cell.json record. Never raises."""
    from bpd_app.methods import CellInputs, get

    plan = load_plan(plan_path, runs)
    cell = next(c for c in plan.cells() if c.key == cell_key)
    cell.dir.mkdir(parents=True, exist_ok=True)
    status_path, result_path, log = cell.dir / "cell.json", cell.dir / "result.json", cell.dir / "cell.log"
    spec = cell_spec(plan, cell)
    digest = _digest(spec)
    old = _read_json(status_path) or {}
    old_result = _read_json(result_path) if old.get("state") == "done" else None
    why = stale_reason(plan, cell, old_result or old, digest)
    if why:
        rec = old | {"state": "failed", "error": f"{plan.rel(cell.dir)} {why}; "
                     "remove it to rerun with the plan's current one"}
        return rec
    if result_path.exists() and old.get("state") == "done" and (old.get("restored_from")
                                                                 or not (plan.bench and old.get("export_error"))):
        return old  # a restored cell has no product to export again
    ms = plan.methods[cell.label]
    method = get(ms.method)
    rec = {"cell": cell.key, "spec": spec, "spec_digest": digest, "state": "running", "commands": [],
           "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "started_epoch": round(time.time(), 1),
           "host": os.uname().nodename, "pid": os.getpid(),
           "error": None, "stage_seconds": {}}

    def stage(name: str, argv: list[str], stdout: Path | None = None) -> None:
        rec["commands"].append("bpd " + " ".join(argv))
        write_json(status_path, rec)
        t = time.time()
        _run(argv, log, stdout=stdout)
        rec["stage_seconds"][name] = round(time.time() - t, 1)
    write_json(status_path, rec)
    t0 = time.time()
    try:
        deps = {}
        for _need_name, label in ms.needs.items():
            dep = _read_json(plan.runs / cell.env / label / f"seed{cell.seed}" / "result.json")
            if dep is None:
                raise StageFailed(f"needs the {label} cell of the same environment and seed, which has not finished")
            deps[label] = dep
        teacher = plan.teachers[cell.env]
        from training.teacher import load_teacher
        tmeta = {"train": load_teacher(teacher).train}
        inputs = CellInputs(cell.env, cell.seed, str(teacher), str(plan.dataset_path(cell.env)), cell.dir / "run",
                            spec["args"], deps, tmeta)
        product = cell.dir / "run" / method.product
        train_summary = cell.dir / "run" / "summary.json"
        t_train = time.time()
        if not product.exists():
            stage("train", method.command(inputs))
        train_seconds = time.time() - t_train
        ev_path = cell.dir / "eval.json"
        if not ev_path.exists():
            stage("evaluate", ["evaluate", str(product), "--env", cell.env, "--episodes", str(plan.eval["episodes"]),
                               "--seed", str(plan.eval["seed"]), "--json"], stdout=ev_path)
        export_info, bench = None, {}
        rec["export_error"] = None
        if plan.bench:  # a failed export or measurement is recorded; the trained cell still counts
            exp = cell.dir / "export"
            try:
                if not (exp / "export.json").exists():
                    # --episodes 0: the cells' cost is the float kernel the rule picks, as for every committed
                    # cell (whose checkpoints are gone), so that a table compares methods on one kernel; what
                    # the integer kernel (which auto ships where it keeps the return) costs on the same students
                    # is benchmarks/cost_benchmark.py's
                    stage("export", ["export", str(product), "--out", str(exp), "--episodes", "0",
                                     "--dataset", str(plan.dataset_path(cell.env)), "--teacher", str(teacher)])
                export_info = _read_json(exp / "export.json")
                bj = cell.dir / "bench" / "bench.json"
                if not bj.exists() and shutil.which("arm-none-eabi-gcc"):
                    stage("bench", ["bench", str(exp), "--out", str(cell.dir / "bench"), "--targets", BENCH_TARGET,
                                    "--no-peers", "--no-plot", "--teacher", str(teacher), "--host-iters",
                                    "2000"])
                bench = _bench_figures(_read_json(bj) or {})
            except StageFailed as e:
                rec["export_error"] = str(e)
        online = {} if train_summary.exists() else _online_train_summary(product)
        result = _cell_result(plan, cell, spec, _read_json(train_summary) or online, _read_json(ev_path) or {},
                              _read_json(plan.teacher_eval_path(cell.env)) or {}, export_info, bench, train_seconds)
        result["train"]["last_evals"] = _last_evals(cell.dir / "run" / "metrics.csv")
        result["train"]["curve"] = _curve(cell.dir / "run" / "metrics.csv") or online.get("curve")
        result["export_error"] = rec["export_error"]
        result["spec"], result["spec_digest"] = spec, digest
        result["needs_digests"] = {label: dep.get("spec_digest") for label, dep in deps.items()}
        from bpd.io import sha256_file
        result["product_sha256"] = sha256_file(product)  # names the model when the run root is gone
        result["machine"] = _machine()
        write_json(result_path, result)
        rec.update(state="done", seconds=round(time.time() - t0, 1), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    except StageFailed as e:
        rec.update(state="failed", error=str(e), seconds=round(time.time() - t0, 1))
    except Exception as e:  # a bug in the runner itself: keep the grid going, keep the evidence
        with open(log, "a") as lf:
            lf.write(traceback.format_exc())
        rec.update(state="failed", error=f"internal error: {e.__class__.__name__}: {e}",
                   seconds=round(time.time() - t0, 1))
    write_json(status_path, rec)
    return rec


def _machine() -> dict:
    """What the cell's figures were computed on. Training and evaluation agree to the bit between
    machines whose torch CPU kernels are of one kind (`torch_cpu_capability`: AVX2, AVX512, ...), not
    between kinds (floating point differs, and locomotion episodes diverge from it)."""
    import platform

    import torch
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"processor": model or platform.processor(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def largest_drop(curve: dict | None, teacher_return: float | None) -> float | None:
    """Training stability of one run: the largest fall of its periodic evaluation return below the best
    seen so far, over the second half of training, as a share of the teacher's return."""
    if not curve or not curve.get("return") or not teacher_return:
        return None
    steps, rets = np.asarray(curve["step"], float), np.asarray(curve["return"], float)
    best = np.maximum.accumulate(rets)
    late = steps >= steps.max() / 2
    return float((best - rets)[late].max() / abs(teacher_return))


def _curve(metrics: Path) -> dict | None:
    """A run's periodic evaluations, small enough to commit: gradient step, return and (for the runs
    that interact with the environment) environment steps."""
    import csv

    if not metrics.exists():
        return None
    with open(metrics, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("eval/return_mean")]
    if not rows:
        return None
    curve = {"step": [int(float(r["step"])) for r in rows],
             "return": [round(float(r["eval/return_mean"]), 2) for r in rows]}
    if rows[0].get("env_steps"):
        curve["env_steps"] = [int(float(r["env_steps"])) for r in rows]
    return curve


def _online_train_summary(product: Path) -> dict:
    """What a run that trains online from scratch (`bpd teacher train`, e.g. online-sac-small) leaves in
    its policy file, as a training summary: environment steps, the actor's widths, the periodic
    evaluations against environment steps and the evaluation it kept. {} for any other product."""
    if product.suffix != ".npz" or not product.is_file():
        return {}
    from training.teacher import load_teacher
    try:
        t = load_teacher(product)
    except BpdError:
        return {}  # not a policy in the teacher format (a baseline's, whose run writes its own summary)
    train = t.train or {}
    if not train.get("history"):
        return {}
    hist = train["history"]
    cfg = train.get("config") or {}
    steps = [int(h["step"]) for h in hist]
    grad = [_sac_grad_steps(x, cfg) for x in steps]
    return {"seconds": train.get("seconds"), "env_steps": train.get("steps"), "steps": train.get("steps"),
            "grad_steps": _sac_grad_steps(train.get("steps"), cfg),
            "hidden": [int(w.shape[0]) for w in t.weights[:-1]], "control": "student",
            "selection": {"chosen": {"step": train.get("best_step")},
                          "rule": f"best periodic evaluation ({cfg.get('eval_episodes', '?')} episodes, training "
                                  "seeds)"},
            "curve": {"step": grad if None not in grad else steps,
                      "return": [round(float(h["return_mean"]), 2) for h in hist], "env_steps": steps}}


def _sac_grad_steps(steps: int | None, cfg: dict) -> int | None:
    """An off-policy learner's updates (`bpd teacher train`: one gradient step every train_freq
    environment steps once learning starts)."""
    if steps is None or cfg.get("learning_starts") is None:
        return None
    return max(0, int(steps) - int(cfg["learning_starts"])) // max(1, int(cfg.get("train_freq") or 1))


def _last_evals(metrics: Path, n: int = 3) -> list[float] | None:
    """The last n periodic evaluation returns of a run that logs metrics.csv (training stability)."""
    import csv

    if not metrics.exists():
        return None
    with open(metrics, newline="") as f:
        vals = [float(r["eval/return_mean"]) for r in csv.DictReader(f) if r.get("eval/return_mean")]
    return vals[-n:] or None


def early_where_teacher_finished(terminated: list[bool], teacher_terminated: list[bool]) -> int:
    """Episodes (same seeds, same order) that ended early where the teacher's did not."""
    return sum(1 for s, t in zip(terminated, teacher_terminated) if s and not t)


def _cell_result(plan: Plan, cell: Cell, spec: dict, train: dict, ev: dict, tev: dict, export_info: dict | None,
                 bench: dict, train_seconds: float) -> dict:
    """The small summary of a finished cell that tables read (no absolute paths)."""
    from bpd_app.methods import get

    uses_dataset = get(spec["method"]).uses_dataset  # a method without its own count used the plan's dataset
    t_ret = tev.get("return_mean")
    t_total = tev.get("params_total")
    early = early_where_teacher_finished(ev.get("terminated", []), tev.get("terminated", []))
    # the deployable size: the collapsed export's count (dead units removed) where there is one
    nonzero = export_info.get("params_nonzero") if export_info else ev.get("params_nonzero")
    seconds = train.get("seconds")
    if seconds is None:
        seconds = round(train_seconds, 1)
    return {
        "env": cell.env, "label": cell.label, "method": spec["method"], "seed": cell.seed, "args": spec["args"],
        "eval": {k: ev.get(k) for k in ("episodes", "seeds", "return_mean", "return_std", "return_min", "return_q1",
                                        "return_median", "return_q3", "return_max", "early_terminations",
                                        "returns", "terminated")},
        "teacher": {"return_mean": t_ret, "params_total": t_total, "early_terminations": tev.get("early_terminations")},
        "return_vs_teacher": (ev.get("return_mean") / t_ret) if t_ret else None,
        "d4rl_score": d4rl_score(cell.env, ev["return_mean"]) if ev.get("return_mean") is not None else None,
        "early_terminations_where_teacher_finished": early,
        "params_nonzero": nonzero, "params_total": ev.get("params_total"),
        "weights_removed_vs_teacher": (1.0 - nonzero / t_total) if nonzero is not None and t_total else None,
        "train": {"seconds": seconds, "steps": train.get("steps"), "hidden": train.get("hidden"),
                  "grad_steps": train.get("grad_steps", train.get("steps")),
                  "env_steps": train.get("env_steps", plan.dataset["steps"] if uses_dataset else None),
                  "control": train.get("control"), "nonzero_budget": train.get("nonzero_budget"),
                  "teacher_distribution": train.get("teacher_distribution"),
                  "teacher_value": train.get("teacher_value"), "visited_spread": train.get("visited_spread"),
                  "selection": (train.get("selection") or {}).get("chosen"),
                  "pruning_rule": train.get("pruning_rule"),
                  "selection_rule": (train.get("selection") or {}).get("rule")},
        "export": ({"widths": export_info.get("widths"), "params_nonzero": export_info.get("params_nonzero"),
                    "model_hash": export_info.get("model_hash")} if export_info else None),
        "bench": bench or None,
    }


# --------------------------------------------------------------------------- committed summaries


def committed_result(plan: Plan, cell: Cell, digest: str | None = None) -> dict | None:
    """The cell's committed summary, if it was made under the plan's current specification."""
    res = _read_json(plan.committed_path(cell))
    digest = digest or _digest(cell_spec(plan, cell))
    if not res or res.get("spec_digest") != digest or stale_reason(plan, cell, res, digest):
        return None
    return res


def restore_committed(plan: Plan) -> list[str]:
    """Write into the run root every cell that it lacks and whose committed summary matches the plan;
    the runner then skips them and the cells that need them find them. Returns the restored keys."""
    restored = []
    for c in plan.cells():
        rec = _read_json(c.dir / "cell.json") or {}
        if rec.get("state") == "done" and (c.dir / "result.json").exists():
            continue
        if rec.get("state") == "running" and _alive(rec.get("pid")) and rec.get("host") == os.uname().nodename:
            continue
        spec = cell_spec(plan, c)
        digest = _digest(spec)
        if rec.get("spec_digest") not in (None, digest):
            continue  # run under another specification: the runner reports it
        res = committed_result(plan, c, digest)
        if res is None:
            continue
        write_json(c.dir / "result.json", res)
        write_json(c.dir / "cell.json", {
            "cell": c.key, "spec": spec, "spec_digest": digest, "state": "done", "error": None,
            "restored_from": plan.rel(plan.committed_path(c)), "seconds": (res.get("train") or {}).get("seconds"),
            "export_error": res.get("export_error"), "stage_seconds": {}})
        restored.append(c.key)
    return restored


# --------------------------------------------------------------------------- scheduling


def _deps(plan: Plan, cell: Cell) -> list[str]:
    return [f"{cell.env}/{label}/seed{cell.seed}" for label in plan.methods[cell.label].needs.values()]


def run_plan(plan: Plan, workers: int = 1, engine: str = "local", address: str | None = None,
             only: list[str] | None = None, echo: Callable[[str], None] = print, retrain: bool = False) -> dict:
    """Run every unfinished cell, dependencies first; returns {cell key: cell.json record}. With `retrain`
    the committed summaries are not restored, so cells the run root lacks are trained again (to recreate
    products, such as checkpoints, that a lost run root took with it)."""
    cells = [c for c in plan.cells() if not only or any(c.key.startswith(o) for o in only)]
    by_key = {c.key: c for c in cells}
    check_run_root(plan)
    if engine == "ray":  # an engine that cannot start leaves no run root behind
        submit, wait, shutdown = _ray_engine(plan, workers, address)
    elif engine == "local":
        submit, wait, shutdown = _local_engine(plan, workers)
    else:
        raise BpdError(f"unknown engine {engine!r} (local or ray)")
    plan.runs.mkdir(parents=True, exist_ok=True)
    write_json(plan.runs / "plan.json", {"plan": plan.rel(plan.path), "raw": plan.raw})
    restored = [] if retrain else restore_committed(plan)
    if restored:
        echo(f"{len(restored)} finished cells restored from the committed summaries in {plan.rel(plan.results_dir)}")
    started = time.time()
    records: dict[str, dict] = {}
    _record_session(plan, started, workers, engine, records)
    try:
        envs = sorted({c.env for c in cells if (_read_json(c.dir / "cell.json") or {}).get("state") != "done"})
        handles = {submit(("prepare", env)): env for env in envs}
        for h, (_, err) in wait(list(handles)):
            env = handles[h]
            if err:
                echo(f"{env}: preparing failed: {err}")
                for c in cells:
                    if c.env == env:
                        records[c.key] = {"cell": c.key, "state": "failed", "error": f"preparing {env}: {err}"}
        done_n, total = 0, len(cells)
        for k, c in by_key.items():  # finished before this invocation (or restored): not submitted again
            rec = _read_json(c.dir / "cell.json") or {}
            if k not in records and rec.get("state") == "done" and (c.dir / "result.json").exists() and (
                    rec.get("restored_from") or not (plan.bench and rec.get("export_error"))) and (
                    rec.get("spec_digest") == _digest(cell_spec(plan, c))) and not stale_reason(
                    plan, c, _read_json(c.dir / "result.json") or {}):
                records[k] = rec
                done_n += 1
        if done_n:
            echo(f"{done_n} of {total} cells already done")
        pending = {k: c for k, c in by_key.items() if k not in records}
        running: dict = {}
        while pending or running:
            for k, c in list(pending.items()):
                deps = _deps(plan, c)
                if any(d in records and records[d].get("state") != "done" for d in deps):
                    records[k] = {"cell": k, "state": "failed", "error": "a cell it needs failed"}
                    pending.pop(k)
                    done_n += 1
                    echo(f"[{done_n}/{total}] {k}: skipped, a cell it needs failed")
                elif all(d in records or (d not in by_key and _read_json(plan.runs / d / "result.json"))
                         for d in deps):
                    running[submit(("cell", k))] = k
                    pending.pop(k)
            if not running:
                if pending:  # waiting on cells outside this selection that never finished
                    for k in list(pending):
                        missing = [d for d in _deps(plan, by_key[k]) if d not in records]
                        err = f"needs {', '.join(missing)}, which has not finished (run it, or without --only)"
                        records[k] = {"cell": k, "state": "failed", "error": err}
                        pending.pop(k)
                        done_n += 1
                        echo(f"[{done_n}/{total}] {k}: FAILED: {err}")
                continue
            for handle, (rec, err) in wait(list(running), first=True):
                k = running.pop(handle)
                records[k] = rec if rec else {"cell": k, "state": "failed", "error": err}
                _record_session(plan, started, workers, engine, records)
                done_n += 1
                r = records[k]
                if r.get("state") == "done":
                    res = _read_json(by_key[k].dir / "result.json") or {}
                    echo(f"[{done_n}/{total}] {k}: done in {r.get('seconds', 0):.0f} s, return "
                         f"{(res.get('eval') or {}).get('return_mean', float('nan')):.1f}, "
                         f"{res.get('params_nonzero')} nonzero")
                else:
                    echo(f"[{done_n}/{total}] {k}: FAILED: {r.get('error')}")
    finally:
        shutdown()
    _record_session(plan, started, workers, engine, records)
    return records


def check_run_root(plan: Plan) -> None:
    """A run root is this plan's (its plan.json names the plan) or new: another plan's, or a directory of
    something else, is never written into."""
    pj = plan.runs / "plan.json"
    if pj.is_file():
        old = _read_json(pj)
        if old is None or old.get("plan") != plan.rel(plan.path):
            made_by = (old or {}).get("plan", "an unreadable plan.json")
            raise BpdError(f"{plan.runs}: the run root of {made_by}, not of {plan.rel(plan.path)}; "
                           "give this plan another --runs")
    elif plan.runs.exists() and (not plan.runs.is_dir() or any(plan.runs.iterdir())):
        raise BpdError(f"{plan.runs}: exists and is not a run root (no plan.json); give another --runs")


def _record_session(plan: Plan, started: float, workers: int, engine: str, records: dict) -> None:
    """This invocation's entry in sessions.json, written at its start and after every cell, so that
    an invocation cut off (a session's end, kill -9) still counts up to its last finished cell."""
    import fcntl

    path = plan.runs / "sessions.json"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
    entry = {"started": stamp, "pid": os.getpid(), "wall_seconds": round(time.time() - started, 1),
             "workers": workers, "engine": engine, "cells": len(records),
             "done": sum(r.get("state") == "done" for r in records.values()), "cpus": os.cpu_count()}
    with open(plan.runs / ".sessions.lock", "w") as lock:  # runners sharing a run root (--only) update in turn
        fcntl.flock(lock, fcntl.LOCK_EX)
        sessions = [s for s in (_read_json(path) or {}).get("sessions", []) if _session_key(s) != _session_key(entry)]
        write_json(path, {"sessions": sessions + [entry]})


def _session_key(s: dict) -> str:
    return f"{s.get('started')}/{s.get('pid', '')}"


def _local_engine(plan: Plan, workers: int):
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
    from concurrent.futures import wait as fwait

    pool = ThreadPoolExecutor(max(1, workers))

    def submit(job):
        kind, key = job
        if kind == "prepare":
            return pool.submit(_prepare_job, str(plan.path), key, str(plan.runs))
        return pool.submit(execute_cell, str(plan.path), key, str(plan.runs))

    def wait(handles, first=False):
        if not first:
            fwait(handles)
            return [(h, _outcome(h)) for h in handles]
        done, _ = fwait(handles, return_when=FIRST_COMPLETED)
        return [(h, _outcome(h)) for h in done]

    return submit, wait, lambda: pool.shutdown(wait=True, cancel_futures=True)


def _outcome(fut):
    try:
        r = fut.result()
    except Exception as e:
        return None, f"{e.__class__.__name__}: {e}"
    if isinstance(r, tuple):  # prepare jobs
        return r
    return r, None


def _prepare_job(plan_path: str, env: str, runs: str) -> tuple:
    try:
        prepare_env(load_plan(plan_path, runs), env)
        return env, None
    except StageFailed as e:
        return None, str(e)


def _ray_engine(plan: Plan, workers: int, address: str | None):
    try:
        import ray
    except ImportError:
        raise BpdError("--engine ray needs Ray: pip install 'bpd[ray]'") from None
    addr = address or os.environ.get("RAY_ADDRESS")
    if addr and addr not in ("auto", "local"):
        _probe_ray(addr)
    try:
        if addr:
            ray.init(address=addr, log_to_driver=False, include_dashboard=False)
        else:
            ray.init(num_cpus=max(1, workers), log_to_driver=False, include_dashboard=False)
    except Exception as e:
        raise BpdError(f"cannot start or reach Ray{f' at {addr}' if addr else ''}: {str(e).splitlines()[0]}") from None
    cell_task = ray.remote(num_cpus=1, max_retries=0)(execute_cell)
    prep_task = ray.remote(num_cpus=1, max_retries=0)(_prepare_job)

    def submit(job):
        kind, key = job
        task = prep_task if kind == "prepare" else cell_task
        return task.remote(str(plan.path.resolve()), key, str(plan.runs.resolve()))

    def wait(handles, first=False):
        if not first:
            ready = handles
        else:
            ready, _ = ray.wait(handles, num_returns=1)
        out = []
        for h in ready:
            try:
                r = ray.get(h)
                out.append((h, r if isinstance(r, tuple) else (r, None)))
            except Exception as e:
                out.append((h, (None, f"{e.__class__.__name__}: {str(e).splitlines()[0]}")))
        return out

    return submit, wait, ray.shutdown


RAY_CONNECT_TIMEOUT = 10.0  # seconds a Ray address has to accept a connection


def _probe_ray(addr: str) -> None:
    """A Ray address that does not accept a connection in RAY_CONNECT_TIMEOUT is one line, not a hang."""
    import socket

    hostport = addr.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BpdError(f"Ray address {addr!r}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as e:
        raise BpdError(f"Ray at {addr} does not answer (no connection within {RAY_CONNECT_TIMEOUT:.0f} s: "
                       f"{e.strerror or e.__class__.__name__})") from None


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _cell_cost(c: Cell, rec: dict) -> float | None:
    """A finished cell's time: its last invocation's wall time, or, where that invocation resumed a
    training started earlier, the training's own time summed over its sessions plus the other stages."""
    train = ((_read_json(c.dir / "result.json") or {}).get("train") or {}).get("seconds")
    stages = rec.get("stage_seconds") or {}
    rest = sum(v for k, v in stages.items() if k != "train" and isinstance(v, (int, float)))
    own = rec.get("seconds")
    if train is None:
        return own
    return max(own or 0.0, float(train) + rest)


def _spent(rec: dict, now: float) -> float | None:
    """Seconds since a running cell started: from the epoch it recorded, else (records written before
    the epoch was) its local start time read in this machine's timezone."""
    start = rec.get("started_epoch")
    if start is None and rec.get("started"):
        try:
            start = time.mktime(time.strptime(rec["started"], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
    return None if start is None else max(now - float(start), 0.0)


def plan_status(plan: Plan, now: float | None = None) -> list[dict]:
    """Each cell's state, and for every cell not done (a failed one is retried by the next run) an
    estimate of the time it still needs, less what a running cell has spent since it started:
      peers   the median time of the finished cells with the same environment and label;
      scaled  where none finished, the label's median in another environment times the ratio of the
              two environments' medians over the labels finished in both (a cost that is one factor
              per environment times one per method); None where neither exists;
      overdue a running cell already past its estimate (left: 0).
    A running cell's time spent comes from the epoch it recorded at its start."""
    now = time.time() if now is None else now
    rows, recs = [], []
    for c in plan.cells():
        rec = _read_json(c.dir / "cell.json") or {}
        state = rec.get("state", "pending")
        if state == "running" and rec.get("host") == os.uname().nodename and not _alive(rec.get("pid")):
            state = "interrupted"
        spec_ok = rec.get("spec_digest") in (None, _digest(cell_spec(plan, c)))
        if state == "done" and (why := stale_reason(plan, c, _read_json(c.dir / "result.json") or rec)):
            state, rec = "failed", rec | {"error": f"{plan.rel(c.dir)} {why}"}
        if state in ("pending", "failed", "interrupted") and spec_ok:
            res = committed_result(plan, c)
            if res is not None:  # committed, not (or no longer) in the run root
                state, rec = "done", {"seconds": (res.get("train") or {}).get("seconds")}
        recs.append((c, rec))
        rows.append({"cell": c.key, "state": state, "error": rec.get("error"), "seconds": rec.get("seconds"),
                     "left_seconds": None, "estimate": None})
    times: dict[tuple[str, str], list[float]] = {}
    for (c, rec), r in zip(recs, rows):
        if r["state"] == "done":
            cost = _cell_cost(c, rec)
            if cost:
                times.setdefault((c.env, c.label), []).append(cost)
    med = {k: float(np.median(v)) for k, v in times.items()}

    def scaled(env: str, label: str) -> float | None:
        guesses = []
        for (env2, lab2), t in med.items():
            if lab2 != label or env2 == env:
                continue
            common = [med[(env, lab)] / med[(env2, lab)] for (e, lab) in med if e == env and (env2, lab) in med]
            if common:
                guesses.append(t * float(np.median(common)))
        return float(np.median(guesses)) if guesses else None

    for (c, rec), r in zip(recs, rows):
        if r["state"] == "done":
            continue
        how = "peers" if (c.env, c.label) in med else "scaled"
        est = med[(c.env, c.label)] if how == "peers" else scaled(c.env, c.label)
        if est is None:
            continue
        if r["state"] == "running":
            spent = _spent(rec, now)
            if spent is not None and spent > est:
                how = "overdue"  # past its peers' time (or a cell another host left marked running)
            est -= spent or 0.0
        r["left_seconds"], r["estimate"] = max(est, 0.0), how
    return rows


def status_summary(rows: list[dict]) -> str:
    """The counts of each state and the time the unfinished cells still need, as one worker's time."""
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "failed", "running", "interrupted", "pending")}
    line = ", ".join(f"{v} {k}" for k, v in counts.items())
    todo = [r for r in rows if r["state"] != "done"]
    known = [r for r in todo if r["left_seconds"] is not None]
    if todo and not known:
        line += f"\nleft: {len(todo)} unfinished cells, no estimate (no finished cell to go by)"
    elif todo:
        n_scaled = sum(r["estimate"] == "scaled" for r in known)
        line += (f"\nleft: about {sum(r['left_seconds'] for r in known) / 3600:.1f} h of one worker for "
                 f"{len(known)} of {len(todo)} unfinished cells ({len(known) - n_scaled} from finished cells of the "
                 f"same environment and label, {n_scaled} scaled from another environment)")
        if len(known) < len(todo):
            line += f"; {len(todo) - len(known)} with nothing to go by"
    return line


# --------------------------------------------------------------------------- tables


def _iqm(x: np.ndarray) -> float:
    """Interquartile mean as rliable computes it: the mean after cutting int(n/4) values from each end
    (scipy.stats.trim_mean with proportion 0.25). With 3 seeds nothing is cut: it is the mean."""
    x = np.sort(np.asarray(x, dtype=float))
    if len(x) == 0:
        return float("nan")
    k = int(0.25 * len(x))
    return float(x[k:len(x) - k].mean())


def _bootstrap_ci(x: np.ndarray, stat=_iqm, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = [stat(x[rng.integers(0, len(x), len(x))]) for _ in range(reps)]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def collect_results(plan: Plan) -> list[dict]:
    """Every cell's state and summary: from the run root, else from its committed summary where that
    was made under the plan's current specification (see the module's notes)."""
    out = []
    for c in plan.cells():
        rec = _read_json(c.dir / "cell.json") or {}
        state = rec.get("state", "pending")
        res = _read_json(c.dir / "result.json") if state == "done" and not rec.get("restored_from") else None
        if state == "done" and not rec.get("restored_from") and res is None and (c.dir / "result.json").exists():
            raise BpdError(f"{c.dir / 'result.json'}: corrupt cell result (not a JSON object); remove "
                           f"{plan.rel(c.dir)} to run the cell again")
        why = stale_reason(plan, c, res or rec) if state == "done" else None
        if why:  # a summary that no longer answers the plan is neither tabulated nor committed over a current one
            res, state, rec = None, "failed", rec | {"error": f"{plan.rel(c.dir)} {why}"}
        if res is not None:
            bench = _read_json(c.dir / "bench" / "bench.json")
            if bench:  # the measurement is the source: figures added since the cell ran
                res["bench"] = _bench_figures(bench) or res.get("bench")
            if "spec_digest" not in res and rec.get("spec_digest"):  # summaries written before they held it
                res["spec"], res["spec_digest"] = rec.get("spec"), rec["spec_digest"]
            train = res.setdefault("train", {})
            if train.get("curve") is None and (curve := _curve(c.dir / "run" / "metrics.csv")) is not None:
                train["curve"] = curve
            if train.get("curve") is None and (online := _online_train_summary(c.dir / "run" / "policy.npz")):
                # summaries of online runs written before they read the policy file's record
                online |= {"selection": online["selection"]["chosen"], "selection_rule": online["selection"]["rule"]}
                train.update({k: v for k, v in online.items() if train.get(k) is None and k != "seconds"})
        else:  # a restored cell is read from its source, the committed file, as is one the run root lacks
            res = committed_result(plan, c)
            if res is not None:
                state = "done"
            elif state == "done":
                state, rec = "failed", rec | {"error": f"{plan.rel(c.dir)} was restored from a summary that has "
                                              "since changed; remove it to restore or rerun"}
        out.append({"cell": c.key, "env": c.env, "label": c.label, "seed": c.seed,
                    "state": state, "error": rec.get("error") if state != "done" else None, "result": res})
    return out


BAR = {"return_vs_teacher_mean": 0.95, "weights_removed": 0.95, "return_vs_teacher_worst": 0.90}


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per (environment, method label): spread over seeds, the worst seed, IQM and its CI."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["label"]), []).append(r)
    out = []
    for (env, label), rs in groups.items():
        done = [r["result"] for r in rs if r["result"]]
        agg = {"env": env, "label": label, "seeds": len(rs), "done": len(done),
               "failed": sum(r["state"] == "failed" for r in rs),
               "pending": sum(r["state"] not in ("done", "failed") for r in rs)}
        if done:
            rets = np.array([d["eval"]["return_mean"] for d in done])
            rel = np.array([d["return_vs_teacher"] for d in done if d["return_vs_teacher"] is not None])
            nz = np.array([d["params_nonzero"] for d in done])
            removed = [d["weights_removed_vs_teacher"] for d in done if d["weights_removed_vs_teacher"] is not None]
            worst = int(np.argmin(rets))
            d4 = [d["d4rl_score"] for d in done if d["d4rl_score"] is not None]
            secs = [d["train"]["seconds"] for d in done if d["train"]["seconds"] is not None]
            bench = [d["bench"] for d in done if d.get("bench")]
            widths = sorted({"-".join(map(str, d["export"]["widths"])) for d in done if d.get("export")})
            agg.update({
                "teacher_return": done[0]["teacher"]["return_mean"],
                "teacher_returns": sorted({d["teacher"]["return_mean"] for d in done
                                           if d["teacher"]["return_mean"] is not None}),
                "teacher_params": done[0]["teacher"]["params_total"],
                "return_mean": float(rets.mean()), "return_std": float(rets.std()),
                "return_worst": float(rets[worst]), "worst_seed": done[worst]["seed"],
                "return_iqm": _iqm(rets), "return_iqm_ci": _bootstrap_ci(rets),
                "vs_teacher_mean": float(rel.mean()) if len(rel) else None,
                "vs_teacher_worst": float(rel.min()) if len(rel) else None,
                "d4rl_mean": float(np.mean(d4)) if d4 else None, "d4rl_std": float(np.std(d4)) if d4 else None,
                "nonzero_mean": float(nz.mean()), "nonzero_min": int(nz.min()), "nonzero_max": int(nz.max()),
                "weights_removed_mean": float(np.mean(removed)) if removed else None,
                "weights_removed_min": float(np.min(removed)) if removed else None,
                "widths": widths,
                "early_where_teacher_finished": int(sum(d["early_terminations_where_teacher_finished"] for d in done)),
                "episodes": int(sum(d["eval"]["episodes"] or 0 for d in done)),
                "instructions": [b["instructions"] for b in bench] or None,
                "cycles": [_cycles(b) for b in bench if _cycles(b) is not None] or None,
                "bench_kernels": sorted({b.get("kernel") or "bpd" for b in bench}),
                "policy_bytes": [b["policy_bytes"] for b in bench] or None,
                "policy_ram_bytes": [b["policy_ram_bytes"] for b in bench
                                     if b.get("policy_ram_bytes") is not None] or None,
                "weights_flash_bytes": [b["weights_flash_bytes"] for b in bench] or None,
                "seconds_median": float(np.median(secs)) if secs else None,
                "us_estimate": [b.get("us_estimate") for b in bench if b.get("us_estimate") is not None] or None,
                "pruning_rule": next((d["train"].get("pruning_rule") for d in done if d["train"].get("pruning_rule")),
                                     None),
                "removed_vs_student_min": min([1 - d["params_nonzero"] / d["params_total"] for d in done
                                               if d.get("params_total")], default=None),
                "sparsity_mean": _mean_or_none([1 - d["params_nonzero"] / d["params_total"] for d in done
                                                if d.get("params_total")]),
                "vs_teacher_std": float(rel.std()) if len(rel) else None,
                "last_evals_spread": _mean_or_none([float(np.std(d["train"]["last_evals"])) / abs(done[0]["teacher"]
                                                    ["return_mean"]) for d in done if d["train"].get("last_evals")
                                                    and done[0]["teacher"]["return_mean"]]),
                "largest_drop": _mean_or_none([x for d in done if (x := largest_drop(
                    d["train"].get("curve"), d["teacher"]["return_mean"])) is not None]),
                "per_seed": [{"seed": d["seed"], "return": d["eval"]["return_mean"],
                              "vs_teacher": d["return_vs_teacher"], "nonzero": d["params_nonzero"],
                              "early": d["early_terminations_where_teacher_finished"],
                              "kernels": kernel_kind(d)}
                             for d in done],
            })
            agg["meets_bar"] = bool(
                agg["done"] == agg["seeds"] and agg["vs_teacher_mean"] is not None
                and agg["vs_teacher_mean"] >= BAR["return_vs_teacher_mean"]
                and agg["vs_teacher_worst"] >= BAR["return_vs_teacher_worst"]
                and agg["weights_removed_min"] is not None and agg["weights_removed_min"] >= BAR["weights_removed"]
                and agg["early_where_teacher_finished"] == 0)
            # a seed that already breaks a per-seed part of the bar settles it; otherwise it waits for the rest
            settled_miss = (agg["vs_teacher_worst"] is not None
                            and agg["vs_teacher_worst"] < BAR["return_vs_teacher_worst"]
                            or agg["weights_removed_min"] is not None
                            and agg["weights_removed_min"] < BAR["weights_removed"]
                            or agg["early_where_teacher_finished"] > 0)
            agg["bar"] = ("meets" if agg["meets_bar"] else "misses" if settled_miss or agg["done"] == agg["seeds"]
                          else f"open ({agg['done']} of {agg['seeds']} seeds)")
        out.append(agg)
    return out


def _mean_or_none(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def kernel_kind(result: dict) -> str | None:
    """The kind of torch CPU kernel a cell's summary records (None for summaries older than the record)."""
    return (result.get("machine") or {}).get("torch_cpu_capability")


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


def _range(xs, nd=0) -> str:
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    return f"{lo:,.{nd}f}" if lo == hi else f"{lo:,.{nd}f}-{hi:,.{nd}f}"


def markdown_table(plan: Plan, aggs: list[dict]) -> str:
    lines = []
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
                  "| % of teacher (mean / worst) | D4RL score | weights removed (min): of the teacher's / of the "
                  "student's | nonzero | collapsed widths "
                  "| early ends where teacher finished | M4F instructions | M4F cycles (est.) | kernel "
                  "| policy flash B | policy RAM B | distill s (median) | bar |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in rows:
            if not a["done"]:
                lines.append(f"| {a['label']} | 0/{a['seeds']} ({a['failed']} failed) |" + " - |" * 16)
                continue
            ci = a["return_iqm_ci"]
            failed = f" ({a['failed']} failed)" if a["failed"] else ""
            lines.append(
                f"| {a['label']} | {a['done']}/{a['seeds']}{failed} "
                f"| {_fmt(a['return_mean'])} +- {_fmt(a['return_std'])} "
                f"| {_fmt(a['return_worst'])} (seed {a['worst_seed']}) "
                f"| {_fmt(a['return_iqm'])} [{_fmt(ci[0])}, {_fmt(ci[1])}] "
                f"| {_fmt(a['vs_teacher_mean'], pct=True)} / {_fmt(a['vs_teacher_worst'], pct=True)} "
                f"| {_fmt(a['d4rl_mean'])} | {_fmt(a['weights_removed_min'], 2, pct=True)} / "
                f"{_fmt(a['removed_vs_student_min'], 1, pct=True)} "
                f"| {_range([s['nonzero'] for s in a['per_seed']])} | {', '.join(a['widths']) or '-'} "
                f"| {a['early_where_teacher_finished']} of {a['episodes']} | {_range(a['instructions'] or [])} "
                f"| {_range(a['cycles'] or [])} | {', '.join(a['bench_kernels']) or '-'} "
                f"| {_range(a['policy_bytes'] or [])} | {_range(a['policy_ram_bytes'] or [])} "
                f"| {_fmt(a['seconds_median'], 0)} | {a['bar']} |")
        lines.append("")
    lines += ["Bar: mean return >= 95 % of the teacher's, no seed below 90 %, >= 95 % of the teacher's weights "
              "removed, no early termination on an episode the teacher finishes; open: seeds still to run and no "
              "finished seed has broken a per-seed part of it yet. IQM: interquartile mean over "
              "seeds (rliable's definition; with fewer than 4 seeds it equals the mean) with a percentile-bootstrap "
              "95 % interval over seeds (2000 resamples), wide with 3 seeds.", ""]
    return "\n".join(lines)


def summary_table(plan: Plan, aggs: list[dict], labels: list[str] | None = None) -> str:
    """One row per environment and method: the ablation plans' metrics side by side."""
    lines = ["| environment | method | seeds | % of teacher (mean +- std over seeds; worst seed) | D4RL score "
             "| early ends where teacher finished | spread of last 3 evaluations (% of teacher) "
             "| largest drop below the running best, 2nd half (% of teacher) "
             "| weights pruned (student) | nonzero "
             "| pruning rule | M4F instructions | M4F cycles (est.) | kernel | policy flash B | policy RAM B "
             "| distill s (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in aggs:
        if labels is not None and a["label"] not in labels:
            continue
        if not a["done"]:
            lines.append(f"| {a['env']} | {a['label']} | 0/{a['seeds']} |" + " - |" * 14)
            continue
        lines.append(
            f"| {a['env']} | {a['label']} | {a['done']}/{a['seeds']} "
            f"| {_fmt(a['vs_teacher_mean'], pct=True)} +- {_fmt(a['vs_teacher_std'], pct=True)}; "
            f"{_fmt(a['vs_teacher_worst'], pct=True)} "
            f"| {_fmt(a['d4rl_mean'])} | {a['early_where_teacher_finished']} of {a['episodes']} "
            f"| {_fmt(a['last_evals_spread'], pct=True)} | {_fmt(a['largest_drop'], pct=True)} "
            f"| {_fmt(a['sparsity_mean'], pct=True)} | {_range([x['nonzero'] for x in a['per_seed']])} "
            f"| {a['pruning_rule'] or '-'} | {_range(a['instructions'] or [])} | {_range(a['cycles'] or [])} "
            f"| {', '.join(a['bench_kernels']) or '-'} "
            f"| {_range(a['policy_bytes'] or [])} | {_range(a['policy_ram_bytes'] or [])} "
            f"| {_fmt(a['seconds_median'], 0)} |")
    return "\n".join(lines) + "\n"


def _plots(plan: Plan, rows: list[dict], aggs: list[dict], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    written = []
    for env in plan.envs:
        ar = [a for a in aggs if a["env"] == env and a["done"]]
        if not ar:
            continue
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12.5, 4))
        for i, a in enumerate(ar):
            vs = [s["vs_teacher"] for s in a["per_seed"] if s["vs_teacher"] is not None]
            a1.bar(i, np.mean(vs) * 100 if vs else 0, color="tab:blue", alpha=0.5)
            a1.scatter([i] * len(vs), [100 * v for v in vs], color="k", s=12, zorder=3)
            # Ten colours in the cycle; past them the marker changes, so up to fifty methods look distinct.
            a2.scatter([s["nonzero"] for s in a["per_seed"]], [100 * (s["vs_teacher"] or 0) for s in a["per_seed"]],
                       label=a["label"], s=20, marker="os^Dv"[(i // 10) % 5])
        a1.set_xticks(range(len(ar)), [a["label"] for a in ar], rotation=30, ha="right", fontsize=7)
        a1.axhline(95, color="grey", ls=":")
        a1.set_ylabel("return, % of teacher (bar: mean; dots: seeds)")
        a2.set_xscale("log")
        a2.set_xlabel("nonzero parameters")
        a2.set_ylabel("return, % of teacher")
        a2.axhline(95, color="grey", ls=":")
        # Beside the axes, not over them: a legend inside covers points wherever it is put.
        a2.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        fig.suptitle(env)
        name = f"{env}.png"
        save_png(fig, out / name)
        written.append(name)
        for group, labels in [("", None), *plan.groups.items()]:
            curves = _curves(plan, env, [a for a in ar if labels is None or a["label"] in labels], rows, out, group)
            if curves:
                written.append(curves)
        if (online := _env_step_curves(plan, env, rows, out)):
            written.append(online)
    return written


def _env_step_curves(plan: Plan, env: str, rows: list[dict], out: Path) -> str | None:
    """<env>.env-curves.png: periodic evaluation return against environment steps for the methods
    that learn by interacting with the environment (online SAC, the online distillation rules), from
    the cells' summaries, with the teacher's return and BPD's (offline, from the teacher's dataset) as
    references. An existing plot is kept when no summary holds a curve any more."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    name = f"{env}.env-curves.png"
    fig, ax = plt.subplots(figsize=(7, 4))
    any_curve, missing = False, []
    for label in plan.methods:
        done = [r["result"] for r in rows if r["env"] == env and r["label"] == label and r["result"]]
        if not any((d.get("train") or {}).get("control") not in (None, "teacher") for d in done):
            continue  # learns from the teacher's dataset (summaries older than the control field say None)
        curves = [((d.get("train") or {}).get("curve") or {}) for d in done]
        curves = [(c["env_steps"], c["return"]) for c in curves if len(set(c.get("env_steps") or [])) > 1]
        if curves:
            any_curve = True
            n = min(len(c[0]) for c in curves)
            y = np.array([c[1][:n] for c in curves])
            note = "" if len(curves) == len(done) else f" ({len(curves)} of {len(done)} seeds)"
            line, = ax.plot(curves[0][0][:n], y.mean(0), label=label + note)
            ax.fill_between(curves[0][0][:n], y.min(0), y.max(0), alpha=0.15, color=line.get_color())
        elif done:
            missing.append(label)
    if not any_curve:
        plt.close(fig)
        return name if (out / name).is_file() else None
    finished = [r["result"] for r in rows if r["env"] == env and r["result"]]
    teacher = next((d["teacher"]["return_mean"] for d in finished if (d.get("teacher") or {}).get("return_mean")), None)
    if teacher is not None:
        ax.axhline(teacher, color="grey", ls="--", lw=1, label="teacher (30 reporting episodes)")
    bpd = [d["eval"]["return_mean"] for d in finished if d["method"] == "bpd" and d["label"] == "bpd"]
    if bpd:
        steps = next((d["train"].get("env_steps") for d in finished if d["label"] == "bpd"), None)
        ax.axhline(float(np.mean(bpd)), color="k", ls=":", lw=1,
                   label=f"bpd, offline from {steps:,} teacher steps ({len(bpd)} seeds, reporting episodes)"
                   if steps else f"bpd ({len(bpd)} seeds)")
    if missing:
        ax.text(0.0, -0.16, "\n".join(textwrap.wrap("no curve kept (cells run before summaries held one): "
                                                    + ", ".join(missing), 140)),
                fontsize=6, transform=ax.transAxes, va="top")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (band: min-max over seeds)", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(f"{env}: learning by interaction")
    save_png(fig, out / name)
    return name


def _curves(plan: Plan, env: str, ar: list[dict], rows: list[dict], out: Path, group: str = "") -> str | None:
    """Learning curves (periodic evaluation return) of the runs whose summaries hold one, one PNG; the
    legend says how many seeds each line has where some lack a curve (summaries older than curves)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    fig, ax = plt.subplots(figsize=(7, 4))
    any_curve = False
    missing: list[str] = []
    for a in ar:
        done = [r["result"] for r in rows if r["env"] == env and r["label"] == a["label"] and r["result"]]
        curves = [((d.get("train") or {}).get("curve") or {}) for d in done]
        curves = [(c["step"], c["return"]) for c in curves if c.get("step")]
        if curves:
            any_curve = True
            n = min(len(c[0]) for c in curves)
            y = np.array([c[1][:n] for c in curves])
            note = "" if len(curves) == len(done) else f" ({len(curves)} of {len(done)} seeds)"
            ax.plot(curves[0][0][:n], y.mean(0), label=a["label"] + note)
            ax.fill_between(curves[0][0][:n], y.min(0), y.max(0), alpha=0.15)
        elif done:
            missing.append(a["label"])
    if any_curve and missing:
        import textwrap
        text = textwrap.wrap("no curve kept (cells run before summaries held one; see the plot's git history): "
                             + ", ".join(missing), 140)
        ax.text(0.0, -0.16, "\n".join(text), fontsize=6, transform=ax.transAxes, va="top")
    slug = "".join(ch if ch.isalnum() else "-" for ch in group.lower()).strip("-")
    name = f"{env}.{slug}.curves.png" if group else f"{env}.curves.png"
    if any_curve:
        ax.set_xlabel("gradient step")
        ax.set_ylabel("periodic evaluation return (mean, min-max over seeds)")
        ax.legend(fontsize=6)
        ax.set_title(f"{env}: {group}" if group else env)
        save_png(fig, out / name)
        return name
    plt.close(fig)
    # no summary holds a curve (cells restored from summaries older than curves): the plot drawn when
    # their run directories were at hand stays
    return name if (out / name).is_file() else None


def merged_sessions(plan: Plan, out: Path) -> list[dict]:
    """The runner's invocations: those committed with an earlier table (out/sessions.json, which
    outlives a lost run root) and those in the run root, once each (by start time and process); of
    two records of one invocation the later, longer one (a table written while it ran keeps the shorter)."""
    by_key: dict[str, dict] = {}
    for path in (out / "sessions.json", plan.runs / "sessions.json"):
        for s in (_read_json(path) or {}).get("sessions", []):
            k = _session_key(s)
            if k not in by_key or (s.get("wall_seconds") or 0) > (by_key[k].get("wall_seconds") or 0):
                by_key[k] = s
    return list(by_key.values())


def sessions_wall_seconds(sessions: list[dict]) -> float:
    """Wall time the runner was at work: invocations that overlapped (runners sharing a run root with
    --only) count once; entries without a parsable start (summed records) add their own length."""
    spans, total = [], 0.0
    for s in sessions:
        try:
            t0 = time.mktime(time.strptime(str(s.get("started")), "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            total += s.get("wall_seconds") or 0
            continue
        spans.append((t0, t0 + (s.get("wall_seconds") or 0)))
    end = float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def write_table(plan: Plan, out: Path) -> dict:
    """table.md, table.csv (one row per method), cells.csv (one row per seed), plots and a copy of
    every finished cell's result.json under cells/ (small, committed)."""
    import csv
    import io

    rows = collect_results(plan)
    aggs = aggregate(rows)
    out.mkdir(parents=True, exist_ok=True)
    sessions = merged_sessions(plan, out)
    cpu_seconds = sum(r["result"]["train"]["seconds"] or 0 for r in rows if r["result"])
    md = [f"# {plan.name}", "", f"Plan: `{plan.rel(plan.path)}`; regenerate with `bpd experiment run "
          f"{plan.rel(plan.path)}` then `bpd experiment table {plan.rel(plan.path)} --out {plan.rel(out)}`.", "",
          f"Cells: {sum(r['state'] == 'done' for r in rows)} done, {sum(r['state'] == 'failed' for r in rows)} failed, "
          f"{sum(r['state'] not in ('done', 'failed') for r in rows)} not run, of {len(rows)}. "
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
            "worst_seed", "return_iqm", "vs_teacher_mean", "vs_teacher_worst", "d4rl_mean", "nonzero_mean",
            "weights_removed_min", "early_where_teacher_finished", "seconds_median", "meets_bar"]
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


# --------------------------------------------------------------------------- command line


@dataclass
class ExperimentRunConfig:
    plan: str = field(help="plan file (YAML)", positional=True)
    workers: int = field(1, help="cells at once (local threads or Ray tasks)")
    engine: str = field("local", help="where cells run", choices=("local", "ray"))
    address: str | None = field(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    runs: str | None = field(None, help="run root (default: $BPD_RUNS/<plan name>, else ../bpd-runs/<name>)")
    only: list[str] | None = field(None, help="run only cells whose key (ENV/LABEL/seedN) starts with one of these")
    retrain: bool = field(False, help="train again the cells the run root lacks even where a committed "
                                      "summary exists (to recreate their checkpoints); `experiment table` "
                                      "then commits the new summaries")


@dataclass
class ExperimentTableConfig:
    plan: str = field(help="plan file (YAML)", positional=True)
    out: str | None = field(None, help="output directory (default: benchmarks/results/<plan name>)")
    runs: str | None = field(None, help="run root (default: as for `experiment run`)")


@dataclass
class ExperimentStatusConfig:
    plan: str = field(help="plan file (YAML)", positional=True)
    runs: str | None = field(None, help="run root (default: as for `experiment run`)")


def cmd_run(cfg: ExperimentRunConfig) -> int:
    if not 1 <= cfg.workers <= 1024:
        raise BpdError("--workers must be between 1 and 1024")
    plan = load_plan(cfg.plan, cfg.runs)
    check_plan_envs(plan)
    check_plan_teachers(plan)
    print(f"plan {plan.name}: {len(plan.cells())} cells in {plan.rel(plan.runs)} "
          f"({cfg.engine}, {cfg.workers} worker{'s' if cfg.workers > 1 else ''})", flush=True)
    recs = run_plan(plan, cfg.workers, cfg.engine, cfg.address, cfg.only, echo=lambda s: print(s, flush=True),
                    retrain=cfg.retrain)
    failed = [k for k, r in recs.items() if r.get("state") != "done"]
    print(f"{len(recs) - len(failed)} done, {len(failed)} failed")
    return 1 if failed else 0


def cmd_table(cfg: ExperimentTableConfig) -> dict:
    plan = load_plan(cfg.plan, cfg.runs)
    check_plan_envs(plan)
    out = Path(cfg.out) if cfg.out else plan.results_dir
    return write_table(plan, out)


def cmd_status(cfg: ExperimentStatusConfig) -> list[dict]:
    plan = load_plan(cfg.plan, cfg.runs)
    check_plan_envs(plan)
    return plan_status(plan)
