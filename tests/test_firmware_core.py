"""The firmware core (C, host build) driven tick by tick: watchdog, limits, stop paths, late actions."""

import numpy as np
import pytest

from firmware_host.rig import load_rig
from firmware_host.rig.device import SoftwareDevice, build_device_library
from firmware_host.wire.codec import Parser, encode
from firmware_host.wire.spec import FAULTS, FLAGS
from tests.conftest import pendulum_export

FIX = pendulum_export()


class Harness:
    def __init__(self, tmp, policy=None, rig="gym-inverted-pendulum"):
        self.spec = load_rig(rig)
        self.dev = SoftwareDevice(self.spec, build_device_library(tmp, self.spec, policy))
        self.p = Parser()
        self.seq = 0
        self.t = 0
        (boot,) = self.p.feed(self.dev.tx())  # the unasked INFO that announces the start
        assert boot.name == "info" and boot.seq == 0

    def send(self, name, **f):
        self.dev.rx(encode(name, self.seq, **f))
        self.seq += 1
        return self.p.feed(self.dev.tx())

    def tick(self, sensors=(0.0, 0.0, 0.0, 0.0)):
        self.t += self.spec.period_us
        self.dev.set_time(self.t)
        self.dev.set_sensors(np.array(sensors, np.float32))
        self.dev.tick()
        return self.p.feed(self.dev.tx())

    def config(self, **over) -> int:
        """CONFIG with the rig's own values (`over` changes them): the ACK's status (0 ok, 1 rejected)."""
        lim = self.spec.limits
        f = dict(period_us=0, watchdog_ticks=self.spec.watchdog_ticks, mode=0, action_limit=float(lim["action"]),
                 pos_limit=float(lim["position"]), angle_limit=float(lim["angle"]))
        (ack,) = self.send("config", **(f | over))
        return ack.fields["status"]

    def start(self, mode="host", watchdog=3):
        acks = self.send("config", period_us=self.spec.period_us, watchdog_ticks=watchdog, mode=mode == "device",
                         action_limit=2.0, pos_limit=0.9, angle_limit=0.2)
        acks += self.send("start")
        assert [a.fields["status"] for a in acks] == [0, 0]


def test_watchdog_zeroes_within_configured_ticks_plus_one(tmp_path):
    h = Harness(tmp_path)
    h.start(watchdog=3)
    (st,) = h.tick()
    h.send("action", echo_seq=st.seq, n_act=1, action=[1.5])
    assert h.dev.actuator()[0] == pytest.approx(1.5)
    states = 0
    for k in range(10):  # host silent from here
        frames = h.tick()
        if any(f.name == "fault" for f in frames):
            break
        states += 1
        assert frames[0].fields["flags"] & FLAGS["stale_action"] or k == 0
        assert h.dev.actuator()[0] == pytest.approx(1.5)  # held until the watchdog trips
    fault = [f for f in frames if f.name == "fault"][0]
    assert fault.fields["code"] == FAULTS["watchdog"]
    assert k + 1 <= 3 + 1  # tripped within watchdog_ticks + 1 ticks of silence
    assert h.dev.actuator()[0] == 0.0
    assert h.dev.status()["state"] == 2  # FAULT: no more states
    assert h.tick() == []


def test_action_clamped_and_late_action_skipped(tmp_path):
    h = Harness(tmp_path)
    h.start()
    (s1,) = h.tick()
    h.send("action", echo_seq=s1.seq, n_act=1, action=[5.0])
    assert h.dev.actuator()[0] == pytest.approx(2.0)  # clamp to action_limit
    (s2,) = h.tick()
    assert s2.fields["flags"] & FLAGS["running"]
    h.send("action", echo_seq=s1.seq, n_act=1, action=[-1.0])  # answers an older state: skipped
    assert h.dev.actuator()[0] == pytest.approx(2.0) and h.dev.status()["late_actions"] == 1
    h.send("action", echo_seq=s2.seq, n_act=1, action=[float("nan")])
    assert h.dev.actuator()[0] == 0.0  # NaN never reaches the actuator


def test_angle_limit_stops_and_zeroes(tmp_path):
    h = Harness(tmp_path)
    h.start()
    (s,) = h.tick()
    h.send("action", echo_seq=s.seq, n_act=1, action=[1.0])
    (s,) = h.tick(sensors=(0.0, 0.25, 0.0, 0.0))
    assert s.fields["flags"] & FLAGS["limit_stop"] and h.dev.actuator()[0] == 0.0
    assert h.dev.status()["state"] == 0 and h.tick() == []


@pytest.mark.parametrize("how", ["stop", "reset"])
def test_stop_and_reset_zero_the_actuator(tmp_path, how):
    h = Harness(tmp_path)
    h.start()
    (s,) = h.tick()
    h.send("action", echo_seq=s.seq, n_act=1, action=[1.0])
    acks = h.send(how) if how == "stop" else h.send("reset", seed=7)
    assert acks[0].fields["status"] == 0 and h.dev.actuator()[0] == 0.0
    assert (h.dev.take_reset() == 7) == (how == "reset")


