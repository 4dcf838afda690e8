"""Protocol conformance: every row of the state table in docs/protocol.md, and every rule of its
"Rules" section (one test or more each, named in the document), against three targets: the
firmware core built for the host, the simulated rig on a pty, and the Cortex-M image under QEMU
(processor-in-the-loop). The same checks, through the same bytes, on each; and on a real board
when BPD_HIL_PORT names its serial device (BPD_HIL_RIG its rig; see hil/README.md). A rule that
needs a sensor reading or a clock value no rig can be made to give (a NaN from a sensor, the clock's
wrap) is checked on the host build, which runs the same C."""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_host.rig import Plant, load_rig
from firmware_host.rig.device import SoftwareDevice, build_device_library
from firmware_host.wire.codec import Frame, Parser, cobs_encode, crc16, encode
from firmware_host.wire.spec import ACK, BY_NAME, CAPS, FAULTS, FLAGS, MESSAGES, MODES, PROTOCOL_VERSION, SELFTEST
from hil.link import DeviceLink
from tests.conftest import BPD, nan_action_export, pendulum_export

# gym-inverted-pendulum with a long watchdog of its own (a CONFIG lengthens none: rule 9), so that a run holds while a
# test looks at a command's answer; a board keeps its rig's own watchdog, which the same CONFIG sends there
RIG = load_rig(Path(__file__).parent / "fixtures" / "rigs" / "gym-inverted-pendulum-long-watchdog.yaml")
FIX = pendulum_export()
# The host commands the device answers in every state (HELLO with INFO, the others with ACK): all but ACTION.
ANSWERED = {m.name for m in MESSAGES if m.sender == "host"} - {"action"}
HW_PORT = os.environ.get("BPD_HIL_PORT")
# a board runs these flashed for the desktop cart-pole with a long watchdog (hil/README.md): the state tables listen
# longer than the rig's own 10 ticks
HW_RIG = os.environ.get("BPD_HIL_RIG", str(Path(__file__).parent / "fixtures" / "rigs" /
                                           "desktop-cartpole-long-watchdog.yaml"))


def raw_frame(name: str | int, seq: int, body: bytes) -> bytes:
    """A frame with a valid CRC around any body, even one of the wrong size for its id (or any id)."""
    raw = struct.pack("<BH", BY_NAME[name].id if isinstance(name, str) else name, seq) + body
    return b"\x00" + cobs_encode(raw + struct.pack("<H", crc16(raw))) + b"\x00"


def config(rig=RIG, **over) -> dict:
    """The rig's own configuration (its watchdog the longest a device takes), `over` changing it."""
    lim = rig.limits
    f = dict(period_us=0, watchdog_ticks=rig.watchdog_ticks, mode=0, action_limit=float(lim["action"]),
             pos_limit=float(lim["position"]), angle_limit=float(lim["angle"]))
    return f | over


class HostTarget:
    """The firmware core as a shared library: ticks happen when the test says, at the sensor readings
    it sets; an ACTION reaches the device RTT_US after the STATE it answers."""

    rig = RIG
    hardware = False
    RTT_US = 250

    def __init__(self, tmp, policy: Path = FIX) -> None:
        self.lib = build_device_library(tmp, RIG, policy)
        self.dev = SoftwareDevice(RIG, self.lib)
        self.p, self.seq, self.t = Parser(), 0, 0
        self.sensors = np.zeros(4, np.float32)
        (self.boot_info,) = self.p.feed(self.dev.tx())  # the unasked INFO of the start

    def write(self, data: bytes) -> list[Frame]:
        self.dev.rx(data)
        return self.p.feed(self.dev.tx())

    def send(self, name: str, **f) -> list[Frame]:
        self.seq = (self.seq + 1) & 0xFFFF
        self.last_seq = self.seq
        if name == "action":
            self.dev.set_time(self.t + self.RTT_US)
        return self.write(encode(name, self.seq, **f))

    def advance(self, periods: int = 1) -> list[Frame]:
        """One control tick, `periods` periods after the previous one."""
        self.t += periods * RIG.period_us
        self.dev.set_time(self.t)
        self.dev.set_sensors(self.sensors)
        self.dev.tick()
        return self.p.feed(self.dev.tx())

    def push(self, name: str, **f) -> None:
        """Send without waiting for anything."""
        assert self.send(name, **f) == []

    def restart(self) -> list[Frame]:
        """Power the device off and on: what it sends at start-up."""
        self.dev = SoftwareDevice(RIG, self.lib)
        self.p = Parser()
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

    def push(self, name: str, **f) -> None:
        """Send without waiting for anything."""
        self.last_seq = self.link.send(name, **f)

    def send(self, name: str, **f) -> list[Frame]:
        """Send a command and collect what comes back: up to ANSWER_WAIT for a command the device
        always answers (an emulated image on a loaded host can take seconds), WINDOW for the rest."""
        self.last_seq = self.link.send(name, **f)
        window = max(self.WINDOW, self.ANSWER_WAIT) if name in ANSWERED else self.WINDOW
        # a board holds an ACTION until the next one: what it applied shows in the next STATE, so the listening
        # ends there, before a full window of the command (up to the action limit) moves the rig
        until = {"state", "fault"} if name == "action" and self.hardware else {"ack", "info", "fault"}
        return self._collect(window, until=until)

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
    return PtyTarget(["sim", "--rig", str(RIG.path), "--policy", str(FIX), "--lockstep", "--action-timeout", "0.1",
                      "--build-dir", str(tmp / "build")])


