"""`experiment status`: each cell's state and an estimate of the time the unfinished ones still need."""

from __future__ import annotations

import time

import numpy as np

from bpd_app.experiment.plan import Cell, Plan, _digest, cell_spec, stale_reason
from bpd_app.experiment.results import committed_result, recorded_state
from bpd_app.experiment.summary import _read_json


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
        state = recorded_state(rec)
        spec_ok = rec.get("spec_digest") in (None, _digest(cell_spec(plan, c)))
        if state == "done" and (why := stale_reason(plan, c, _read_json(c.dir / "result.json") or rec)):
            state, rec = "failed", rec | {"error": f"{plan.rel(c.dir)} {why}"}
        if state in ("pending", "failed", "interrupted") and spec_ok:
            res = committed_result(plan, c)
            if res is not None:  # committed, not (or no longer) in the run root
                # a run of its own here (`experiment run --retrain`) that failed or was stopped: said, not hidden
                own = (f"its run here {'failed' if state == 'failed' else 'was interrupted'}: `experiment run "
                       "--retrain` resumes it, `experiment run` restores the summary") if state != "pending" else None
                state, rec = "done", {"seconds": (res.get("train") or {}).get("seconds"), "committed": True,
                                      "error": own}
        state = "pending" if state == "retrain" else state  # marked by `experiment run --retrain`, not begun
        recs.append((c, rec))
        stage = None
        if state == "running" and rec.get("commands"):  # the stage it is in: the last `bpd` command it started
            stage = (str(rec["commands"][-1]).split() + ["", ""])[1] or None
        rows.append({"cell": c.key, "state": state, "error": rec.get("error"), "seconds": rec.get("seconds"),
                     "left_seconds": None, "estimate": None, "committed": bool(rec.get("committed")), "stage": stage})
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
    n = sum(bool(r.get("committed")) for r in rows)  # done by a summary only: no run directory, no products
    line = ", ".join(f"{v} {k}" + (f" ({n} of them committed summaries the run root lacks, which `experiment run` "
                                   "restores)" if k == "done" and n else "") for k, v in counts.items())
    todo = [r for r in rows if r["state"] != "done"]
    known = [r for r in todo if r["left_seconds"] is not None]
    if todo and not known:
        line += (f"\nleft: {len(todo)} unfinished cells, no estimate (no finished cell of the same label to go by"
                 + (")" if counts["done"] else " yet)"))
    elif todo:
        n_scaled = sum(r["estimate"] == "scaled" for r in known)
        line += (f"\nleft: about {sum(r['left_seconds'] for r in known) / 3600:.1f} h of one worker for "
                 f"{len(known)} of {len(todo)} unfinished cells ({len(known) - n_scaled} from finished cells of the "
                 f"same environment and label, {n_scaled} scaled from another environment)")
        if len(known) < len(todo):
            line += f"; {len(todo) - len(known)} with nothing to go by"
    return line
