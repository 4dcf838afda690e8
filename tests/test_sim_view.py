"""`bpd rig sim --view` (firmware_host/rig/sim_view.py): a run the device stopped is named from its last STATE's flags,
as a trial's episode is (hil/trial.py)."""

import pytest

from firmware_host.rig import load_rig
from firmware_host.rig.sim_view import SimWatch
from firmware_host.wire.codec import encode
from firmware_host.wire.spec import FLAGS, MODES, STATES

RIG = load_rig("desktop-cartpole")  # position limit 0.2 m, angle limit: the YAML's


class _View:
    def start(self, columns, meta):
        self.rows = []

    def add(self, row):
        self.rows.append(row)


def _state(seq: int, flags: int, x: float) -> bytes:
    return encode("state", seq, t_us=5000 * seq, infer_ns=0, rtt_us=0, flags=flags, policy_cycles=0, jitter_us=0,
                  jitter_max_us=0, n_obs=4, n_act=1, obs=[x, 3.1, 0.0, 0.0], action=[0.0])


@pytest.mark.parametrize("flags, x, limits, ended", [
    (FLAGS["estop"], 0.0, (0.2, 10.0), "e-stop (the device's emergency stop ended the run)"),
    (FLAGS["estop"] | FLAGS["limit_stop"], 0.25, (0.2, 10.0), "e-stop (the device's emergency stop ended the run)"),
    (FLAGS["limit_stop"], 0.231, (0.24, 10.0), "end stop (the device stopped within the limits: an end stop's input)"),
    (FLAGS["limit_stop"], 0.201, (0.2, 10.0), "limit (device stopped)"),
    (FLAGS["watchdog"], 0.0, (0.2, 10.0), "watchdog (the host went silent)"),
    (0, 0.0, (0.2, 10.0), "stopped by the host")], ids=["estop", "estop-past-a-limit", "end-stop", "limit",
                                                        "watchdog", "host"])
def test_a_device_stop_is_named_from_its_flags(flags, x, limits, ended):
    """Every stop of the device was "limit (device stopped)" on the live page: the emergency stop, an end stop (the
    limit opened beyond it, as `bpd rig check` drives to it) and the limit alike. Now the emergency stop is named by
    its own flag, a limit stop within the device's limits (its CONFIG's) is an end stop's, past them the limit's."""
    watch = SimWatch(RIG, _View())
    running = {"state": STATES["running"], "mode": MODES["host"]}
    watch.feed(_state(1, FLAGS["running"], 0.0), running, limits)
    watch.feed(_state(2, flags, x), running if flags == 0 else {**running, "state": STATES["idle"]}, limits)
    assert [r["ended"] for r in watch.runs] == [ended]
    assert watch.runs[0]["return"] == (2.0 if not flags & (FLAGS["estop"] | FLAGS["limit_stop"]) else 1.0)
