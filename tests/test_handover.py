"""Hand-over mode (docs/protocol.md, rule 17): energy swing-up + LQR brings the rotary pendulum near upright,
the learned policy (the rig's teacher, exported) acts inside the rig's hand-over region, and the classical
controller takes back outside it, after a learned-policy error, or for a whole run when the learned policy's
self-test failed. Hand-made states on the host build; a swing-up then catch on the simulated rig (the host build
on a pty) and on the Cortex-M image under QEMU."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_host.rig import load_rig
from firmware_host.rig.classical import HANDOVER_PREFIX, export_classical
from firmware_host.rig.device import SoftwareDevice, build_device_library
from firmware_host.wire.codec import Parser, encode
from firmware_host.wire.spec import ACK, CAPS, FAULTS, FLAGS, MODES, PROTOCOL_VERSION, SELFTEST
from tests.conftest import BPD, nan_action_export, run_bpd

RIG = load_rig("rotary-pendulum")
ROOT = Path(__file__).resolve().parents[1]
LEARNED, CLASSICAL = FLAGS["running"] | FLAGS["device_policy"], FLAGS["running"] | FLAGS["device_policy"] | FLAGS[
    "classical"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path]:
    """The rotary pendulum's teacher exported (the learned policy) and the classical controller for hand-over."""
    d = tmp_path_factory.mktemp("handover")
    run_bpd("export", str(ROOT / "benchmarks" / "teachers" / "rotary-pendulum.npz"), "--out", str(d / "teacher"),
            "--kernel", "generic", "--episodes", "1", "--parity-samples", "1000", timeout=600)
    export_classical(RIG.name, d / "classical", prefix=HANDOVER_PREFIX)
    return d / "teacher", d / "classical"


class Host:
    """The host build of the core with both controllers; ticks at the sensor readings the test sets."""

    def __init__(self, tmp: Path, learned: Path | None, classical: Path | None) -> None:
        self.dev = SoftwareDevice(RIG, build_device_library(tmp, RIG, learned, classical))
        self.p, self.seq, self.t = Parser(), 0, 0
        (self.boot,) = self.p.feed(self.dev.tx())

    def send(self, name: str, **f) -> list:
        self.seq += 1
        self.dev.rx(encode(name, self.seq, **f))
        return self.p.feed(self.dev.tx())

    def config(self, mode: int) -> int:
        (a,) = self.send("config", period_us=0, watchdog_ticks=RIG.watchdog_ticks, mode=mode, action_limit=10.0,
                         pos_limit=2.0, angle_limit=12.0)
        return a.fields["status"]

    def tick(self, obs: list[float]) -> dict:
        """One tick at observation obs (positions in rad: encoder counts here; velocities estimated, so the
        positions are held for a tick before and the rates set by the step)."""
        self.t += RIG.period_us
        cpu = RIG.counts_per_unit
        self.dev.set_time(self.t)
        self.dev.set_sensors(np.array([obs[0] * cpu[0], obs[1] * cpu[1]], np.float32))
        self.dev.tick()
        (st,) = [f for f in self.p.feed(self.dev.tx()) if f.name == "state"]
        self.send("action", echo_seq=st.seq, n_act=1, action=[0.0])  # as a host in device mode: the watchdog fed
        return st.fields


def _at_rest(h: Host, theta: float, alpha: float, ticks: int = 400) -> dict:
    """Ticks at a fixed pose until the estimated rates have decayed to 0: the last STATE."""
    for _ in range(ticks):
        st = h.tick([theta, alpha])
    assert abs(st["obs"][2]) < 1e-3 and abs(st["obs"][3]) < 1e-3
    return st


def test_handover_config_needs_both_controllers(tmp_path, exports):
    """CONFIG mode 2 is refused without both controllers (and mode 3 always); caps bit 2 says whether it is there."""
    teacher, classical = exports
    for learned, cls in ((None, None), (teacher, None)):
        h = Host(tmp_path / f"b{learned is None}", learned, cls)
        assert not h.boot.fields["caps"] & CAPS["handover"]
        assert h.config(MODES["handover"]) == ACK["rejected"]
    with pytest.raises(Exception, match="needs the learned policy"):
        build_device_library(tmp_path / "c", RIG, None, classical)
    with pytest.raises(Exception, match="not a classical export for hand-over"):
        build_device_library(tmp_path / "d", RIG, teacher, teacher)
    h = Host(tmp_path / "both", teacher, classical)
    assert h.boot.fields["caps"] & CAPS["handover"] and h.boot.fields["selftest"] == SELFTEST["pass"]
    assert h.config(3) == ACK["rejected"]
    assert h.config(MODES["handover"]) == ACK["ok"]