def _pil_tools() -> None:
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed (make system-deps installs it)")
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (make system-deps installs it)")


def _pil(tmp):
    _pil_tools()
    # the emulated image waits up to 0.5 s of wall time for each host action: a busy host answers late
    t = PtyTarget(["pil", "--rig", str(RIG.path), "--policy", str(FIX), "--action-timeout", "0.5",
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


@pytest.fixture(params=["host", "sim", "pil"])
def restarting(request, tmp_path):
    """A target that restarts about a second after its first START (a board restarts only when its
    power or reset pin says so); and its boot counter before."""
    if request.param == "host":
        t = HostTarget(tmp_path)
        yield t, t.boot_info.fields["boot"]
        return
    if request.param == "pil":
        _pil_tools()
    t = PtyTarget([request.param, "--rig", str(RIG.path), "--policy", str(FIX), "--action-timeout", "0.5",
                   "--restart-at", "1.0", "--build-dir", str(tmp_path / "build")]
                  + (["--lockstep"] if request.param == "sim" else []))
    if request.param == "pil":
        t.WINDOW = max(t.WINDOW, 2.0)
    boot = t.link.info["boot"]
    t.link.info = None  # the test reads the restart's INFO itself
    try:
        yield t, boot
    finally:
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


def far(t) -> dict:
    """The angle limit far out (a pendulum at rest hangs down; a plant pushed by the test's actions must
    not end the run by a limit stop); on a real board the position limit stays the rig's."""
    return dict(angle_limit=1e3) | ({} if t.hardware else dict(pos_limit=1e3))


def enter(t, state: str, **over) -> Frame | None:
    """Put the device in IDLE, RUNNING (host mode, the rig's watchdog, far limits: `over` changes the
    CONFIG) or FAULT (watchdog); returns the last STATE seen when running."""
    assert ("ack", BY_NAME["reset"].id, ACK["ok"]) in answers(t.send("reset", seed=1))
    if state == "IDLE":
        return None
    wd = t.rig.watchdog_ticks if state == "RUNNING" else 1
    assert answers(t.send("config", **config(t.rig, **dict(watchdog_ticks=wd) | far(t) | over))) == ack("config", "ok")
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
                                 dict(period_us=1), dict(mode=3), dict(action_limit=math.inf),
                                 dict(pos_limit=math.inf), dict(angle_limit=math.nan)],
                         ids=["zero-action-limit", "negative-limit", "zero-watchdog", "other-period", "mode-3",
                              "infinite-action-limit", "infinite-pos-limit", "nan-angle-limit"])
def test_invalid_config_rejected_in_idle(target, bad):
    enter(target, "IDLE")
    assert answers(target.send("config", **config(target.rig, **bad))) == ack("config", "rejected")
    assert answers(target.send("config", **config(target.rig, period_us=target.rig.period_us))) == ack("config", "ok")


def test_config_above_the_rigs_action_limit_is_rejected(target):
    """The action limit only narrows: a CONFIG above the rig's own (the firmware's build) is refused and changes
    nothing, so a host with an edited or another rig's YAML never commands more than the rig's motor takes."""
    lim = float(target.rig.limits["action"])
    enter(target, "IDLE")
    assert answers(target.send("config", **config(target.rig, action_limit=10 * lim))) == ack("config", "rejected")
    assert answers(target.send("config", **config(target.rig, action_limit=lim * (1 + 1e-6)))) == ack(
        "config", "rejected")
    assert answers(target.send("config", **config(target.rig, action_limit=lim, **far(target)))) == ack("config", "ok")
    frames = target.send("start")
    assert answers(frames) == ack("start", "ok")
    st = (states(frames) or states(next_frames(target)))[0]
    st = _answer_state(target, st, [10 * lim])
    assert st.fields["action"] == [pytest.approx(lim)] and st.fields["flags"] & FLAGS["clamped"]


