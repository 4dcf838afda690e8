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
