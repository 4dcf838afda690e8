"""Executing one cell: the shared preparation of an environment (dataset, teacher's evaluation) and
the `bpd` stages of a cell (train, evaluate, export, bench), each a subprocess logged to cell.log."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from bpd.errors import BpdError
from bpd.io import bpd_executable, write_json, write_text
from bpd_app.experiment.plan import Cell, Plan, _digest, cell_spec, load_plan, stale_reason
from bpd_app.experiment.summary import (
    BENCH_TARGET,
    _bench_figures,
    _cell_result,
    _curve,
    _last_evals,
    _machine,
    _online_train_summary,
    _read_json,
    shipped_nonzero,
)


class StageFailed(Exception):
    pass


class StageStopped(Exception):
    """A stage ended by the signal that stopped the runner: its cell is interrupted (the next run resumes it), neither
    failed nor done without the stage's figures."""


_LIVE: set[subprocess.Popen] = set()  # the stages running now, in the runner's worker threads
_LIVE_LOCK = threading.Lock()


_STOPPED: list = []  # the signal that stopped the runner, and what sent it: a stage started after it gets it at once
CANCELLED = "the cancellation of its Ray task"  # a Ray task's stop: Ray raises KeyboardInterrupt in the task
# set in a Ray worker running a task (start_ray_task): a KeyboardInterrupt there is its cancellation; in the runner's
# own process (a stage `--rebench` runs in its main thread) it is the user's Ctrl-C or a supervisor's stop, passed on
_RAY_TASK = threading.Event()


def clear_stop() -> None:
    """No stop yet (a run's start, a Ray task's start in a worker that an earlier, cancelled task stopped)."""
    with _LIVE_LOCK:
        _STOPPED.clear()


def start_ray_task() -> None:
    """A Ray task's start in its worker: no stop yet (an earlier task of the worker may have been cancelled), and a
    KeyboardInterrupt from here on is the task's cancellation."""
    clear_stop()
    _RAY_TASK.set()


def stop_stages(signum: int, why: str | None = None) -> None:
    """Send every running stage the signal that stopped the runner (SIGTERM or SIGHUP to the runner alone, as a
    supervisor's `kill PID` sends it; Ctrl-C reaches the whole process group by itself): each stops as Ctrl-C
    stops it, so that the runner's pool ends with them rather than after their cells. A stage a worker starts
    after this gets the same signal as it starts. `why`: what stopped it, where not the signal (CANCELLED)."""
    with _LIVE_LOCK:
        _STOPPED[:] = [signum, why or signal.Signals(signum).name]
        for proc in list(_LIVE):
            if proc.poll() is None:
                proc.send_signal(signum)


# Started before each stage on Linux: the stage gets SIGTERM when the runner's thread that started it dies (a
# SIGKILLed runner, an OOM kill), so no orphaned stage writes into a cell that the next run resumes. What
# bpd.process.die_with_parent does, in the child itself: a preexec_fn is not safe in the runner's worker threads.
_ORPHAN_GUARD = ("import ctypes, os, signal, sys\n"
                 "try:\n    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
                 "except (OSError, AttributeError):\n    pass\n"
                 "if os.getppid() != int(sys.argv[1]):\n    sys.exit(143)  # the runner died before the guard was set\n"
                 "os.execv(sys.argv[2], sys.argv[2:])\n")


def stage_command(argv: list[str]) -> list[str]:
    """The command line of the stage `bpd argv`: on Linux behind _ORPHAN_GUARD, which execs it."""
    cmd = [bpd_executable(), *argv]
    if sys.platform.startswith("linux"):
        return [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *cmd]
    return cmd


