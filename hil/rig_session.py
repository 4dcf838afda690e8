"""What the checks of `bpd rig check` share (hil/commission.py, hil/estop.py): runs of the device in host mode, the
rig's model's answer to the same commands, the names of its sensors for the fixes, and a check's row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpd.errors import BpdError
from firmware_host.rig import Plant, RigSpec
from firmware_host.rig.sim import bench_spec
from firmware_host.wire.spec import FLAGS
from hil.link import DeviceLink, LinkError

PUSH_S = 0.15  # seconds of each way of the checks' push


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not run (a check it needs failed)
    measured: str
    fix: str = ""


class Session:
    """Runs of the device in host mode: each STATE answered with the action the caller chooses. A run the emergency
    stop ended is the last one until released() (the check that asked for the press, once its release is confirmed):
    its release restarts nothing (ISO 13850), and the next check's START would drive the rig on it."""

    def __init__(self, link: DeviceLink, spec: RigSpec, action_limit: float) -> None:
        self.link, self.spec, self.action_limit = link, spec, action_limit
        self.runs: list[list] = []  # the STATEs of each run, for timing and link quality
        self.estopped = False  # the emergency stop ended the last run

    def released(self) -> None:
        """The emergency stop was released when asked (hil/estop.py): the next run may start."""
        self.estopped = False

    def run(self, ticks: int, action, pos_limit: float, angle_limit: float = 1e3,
            until=None) -> tuple[np.ndarray, list[float], int]:
        """Up to `ticks` ticks answering STATE k with action(k, obs); returns the positions read (one row
        per STATE), the actions sent and the last STATE's flags. Ends early when the device stops, or once
        until(obs) is true (the run then stopped by the host)."""
        spec, link = self.spec, self.link
        if self.estopped:
            raise BpdError("the emergency stop ended a run of this check, and no run starts after it (its release "
                           "restarts nothing): release it, and check again")
        link.command("reset", seed=0)
        link.configure(spec.period_us, spec.watchdog_ticks, "host", self.action_limit, pos_limit, angle_limit,
                       spec=spec)
        link.command("start")
        rows: list[np.ndarray] = []
        sent: list[float] = []
        flags = 0
        states: list = []
        self.runs.append(states)
        try:
            while len(rows) < ticks:
                batch = link.next_states(1.0)
                for st in batch:
                    states.append(st)
                    rows.append(np.asarray(st.fields["obs"][:spec.n_pos], float))
                flags = batch[-1].fields["flags"]
                if not flags & FLAGS["running"] or (until is not None and until(rows[-1])):
                    break
                u = float(np.clip(action(len(rows) - 1, rows[-1]), -self.action_limit, self.action_limit))
                link.send("action", echo_seq=batch[-1].seq, n_act=1, action=[u])
                sent.append(u)
        finally:
            link.stop_and_zero()
            try:
                link.wait_for("ack", 1.0)
            except LinkError:
                pass
        self.estopped = bool(flags & FLAGS["estop"])
        return np.array(rows), sent, flags


def model_response(spec: RigSpec, actions: list[float]) -> np.ndarray:
    """The positions the rig's model reads for these actions, one per tick, from rest (the first row
    before any action), as the simulated rig's plant on the bench would read them without noise."""
    plant = Plant(bench_spec(spec))
    plant.reset(0)
    rows = [plant.state()[:spec.n_pos].copy()]
    for u in actions:
        for _ in range(plant.substeps):
            plant.substep(np.array([u]))
        rows.append(plant.state()[:spec.n_pos].copy())
    return np.array(rows)


def push_profile(spec: RigSpec, amp: float, settle: int) -> list[float]:
    """A push each way of PUSH_S at `amp`, then `settle` pushes' length at zero: the commanded move the checks
    measure a sensor's and the motor's response by."""
    n = max(1, int(PUSH_S * 1e6 / spec.period_us))
    return [amp] * n + [-amp] * n + [0.0] * (settle * n)


def travel_ratio(measured: np.ndarray, predicted: np.ndarray) -> float:
    """The measured travel as a multiple of the model's (least squares; 0 where the model predicts none): 1 for a
    sensor and motor as the rig's YAML says, negative for one reversed."""
    pp = float(predicted @ predicted)
    return float(measured @ predicted) / pp if pp > 0 else 0.0


def sensor_names(spec: RigSpec) -> tuple[list[str], list[str]]:
    """Per position sensor: a name, and where its wiring is described (for the fixes)."""
    w = spec.wiring
    n = spec.n_pos
    if w is None:
        base = "arm" if spec.plant == "furuta" else "cart"  # what the position sensor measures
        names = [base if i == spec.pos_index else "pendulum" if i == spec.angle_index else f"sensor {i}"
                 for i in range(n)]
        return names, [f"encoder {i}" for i in range(n)]
    enc = w["encoders"]
    return [e["name"] for e in enc], [f"wiring.encoders[{i}] ({e['timer']}: {e['a']}, {e['b']})"
                                      for i, e in enumerate(enc)]