def test_handover_acts_inside_the_region_and_takes_back_outside(tmp_path, exports):
    """Hand-made poses at rest: inside the region (|alpha| wrapped < 0.5 rad, |theta| < 1.5) the learned policy
    acts (flag bit 8 clear, its action), a whole turn later too (the angle wrapped); outside, the classical (bit
    8, the classical action); back inside, the learned policy again (no latch on leaving the region)."""
    from export.c_export import CPolicy

    teacher, classical = exports
    net, lqr = CPolicy(teacher), CPolicy(classical, prefix=HANDOVER_PREFIX)
    h = Host(tmp_path, teacher, classical)
    assert h.config(MODES["handover"]) == ACK["ok"]
    assert h.send("start")[0].fields["status"] == ACK["ok"]
    for theta, alpha, turn, who in ((0.1, 0.2, 0, "learned"), (0.1, 0.7, 0, "classical"), (0.1, 0.2, 1, "learned"),
                                    (1.6, 0.2, 0, "classical"), (-0.2, -0.3, -1, "learned")):
        st = _at_rest(h, theta, alpha + 2 * math.pi * turn)
        want = net.act(np.array([theta, alpha, 0, 0], np.float32)) if who == "learned" else lqr.act(
            np.array([theta, alpha + 2 * math.pi * turn, 0, 0], np.float32))
        assert st["flags"] & ~FLAGS["stale_action"] == (LEARNED if who == "learned" else CLASSICAL), (theta, alpha)
        assert st["action"][0] == pytest.approx(float(np.clip(want[0], -10, 10)), abs=1e-2), (theta, alpha, who)


