"""Scheduling a plan: every unfinished cell once, dependencies first, on an engine; and the check that a
run root belongs to the plan."""

from __future__ import annotations

import time
from collections.abc import Callable

from bpd.errors import BpdError, Stopped
from bpd.io import check_output_dir, write_json
from bpd_app.experiment.cells import BUSY, mark_interrupted
from bpd_app.experiment.engines import _local_engine, _ray_engine
from bpd_app.experiment.plan import Cell, Plan, _digest, cell_spec, stale_reason
from bpd_app.experiment.results import restore_committed
from bpd_app.experiment.sessions import _record_session
from bpd_app.experiment.summary import _read_json

STOP_NOTE = ("the cells running are recorded as interrupted; the same `bpd experiment run` again resumes them and "
             "keeps the finished ones")


def _deps(plan: Plan, cell: Cell) -> list[str]:
    return [f"{cell.env}/{label}/seed{cell.seed}" for label in plan.methods[cell.label].needs.values()]


def select_cells(plan: Plan, only: list[str] | None) -> list[Cell]:
    """The plan's cells whose key (ENV/LABEL/seedN) starts with one of `only` (None: every cell); an `only` that
    selects none is one line with the keys' form, not a run that does nothing."""
    cells = [c for c in plan.cells() if not only or any(c.key.startswith(o) for o in only)]
    if only and not cells:
        example = plan.cells()[0].key
        raise BpdError(f"--only {' '.join(only)}: no cell of plan {plan.name} has a key starting so (keys are "
                       f"ENV/LABEL/seedN, such as {example}; `bpd experiment status` lists them)")
    return cells


def run_plan(plan: Plan, workers: int = 1, engine: str = "local", address: str | None = None,
             only: list[str] | None = None, echo: Callable[[str], None] = print, retrain: bool = False) -> dict:
    """Run every unfinished cell, dependencies first; returns {cell key: cell.json record}. With `retrain`
    the committed summaries are not restored, so cells the run root lacks are trained again (to recreate
    products, such as checkpoints, that a lost run root took with it), and so are the cells (of `only`) that an
    earlier run restored from them."""
    cells = select_cells(plan, only)
    by_key = {c.key: c for c in cells}
    check_run_root(plan)
    if engine == "ray":  # an engine that cannot start leaves no run root behind
        submit, wait, stop, shutdown = _ray_engine(plan, workers, address)
    elif engine == "local":
        submit, wait, stop, shutdown = _local_engine(plan, workers)
    else:
        raise BpdError(f"unknown engine {engine!r} (local or ray)")
    plan.runs.mkdir(parents=True, exist_ok=True)
    write_json(plan.runs / "plan.json", {"plan": plan.rel(plan.path), "raw": plan.raw})
    restored = [] if retrain else restore_committed(plan)
    if retrain:  # a cell restored earlier holds a committed summary and no products: it lacks them, so trained again
        again = [c for c in cells if (_read_json(c.dir / "cell.json") or {}).get("restored_from")]
        for c in again:
            _mark_retrain(plan, c)
        if again:
            echo(f"{len(again)} restored cell{'s' if len(again) != 1 else ''} (committed summaries, no products) "
                 "to train again")
        here = [c for c in cells if c not in again and (c.dir / "result.json").exists()]
        if here:
            echo(f"--retrain keeps the {len(here)} selected cell{'s' if len(here) != 1 else ''} trained in this run "
                 f"root (remove a cell's directory, such as {here[0].dir}, to train it again)")
    if restored:
        echo(f"{len(restored)} finished cells restored from the committed summaries in {plan.rel(plan.results_dir)}")
    started = time.time()
    records: dict[str, dict] = {}
    _record_session(plan, started, workers, engine, records)
    from bpd_app.experiment.cells import clear_stop

    clear_stop()
    running: dict = {}
    try:
        envs = sorted({c.env for c in cells if (_read_json(c.dir / "cell.json") or {}).get("state") != "done"})
        handles = {submit(("prepare", env)): env for env in envs}
        for h, (ok, err) in wait(list(handles)):
            env = handles[h]
            state, err = ("pending", ok["error"]) if isinstance(ok, dict) else ("failed", err)  # its Ray task stopped
            if err:
                echo(f"{env}: preparing {'failed' if state == 'failed' else 'stopped'}: {err}")
                for c in cells:
                    if c.env == env:
                        records[c.key] = {"cell": c.key, "state": state, "error": f"preparing {env}: {err}"}
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
        lacking = _restored_needs_with_products(plan, list(pending.values()))
        if lacking and not retrain:  # trained again only when asked: a new student would replace the committed one
            from bpd_app.methods import get

            for k, c in list(pending.items()):
                if get(plan.methods[c.label].method).reads_needed_products and (
                        miss := [d for d in _deps(plan, c) if d in lacking]):
                    err = (f"needs the export or student of {miss[0]}, restored from its committed summary (which "
                           f"keeps neither): `bpd experiment run {plan.rel(plan.path)} --retrain --only {miss[0]}` "
                           "trains it again")
                    records[k] = {"cell": k, "state": "failed", "error": err}
                    pending.pop(k)
                    done_n += 1
                    echo(f"[{done_n}/{total}] {k}: FAILED: {err}")
        for d in (lacking.values() if retrain else ()):
            _mark_retrain(plan, d)
            was = records.pop(d.key, None)
            if d.key not in by_key:
                total += 1
            elif was is not None:  # counted done above
                done_n -= 1
            by_key[d.key] = pending[d.key] = d
            echo(f"{d.key}: restored from its committed summary, which keeps no products; trained again, since a "
                 "cell that needs it reads them")
        while pending or running:
            for k, c in list(pending.items()):
                deps = _deps(plan, c)
                if busy := [d for d in deps if records.get(d, {}).get("state") == BUSY]:
                    records[k] = {"cell": k, "state": BUSY, "error": f"needs {busy[0]}, which another runner runs"}
                    pending.pop(k)
                    done_n += 1
                    echo(f"[{done_n}/{total}] {k}: left, it needs {busy[0]}, which another runner is running")
                elif stopped := [d for d in deps if records.get(d, {}).get("state") == "interrupted"]:
                    records[k] = {"cell": k, "state": "pending", "error": f"needs {stopped[0]}, which was interrupted"}
                    pending.pop(k)
                    done_n += 1
                    echo(f"[{done_n}/{total}] {k}: left, it needs {stopped[0]}, which was interrupted")
                elif any(d in records and records[d].get("state") != "done" for d in deps):
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
                records[k] = {"cell": k} | rec if rec else {"cell": k, "state": "failed", "error": err}
                if records[k].get("state") == "interrupted":  # its Ray task stopped: as its cell records it (marked
                    mark_interrupted(by_key[k], records[k]["error"])  # here where its worker died without a word)
                    records[k] = _read_json(by_key[k].dir / "cell.json") or records[k]
                _record_session(plan, started, workers, engine, records)
                done_n += 1
                r = records[k]
                if r.get("state") == BUSY:
                    echo(f"[{done_n}/{total}] {k}: left to another runner of this run root, which is running it")
                elif r.get("state") == "interrupted":
                    echo(f"[{done_n}/{total}] {k}: interrupted: {r.get('error')}")
                elif r.get("state") == "done":
                    res = _read_json(by_key[k].dir / "result.json") or {}
                    echo(f"[{done_n}/{total}] {k}: done in {r.get('seconds', 0):.0f} s, return "
                         f"{(res.get('eval') or {}).get('return_mean', float('nan')):.1f}, "
                         f"{res.get('params_nonzero')} nonzero")
                else:
                    echo(f"[{done_n}/{total}] {k}: FAILED: {r.get('error')}")
    except KeyboardInterrupt as e:  # its running stages stop with it: a SIGTERM or SIGHUP to the runner alone passed
        # on as itself, a Ctrl-C as SIGTERM (a stage that had the Ctrl-C from the terminal too ignores it); on Ray its
        # tasks are cancelled, each stopping its stage so, and a cell whose task ended without recording its stop (the
        # grace over, its worker killed) is recorded interrupted here once its worker is gone
        import signal

        why = str(e) if isinstance(e, Stopped) else "SIGINT (Ctrl-C)"  # what the cells' errors name
        stop(list(running), e.signum if isinstance(e, Stopped) else signal.SIGTERM, why)
        shutdown()
        for k in running.values():
            mark_interrupted(by_key[k], f"stopped by {why}")
        _record_session(plan, started, workers, engine, records)  # the runner's time up to its stop
        e.bpd_note = STOP_NOTE  # type: ignore[attr-defined]  # bpd_app/cli.py prints it after "interrupted"
        raise
    finally:
        shutdown()
    _record_session(plan, started, workers, engine, records)
    return records


