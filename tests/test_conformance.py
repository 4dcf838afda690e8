"""Protocol conformance: every row of the state table in docs/protocol.md, and the rules around it
(body sizes, clamping, non-finite actions, the period, echo_seq), against three targets: the
firmware core built for the host, the simulated rig on a pty, and the Cortex-M image under QEMU
(processor-in-the-loop). The same checks, through the same bytes, on each; and on a real board
when BPD_HIL_PORT names its serial device (BPD_HIL_RIG its rig; see hil/README.md)."""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import time

import numpy as np
import pytest

from firmware_host.codec import Frame, Parser, cobs_encode, crc16, encode
from firmware_host.device import SoftwareDevice, build_device_library
from firmware_host.rig import load_rig
from firmware_host.wire_spec import ACK, BY_NAME, FLAGS, MESSAGES
from hil.link import DeviceLink
from tests.conftest import BPD, pendulum_export

RIG = load_rig("gym-inverted-pendulum")
FIX = pendulum_export()
BIG_WATCHDOG = 60000
# The host commands the device answers in every state (HELLO with INFO, the others with ACK): all but ACTION.
ANSWERED = {m.name for m in MESSAGES if m.sender == "host"} - {"action"}
HW_PORT = os.environ.get("BPD_HIL_PORT")
HW_RIG = os.environ.get("BPD_HIL_RIG", "desktop-cartpole")


def raw_frame(name: str, seq: int, body: bytes) -> bytes:
    """A frame with a valid CRC around any body, even one of the wrong size for its id."""
    raw = struct.pack("<BH", BY_NAME[name].id, seq) + body
    return b"\x00" + cobs_encode(raw + struct.pack("<H", crc16(raw))) + b"\x00"


def config(rig=RIG, **over) -> dict:
    lim = rig.limits
    f = dict(period_us=0, watchdog_ticks=BIG_WATCHDOG, mode=0, action_limit=float(lim["action"]),
             pos_limit=float(lim["position"]), angle_limit=float(lim["angle"]))
    return f | over


class HostTarget:
    """The firmware core as a shared library: ticks happen when the test says."""

    rig = RIG
    hardware = False

    def __init__(self, tmp) -> None:
        self.dev = SoftwareDevice(RIG, build_device_library(tmp, RIG, FIX))
        self.p, self.seq, self.t = Parser(), 0, 0

    def write(self, data: bytes) -> list[Frame]:
        self.dev.rx(data)
        return self.p.feed(self.dev.tx())

    def send(self, name: str, **f) -> list[Frame]:
        self.seq += 1
        return self.write(encode(name, self.seq, **f))

    def advance(self) -> list[Frame]:
        """One control tick."""
        self.t += RIG.period_us
        self.dev.set_time(self.t)
        self.dev.set_sensors(np.zeros(4, np.float32))
        self.dev.tick()
        return self.p.feed(self.dev.tx())

    def listen(self, seconds: float) -> list[Frame]:
        """One more tick (time here moves only when the test says)."""
        return self.advance()

    def close(self) -> None:
        pass


