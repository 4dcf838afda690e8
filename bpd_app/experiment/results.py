"""Finished cells wherever they are: the committed summaries, restoring them into a run root, and every
cell's state and summary as the tables and status read them."""

from __future__ import annotations

import os

from bpd.errors import BpdError
from bpd.io import write_json
from bpd_app.experiment.plan import Cell, Plan, _digest, cell_spec, stale_reason
from bpd_app.experiment.summary import _bench_figures, _curve, _online_train_summary, _read_json


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
        if rec.get("state") == "done" and (c.dir / "result.json").exists() or rec.get("state") == "retrain":
            continue  # finished, or to be trained again (`experiment run --retrain`)
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


def recorded_state(rec: dict) -> str:
    """A cell's state as its cell.json records it; one marked running by a process of this machine that is gone (a
    runner or Ray worker killed) is interrupted, as the next run takes it."""
    state = rec.get("state", "pending")
    if state == "running" and rec.get("host") == os.uname().nodename and not _alive(rec.get("pid")):
        return "interrupted"
    return state


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


def collect_results(plan: Plan) -> list[dict]:
    """Every cell's state and summary: from the run root, else from its committed summary where that
    was made under the plan's current specification (see the module's notes)."""
    out = []
    for c in plan.cells():
        rec = _read_json(c.dir / "cell.json") or {}
        state = recorded_state(rec)
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