def test_device_mode_needs_a_policy(tmp_path):
    h = Harness(tmp_path)
    (ack,) = h.send("config", period_us=40000, watchdog_ticks=3, mode=1, action_limit=3.0, pos_limit=1.0,
                    angle_limit=0.2)
    assert ack.fields["status"] == 1  # rejected
    (info,) = h.send("hello", protocol=1)
    assert info.fields["caps"] & 1 == 0


def test_device_policy_runs_and_reports_inference_time(tmp_path):
    from export.c_export import CPolicy

    h = Harness(tmp_path, policy=FIX)
    (info,) = h.send("hello", protocol=1)
    assert bytes(info.fields["model_hash"]).hex() == CPolicy(FIX).model_hash[:16]
    h.start(mode="device")
    obs = [0.01, -0.02, 0.05, 0.1]
    (s,) = h.tick(obs)
    expected = CPolicy(FIX).act(np.array(obs, np.float32))
    assert s.fields["action"][0] == pytest.approx(float(expected[0]), abs=1e-6)
    assert s.fields["flags"] & FLAGS["device_policy"] and s.fields["infer_ns"] > 0


def _silent_run(h) -> int:
    """START, then no ACTION: the STATEs the run sends before its watchdog trips (the FAULT's detail, the watchdog's
    ticks); then RESET, back to IDLE, where a CONFIG is taken."""
    assert h.send("start")[0].fields["status"] == 0
    for k in range(100):
        frames = h.tick()
        if faults := [f for f in frames if f.name == "fault"]:
            assert faults[0].fields["code"] == FAULTS["watchdog"] and faults[0].fields["detail"] == k
            assert frames[0].fields["flags"] & FLAGS["watchdog"] and h.dev.actuator()[0] == 0.0
            assert h.send("reset", seed=0)[0].fields["status"] == 0
            return k
    raise AssertionError("the watchdog never tripped")


def test_a_config_may_shorten_the_watchdog_never_lengthen_it(tmp_path):
    """The rig's own watchdog (5 ticks here) is the longest a CONFIG sets: one tick more (or 60,000: 40 minutes at
    25 Hz with the actuator running after the host went silent) is refused and changes nothing, the previous
    watchdog still trips at its count; the rig's own is taken, and a shorter one trips at its own count."""
    h = Harness(tmp_path)
    w = h.spec.watchdog_ticks
    assert w == 5
    assert h.config(watchdog_ticks=3, pos_limit=0.7) == 0
    assert h.config(watchdog_ticks=w + 1, pos_limit=0.5) == 1 and h.config(watchdog_ticks=60000) == 1
    assert h.dev.limits()[0] == pytest.approx(0.7)  # the refused CONFIG's position limit not taken either
    assert _silent_run(h) == 3
    assert h.config(watchdog_ticks=w) == 0 and _silent_run(h) == w
    assert h.config(watchdog_ticks=2) == 0 and _silent_run(h) == 2
    assert h.config(watchdog_ticks=0) == 1 and _silent_run(h) == 2


def test_a_config_position_limit_stays_within_the_track(tmp_path):
    """desktop-cartpole's track is 0.25 m either side of centre (its hard stops): a CONFIG's position limit one
    float32 step above it is refused (the limit in force stays), as is one equal to it (the cart would stop only on
    the hard stops), one a step below it taken; the action limit's bound and
    the angle limit's freedom (a swing-up pole swings freely) as before."""
    h = Harness(tmp_path, rig="desktop-cartpole")
    track = float(h.spec.raw["track"])
    above = float(np.nextafter(np.float32(track), np.float32(np.inf)))
    assert (track, h.dev.limits()[0]) == (0.25, pytest.approx(0.2))
    below = float(np.nextafter(np.float32(track), np.float32(0.0)))
    assert h.config(pos_limit=above) == 1 and h.config(pos_limit=1e3) == 1 and h.config(pos_limit=track) == 1
    assert h.dev.limits()[0] == pytest.approx(0.2)
    assert h.config(pos_limit=below, angle_limit=1e3) == 0 and h.dev.limits() == (below, 1e3)
    assert h.config(pos_limit=0.1) == 0 and h.dev.limits()[0] == pytest.approx(0.1)
    assert h.config(action_limit=3.0 * (1 + 1e-6)) == 1 and h.config(pos_limit=float("inf")) == 1


@pytest.mark.parametrize("rig", ["gym-inverted-pendulum", "rotary-pendulum"])
def test_a_rig_without_a_track_takes_any_finite_position_limit(tmp_path, rig):
    """No `track` in the YAML (the gym pendulum's slider, the rotary arm's angle): no bound but positive finite."""
    h = Harness(tmp_path, rig=rig)
    assert "track" not in h.spec.raw
    assert h.config(pos_limit=1e30) == 0 and h.dev.limits()[0] == pytest.approx(1e30)
    assert h.config(pos_limit=float("inf")) == 1 and h.config(pos_limit=0.0) == 1