def _run(argv: list[str], log: Path, stdout: Path | None = None, cwd: Path | None = None) -> None:
    """Run `bpd argv`, appending its output to the cell log; stdout optionally captured to a file. A stage that
    the runner's stop ended raises StageStopped, any other that fails StageFailed."""
    cmd = stage_command(argv)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "a") as lf:
        lf.write(f"$ bpd {' '.join(argv)}\n")
        lf.flush()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE if stdout else lf, stderr=subprocess.PIPE, text=True,
                              cwd=cwd, env=env) as proc:
            with _LIVE_LOCK:
                _LIVE.add(proc)
                if _STOPPED:  # the runner stopped while this stage started
                    proc.send_signal(_STOPPED[0])
            try:
                try:
                    out, err = _communicate(proc)
                except KeyboardInterrupt:  # its Ray task cancelled: the stage stopped as the runner's stop stops it
                    if not _RAY_TASK.is_set():
                        raise
                    stop_stages(signal.SIGTERM, CANCELLED)
                    out, err = proc.communicate()
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
        lf.write(err)
    if proc.returncode != 0:
        last = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        if (why := _stopped_by()) is not None:
            raise StageStopped(f"stopped by {why} in its {argv[0]} stage")
        raise StageFailed(f"bpd {argv[0]} exited {proc.returncode}: {last}")
    if stdout is not None:
        write_text(stdout, out)


def _communicate(proc: subprocess.Popen) -> tuple[str, str]:
    """proc.communicate(), woken each second: a Ray task's cancellation (a KeyboardInterrupt Ray raises in the task's
    thread) lands only between Python's instructions, which a wait without a timeout holds off to the stage's end."""
    while True:
        try:
            return proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue


def _stopped_by() -> str | None:
    """What stopped the runner (its signal's name, or CANCELLED), or None while it runs."""
    with _LIVE_LOCK:
        return _STOPPED[1] if _STOPPED else None


def prepare_env(plan: Plan, env: str) -> None:
    """The datasets (the plan's, shared, and any a method collects with keys of its own) and the teacher's
    evaluation on the reporting seeds, once per environment."""
    teacher = plan.teachers[env]
    if not teacher.is_file():
        raise StageFailed(f"{plan.rel(teacher)}: no such teacher file")
    log = plan.runs / "prepare.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(plan.runs / f".prepare-{env}.lock", "a") as claim:  # another runner of this run root preparing the
        while True:  # same environment is waited for, not raced into the same dataset file; a stop ends the wait
            try:
                fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if (why := _stopped_by()) is not None:
                    raise StageStopped(f"stopped by {why} while another runner prepared {env}") from None
                time.sleep(0.5)
        _prepare_env(plan, env, teacher, log)


def _prepare_env(plan: Plan, env: str, teacher: Path, log: Path) -> None:
    from bpd_app.methods import get

    wanted = {}  # every dataset the plan's methods learn from (the plan's, and those of methods with their own)
    for m in plan.methods.values():
        if get(m.method).uses_dataset:
            d = plan.cell_dataset(m.label)
            wanted[plan.dataset_path(env, d)] = d
    for ds, d in wanted.items():
        if not ds.exists():
            _run(["collect", "--teacher", str(teacher), "--out", str(ds), "--steps", str(d["steps"]),
                  "--noise", str(d["noise"]), "--seed", str(d["seed"]), "--no-progress"], log)
    te = plan.teacher_eval_path(env)
    if not te.exists():
        _run(["evaluate", str(teacher), "--env", env, "--episodes", str(plan.eval["episodes"]),
              "--seed", str(plan.eval["seed"]), "--json"], log, stdout=te)


def export_argv(plan: Plan, cell: Cell, product: Path, out: Path) -> list[str]:
    """The cell's export. --episodes 0: the cells' cost is the float kernel the rule picks, as for every
    committed cell (whose checkpoints are gone), so that a table compares methods on one kernel; the integer
    kernel is built and measured beside it (the bench's `integer` figures), and what it costs where the export
    ships it (it keeps the return) is benchmarks/cost_benchmark.py's."""
    return ["export", str(product), "--out", str(out), "--episodes", "0", "--dataset",
            str(plan.cell_dataset_path(cell)), "--teacher", str(plan.teachers[cell.env])]


def bench_argv(plan: Plan, cell: Cell, export: Path, out: Path) -> list[str]:
    return ["bench", str(export), "--out", str(out), "--targets", BENCH_TARGET, "--no-peers", "--no-plot", "--teacher",
            str(plan.teachers[cell.env]), "--host-iters", "2000"]