def test_config_beyond_the_rigs_watchdog_or_track_is_rejected(target):
    """A CONFIG may shorten the watchdog, never lengthen it past the rig's own (the firmware's build: a host with
    another rig's YAML leaves the actuator running no longer after it goes silent), and sets no position limit past
    the rig's track (its hard stops) where the rig has one, nor one at the track (the cart would stop only on them):
    each refused; the rig's own watchdog and a limit a float32 step short of the track are taken."""
    rig = target.rig
    enter(target, "IDLE")
    assert answers(target.send("config", **config(rig, watchdog_ticks=rig.watchdog_ticks + 1))) == ack(
        "config", "rejected")
    assert answers(target.send("config", **config(rig))) == ack("config", "ok")
    if track := rig.track:
        below = float(np.nextafter(np.float32(track), np.float32(0.0)))
        assert answers(target.send("config", **config(rig, pos_limit=track))) == ack("config", "rejected")
        assert answers(target.send("config", **config(rig, pos_limit=below))) == ack("config", "ok")
        assert answers(target.send("config", **config(rig))) == ack("config", "ok")


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


# ------------------------------------------------------------------ the rules (docs/protocol.md, "Rules")

WRAP = 1 << 32


def states(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.name == "state"]


def next_frames(t, tries: int = 10) -> list[Frame]:
    """What the device sends up to and including its next STATE or FAULT."""
    out: list[Frame] = []
    for _ in range(tries):
        out += t.advance()
        if any(f.name in ("state", "fault") for f in out):
            return out
    raise AssertionError(f"no STATE or FAULT: {out}")


def next_state(t) -> Frame:
    (st,) = states(next_frames(t))[-1:]
    return st


def info(t) -> dict:
    (f,) = [f for f in t.send("hello", protocol=PROTOCOL_VERSION) if f.name == "info"]
    return f.fields


def start_run(t, **over) -> Frame:
    """RESET, CONFIG (far limits, the rig's watchdog, `over`), START: the run's first STATE."""
    assert ack("reset", "ok")[0] in answers(t.send("reset", seed=1))  # a FAULT of an earlier run may come first
    cfg = config(t.rig, **far(t) | over)
    assert answers(t.send("config", **cfg)) == ack("config", "ok")
    frames = t.send("start")
    assert answers(frames) == ack("start", "ok")
    after = frames[[f.name for f in frames].index("ack") + 1:]
    return (states(after) or states(next_frames(t)))[0]


def exchange(t, st: Frame, action: list[float], n: int = 6) -> list[Frame]:
    """Answer st and each STATE after it n times; every STATE seen, oldest first."""
    seen = [st]
    for _ in range(n):
        t.push("action", echo_seq=seen[-1].seq, n_act=len(action), action=action)
        seen += states(next_frames(t))
    return seen


def pairs(seen: list[Frame]):
    """Consecutive STATEs (no STATE lost between them)."""
    return [(a, b) for a, b in zip(seen, seen[1:]) if (b.seq - a.seq) & 0xFFFF == 1]


def test_rtt_is_the_round_trip_on_the_device_clock(target):
    """rtt_us: the previous STATE sent -> its ACTION accepted, device clock; 0 when it got none, at
    least 1 when it did, and within the ticks' spacing (the clock advances within a tick on every
    target). The host build's link takes exactly RTT_US."""
    seen = exchange(target, start_run(target), [0.0])
    assert seen[0].fields["rtt_us"] == 0  # the run's first STATE: no exchange before it
    answered = 0
    for a, b in pairs(seen):
        dt = (b.fields["t_us"] - a.fields["t_us"]) % WRAP
        if b.fields["flags"] & FLAGS["stale_action"]:
            assert b.fields["rtt_us"] == 0
        else:
            answered += 1
            assert 0 < b.fields["rtt_us"] <= dt
            if isinstance(target, HostTarget):
                assert b.fields["rtt_us"] == HostTarget.RTT_US
    assert answered >= 2


def test_overrun_flags_a_late_tick(target):
    """Overrun: this tick came more than 1.5 periods after the previous one, on the device clock; every
    STATE says so exactly. A lockstep rig waits for the host's answer: a STATE left unanswered makes
    the next tick late (the host build is told to tick two periods later); a board never waits."""
    period = target.rig.period_us
    seen = exchange(target, start_run(target), [0.0], n=3)
    silent = states(target.advance(2) if isinstance(target, HostTarget) else target.advance())
    if not silent:  # a loaded host: the rig's next tick after its wait may come after the window
        silent = states(next_frames(target))
    seen += silent
    seen += exchange(target, seen[-1], [0.0], n=2)[1:]
    for a, b in pairs(seen):
        late = (b.fields["t_us"] - a.fields["t_us"]) % WRAP > period + period // 2
        assert bool(b.fields["flags"] & FLAGS["overrun"]) == late, (a.fields, b.fields)
    assert not seen[0].fields["flags"] & FLAGS["overrun"]  # the first STATE of a run: no previous tick
    if not target.hardware:
        assert silent[0].fields["flags"] & FLAGS["overrun"] and silent[0].fields["flags"] & FLAGS["stale_action"]