def _tampered(src: Path, dst: Path, pattern: str) -> Path:
    """A copy of an export with the first number matching pattern (in policy_weights.c) changed, its stored
    self-test pair left as it was."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("build*"))
    w = dst / "policy_weights.c"
    text = w.read_text()
    m = re.search(pattern, text)
    w.write_text(text[:m.start(1)] + repr(float(m.group(1)) * 1.5 + 0.5) + text[m.end(1):])
    return dst


def test_handover_self_test_covers_both_controllers(tmp_path, exports):
    """A learned policy whose self-test failed never acts: the classical controller runs the whole hand-over run
    (INFO says failed, device mode is refused). A classical controller whose self-test failed refuses a
    hand-over START: ACK rejected, FAULT code 2 with detail bit 30."""
    teacher, classical = exports
    bad_net = _tampered(teacher, tmp_path / "bad_net", r"bpd_l2_b\[\d+\] = \{\s*(-?[0-9.e+-]+)f")  # the output layer
    h = Host(tmp_path / "a", bad_net, classical)
    assert h.boot.fields["selftest"] == SELFTEST["fail"]
    assert h.config(MODES["handover"]) == ACK["ok"]
    assert h.send("start")[0].fields["status"] == ACK["ok"]
    st = _at_rest(h, 0.1, 0.2)  # inside the region
    assert st["flags"] & ~FLAGS["stale_action"] == CLASSICAL
    bad_lqr = _tampered(classical, tmp_path / "bad_lqr", r"\{(-?[0-9.e+-]+)f, ")
    h = Host(tmp_path / "b", teacher, bad_lqr)
    assert h.boot.fields["selftest"] == SELFTEST["fail"]
    assert h.config(MODES["handover"]) == ACK["ok"]
    frames = h.send("start")
    assert [f.name for f in frames] == ["ack", "fault"] and frames[0].fields["status"] == ACK["rejected"]
    assert frames[1].fields["code"] == FAULTS["selftest"] and frames[1].fields["detail"] & 0x40000000


def test_handover_takes_back_from_a_learned_policy_whose_action_is_not_finite(tmp_path):
    """A learned policy that returns success with a NaN action inside the region failed, as one that returns an
    error: that tick is flagged (bit 6) and the classical controller computes its action, and acts for the rest
    of the run (no flag again), inside the region too."""
    from export.c_export import CPolicy

    classical = tmp_path / "classical"
    export_classical(RIG.name, classical, prefix=HANDOVER_PREFIX)
    lqr = CPolicy(classical, prefix=HANDOVER_PREFIX)
    h = Host(tmp_path, nan_action_export(tmp_path), classical)
    assert h.config(MODES["handover"]) == ACK["ok"]
    assert h.send("start")[0].fields["status"] == ACK["ok"]
    st = h.tick([0.1, 0.2])  # inside the region; the run's first tick estimates the rates as 0
    assert st["flags"] == CLASSICAL | FLAGS["policy_error"]
    assert st["action"][0] == pytest.approx(float(lqr.act(np.array([0.1, 0.2, 0, 0], np.float32))[0]), abs=1e-5)
    st = _at_rest(h, 0.1, 0.2)
    assert st["flags"] & ~FLAGS["stale_action"] == CLASSICAL


# ------------------------------------------------------------------ swing-up then catch on a pty rig


def swing_up_then_catch(args: list[str], ticks: int = 1500, timeout: float = 10.0) -> list[dict]:
    """`bpd rig ARGS` (lockstep), CONFIG hand-over, START, each STATE answered (the watchdog): the STATEs."""
    from hil.link import DeviceLink

    proc = subprocess.Popen([BPD, "rig", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/"), proc.stderr.read()
        link = DeviceLink(port, RIG.baud, write_timeout=timeout)  # QEMU on a loaded machine stalls past 1 s
        link.send("hello", protocol=PROTOCOL_VERSION)  # the unasked INFO of the start may precede the port's opening
        link.info = link.wait_for("info", timeout).fields
        assert link.info["caps"] & CAPS["handover"]
        link.command("config", timeout=timeout, period_us=0, watchdog_ticks=RIG.watchdog_ticks, mode=MODES["handover"],
                     action_limit=10.0, pos_limit=2.0, angle_limit=12.0)
        link.command("start", timeout=timeout)
        seen: list[dict] = []
        while len(seen) < ticks:
            batch = link.next_states(timeout)
            seen += [f.fields for f in batch]
            link.send("action", echo_seq=batch[-1].seq, n_act=1, action=[0.0])
            assert batch[-1].fields["flags"] & FLAGS["running"], batch[-1].fields
        link.command("stop", timeout=timeout)
        link.close()
        return seen[:ticks]
    finally:
        proc.terminate()
        proc.wait(10)


def check_swing_up_then_catch(seen: list[dict]) -> None:
    """The classical controller acts first (the swing-up), the learned policy at the end, which is upright."""
    classical = [bool(s["flags"] & FLAGS["classical"]) for s in seen]
    alpha = [abs(math.remainder(s["obs"][1], 2 * math.pi)) for s in seen]
    assert all(classical[:100]) and not any(classical[-500:])
    assert all(a < 0.2 for a in alpha[-500:]) and all(a > 2.0 for a in alpha[:50])
    assert not any(s["flags"] & (FLAGS["policy_error"] | FLAGS["limit_stop"]) for s in seen)


def test_handover_swing_up_then_catch_on_the_simulated_rig(tmp_path, exports):
    teacher, classical = exports
    check_swing_up_then_catch(swing_up_then_catch(
        ["sim", "--rig", RIG.name, "--policy", str(teacher), "--classical", str(classical), "--lockstep",
         "--action-timeout", "1.0", "--build-dir", str(tmp_path / "build")]))


def test_handover_swing_up_then_catch_under_qemu(tmp_path, exports):
    for tool in ("qemu-system-arm", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (make system-deps installs it)")
    teacher, classical = exports
    check_swing_up_then_catch(swing_up_then_catch(
        ["pil", "--rig", RIG.name, "--policy", str(teacher), "--classical", str(classical), "--action-timeout", "5.0",
         "--build-dir", str(tmp_path / "pil")], timeout=30.0))


def test_handover_block_is_checked_and_generated(tmp_path):
    """The rig's region reaches C as BPD_RIG_HANDOVER_INIT; a block with a bound missing, a bound not above 0 or
    an index outside the observation is refused when the rig is read."""
    import yaml

    from bpd.errors import BpdError
    from firmware_host.rig.codegen import generate_rig_header

    assert RIG.handover == {"angle_index": 1, "bounds": [1.5, 0.5, 10.0, 10.0]}
    assert "#define BPD_RIG_HANDOVER_INIT {1u, {1.5f, 0.5f, 10.0f, 10.0f}}" in generate_rig_header(RIG)
    assert "HANDOVER" not in generate_rig_header(load_rig("desktop-cartpole"))
    raw = yaml.safe_load(RIG.path.read_text())
    for block, msg in (({"bounds": [1.0, 1.0, 1.0]}, "handover.bounds must list 4"),
                       ({"bounds": [1.0, 0.0, 1.0, 1.0]}, "handover.bounds must list 4"),
                       ({"bounds": [1.0] * 4, "angle_index": 4}, "handover.angle_index outside")):
        p = tmp_path / "rig.yaml"
        p.write_text(yaml.safe_dump(raw | {"handover": block}))
        with pytest.raises(BpdError, match=msg):
            load_rig(p)