def integer_form(export: Path) -> str | None:
    """The form of the integer kernel an export built, as its report names it (None: no report, or no integer
    kernel, a network it does not take)."""
    rep = _read_json(export / "export_report.json") or {}
    return (((rep.get("kernel") or {}).get("candidates") or {}).get("integer") or {}).get("form")


def kernel_current(export: Path) -> bool:
    """Whether an export built its integer kernel in the current form (an export without one has nothing to build
    again)."""
    from export.fixed_point import int_form

    form = integer_form(export)
    return form is None or form == int_form(True)


def rebench_cell(plan: Plan, cell: Cell) -> str:
    """A finished cell's export and bench made again where its integer kernel is of an earlier form (after a
    change to the kernels: `bpd experiment run --rebench`), so that the tables' cost columns are the current
    kernels'. The old ones are moved aside (export.old, bench.old) and the new ones written in their places (so
    that their records name them); a failure, or an interruption found on the next call, puts the old ones
    back. Returns what it did."""
    from bpd_app.methods import get

    pairs = [(cell.dir / n, cell.dir / f"{n}.old") for n in ("export", "bench")]
    for cur, old in pairs:  # an earlier call stopped before it finished: its old figures back
        if old.exists():
            shutil.rmtree(cur, ignore_errors=True)
            old.rename(cur)
    rec = _read_json(cell.dir / "cell.json") or {}
    exp = cell.dir / "export"
    if rec.get("state") != "done" or rec.get("restored_from") or not (exp / "export.json").is_file():
        return "not finished here, or no export: left"
    if kernel_current(exp):
        return "current"
    product = cell.dir / "run" / get(plan.methods[cell.label].method).product
    if not product.is_file():
        return "its product is gone: left"
    if shutil.which("arm-none-eabi-gcc") is None:
        raise StageFailed("measuring again needs arm-none-eabi-gcc, which is not installed")
    for cur, old in pairs:
        if cur.exists():
            cur.rename(old)
    log = cell.dir / "cell.log"
    try:
        _run(export_argv(plan, cell, product, exp), log)
        _run(bench_argv(plan, cell, exp, cell.dir / "bench"), log)
    except BaseException:
        for cur, old in pairs:
            shutil.rmtree(cur, ignore_errors=True)
            if old.exists():
                old.rename(cur)
        raise
    for _, old in pairs:
        shutil.rmtree(old, ignore_errors=True)
    return "measured again"


RESUMES = "`bpd experiment run` again resumes it"


def mark_interrupted(cell: Cell, why: str) -> bool:
    """A cell whose run ended without recording it (its Ray worker killed, its task cancelled before it could say),
    left marked running: recorded interrupted with `why`, so that status and table say so and the next run resumes
    it. Left alone where another runner holds it, or where it recorded its own end. Returns whether it marked it."""
    import fcntl

    rec = _read_json(cell.dir / "cell.json") or {}
    if rec.get("state") != "running":
        return False
    with open(cell.dir / ".runner.lock", "a") as claim:
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        write_json(cell.dir / "cell.json", rec | {"state": "interrupted", "error": f"{why}; {RESUMES}"})
    return True


BUSY = "busy"  # the state of a cell another runner sharing the run root is running now (not recorded in cell.json)