def test_jitter_is_the_tick_against_its_schedule(target):
    """Jitter (rule 16): each STATE's jitter_us is |its t_us - the previous tick's - period| on the device
    clock, exactly; jitter_max_us the largest of the run so far; the first STATE of a run has 0 and 0. A late
    tick (left unanswered on a lockstep rig, two periods on the host build) shows as jitter."""
    period = target.rig.period_us
    first = start_run(target)
    assert (first.fields["jitter_us"], first.fields["jitter_max_us"]) == (0, 0)
    seen = exchange(target, first, [0.0], n=3)
    seen += states(target.advance(2) if isinstance(target, HostTarget) else target.advance()) or \
        states(next_frames(target))
    seen += exchange(target, seen[-1], [0.0], n=2)[1:]
    # no STATE lost (the running max is known), but on a board, which streams on while the test listens
    assert seen[0] is first and (target.hardware or len(pairs(seen)) == len(seen) - 1)
    top = 0
    for a, b in zip(seen, seen[1:]):
        if (b.seq - a.seq) & 0xFFFF != 1:  # STATEs between these two unseen: the max is at least what was seen
            assert b.fields["jitter_max_us"] >= max(top, b.fields["jitter_us"])
            top = b.fields["jitter_max_us"]
            continue
        dt = (b.fields["t_us"] - a.fields["t_us"]) % WRAP
        assert b.fields["jitter_us"] == abs(dt - period), (a.fields, b.fields)
        top = max(top, b.fields["jitter_us"])
        assert b.fields["jitter_max_us"] == top
    if not target.hardware:
        assert top >= period // 2  # the late tick
    target.send("stop")


def test_policy_cycles_time_the_device_policy_call(target):
    """STATE's policy_cycles: the cycles of this tick's policy call at INFO's cycle_hz (infer_ns is the same
    call in ns, rounded down); 0 in host mode."""
    hz = info(target)["cycle_hz"]
    assert hz > 0
    st = start_run(target)
    host = exchange(target, st, [0.0], n=2)
    assert all(s.fields["policy_cycles"] == 0 for s in host)
    target.send("stop")
    st = start_run(target, mode=MODES["device"])
    for s in exchange(target, st, [0.0], n=3)[1:]:
        c = s.fields["policy_cycles"]
        assert c > 0 and s.fields["infer_ns"] == (c * 1000) // (hz // 1_000_000)
    target.send("stop")


def test_first_state_of_a_run(target):
    """The first STATE after START: running only, no round trip, the actuator at zero, even after a
    run that held an action; an ACTION for the previous run's last STATE is not taken by the new run."""
    lim = target.rig.limits["action"]
    first = start_run(target)
    assert (first.fields["flags"], first.fields["rtt_us"], first.fields["action"]) == (FLAGS["running"], 0, [0.0])
    assert first.fields["infer_ns"] == 0  # host mode
    last = _answer_state(target, first, [0.5 * lim])
    assert last.fields["action"] == [pytest.approx(0.5 * lim)]
    assert answers(target.send("stop")) == ack("stop", "ok")
    frames = target.send("start")
    assert answers(frames) == ack("start", "ok")
    target.push("action", echo_seq=last.seq, n_act=1, action=[0.5 * lim])
    after = frames[[f.name for f in frames].index("ack") + 1:]
    st = (states(after) or states(next_frames(target)))[0]
    assert (st.fields["flags"], st.fields["rtt_us"], st.fields["action"]) == (FLAGS["running"], 0, [0.0])
    nxt = next_state(target)
    assert nxt.fields["action"] == [0.0] and nxt.fields["rtt_us"] == 0


@pytest.mark.parametrize("echo", ["future", "older", "half-space"])
def test_action_not_for_the_latest_state_dropped(target, echo):
    """echo_seq is matched by equality with the latest STATE's seq: an answer to a later, an earlier or
    a far (half the sequence space) STATE is dropped and counted; the held action stays."""
    lim = target.rig.limits["action"]
    st = _answer_state(target, start_run(target), [0.25 * lim])
    dropped = info(target)["actions_dropped"]
    bad = {"future": st.seq + 100, "older": st.seq - 1, "half-space": st.seq ^ 0x8000}[echo] & 0xFFFF
    target.push("action", echo_seq=bad, n_act=1, action=[-0.5 * lim])
    nxt = next_state(target)
    assert nxt.fields["action"] == [pytest.approx(0.25 * lim)] and nxt.fields["flags"] & FLAGS["stale_action"]
    now = info(target)["actions_dropped"]
    assert now == dropped + 1 if isinstance(target, HostTarget) else now > dropped


def test_second_answer_to_a_state_dropped(target):
    """Two ACTIONs for one STATE: the first is applied, the second dropped."""
    lim = target.rig.limits["action"]
    st = start_run(target)
    for _ in range(5):
        first = encode("action", 1, echo_seq=st.seq, n_act=1, action=[0.25 * lim])
        second = encode("action", 2, echo_seq=st.seq, n_act=1, action=[-0.5 * lim])
        if isinstance(target, HostTarget):
            target.write(first + second)
        else:
            target.link.ser.write(first + second)
        # the STATE after the one answered reports it (a board streams on meanwhile: the newest is answered next)
        got = states(next_frames(target))
        nxt = next((s for s in got if s.seq == (st.seq + 1) & 0xFFFF), got[0])
        if not nxt.fields["flags"] & FLAGS["stale_action"]:  # (a loaded rig may tick before they arrive)
            break
        st = got[-1]
    assert nxt.fields["action"] == [pytest.approx(0.25 * lim)] and not nxt.fields["flags"] & FLAGS["stale_action"]


