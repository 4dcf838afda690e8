"""The tick log of a trial (ticks.csv): its columns, its row-by-row writer, its reader and the timing
statistics computed from it. A trial writes it; `bpd hil report` and the benchmarks read it.

The columns are the fixed timing fields, in a hand-over trial `classical` (1 where the device's
classical controller drove the tick, its STATE flag), then one per observation (obs0 .. obs{n-1}) and
one per action (action0 .. action{m-1}), sized from the rig. A log written before the sizes followed
the rig (obs0..obs3 and a single `action` column) still reads: `action` is read as action0.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bpd.errors import BpdError

if TYPE_CHECKING:
    from bpd.view import LiveView

TIMING = [("episode", ""), ("step", ""), ("seq", ""), ("device_t_us", "us"), ("device_period_us", "us"),
          ("host_recv_s", "s"), ("host_send_s", "s"), ("host_step_us", "us"), ("host_compute_us", "us"),
          ("rtt_us", "us"), ("infer_ns", "ns"), ("policy_cycles", "cycles"), ("device_jitter_us", "us"),
          ("device_jitter_max_us", "us"), ("deadline_miss", "bool"), ("skipped", "bool"), ("flags", "bits"),
          ("reward", "")]
# The STATE's fields added by protocol 4 (docs/protocol.md, rule 16); a log written before them still reads.
# policy_cycles counts at the device's INFO cycle_hz, which summary.json records (`device.cycle_hz`).
DEVICE_TIMING = ("policy_cycles", "device_jitter_us", "device_jitter_max_us")
# Hand-over trials only (docs/protocol.md, rule 17): 1 where STATE's classical flag (bit 8) was set.
HANDOVER = ("classical", "bool")
CUT_SHORT = "cut short"  # how the summary says an episode ended that the trial's end cut short
SIMULATED = {"sim": "simulated rig", "pil": "QEMU"}  # the live page's name for a simulated device, by --port
# The image under QEMU (-icount shift=0) keeps time by instructions: a virtual nanosecond is one instruction, and the
# host's time passes while the core sleeps (docs/protocol.md rule 16). Its log says so in its units line.
PIL_UNITS = {"infer_ns": "instructions (QEMU)", "policy_cycles": "virtual cycles (QEMU: cycle_hz x instructions / 1e9)",
             **dict.fromkeys(("device_t_us", "device_period_us", "device_jitter_us", "device_jitter_max_us"),
                             "us (QEMU virtual time)")}


def columns(obs_dim: int, act_dim: int, handover: bool = False, device: str | None = None) -> list[tuple[str, str]]:
    """(name, unit) of every column of a log for a rig with these sizes (of a hand-over trial: handover; device:
    "pil" for the image under QEMU, whose device times count instructions)."""
    units = PIL_UNITS if device == "pil" else {}
    return ([(n, units.get(n, u)) for n, u in TIMING] + ([HANDOVER] if handover else [])
            + [(f"obs{i}", "rig units") for i in range(obs_dim)]
            + [(f"action{i}", "rig units") for i in range(act_dim)])


class TickLog:
    """ticks.csv written row by row: a crash or a pulled cable loses nothing already received."""

    def __init__(self, path: Path, obs_dim: int, act_dim: int, handover: bool = False,
                 device: str | None = None) -> None:
        self.cols = columns(obs_dim, act_dim, handover, device)
        self.handover = handover
        self.f = open(path, "x", newline="")  # a new file: a trial never appends to another's log
        self.w = csv.writer(self.f)
        self.f.write("# units: " + ", ".join(f"{n}={u or '-'}" for n, u in self.cols) + "\n")
        self.w.writerow([n for n, _ in self.cols])
        self.rows = 0

    def add(self, row: list) -> None:
        if len(row) != len(self.cols):
            raise BpdError(f"tick log row of {len(row)} fields for {len(self.cols)} columns")
        self.w.writerow(row)
        self.rows += 1
        if self.rows % 200 == 0:
            self.f.flush()

    def flush(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.flush()
        self.f.close()


class ViewedTickLog(TickLog):
    """ticks.csv as TickLog writes it, each row also handed to a live view (`bpd hil run --view`; a list
    append under a lock)."""

    def __init__(self, path: Path, obs_dim: int, act_dim: int, view: LiveView, meta: dict,
                 handover: bool = False, device: str | None = None) -> None:
        super().__init__(path, obs_dim, act_dim, handover, device)
        self.view = view
        view.start([n for n, _ in self.cols], meta)

    def add(self, row: list) -> None:
        super().add(row)
        self.view.add(row)


def _header_ok(names: list[str] | None) -> bool:
    timing = [n for n, _ in TIMING]
    older = [n for n in timing if n not in DEVICE_TIMING]
    if not names or (names[:len(timing)] != timing and names[:len(older)] != older):
        return False
    rest = names[len(timing if names[:len(timing)] == timing else older):]
    rest = rest[1:] if rest[:1] == [HANDOVER[0]] else rest
    n_obs = sum(1 for n in rest if n.startswith("obs"))
    acts = rest[n_obs:]
    return (rest[:n_obs] == [f"obs{i}" for i in range(n_obs)]
            and (acts == ["action"] or acts == [f"action{i}" for i in range(len(acts))]) and len(acts) > 0)


def read_ticks(path: Path) -> list[dict]:
    """The rows of a tick log. A last row cut short (the trial was killed while writing it) is dropped;
    any other malformed row is a one-line BpdError."""
    if not path.exists():
        return []
    try:
        with open(path, newline="") as f:
            lines = [l for l in f if not l.startswith("#")]
    except UnicodeDecodeError:
        raise BpdError(f"{path}: not a tick log (not text)") from None
    if not lines:
        return []
    reader = csv.DictReader(lines)
    if not _header_ok(list(reader.fieldnames or [])):
        raise BpdError(f"{path}: not a tick log (unexpected header)")
    rows = list(reader)
    for i, r in enumerate(rows):
        ok = None not in r and all(v is not None for v in r.values())
        if ok:
            try:
                [float(v) for v in r.values() if v != ""]
            except ValueError:
                ok = False
        if not ok:
            if i == len(rows) - 1 and not lines[-1].endswith("\n"):
                rows = rows[:-1]
                break
            raise BpdError(f"{path}: malformed row {i + 1} (the log is damaged)")
    for r in rows:
        if "action" in r:
            r["action0"] = r.pop("action")
    return rows


def _stats(x: list[float]) -> dict:
    if not x:
        return {"n": 0}
    a = np.asarray(x, float)
    return {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean())}


def timing_summary(csv_path: Path, period_us: int) -> dict:
    """Timing statistics from the tick log (so `bpd hil report` recomputes the same)."""
    rows = read_ticks(csv_path)
    if not rows:
        return {"ticks": 0}
    col = lambda k: [float(r[k]) for r in rows if r.get(k) not in ("", None)]
    periods = col("device_period_us")
    misses = sum(int(r["deadline_miss"]) for r in rows)
    med = float(np.median(periods)) if periods else float("nan")
    return {"ticks": len(rows), "target_rate_hz": 1e6 / period_us,
            "achieved_rate_hz": 1e6 / med if periods else None,
            "period_us": _stats(periods), "jitter_us": _stats([abs(p - period_us) for p in periods]),
            "host_step_us": _stats(col("host_step_us")), "host_compute_us": _stats(col("host_compute_us")),
            "rtt_us": _stats([x for x in col("rtt_us") if x > 0]),
            "infer_ns": _stats([x for x in col("infer_ns") if x > 0]),
            "policy_cycles": _stats([x for x in col("policy_cycles") if x > 0]) if "policy_cycles" in rows[0]
            else {"n": 0},
            "device_jitter_us": _stats(col("device_jitter_us")) if "device_jitter_us" in rows[0] else {"n": 0},
            "deadline_misses": misses, "deadline_miss_rate": misses / len(rows)}


def handover_summary(csv_path: Path) -> dict | None:
    """Which controller drove the ticks of a hand-over trial, from its tick log: per episode the ticks each
    drove, the step of the first tick the learned policy drove (`first_handover`) and the steps where the
    classical controller took back from it; None for a log without the `classical` column."""
    rows = read_ticks(csv_path)
    if not rows or HANDOVER[0] not in rows[0]:
        return None
    per: dict[int, dict] = {}
    prev: dict[int, bool] = {}
    for r in rows:
        ep, step, classical = int(r["episode"]), int(r["step"]), float(r[HANDOVER[0]] or 0) != 0
        e = per.setdefault(ep, {"episode": ep, "classical_ticks": 0, "policy_ticks": 0, "first_handover": None,
                                "take_backs": []})
        e["classical_ticks" if classical else "policy_ticks"] += 1
        if not classical and e["first_handover"] is None:
            e["first_handover"] = step
        if classical and prev.get(ep) is False:
            e["take_backs"].append(step)
        prev[ep] = classical
    eps = list(per.values())
    return {"classical_ticks": sum(e["classical_ticks"] for e in eps),
            "policy_ticks": sum(e["policy_ticks"] for e in eps), "episodes": eps}
