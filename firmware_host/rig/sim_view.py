"""What `bpd rig sim --view` shows: the simulated device's side of the wire. Every STATE frame the
device sends (its clock, the observation it measured, the action it applied, its inference time and
flags) becomes a row of the live page (bpd/view.py), as it leaves the device; a run (START to its
last STATE) is an episode. A deadline miss is a STATE flagged stale in host mode: the host's action
for the previous state had not come when this tick began. When the rig stops, the page gets a
summary of every run and of the timing.
"""

from __future__ import annotations

import numpy as np

from bpd.view import LiveView
from firmware_host.rig import RigSpec
from firmware_host.wire.codec import Parser
from firmware_host.wire.spec import FLAGS, MODES, STATES, STOPPED

# What ended a run the device stopped, by its last STATE's flags (also a trial's episode, hil/trial.py)
ESTOP = "e-stop (the device's emergency stop ended the run)"
END_STOP = "end stop (the device stopped within the limits: an end stop's input)"
LIMIT = "limit (device stopped)"
WATCHDOG = "watchdog (the host went silent)"


def device_stop(flags: int, inside: bool) -> str:
    """A run's end the device's flags give: the emergency stop by its own flag, else a limit stop (flag limit_stop)
    with the observation within the limits (`inside`) an end stop's input, past them the limit's; the watchdog."""
    if flags & FLAGS["estop"]:
        return ESTOP
    if flags & FLAGS["limit_stop"]:
        return END_STOP if inside else LIMIT
    return WATCHDOG


COLUMNS = ["episode", "step", "seq", "device_t_us", "device_period_us", "infer_ns", "policy_cycles",
           "device_jitter_us", "deadline_miss", "flags"]


def _spread(x: list[float]) -> dict:
    a = np.asarray(x, float)
    return {"n": int(a.size), "median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())} if a.size else {"n": 0}


def column_labels(spec: RigSpec) -> dict[str, str]:
    """What the live page calls obs0.. and action0.. of this rig, with the YAML's units: the positions (the one
    the position limit checks, the one the angle limit checks), then their rates, then the action."""
    units = spec.raw.get("units") or {}
    names = {spec.pos_index: "position", spec.angle_index: "angle"}
    out = {}
    for i in range(spec.n_pos):
        name = names.get(i, f"position {i}")
        unit = str(units.get(name, ""))
        rate = unit.split(" (")[0]  # rad (arm): rad/s
        out[f"obs{i}"] = f"{name}, {unit}" if unit else name
        out[f"obs{spec.n_pos + i}"] = f"{name} rate, {rate}/s" if rate else f"{name} rate"
    unit = str(units.get("action", ""))
    for i in range(spec.act_dim):
        out[f"action{i}"] = f"action, {unit}" if unit else "action"
    return out


class SimWatch:
    """Reads the device's outgoing bytes (a parser of its own) and feeds the view a row per STATE."""

    def __init__(self, spec: RigSpec, view: LiveView) -> None:
        self.spec, self.view = spec, view
        self.parser = Parser()
        self.runs: list[dict] = []
        self.in_run = False
        self.prev_t: int | None = None
        self.periods: list[float] = []
        self.infer_ns: list[float] = []
        view.start(COLUMNS + [f"obs{i}" for i in range(spec.obs_dim)] + [f"action{i}" for i in range(spec.act_dim)],
                   {"title": "bpd rig sim", "rig": spec.name, "period_us": spec.period_us,
                    "labels": column_labels(spec)})

    def feed(self, data: bytes, status: dict, limits: tuple[float, float] = (float("inf"), float("inf"))) -> None:
        """The bytes the device just sent, its status after sending them and its position and angle limits."""
        for frame in self.parser.feed(data):
            if frame.name == "state":
                self._state(frame.seq, frame.fields, status["mode"], limits)
        if status["state"] != STATES["running"]:
            self.in_run = False  # stopped, by a limit, the watchdog or the host: the next START is a new run

    def _state(self, seq: int, f: dict, mode: int, limits: tuple[float, float]) -> None:
        if not self.in_run:
            self.in_run, self.prev_t = True, None
            self.runs.append({"episode": len(self.runs), "return": 0.0, "length": 0, "ended": "stopped by the host",
                              "deadline_misses": 0})
        run = self.runs[-1]
        period: int | str = ""  # none for a run's first tick
        if self.prev_t is not None:
            period = dt = (f["t_us"] - self.prev_t) & 0xFFFFFFFF
            self.periods.append(dt)
        self.prev_t = f["t_us"]
        if f["infer_ns"]:
            self.infer_ns.append(f["infer_ns"])
        miss = int(mode == MODES["host"] and bool(f["flags"] & FLAGS["stale_action"]))
        upright = not f["flags"] & STOPPED
        run["length"] += 1
        run["return"] += float(upright)
        run["deadline_misses"] += miss
        if f["flags"] & (STOPPED | FLAGS["watchdog"]):  # named by its flags (a stop within the limits: an end stop)
            obs, s = f["obs"], self.spec
            inside = abs(obs[s.pos_index]) <= limits[0] and abs(obs[s.angle_index]) <= limits[1]
            run["ended"] = device_stop(f["flags"], inside)
        self.view.add([run["episode"], run["length"], seq, f["t_us"], period, f["infer_ns"], f["policy_cycles"],
                       f["jitter_us"], miss, f["flags"], *[round(x, 6) for x in f["obs"]],
                       *[round(x, 6) for x in f["action"]]])

    def summary(self, ended: str, device: dict) -> dict:
        """The page's summary: every run, the timing over all of them, the device's own counters."""
        ticks = sum(r["length"] for r in self.runs)
        misses = sum(r["deadline_misses"] for r in self.runs)
        med = float(np.median(self.periods)) if self.periods else None
        return {"ended": ended, "rig": self.spec.name, "episodes": self.runs,
                "timing": {"ticks": ticks, "target_rate_hz": 1e6 / self.spec.period_us,
                           "achieved_rate_hz": 1e6 / med if med else None, "period_us": _spread(self.periods),
                           "host_step_us": {"n": 0}, "infer_ns": _spread(self.infer_ns),
                           "deadline_misses": misses, "deadline_miss_rate": misses / ticks if ticks else 0.0},
                "device": {k: device[k] for k in ("overruns", "watchdog_trips", "late_actions", "bad_frames")}}