@pytest.mark.parametrize("mode", ["host", "device"])
def test_watchdog_ends_a_silent_run(target, mode):
    """watchdog_ticks STATEs without an accepted ACTION, in either mode: the next tick sends a STATE with
    the watchdog flag (running clear, actuator zero), then FAULT (detail: those ticks), and no more."""
    if mode == "device" and target.hardware:
        pytest.skip("the board's own policy is not run by conformance tests")
    w = 3
    enter(target, "IDLE")
    cfg = config(target.rig, watchdog_ticks=w, mode=int(mode == "device"), **far(target))
    frames = [target.send("config", **cfg), target.send("start")]
    # a board ticks on while START's answer is collected: its FAULT may come in the same frames
    assert [[a for a in answers(f) if a[0] == "ack"] for f in frames] == [ack("config", "ok"), ack("start", "ok")]
    seen = frames[-1][[f.name for f in frames[-1]].index("ack") + 1:]
    while not any(f.name == "fault" for f in seen):
        seen += next_frames(target)
    sts, fault = states(seen), [f for f in seen if f.name == "fault"][0]
    running = [s for s in sts if s.fields["flags"] & FLAGS["running"]]
    assert len(running) == w and [bool(s.fields["flags"] & FLAGS["stale_action"]) for s in running] == [
        False] + [True] * (w - 1)
    trip = sts[-1]
    assert trip.fields["flags"] & ~FLAGS["overrun"] == FLAGS["watchdog"] and trip.fields["action"] == [0.0]
    assert (fault.fields["code"], fault.fields["detail"]) == (FAULTS["watchdog"], w) and seen[-1] is fault
    assert state_of(target) == "FAULT"


def test_device_mode_answer_feeds_the_watchdog_only(target):
    """Device mode: the host's ACTION for the latest STATE keeps the run alive, its values unused."""
    if target.hardware:
        pytest.skip("the board's own policy is not run by conformance tests")
    from export.c_export import CPolicy

    lim, pol = target.rig.limits["action"], CPolicy(FIX)
    seen = exchange(target, start_run(target, mode=1, watchdog_ticks=4), [100.0], n=6)
    assert all(s.fields["flags"] & FLAGS["running"] and s.fields["flags"] & FLAGS["device_policy"] for s in seen)
    for s in seen:  # the policy's action, not the host's
        want = np.clip(pol.act(np.array(s.fields["obs"], np.float32)), -lim, lim)
        assert s.fields["action"] == pytest.approx(want.tolist(), abs=1e-5) and s.fields["infer_ns"] > 0


def reset_observation(t, seed: int) -> np.ndarray:
    """RESET(seed) and the observation the run's first tick will report: on the host build the readings
    the test sets, on a simulated rig its plant's reset state (frozen until the run starts)."""
    if isinstance(t, HostTarget):
        t.sensors = np.array([0.0625, -0.09375, 0.5, -0.25], np.float32)
        obs = t.sensors.copy()
    else:
        plant = Plant(RIG)
        plant.reset(seed)
        obs = plant.sensors()
    assert ack("reset", "ok")[0] in answers(t.send("reset", seed=seed))  # a FAULT of an earlier run may come first
    return obs


@pytest.mark.parametrize("which", ["pos", "angle"])
def test_limit_stop_is_strict_and_ends_the_run(target, which):
    """pos_limit tests the rig's position observation, angle_limit its angle, as |x| > limit: at the
    limit the run goes on; beyond it the STATE has limit_stop alone (running clear, action zero) and
    the device is IDLE. START does not reset the plant: a START there stops again at once."""
    if target.hardware:
        pytest.skip("a board's observation cannot be known before the tick")
    idx = RIG.pos_index if which == "pos" else RIG.angle_index
    obs = reset_observation(target, 11)
    edge = np.float32(abs(obs[idx]))
    assert edge > 0
    for limit, stops in ((edge, False), (np.nextafter(edge, np.float32(0)), True)):
        reset_observation(target, 11)
        cfg = config(target.rig, **far(target) | {f"{which}_limit": float(limit)})
        assert answers(target.send("config", **cfg)) == ack("config", "ok")
        frames = target.send("start")
        assert answers(frames) == ack("start", "ok")
        st = (states(frames) or states(next_frames(target)))[0]
        assert st.fields["obs"][idx] == obs[idx]
        if not stops:
            assert st.fields["flags"] == FLAGS["running"]
            assert answers(target.send("stop")) == ack("stop", "ok")
    assert (st.fields["flags"], st.fields["action"]) == (FLAGS["limit_stop"], [0.0])
    assert state_of(target) == "IDLE"
    frames = target.send("start")
    assert answers(frames) == ack("start", "ok")
    again = (states(frames) or states(next_frames(target)))[0]
    assert again.fields["flags"] == FLAGS["limit_stop"] and again.fields["obs"] == st.fields["obs"]