def _mark_retrain(plan: Plan, c: Cell) -> None:
    """A restored cell to be trained again: marked, not emptied (another runner's restore leaves a mark alone)."""
    (c.dir / "result.json").unlink(missing_ok=True)
    write_json(c.dir / "cell.json", {"cell": c.key, "state": "retrain", "spec_digest": _digest(cell_spec(plan, c))})


def _restored_needs_with_products(plan: Plan, pending: list[Cell]) -> dict[str, Cell]:
    """The needed cells (by key), restored from committed summaries, of pending cells whose methods read the
    needed cell's products (its export, student or run), which a summary does not keep; and theirs in turn."""
    from bpd_app.methods import get

    cells = {c.key: c for c in plan.cells()}
    out: dict[str, Cell] = {}
    while pending:  # a needed cell trained again may itself read the products of one restored
        c = pending.pop()
        if get(plan.methods[c.label].method).reads_needed_products:
            for d in _deps(plan, c):
                if d in cells and d not in out and (_read_json(cells[d].dir / "cell.json") or {}).get("restored_from"):
                    out[d] = cells[d]
                    pending.append(cells[d])
    return out


def check_run_root(plan: Plan) -> None:
    """A run root is this plan's (its plan.json names the plan) or new: another plan's, or a directory of
    something else, is never written into; one that cannot be made or written is one line before any work."""
    check_output_dir(plan.runs)
    pj = plan.runs / "plan.json"
    if pj.is_file():
        old = _read_json(pj)
        if old is None or old.get("plan") != plan.rel(plan.path):
            made_by = (old or {}).get("plan", "an unreadable plan.json")
            raise BpdError(f"{plan.runs}: the run root of {made_by}, not of {plan.rel(plan.path)}; "
                           "give this plan another --runs")
    elif plan.runs.exists() and (not plan.runs.is_dir() or any(plan.runs.iterdir())):
        raise BpdError(f"{plan.runs}: exists and is not a run root (no plan.json); give another --runs")