class PtyTarget:
    """A rig process (simulated, or QEMU running the image) in lockstep on a pseudo-terminal: it
    ticks by itself while running, waiting `action_timeout` for each host action."""

    WINDOW = 0.3  # seconds to listen for an answer that should not come
    ANSWER_WAIT = 10.0  # seconds to wait for an answer that must come (it ends the wait when it does)

    def __init__(self, args: list[str] | None, port: str | None = None, rig=RIG) -> None:
        """Start `bpd rig ARGS` and open its pty, or open a real board's port."""
        self.rig, self.hardware, self.proc = rig, port is not None, None
        if port is None:
            self.proc = subprocess.Popen([BPD, "rig", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
            port = self.proc.stdout.readline().strip()
            if not port.startswith("/dev/"):
                raise AssertionError(self.proc.stderr.read())
        self.link = DeviceLink(port, rig.baud)
        if self.WINDOW < 3 * rig.period_us * 1e-6:
            self.WINDOW = 3 * rig.period_us * 1e-6
        self.link.handshake(timeout=5.0, tries=10)  # as any host opens a session
        # A target slow to boot (QEMU on a loaded machine) answers a retried HELLO more than once;
        # the late INFOs are no answer to the first command a test sends, so they go before it.
        for _ in range(5):  # bounded: a device still streaming from an earlier session never goes quiet
            if not self._collect(max(self.WINDOW, 1.0)):
                break

    def write(self, data: bytes) -> list[Frame]:
        self.link.ser.write(data)
        return self._collect(self.WINDOW)

    def send(self, name: str, **f) -> list[Frame]:
        """Send a command and collect what comes back: up to ANSWER_WAIT for a command the device
        always answers (an emulated image on a loaded host can take seconds), WINDOW for the rest."""
        self.link.send(name, **f)
        window = max(self.WINDOW, self.ANSWER_WAIT) if name in ANSWERED else self.WINDOW
        return self._collect(window, until={"ack", "info", "fault"})

    def _collect(self, window: float, until: set[str] | None = None) -> list[Frame]:
        out, deadline = [], time.perf_counter() + window
        while time.perf_counter() < deadline:
            f = self.link.poll(max(0.0, deadline - time.perf_counter()))
            if f is None:
                break
            out.append(f)
            if until and f.name in until:
                out += self._collect(0.05)
                break
        return out

    def advance(self) -> list[Frame]:
        """Whatever the rig sends within about one tick of its own (STATE while running)."""
        return self._collect(self.WINDOW, until={"state", "fault"})

    def listen(self, seconds: float) -> list[Frame]:
        """Whatever the rig sends within seconds, up to its first STATE or FAULT."""
        return self._collect(seconds, until={"state", "fault"})

    def close(self) -> None:
        self.link.close()
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def _sim(tmp):
    return PtyTarget(["sim", "--rig", RIG.name, "--policy", str(FIX), "--lockstep", "--action-timeout", "0.1",
                      "--build-dir", str(tmp / "build")])


def _pil(tmp):
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed (make system-deps installs it)")
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (make system-deps installs it)")
    # the emulated image waits up to 0.5 s of wall time for each host action: a busy host answers late
    t = PtyTarget(["pil", "--rig", RIG.name, "--policy", str(FIX), "--action-timeout", "0.5",
                   "--build-dir", str(tmp / "pil")])
    t.WINDOW = max(t.WINDOW, 2.0)  # emulation under a busy host answers later than a board; silence is judged over 2 s
    return t


def _hardware(tmp):
    if not HW_PORT:
        pytest.skip("no board: set BPD_HIL_PORT (and BPD_HIL_RIG) to run these on real hardware")
    return PtyTarget(None, HW_PORT, load_rig(HW_RIG))


@pytest.fixture(scope="module", params=["host", "sim", "pil", "board"])
def target(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    t = {"host": HostTarget, "sim": _sim, "pil": _pil, "board": _hardware}[request.param](tmp)
    yield t
    t.close()


# ------------------------------------------------------------------ reaching a state, observing it


def answers(frames: list[Frame]) -> list[tuple]:
    """The replies to a command: ACK (of, status) and INFO; STATEs streaming meanwhile left out."""
    out = []
    for f in frames:
        if f.name == "ack":
            out.append(("ack", f.fields["of"], f.fields["status"]))
        elif f.name in ("info", "fault"):
            out.append((f.name,))
    return out


def enter(t, state: str) -> Frame | None:
    """Put the device in IDLE, RUNNING (host mode, large watchdog) or FAULT (watchdog); returns the
    last STATE seen when running."""
    assert ("ack", BY_NAME["reset"].id, ACK["ok"]) in answers(t.send("reset", seed=1))
    if state == "IDLE":
        return None
    # the angle limit far out (a pendulum at rest hangs down; a plant pushed by the test's actions must
    # not end the run by a limit stop); on a real board the position limit stays the rig's
    wd = BIG_WATCHDOG if state == "RUNNING" else 1
    far = dict(angle_limit=1e3) | ({} if t.hardware else dict(pos_limit=1e3))
    assert answers(t.send("config", **config(t.rig, watchdog_ticks=wd, **far))) == ack("config", "ok")
    frames = t.send("start")
    assert ("ack", BY_NAME["start"].id, ACK["ok"]) in answers(frames)
    for _ in range(20):
        if state == "RUNNING" and any(f.name == "state" for f in frames):
            return [f for f in frames if f.name == "state"][-1]
        if state == "FAULT" and any(f.name == "fault" for f in frames):
            return None
        frames = t.advance()
    raise AssertionError(f"did not reach {state}")


def state_of(t) -> str:
    """Observe the state: STATEs flow only while RUNNING; START is taken in IDLE only."""
    frames = t.advance()
    if any(f.name == "state" for f in frames):
        return "RUNNING"
    got = answers(t.send("start"))
    if ("ack", BY_NAME["start"].id, ACK["ok"]) in got:
        t.send("stop")
        return "IDLE"
    assert ("ack", BY_NAME["start"].id, ACK["rejected"]) in got, got
    # START is rejected in RUNNING and FAULT alike: a rig on a busy host may have let a tick's window
    # pass without a STATE, so silence is judged again over a longer window
    if any(f.name == "state" for f in t.listen(1.5)):
        return "RUNNING"
    return "FAULT"


def ack(name: str, status: str) -> list[tuple]:
    return [("ack", BY_NAME[name].id, ACK[status])]


# ------------------------------------------------------------------ the state table

ROWS = [
    ("IDLE", "hello", dict(protocol=1), [("info",)], "IDLE"),
    ("IDLE", "config", "rig", ack("config", "ok"), "IDLE"),
    ("IDLE", "start", {}, ack("start", "ok"), "RUNNING"),
    ("IDLE", "stop", {}, ack("stop", "ok"), "IDLE"),
    ("IDLE", "reset", dict(seed=5), ack("reset", "ok"), "IDLE"),
    ("IDLE", "action", dict(echo_seq=0, n_act=1, action=[1.0]), [], "IDLE"),
    ("RUNNING", "hello", dict(protocol=1), [("info",)], "RUNNING"),
    ("RUNNING", "config", "rig", ack("config", "rejected"), "RUNNING"),
    ("RUNNING", "start", {}, ack("start", "rejected"), "RUNNING"),
    ("RUNNING", "stop", {}, ack("stop", "ok"), "IDLE"),
    ("RUNNING", "reset", dict(seed=5), ack("reset", "ok"), "IDLE"),
    ("FAULT", "hello", dict(protocol=1), [("info",)], "FAULT"),
    ("FAULT", "config", "rig", ack("config", "rejected"), "FAULT"),
    ("FAULT", "start", {}, ack("start", "rejected"), "FAULT"),
    ("FAULT", "stop", {}, ack("stop", "ok"), "FAULT"),
    ("FAULT", "reset", dict(seed=5), ack("reset", "ok"), "IDLE"),
    ("FAULT", "action", dict(echo_seq=0, n_act=1, action=[1.0]), [], "FAULT"),
]


@pytest.mark.parametrize("state,command,fields,answer,after", ROWS,
                         ids=[f"{r[0]}-{r[1]}" for r in ROWS])
def test_state_table(target, state, command, fields, answer, after):
    enter(target, state)
    fields = config(target.rig) if fields == "rig" else fields  # the rig's own configuration
    got = [a for a in answers(target.send(command, **fields)) if a != ("fault",)]
    assert got == answer
    assert state_of(target) == after


@pytest.mark.parametrize("bad", [dict(action_limit=0.0), dict(pos_limit=-1.0), dict(watchdog_ticks=0),
                                 dict(period_us=1), dict(mode=2)],
                         ids=["zero-action-limit", "negative-limit", "zero-watchdog", "other-period", "mode-2"])
def test_invalid_config_rejected_in_idle(target, bad):
    enter(target, "IDLE")
    assert answers(target.send("config", **config(target.rig, **bad))) == ack("config", "rejected")
    assert answers(target.send("config", **config(target.rig, period_us=target.rig.period_us))) == ack("config", "ok")


def _answer_state(t, st: Frame, action: list[float], tries: int = 5) -> Frame:
    """Send an ACTION for st and return the next STATE (which carries what the actuator holds).
    On a loaded machine the rig may tick before the ACTION arrives; the ACTION then echoes an older
    STATE and is skipped, and every STATE after it says so (stale_action). Then the next STATE is
    answered as it arrives: what is tested is what the device does with an ACTION it accepted."""
    for _ in range(tries):
        frames = t.send("action", echo_seq=st.seq, n_act=len(action), action=action)
        states = [f for f in frames if f.name == "state"]
        while not states:
            states = [f for f in t.advance() if f.name == "state"]
        if not all(f.fields["flags"] & FLAGS["stale_action"] for f in states):
            return states[-1]
        # the newest STATE of a listening window may already be followed by another: answer the next
        # one the moment it arrives
        fresh = [f for f in t.advance() if f.name == "state"]
        st = fresh[-1] if fresh else states[-1]
    return states[-1]


def test_running_action_applied_clamped_and_nan(target):
    """RUNNING + ACTION echoing the last STATE: applied; clamped or non-finite values are changed
    and flagged in the STATE that reports them (host mode as in device mode)."""
    st = enter(target, "RUNNING")
    small = 0.1 * target.rig.limits["action"]
    st = _answer_state(target, st, [small])
    assert st.fields["action"][0] == pytest.approx(small) and not st.fields["flags"] & FLAGS["clamped"]
    st = _answer_state(target, st, [100.0])
    assert st.fields["action"][0] == pytest.approx(target.rig.limits["action"])
    assert st.fields["flags"] & FLAGS["clamped"]
    st = _answer_state(target, st, [math.nan])
    assert st.fields["action"][0] == 0.0 and st.fields["flags"] & FLAGS["clamped"]
    st = _answer_state(target, st, [-math.inf])
    assert st.fields["action"][0] == 0.0 and st.fields["flags"] & FLAGS["clamped"]
    assert state_of(target) == "RUNNING"


def test_running_older_echo_seq_skipped(target):
    """The body's echo_seq is matched, not the header seq: an answer to an older STATE is skipped."""
    st = enter(target, "RUNNING")
    st = _answer_state(target, st, [0.25])
    frames = target.send("action", echo_seq=(st.seq - 1) & 0xFFFF, n_act=1, action=[-1.0])
    states = [f for f in frames if f.name == "state"] or [f for f in target.advance() if f.name == "state"]
    assert states[-1].fields["action"][0] == pytest.approx(0.25)


@pytest.mark.parametrize("name", ["start", "stop"])
def test_body_of_wrong_size_dropped(target, name):
    enter(target, "IDLE")
    assert answers(target.write(raw_frame(name, 77, b"\x01"))) == []
    assert state_of(target) == "IDLE"  # the START with a body did not start anything


def test_fault_then_stop_start_stays_faulted(target):
    enter(target, "FAULT")
    assert answers(target.send("stop")) == ack("stop", "ok")
    assert answers(target.send("start")) == ack("start", "rejected")
    assert answers(target.send("reset", seed=2)) == ack("reset", "ok")
    assert state_of(target) == "IDLE"


def test_start_without_config_uses_rig_defaults(target):
    """Before any CONFIG: host mode and the rig's limits (clamp at the rig's action limit)."""
    if not isinstance(target, HostTarget):
        pytest.skip("a fresh device (no CONFIG since power-on) is only guaranteed on the host build")
    assert answers(target.send("start")) == ack("start", "ok")
    (st,) = [f for f in target.advance() if f.name == "state"]
    assert not st.fields["flags"] & FLAGS["device_policy"]
    st = _answer_state(target, st, [100.0])
    assert st.fields["action"][0] == pytest.approx(RIG.limits["action"])


def test_every_answered_command_is_answered_in_every_state():
    """The harness waits long for the commands in ANSWERED: the state table must give each an answer in
    every state, and ACTION none."""
    assert ANSWERED == {"hello", "config", "start", "stop", "reset"}
    for state in ("IDLE", "RUNNING", "FAULT"):
        for command in ANSWERED:
            (row,) = [r for r in ROWS if r[0] == state and r[1] == command]
            assert len(row[3]) == 1, row
    assert all(r[3] == [] for r in ROWS if r[1] == "action")