def execute_cell(plan_path: str, cell_key: str, runs: str | None = None) -> dict:
    """Train, evaluate, export and measure one cell; returns its cell.json record. Never raises. A cell that
    another runner sharing the run root (`--only`, a second terminal) holds is left to it: {"state": BUSY}."""
    import fcntl

    plan = load_plan(plan_path, runs)
    cell = next(c for c in plan.cells() if c.key == cell_key)
    cell.dir.mkdir(parents=True, exist_ok=True)
    with open(cell.dir / ".runner.lock", "a") as claim:  # held while the cell runs; released if the runner dies
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another runner (a file system without locks fails the runner at its
            # start already: sessions.py locks the run root's sessions.json the same way)
            return {"cell": cell.key, "state": BUSY, "error": "another runner of this run root is running it"}
        return _execute_cell(plan, cell)


def _execute_cell(plan: Plan, cell: Cell) -> dict:
    from bpd_app.methods import CellInputs, get

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
    # an earlier run of this specification stopped: the stages it finished are not run again, and their commands
    # (what reruns the cell by hand) and times stay in the record, those run again replaced
    earlier = old if old.get("spec_digest") == digest else {}
    ran: list[str] = []

    def commands() -> list[str]:
        again = {c.split()[1] for c in ran}
        return [c for c in earlier.get("commands") or [] if c.split()[1] not in again] + ran

    def stage(name: str, argv: list[str], stdout: Path | None = None) -> None:
        ran.append("bpd " + " ".join(argv))
        rec["commands"] = commands()
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
        inputs = CellInputs(cell.env, cell.seed, str(teacher), str(plan.cell_dataset_path(cell)), cell.dir / "run",
                            spec["args"], deps, tmeta)
        product = cell.dir / "run" / method.product
        train_summary = cell.dir / "run" / "summary.json"
        t_train = time.time()
        if not product.exists() or (method.writes_summary and not train_summary.exists()):
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
                    stage("export", export_argv(plan, cell, product, exp))
                export_info = _read_json(exp / "export.json")
                bj = cell.dir / "bench" / "bench.json"
                if not bj.exists() and shutil.which("arm-none-eabi-gcc"):
                    stage("bench", bench_argv(plan, cell, exp, cell.dir / "bench"))
                bench = _bench_figures(_read_json(bj) or {})
            except StageFailed as e:
                rec["export_error"] = str(e)
        online = {} if train_summary.exists() else _online_train_summary(product)
        result = _cell_result(plan, cell, spec, _read_json(train_summary) or online, _read_json(ev_path) or {},
                              _read_json(plan.teacher_eval_path(cell.env)) or {}, export_info, bench, train_seconds,
                              None if export_info else shipped_nonzero(product))
        result["train"]["last_evals"] = _last_evals(cell.dir / "run" / "metrics.csv")
        result["train"]["curve"] = _curve(cell.dir / "run" / "metrics.csv") or online.get("curve")
        result["export_error"] = rec["export_error"]
        result["spec"], result["spec_digest"] = spec, digest
        result["needs_digests"] = {label: dep.get("spec_digest") for label, dep in deps.items()}
        result["needs_products"] = {label: dep.get("product_sha256") for label, dep in deps.items()}
        from bpd.io import sha256_file
        result["product_sha256"] = sha256_file(product)  # names the model when the run root is gone
        result["machine"] = _machine()
        write_json(result_path, result)
        rec.update(state="done", seconds=round(time.time() - t0, 1), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    except StageStopped as e:  # the runner was stopped: resumed by the next run, as one killed outright is
        rec.update(state="interrupted", error=f"{e}; {RESUMES}", seconds=round(time.time() - t0, 1))
    except KeyboardInterrupt:  # its Ray task cancelled between stages: recorded as stopped, then cancelled on
        stop_stages(signal.SIGTERM, CANCELLED)
        rec.update(state="interrupted", error=f"stopped by {CANCELLED}; {RESUMES}", seconds=round(time.time() - t0, 1),
                   commands=commands(), stage_seconds=(earlier.get("stage_seconds") or {}) | rec["stage_seconds"])
        write_json(status_path, rec)
        raise
    except (StageFailed, BpdError) as e:  # a stage that failed, or a command its method cannot build (what it is
        # sized from is missing): the cell's error as said, not a bug of the runner's
        rec.update(state="failed", error=str(e), seconds=round(time.time() - t0, 1))
    except Exception as e:  # a bug in the runner itself: keep the grid going, keep the evidence
        with open(log, "a") as lf:
            lf.write(traceback.format_exc())
        rec.update(state="failed", error=f"internal error: {e.__class__.__name__}: {e}",
                   seconds=round(time.time() - t0, 1))
    rec["commands"] = commands()
    rec["stage_seconds"] = (earlier.get("stage_seconds") or {}) | rec["stage_seconds"]
    write_json(status_path, rec)
    return rec