def test_refused_config_keeps_the_last_and_reset_keeps_config(target):
    """A refused CONFIG changes nothing; RESET keeps the configuration (only a restart restores the rig's)."""
    small = 0.25 * target.rig.limits["action"]
    enter(target, "IDLE")
    ok = config(target.rig, action_limit=small, **far(target))
    assert answers(target.send("config", **ok)) == ack("config", "ok")
    assert answers(target.send("config", **(ok | dict(action_limit=2 * small, watchdog_ticks=0)))) == ack(
        "config", "rejected")
    assert answers(target.send("reset", seed=2)) == ack("reset", "ok")
    frames = target.send("start")
    assert answers(frames) == ack("start", "ok")
    st = (states(frames) or states(next_frames(target)))[0]
    st = _answer_state(target, st, [target.rig.limits["action"]])
    assert st.fields["action"] == [pytest.approx(small)] and st.fields["flags"] & FLAGS["clamped"]


def test_ack_names_the_command_frame(target):
    """Each ACK echoes its command's id and header seq, in order; a resent START after one that took
    effect is answered 'rejected' with the resend's seq."""
    enter(target, "IDLE")
    for name, fields, status in [("config", config(target.rig), "ok"), ("start", {}, "ok"), ("start", {}, "rejected"),
                                 ("stop", {}, "ok"), ("reset", dict(seed=3), "ok")]:
        acks = [f for f in target.send(name, **fields) if f.name == "ack"]
        assert [(a.fields["of"], a.fields["status"], a.fields["echo_seq"]) for a in acks] == [
            (BY_NAME[name].id, ACK[status], target.last_seq)]


def test_hello_of_any_version_answered_with_the_devices(target):
    """HELLO is answered in any state with the device's own INFO, whatever version it asks; nothing else
    changes. INFO: the rig's sizes and period, the policy's hash (first 8 bytes), the boot counter."""
    enter(target, "IDLE")
    got = [f for f in target.send("hello", protocol=99) if f.name == "info"]
    assert len(got) == 1
    i = got[0].fields
    assert i["protocol"] == PROTOCOL_VERSION
    assert (i["obs_dim"], i["act_dim"]) == (target.rig.obs_dim, target.rig.act_dim)
    assert i["period_us"] == target.rig.period_us and i["boot"] >= 1
    if not target.hardware:
        from export.c_export import CPolicy

        assert i["caps"] & 1 and bytes(i["model_hash"]).hex() == CPolicy(FIX).model_hash[:16]
    assert state_of(target) == "IDLE"


def test_floats_are_binary32_little_endian(target):
    """The serial line's numbers: an action's f32 comes back bit for bit in the STATE that reports it."""
    value = 0.3 * target.rig.limits["action"] / 3.0  # not a short binary fraction: every bit counts
    st = _answer_state(target, start_run(target), [value])
    assert struct.pack("<f", st.fields["action"][0]) == struct.pack("<f", value)
    assert not st.fields["flags"] & FLAGS["clamped"]


def test_cut_frame_and_bad_frames_counted(target):
    """No inter-byte timeout: a frame cut short is dropped at the next frame's opening delimiter, and
    counted with the other dropped frames (INFO rx_dropped); ACTIONs not taken count in actions_dropped."""
    enter(target, "IDLE")
    before = info(target)
    hello = encode("hello", 500, protocol=PROTOCOL_VERSION)
    bad_crc = bytearray(hello)
    bad_crc[3] ^= 0x40
    unknown = raw_frame(0x7F, 501, b"\x01")
    got = [f for f in target.write(hello[:5] + bytes(bad_crc) + unknown + hello) if f.name == "info"]
    assert len(got) == 1 and got[0].fields["rx_dropped"] == before["rx_dropped"] + 3
    target.push("action", echo_seq=0, n_act=1, action=[0.0])
    assert info(target)["actions_dropped"] == got[0].fields["actions_dropped"] + 1


def test_restart_is_announced(restarting):
    """A device that starts again (power, brown-out, reset) sends an unasked INFO with the next boot
    counter, first frame of its new life (seq 0); it is IDLE with the actuator at zero."""
    t, boot = restarting
    st = start_run(t)
    frames = t.restart() if isinstance(t, HostTarget) else []
    deadline = time.perf_counter() + 60
    while not any(f.name == "info" for f in frames) and time.perf_counter() < deadline:
        got = t.listen(1.0)
        if states(got):
            t.push("action", echo_seq=states(got)[-1].seq, n_act=1, action=[0.0])
        frames += got
    (i,) = [f for f in frames if f.name == "info"]
    assert i.seq == 0 and i.fields["boot"] == boot + 1
    assert not states(frames[frames.index(i):])  # no STATE after it: the run ended
    assert st.seq != 0 and state_of(t) == "IDLE"


