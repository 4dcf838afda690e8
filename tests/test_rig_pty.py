"""The simulated rig over a real pseudo-terminal: the device-side policy exported from the training
benchmark balances gym-inverted-pendulum for a full 1000-step episode (the host answering each state,
as the watchdog wants in device mode too); with the host silent the watchdog stops the run within its
configured ticks plus one, with a last STATE saying so before the FAULT."""

import subprocess

import pytest

from firmware_host.wire.spec import FAULTS, FLAGS
from hil.link import DeviceLink
from tests.conftest import BPD, pendulum_export

FIX = pendulum_export()


class Rig:
    def __init__(self, tmp_path, *args):
        self.proc = subprocess.Popen([BPD, "rig", "sim", "--build-dir", str(tmp_path / "build"), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.path = self.proc.stdout.readline().strip()
        assert self.path.startswith("/dev/"), self.proc.stderr.read()

    def close(self):
        """Terminated; killed if it lingers (a --view rig whose page never took the summary), so that a
        failure before this is the one reported."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def rig_factory(tmp_path):
    rigs = []

    def make(*args):
        rigs.append(Rig(tmp_path, *args))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_device_policy_balances_1000_steps(rig_factory):
    import json

    rig = rig_factory("--rig", "gym-inverted-pendulum", "--policy", str(FIX), "--lockstep", "--seed", "3")
    link = DeviceLink(rig.path)
    try:
        info = link.handshake()
        assert info["caps"] & 1 and bytes(info["model_hash"]).hex() == json.loads(
            (FIX / "export.json").read_text())["model_hash"][:16]
        link.command("reset", seed=3)
        link.configure(40000, 5, "device", 3.0, 1.0, 0.2)
        link.command("start")
        states = []
        while len(states) < 1000:
            f = link.wait_for("state", 10.0)
            states.append(f)
            link.send("action", echo_seq=f.seq, n_act=1, action=[0.0])  # not used in device mode
            assert not f.fields["flags"] & FLAGS["limit_stop"], f"fell at step {len(states)}"
        assert all(abs(s.fields["obs"][1]) < 0.2 for s in states)
        assert all(s.fields["flags"] & FLAGS["device_policy"] for s in states)
        seqs = [s.seq for s in states]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))  # no state lost
    finally:
        link.close()


def test_watchdog_over_pty(rig_factory):
    rig = rig_factory("--rig", "gym-inverted-pendulum", "--period-us", "10000")
    link = DeviceLink(rig.path)
    try:
        link.handshake()
        link.configure(10000, 4, "host", 3.0, 1.0, 0.2)
        link.command("start")
        for _ in range(5):  # answer five states, then go silent
            s = link.wait_for("state", 2.0)
            link.send("action", echo_seq=s.seq, n_act=1, action=[0.1])
        silent, last = 0, None
        while True:
            f = link.poll(2.0)
            assert f is not None, "no fault from the watchdog"
            if f.name == "fault":
                break
            if f.name == "state":
                last = f
                silent += bool(f.fields["flags"] & FLAGS["running"])
        assert f.fields["code"] == FAULTS["watchdog"] and f.fields["detail"] == 4
        assert silent <= 4 + 1  # the actuator held the last action for at most that many ticks
        assert last.fields["flags"] & FLAGS["watchdog"] and last.fields["action"] == [0.0]
    finally:
        link.close()


def test_a_stop_while_the_rig_builds_ends_its_compiler_whole(tmp_path, monkeypatch):
    """A Ctrl-C (or the SIGTERM `bpd rig check` and `bpd hil run` send their simulated rig, which is in a process
    group of its own and gets no terminal's Ctrl-C) while the rig compiles its device: the compiler driver was
    killed, what it had started (cc1, as, ld) ran on. The compiler stands in here as a driver that starts a child
    and waits for it; stopped, both go."""
    import os
    import signal
    import time

    from firmware_host.rig import load_rig
    from firmware_host.rig.device import build_device_library

    pid_file = tmp_path / "child.pid"
    cc = tmp_path / "cc"
    cc.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nsleep 0.3\nkill -USR1 $PPID\nwait\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("BPD_CACHE_DIR", "off")

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGUSR1, stop)  # the stop, once the compiler's child runs
    try:
        with pytest.raises(KeyboardInterrupt):
            build_device_library(tmp_path / "build", load_rig("desktop-cartpole"))
        child = int(pid_file.read_text())
        for _ in range(500):  # gone, or a zombie its new parent has not reaped
            try:
                state = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state == "Z":
                break
            time.sleep(0.01)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the compiler's child ran on after the stop")
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not list((tmp_path / "build").glob("*.so")) and not list((tmp_path / "build").glob(".*.tmp"))
