"""The runner's invocations (sessions.json): recorded while it runs, merged with those committed beside
a table, and the wall time they add up to."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bpd.io import write_json
from bpd_app.experiment.plan import Plan
from bpd_app.experiment.summary import _read_json


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