# ------------------------------------------------------------------ host build only: readings and clock values
# no rig can be made to give


def test_non_finite_limited_observation_stops(tmp_path):
    t = HostTarget(tmp_path)
    start_run(t)
    t.sensors = np.array([0.0, np.nan, 0.0, 0.0], np.float32)
    st = next_state(t)
    assert st.fields["flags"] == FLAGS["limit_stop"] and st.fields["action"] == [0.0]


@pytest.mark.parametrize("which, flags", [(dict(estop=False), "limit_stop"), (dict(estop=True), "estop")],
                         ids=["end-stop", "estop"])
def test_stop_inputs_end_the_run_each_with_its_flag(tmp_path, which, flags):
    """Rule 18: a stop input that closes mid-run zeroes the actuator at once and the next tick ends the run with the
    input's flag alone: an end stop bit 2, the emergency stop bit 9. Before, both gave bit 2, and `bpd rig check
    --estop` passed a technician who hit an end stop when asked to press the emergency stop."""
    t = HostTarget(tmp_path)
    st = start_run(t)
    t.send("action", echo_seq=st.seq, n_act=1, action=[0.5])
    assert t.dev.actuator()[0] == pytest.approx(0.5)
    t.dev.external_stop(**which)
    assert t.dev.actuator()[0] == 0.0
    last = next_state(t)
    assert (last.fields["flags"], last.fields["action"], last.fields["infer_ns"]) == (FLAGS[flags], [0.0], 0)
    assert state_of(t) == "IDLE"
    start_run(t)  # the emergency stop on a tick that passes a limit too: each reason its flag
    t.dev.external_stop(estop=True)
    t.sensors = np.array([0.0, np.nan, 0.0, 0.0], np.float32)
    assert next_state(t).fields["flags"] == FLAGS["limit_stop"] | FLAGS["estop"]


def test_policy_error_applies_zero(tmp_path):
    t = HostTarget(tmp_path)
    t.sensors = np.array([0.01, 0.02, 0.0, 0.0], np.float32)
    st = start_run(t, mode=1)
    assert st.fields["action"][0] != 0.0
    t.push("action", echo_seq=st.seq, n_act=1, action=[0.0])
    t.sensors = np.array([0.01, 0.02, np.inf, 0.0], np.float32)  # a velocity: no limit watches it
    st = next_state(t)
    want = FLAGS["running"] | FLAGS["device_policy"] | FLAGS["policy_error"]
    assert st.fields["flags"] == want and st.fields["action"] == [0.0]


def test_policy_non_finite_action_is_a_policy_error(tmp_path):
    """A policy call that returns success with a NaN action is a policy error, as a call that fails: zero applied
    and the policy_error flag, not the clamped flag of an action taken and limited."""
    t = HostTarget(tmp_path, nan_action_export(tmp_path))
    t.sensors = np.array([0.01, 0.02, 0.0, 0.0], np.float32)
    st = start_run(t, mode=MODES["device"])
    want = FLAGS["running"] | FLAGS["device_policy"] | FLAGS["policy_error"]
    assert st.fields["flags"] == want and st.fields["action"] == [0.0] and t.dev.actuator()[0] == 0.0


def test_clock_wraps_at_2_32(tmp_path):
    """t_us wraps at 2^32; periods, round trips and overruns are differences modulo 2^32."""
    t = HostTarget(tmp_path)
    t.t = WRAP - RIG.period_us - 100  # the run's first tick 100 us before the wrap
    t.dev.set_time(t.t)
    seen = exchange(t, start_run(t), [0.0], n=3)
    assert [s.fields["t_us"] for s in seen] == [(WRAP - 100 + k * RIG.period_us) % WRAP for k in range(4)]
    assert all(s.fields["flags"] == FLAGS["running"] for s in seen)
    assert [s.fields["rtt_us"] for s in seen] == [0, 250, 250, 250]


def test_info_without_a_policy(tmp_path):
    t = HostTarget.__new__(HostTarget)
    t.lib = build_device_library(tmp_path, RIG)
    t.dev, t.p, t.seq, t.t, t.sensors = SoftwareDevice(RIG, t.lib), Parser(), 0, 0, np.zeros(4, np.float32)
    (boot,) = t.p.feed(t.dev.tx())
    i = boot.fields
    assert i["caps"] & 1 == 0 and i["model_hash"] == [0] * 8
    assert answers(t.send("config", **config(mode=1))) == ack("config", "rejected")


def tampered_export(tmp) -> Path:
    """A copy of the fixture export with one weight of its last layer changed in the generated C, the stored
    self-test pair left as it was (and export.json too: the build below does not verify the export, as a
    flash bit flipped after a verified build would not be seen by it either)."""
    import re

    from export.c_export import CPolicy
    from export.selftest import FILE

    d = tmp / "tampered"
    shutil.copytree(FIX, d)
    text = (d / "policy_weights.c").read_text()
    last = max(int(n) for n in re.findall(r"bpd_l(\d+)_w\[", text))
    m = re.search(rf"bpd_l{last}_w\[\d+\] = \{{\s*(-?[0-9.e+-]+)f", text)
    (d / "policy_weights.c").write_text(text[:m.start(1)] + repr(float(m.group(1)) + 0.5) + text[m.end(1):])
    head = (d / FILE).read_text()
    obs = [float(v.rstrip("f")) for v in re.search(r"_OBS \{ (.*) \}", head).group(1).split(", ")]
    want = float(re.search(r"_ACTION \{ (.*) \}", head).group(1).rstrip("f"))
    assert abs(CPolicy(d).run(np.array(obs, np.float32))[1][0] - want) > 1e-3  # the change shows in the action
    return d


def test_selftest_passes_at_boot_and_after_reset(target):
    """Self-test: the unchanged export's policy gives the stored action for the stored observation, at
    boot (INFO) and after each RESET, on every target; START in device mode is taken."""
    assert info(target)["selftest"] == SELFTEST["pass"]
    st = start_run(target, mode=MODES["device"])
    assert st.fields["flags"] & FLAGS["running"]
    assert info(target)["selftest"] == SELFTEST["pass"]
    target.send("stop")


def _refuses_device_start(t) -> None:
    """A device whose self-test failed: INFO says so, a device-mode START is rejected and the device
    faults with the self-test code, RESET (which runs the test again) leaves it failed; host mode runs."""
    assert info(t)["selftest"] == SELFTEST["fail"]
    assert answers(t.send("config", **config(mode=MODES["device"]))) == ack("config", "ok")
    frames = t.send("start")
    assert answers(frames) == ack("start", "rejected") + [("fault",)]
    (fault,) = [f for f in frames if f.name == "fault"] or [f for f in t.listen(1.0) if f.name == "fault"]
    assert fault.fields["code"] == FAULTS["selftest"] and fault.fields["detail"] == 0  # pair 0, action 0
    assert state_of(t) == "FAULT"
    assert ack("reset", "ok")[0] in answers(t.send("reset", seed=1))
    assert info(t)["selftest"] == SELFTEST["fail"]
    assert answers(t.send("config", **config(mode=MODES["host"]) | far(t))) == ack("config", "ok")
    assert answers(t.send("start")) == ack("start", "ok")
    t.send("stop")


def test_selftest_failure_refuses_start_host_build(tmp_path):
    t = HostTarget.__new__(HostTarget)
    t.lib = build_device_library(tmp_path, RIG, tampered_export(tmp_path))
    t.dev, t.p, t.seq, t.t, t.sensors = SoftwareDevice(RIG, t.lib), Parser(), 0, 0, np.zeros(4, np.float32)
    (boot,) = t.p.feed(t.dev.tx())
    assert boot.fields["selftest"] == SELFTEST["fail"]
    _refuses_device_start(t)


def test_selftest_failure_refuses_start_under_qemu(tmp_path):
    from firmware_host.measure.build import build_firmware_image

    _pil_tools()
    img = build_firmware_image(tampered_export(tmp_path), "cortex-m4f", tmp_path / "pil", rig=str(RIG.path),
                               board="stm32f4-pil")
    t = PtyTarget(["pil", "--rig", str(RIG.path), "--elf", str(img.elf), "--action-timeout", "0.5"])
    t.WINDOW = max(t.WINDOW, 2.0)
    try:
        _refuses_device_start(t)
    finally:
        t.close()


def test_handover_config_refused_without_both_controllers(target):
    """Hand-over (rule 17): a device with one controller (these targets link the learned policy only) refuses
    CONFIG mode 2 and keeps its configuration; INFO's caps bit 2 is clear. Both controllers linked, the region,
    the flag and the take-back: tests/test_handover.py (host build, simulated rig, QEMU)."""
    enter(target, "IDLE")
    assert not info(target)["caps"] & CAPS["handover"]
    assert answers(target.send("config", **config(target.rig, mode=MODES["handover"]))) == ack("config", "rejected")
    assert answers(target.send("config", **config(target.rig, period_us=target.rig.period_us))) == ack("config", "ok")


def test_every_answered_command_is_answered_in_every_state():
    """The harness waits long for the commands in ANSWERED: the state table must give each an answer in
    every state, and ACTION none."""
    assert ANSWERED == {"hello", "config", "start", "stop", "reset"}
    for state in ("IDLE", "RUNNING", "FAULT"):
        for command in ANSWERED:
            (row,) = [r for r in ROWS if r[0] == state and r[1] == command]
            assert len(row[3]) == 1, row
    assert all(r[3] == [] for r in ROWS if r[1] == "action")
