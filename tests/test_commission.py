"""Commissioning (`bpd rig check`, hil/commission.py) against the simulated rig on the bench: the
correctly wired rig passes every check; each wiring fault the simulated rig can be given is detected
and named, with its fix; `bpd hil run` refuses a real rig whose last check failed."""

import io
import json
import math
import time

import numpy as np
import pytest

from bpd.errors import BpdError
from bpd_app.cli import main
from firmware_host.rig import load_rig
from firmware_host.rig.sim import FAULTS
from firmware_host.wire.spec import FLAGS, STATES
from hil.commission import FINDINGS, RigCheckConfig, found, refuse_unchecked, run_check


def _check(tmp_path, fault=None, estop=True):
    """The simulated desktop-cartpole checked, its emergency stop pressed by the simulated rig's hand (--estop)."""
    return run_check(RigCheckConfig(port="sim", rig="desktop-cartpole", fault=fault, record=str(tmp_path),
                                    estop=estop))


def test_a_correctly_wired_rig_passes(tmp_path):
    r = _check(tmp_path)
    assert r["passed"] and r["failed"] == [], r["checks"]
    by = {c["name"]: c for c in r["checks"]}
    assert by["end stop left"]["passed"] and by["end stop right"]["passed"]
    # pressed 0.5 s into the hold (100 ticks of 5 ms): the next tick ends the run; released, the push moves the cart
    press = by["emergency stop"]
    assert press["passed"] and press["measured"] == "the run ended 0.005 s after the press", press
    assert by["emergency stop released"]["passed"], by["emergency stop released"]
    assert json.loads((tmp_path / "desktop-cartpole.json").read_text())["passed"] is True


def test_without_estop_the_emergency_stop_is_said_not_pressed(tmp_path):
    """A button only a hand can press: without --estop the row says how to have it pressed, and does not pass it."""
    r = _check(tmp_path, estop=False)
    by = {c["name"]: c for c in r["checks"]}
    assert r["passed"] and by["emergency stop"]["passed"] is None and "emergency stop released" not in by
    assert by["emergency stop"]["measured"] == ("not pressed: give --estop at the rig's terminal to press it during "
                                                "the check")


def test_every_fault_has_a_finding():
    assert set(FINDINGS) == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_detected_and_named(tmp_path, fault):
    r = _check(tmp_path, fault)
    assert not r["passed"]
    assert found(r, fault), (fault, [(c["name"], c["passed"], c["fix"]) for c in r["checks"]])
    assert r["fault"] == fault
    if fault in ("dead-estop", "stuck-estop"):  # the fix names the stop's pin and its polarity setting
        by = {c["name"]: c for c in r["checks"]}
        assert r["failed"] == [FINDINGS[fault][0]], r["failed"]
        assert "its wiring to PC13 (wiring.estop) and stops_active_low (true: the input reads pressed at 0 V)" in \
            by[FINDINGS[fault][0]]["fix"]
        assert by["emergency stop released"]["passed"] is (None if fault == "dead-estop" else False)
        assert by["emergency stop"]["passed"] is (fault == "stuck-estop")  # stuck: it fires, then never lets go
        if fault == "stuck-estop":  # held, it ends the new run at its first tick: said to read pressed still
            assert by["emergency stop released"]["measured"] == "the new run ended at its first tick"
    if fault == "wrong-counts":  # twice the counts: the fix is twice the YAML's 651.8986 counts per rad
        fix = next(c["fix"] for c in r["checks"] if "counts_per_unit[1]" in c["fix"])
        assert float(fix.split("counts_per_unit[1]: ")[1].split()[0]) == pytest.approx(2 * 651.8986, rel=0.03)


def test_hil_run_refuses_a_rig_whose_last_check_failed(tmp_path, capsys):
    spec = load_rig("desktop-cartpole")
    refuse_unchecked(spec, tmp_path)  # never checked: allowed
    _check(tmp_path, "reversed-motor")
    with pytest.raises(BpdError, match=r"its last check failed \(motor polarity"):
        refuse_unchecked(spec, tmp_path)
    rc = main(["hil", "run", "--port", "/dev/null", "--rig", "desktop-cartpole", "--policy", "nowhere",
               "--checks", str(tmp_path), "--out", str(tmp_path / "logs")])
    assert rc == 1 and not (tmp_path / "logs").exists()
    assert "its last check failed (motor polarity" in capsys.readouterr().err  # before the policy is even read
    main(["hil", "run", "--port", "/dev/null", "--rig", "desktop-cartpole", "--policy", "nowhere", "--unchecked",
          "--checks", str(tmp_path), "--out", str(tmp_path / "logs")])
    err = capsys.readouterr().err
    assert "nowhere" in err and "last check" not in err  # --unchecked: the next thing refused is the policy
    _check(tmp_path)  # fixed and checked again: allowed
    refuse_unchecked(spec, tmp_path)
    record = json.loads((tmp_path / "desktop-cartpole.json").read_text())
    record["rig_sha256"] = "0" * 64  # the YAML changed since: check again
    (tmp_path / "desktop-cartpole.json").write_text(json.dumps(record))
    with pytest.raises(BpdError, match="its YAML changed since its last check"):
        refuse_unchecked(spec, tmp_path)


def test_fault_only_on_the_simulated_rig_and_encoders_needed(tmp_path):
    with pytest.raises(BpdError, match="give --port sim"):
        run_check(RigCheckConfig(port="/dev/null", rig="desktop-cartpole", fault="dead-motor", record=str(tmp_path)))
    with pytest.raises(BpdError, match="no encoders to commission"):
        run_check(RigCheckConfig(port="sim", rig="gym-inverted-pendulum", record=str(tmp_path)))


def test_a_wiring_fault_needs_a_rig_with_encoders(tmp_path):
    """`rig sim --fault` on a simulated-only rig (sensors in the plant's units, no encoders) gave a fault that no
    `rig check` can look for (it refuses such a rig): refused before anything is built."""
    from firmware_host.rig.sim import RigSimConfig, SimRig

    with pytest.raises(BpdError, match="--fault: rig gym-inverted-pendulum has no encoders or motor wiring to fault"):
        SimRig(RigSimConfig(rig="gym-inverted-pendulum", fault="reversed-motor", build_dir=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()
    # a dead end stop on a rig with none (rotary-pendulum, desktop-cartpole-swingup): said before the build too
    with pytest.raises(BpdError, match="--fault dead-end-stop: rig rotary-pendulum has no end stop on the positive"):
        SimRig(RigSimConfig(rig="rotary-pendulum", fault="dead-end-stop", build_dir=str(tmp_path / "b")))
    with pytest.raises(BpdError, match="--fault swapped-end-stops: rig rotary-pendulum has no end stops on both sides"):
        SimRig(RigSimConfig(rig="rotary-pendulum", fault="swapped-end-stops", build_dir=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()
    # an emergency stop's fault, or its hand, on a rig with none in its wiring: likewise
    with pytest.raises(BpdError, match=r"--fault stuck-estop: rig rotary-pendulum has no emergency stop in its wiring"):
        SimRig(RigSimConfig(rig="rotary-pendulum", fault="stuck-estop", build_dir=str(tmp_path / "b")))
    with pytest.raises(BpdError, match=r"--estop-stdin: rig rotary-pendulum has no emergency stop in its wiring"):
        SimRig(RigSimConfig(rig="rotary-pendulum", estop_stdin=True, build_dir=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()


def test_estop_without_a_terminal_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """--estop on a board's port needs a technician at this terminal: with stdin not one (a pipe, CI) the check is
    refused before the port is opened, in one line, rather than waiting for a press nobody is there to make. The
    simulated rig's hand needs no terminal (the tests' stdin is none); a rig without an emergency stop, or an
    emergency-stop fault without --estop (nothing would press it), are refused too."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(BpdError, match="stdin is not a terminal"):
        run_check(RigCheckConfig(port="/dev/ttyACM9", rig="desktop-cartpole", estop=True, record=str(tmp_path)))
    rc = main(["rig", "check", "--port", "/dev/ttyACM9", "--rig", "desktop-cartpole", "--estop", "--checks",
               str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--estop: the technician presses the emergency stop" in err
    assert "/dev/ttyACM9" not in err  # refused before the port was tried
    monkeypatch.setattr("sys.stdin", None)  # started with stdin closed (`<&-`): an internal error before
    with pytest.raises(BpdError, match="stdin is not a terminal"):
        run_check(RigCheckConfig(port="/dev/ttyACM9", rig="desktop-cartpole", estop=True, record=str(tmp_path)))
    with pytest.raises(BpdError, match="rig rotary-pendulum has no emergency stop in its wiring"):
        run_check(RigCheckConfig(port="sim", rig="rotary-pendulum", estop=True, record=str(tmp_path)))
    with pytest.raises(BpdError, match="--fault dead-estop: the emergency stop is pressed only with --estop"):
        run_check(RigCheckConfig(port="sim", rig="desktop-cartpole", fault="dead-estop", record=str(tmp_path)))
    assert not list(tmp_path.iterdir())


def _technician(bench_rig, monkeypatch, press: bool):
    """The technician at a terminal (a pty as stdin): presses the bench rig's emergency stop 50 ticks after being told
    (if `press`), and when told to release it, a stray Enter typed before, then releases it and presses Enter."""
    import os
    import pty
    import threading

    from hil import estop

    master, slave = pty.openpty()
    monkeypatch.setattr("sys.stdin", os.fdopen(slave, "r"))
    told = {"press": 0, "release": 0}

    def act_after_ticks(n, what):
        t0 = bench_rig.device.status()["ticks"]

        def wait():
            while bench_rig.device.status()["ticks"] < t0 + n:
                time.sleep(0.001)
            what()
        threading.Thread(target=wait, daemon=True).start()

    ask_press, ask_release = estop.TerminalHand.ask_press, estop.TerminalHand.ask_release

    def on_press(self, pin, window):
        told["press"] += 1
        ask_press(self, pin, window)
        if press:
            act_after_ticks(50, lambda: setattr(bench_rig, "estop_pressed", True))

    def on_release(self, pin, window):
        told["release"] += 1
        os.write(master, b"\n")  # typed before the question: flushed, not taken for the answer
        time.sleep(0.05)

        def release():
            time.sleep(0.2)
            bench_rig.estop_pressed = False
            os.write(master, b"\n")
        threading.Thread(target=release, daemon=True).start()
        ask_release(self, pin, window)

    monkeypatch.setattr(estop.TerminalHand, "ask_press", on_press)
    monkeypatch.setattr(estop.TerminalHand, "ask_release", on_release)
    return told


def test_a_technician_at_the_terminal_presses_and_releases_the_emergency_stop(tmp_path, bench_rig, monkeypatch,
                                                                              capsys):
    """On a board's port the technician is told on the terminal when to press and when to release; the release is
    confirmed with Enter (one typed before the question does not count: the push after it would still find the stop
    held and fail)."""
    from hil.commission import _check
    from hil.estop import TerminalHand

    told = _technician(bench_rig, monkeypatch, press=True)
    cfg = RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path), estop=True)
    t0 = time.monotonic()
    r = _check(cfg, load_rig("desktop-cartpole"), bench_rig.path, TerminalHand())
    by = {c["name"]: c for c in r["checks"]}
    assert r["passed"], r["failed"]
    assert by["emergency stop"]["measured"].startswith("the run ended ") and by["emergency stop released"]["passed"]
    assert told == {"press": 1, "release": 1} and time.monotonic() - t0 < cfg.estop_window  # Enter, not the window
    err = capsys.readouterr().err
    assert ("emergency stop: press it now (PC13: the emergency stop, not an end stop), within 10 s; the motor is held "
            "at zero") in err
    assert "emergency stop seen: release it, then press Enter (the check goes on in 10 s at most)" in err


def test_nobody_pressing_the_emergency_stop_fails_it_after_its_window(tmp_path, bench_rig, monkeypatch):
    """No press within --estop-window: the check goes on after the window (it never waits longer) and fails the
    emergency stop with its pin and polarity setting; there is nothing to release."""
    from hil.commission import _check
    from hil.estop import TerminalHand

    told = _technician(bench_rig, monkeypatch, press=False)
    cfg = RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path), estop=True,
                         estop_window=1.0)
    r = _check(cfg, load_rig("desktop-cartpole"), bench_rig.path, TerminalHand())
    by = {c["name"]: c for c in r["checks"]}
    assert r["failed"] == ["emergency stop"] and by["emergency stop"]["measured"] == "no stop in 1 s"
    assert "its wiring to PC13 (wiring.estop) and stops_active_low" in by["emergency stop"]["fix"]
    assert by["emergency stop released"]["passed"] is None and told == {"press": 1, "release": 0}


def test_link_quality_holds_late_actions_to_the_stale_share_and_lost_frames_to_none():
    """A late host answer is a stale state and a dropped action at once: both are allowed up to 1 % of the ticks;
    a frame the device's receiver lost fails the check at once."""
    from types import SimpleNamespace

    from firmware_host.wire.spec import FLAGS
    from hil.commission import check_link

    spec = load_rig("desktop-cartpole")
    states = [SimpleNamespace(fields={"flags": FLAGS["stale_action"] if i < 2 else 0, "rtt_us": 100})
              for i in range(200)]

    def counts(rx, act):
        return {"rx_dropped": rx, "actions_dropped": act}

    assert check_link(spec, [states], counts(0, 0), counts(0, 2), 0).passed  # 2 of 200: 1 %
    assert not check_link(spec, [states], counts(0, 0), counts(0, 3), 0).passed  # 3 late actions: over 1 %
    lost = check_link(spec, [states], counts(0, 0), counts(1, 0), 0)
    assert not lost.passed and "lost 1 frames" in lost.measured
    assert not check_link(spec, [states], None, None, 0).passed  # no counts from the device: not shown clean
    assert not check_link(spec, [states], counts(0, 0), counts(0, 0), 1).passed  # a host bad frame
    three = [SimpleNamespace(fields={"flags": FLAGS["stale_action"], "rtt_us": 100})] * 3 + states[2:]
    assert not check_link(spec, [three], counts(0, 0), counts(0, 0), 0).passed  # 3 stale of 201


def test_pil_is_not_a_port_to_commission(tmp_path):
    with pytest.raises(BpdError, match="nothing to commission"):
        run_check(RigCheckConfig(port="pil", rig="desktop-cartpole", record=str(tmp_path)))


def test_a_rotary_pendulums_checks_name_its_arm(tmp_path):
    """The position sensor of a rotary pendulum (no wiring block: names from the plant) is its arm, not a cart."""
    r = run_check(RigCheckConfig(port="sim", rig="rotary-pendulum", record=str(tmp_path)))
    names = [c["name"] for c in r["checks"]]
    assert "arm noise at rest" in names and "pendulum noise at rest" in names
    assert not [n for n in names if "cart" in n]


def test_the_noisy_sensor_fault_says_what_it_is_on_a_rotary_pendulum(tmp_path):
    """`--fault noisy-sensor` on a rotary pendulum makes its arm encoder noisy, and the check finds the arm; its help
    said 'the cart encoder', which a rotary pendulum has none of."""
    from firmware_host.rig.sim import FAULTS

    r = run_check(RigCheckConfig(port="sim", rig="rotary-pendulum", fault="noisy-sensor", record=str(tmp_path)))
    # loop timing is the host's real-time scheduling: a loaded machine may fail it beside the finding
    assert [f for f in r["failed"] if f != "loop timing"] == ["arm noise at rest"], r["failed"]
    assert "a rotary rig's arm" in FAULTS["noisy-sensor"]


def test_the_table_keeps_a_long_measurement_from_pushing_every_fix_right():
    """format_table: the measured column is at most 40 wide; a longer measurement has its own line and its fix the
    next, under the fix column."""
    from hil.commission import format_table

    res = {"checks": [{"name": "link", "passed": True, "measured": "protocol 5", "fix": ""},
                      {"name": "cart offset", "passed": False, "measured": "+0.1", "fix": "zero the encoder"},
                      {"name": "loop timing", "passed": False, "measured": "m" * 60, "fix": "a faster host"}],
           "rig": "r", "passed": False, "failed": ["cart offset", "loop timing"], "seconds": 1.0}
    lines = format_table(res).splitlines()
    assert max(len(x) for x in lines) == len("loop timing  FAIL    " + "m" * 60)  # no line padded past its own
    col = lines[0].index("fix")
    assert lines[2].index("zero the encoder") == col and lines[3].endswith("m" * 60)
    assert lines[4].index("a faster host") == col
    assert lines[-1] == "rig r: FAILED (cart offset, loop timing) in 1.0 s"


def test_an_end_stops_opened_limit_stays_short_of_the_hard_stops():
    """6 % beyond the stop, but never past halfway from the stop to the track's end: a stop at 0.23 of a 0.25 m
    track opens the limit to 0.24 (6 % would be 0.2438); one at 0.1 to 0.106; a rig with no track 6 % beyond."""
    from hil.commission import opened_limit

    assert opened_limit(0.23, 0.25) == pytest.approx(0.24)
    assert opened_limit(0.1, 0.25) == pytest.approx(0.106)
    assert opened_limit(0.245, 0.25) == pytest.approx(0.2475) and opened_limit(0.245, 0.25) < 0.25
    assert opened_limit(0.5, None) == pytest.approx(0.53)


@pytest.mark.parametrize("rig,last,limit", [("desktop-cartpole", 0.23, 0.24), ("desktop-cartpole", 0.1, 0.175),
                                             ("rotary-pendulum", 1.5, 3.1)])
def test_the_drive_back_to_the_centre_opens_its_limit_no_further_than_the_track(rig, last, limit):
    """The drive back opens its position limit to twice where the cart stands and a band (0.05 of the rig's limit):
    from the stop at 0.23 that was 0.47, past the desktop cart-pole's 0.25 m track, a CONFIG the device now refuses
    (config_ok): it goes no further than halfway from the cart to the track (0.24; from 0.1, 0.175), as the end-stop
    drives' does; a rig without a track (the rotary arm) has no such bound."""
    from hil.commission import check_return

    spec = load_rig(rig)

    class Session:
        runs = [[type("St", (), {"fields": {"obs": [last, math.pi, 0.0, 0.0]}})()]]

        def run(self, ticks, action, pos_limit, angle_limit=1e3, until=None):
            self.pos_limit = pos_limit
            return np.zeros((1, 4)), [], FLAGS["running"]

    session = Session()
    assert check_return(spec, session, 0.3).passed
    assert session.pos_limit == pytest.approx(limit)


@pytest.fixture
def bench_rig(tmp_path, request):
    """The simulated desktop cart-pole (or the rig given as the fixture's param) on the bench in lockstep, served on a
    pty from a thread of this process, so that a test sees its device (state, actuator) and plant; yields the
    SimRig."""
    import threading

    from firmware_host.rig.sim import RigSimConfig, SimRig

    name = getattr(request, "param", "desktop-cartpole")
    rig = SimRig(RigSimConfig(rig=name, lockstep=True, bench=True, build_dir=str(tmp_path / "b")))
    stop = threading.Event()
    t = threading.Thread(target=rig.run, args=(stop.is_set,), daemon=True)
    t.start()
    yield rig
    stop.set()
    t.join(10)
    rig.close()


def test_a_second_check_finds_the_rig_where_the_first_left_it(tmp_path, bench_rig):
    """A board's RESET moves nothing (the bench rig now keeps its plant across it as a board does): the first check
    left the cart at its right end stop, so a second check read it beyond the position limit, its move ended at the
    first tick, and it said "the motor does not move: check the H-bridge" and "loop timing: no ticks". The check now
    drives the cart back to the centre, and a pendulum still swinging is said as such, not as a noisy encoder, a
    wrong scale or a dead motor: the move waits for a rig at rest."""
    from hil.commission import _check

    spec = load_rig("desktop-cartpole")
    cfg = RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path))
    first = _check(cfg, spec, bench_rig.path)
    assert first["passed"], first["failed"]
    x = float(bench_rig.plant.state()[spec.pos_index])
    assert abs(x) <= 0.05 * spec.limits["position"], x  # back at the centre, not at the stop (+0.23)
    second = _check(cfg, spec, bench_rig.path)
    by = {c["name"]: c for c in second["checks"]}
    assert second["failed"] == ["rig at rest"], second["failed"]  # the pendulum swings on (the plant idle is frozen)
    assert "pendulum was swinging" in by["rig at rest"]["fix"] and by["pendulum noise at rest"]["passed"]
    assert by["cart offset at rest"]["passed"] and by["motor moves the rig"]["passed"] is None


def test_a_swinging_pendulum_is_not_a_noisy_encoder():
    """check_rest judges noise from one tick to the next: a pendulum swinging 0.1 rad is the rig not at rest (the move
    is not run), white noise of 30 counts on the cart is a noisy encoder."""
    from hil.commission import check_rest

    spec = load_rig("desktop-cartpole")
    t = np.arange(200) * spec.period_us * 1e-6
    rest = np.stack([np.zeros_like(t), math.pi + 0.1 * np.sin(2 * math.pi * 0.8 * t)], axis=1)
    checks, ready = check_rest(spec, rest, 200)
    by = {c.name: c for c in checks}
    assert not ready and by["pendulum noise at rest"].passed and not by["rig at rest"].passed
    assert by["rig at rest"].fix == "the pendulum was swinging: let it hang still, then check again"
    noisy = np.stack([np.random.default_rng(0).normal(0, 30, 200) / spec.counts_per_unit[0],
                      np.full(200, math.pi)], axis=1)
    checks, ready = check_rest(spec, noisy, 200)
    by = {c.name: c for c in checks}
    assert not by["cart noise at rest"].passed and by["rig at rest"].passed and ready


def test_ctrl_c_during_a_check_leaves_the_motor_at_zero_and_says_so(tmp_path, bench_rig, monkeypatch, capsys):
    """Ctrl-C in the middle of the move (the motor driven): one line that says the stop was sent and nothing was
    saved, no traceback; the device is idle with its actuator at zero."""
    from hil import commission

    run = commission.Session.run

    def interrupted(self, ticks, action, *a, **k):
        def act(tick, obs):
            if len(self.runs) == 2 and tick == 20:  # the move's 20th tick, a push under way
                assert bench_rig.device.actuator()[0] != 0
                raise KeyboardInterrupt
            return action(tick, obs)
        return run(self, ticks, act, *a, **k)

    monkeypatch.setattr(commission.Session, "run", interrupted)
    rc = main(["rig", "check", "--port", bench_rig.path, "--rig", "desktop-cartpole", "--checks", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert err.strip() == "bpd: interrupted: the stop was sent: the device zeroes the motor; no check result saved"
    assert not (tmp_path / "desktop-cartpole.json").exists()
    deadline = time.monotonic() + 5
    while bench_rig.device.status()["state"] != STATES["idle"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bench_rig.device.status()["state"] == STATES["idle"] and bench_rig.device.actuator()[0] == 0


def test_a_motor_that_does_not_move_names_the_stops_that_block_it(tmp_path):
    """Both end stops read pressed (switches of the other kind) block every command, which the check sees as a motor
    that does not move: its fix names them beside the H-bridge. Not a held emergency stop: that ends the run at its
    first tick (the rest above fails), so the fix no longer sends the technician to it."""
    r = _check(tmp_path, "dead-motor")
    fix = next(c["fix"] for c in r["checks"] if c["name"] == "motor moves the rig")
    assert "both end stops read pressed" in fix and "stops_active_low: true" in fix and "emergency" not in fix


def test_swapped_encoder_cables_are_named_not_read_as_a_reversed_motor_or_a_scale(tmp_path):
    """The two encoders' cables in each other's inputs: each reading follows the other's model travel. On a rotary
    pendulum the check said "the motor drives the wrong way: swap its two leads", on the cart-pole "set
    sensors.counts_per_unit[0]: 1529" and "pendulum encoder reads noisy"; a technician following either breaks a
    correct rig. Now one finding, which cable goes where."""
    r = run_check(RigCheckConfig(port="sim", rig="rotary-pendulum", fault="swapped-encoders", record=str(tmp_path)))
    assert [f for f in r["failed"] if f != "loop timing"] == ["encoders swapped"], r["failed"]
    r = _check(tmp_path, "swapped-encoders")
    assert r["failed"] == ["encoders swapped"], r["failed"]
    fix = next(c["fix"] for c in r["checks"] if c["name"] == "encoders swapped")
    assert fix == ("the cart and pendulum encoders' cables are swapped: plug the cart's into wiring.encoders[0] (TIM3: "
                   "PA6, PA7) and the pendulum's into wiring.encoders[1] (TIM4: PB6, PB7)")


@pytest.mark.parametrize("bench_rig", ["rotary-pendulum"], indirect=True)
def test_a_board_running_another_rigs_firmware_is_told_the_commands_that_fix_it(tmp_path, bench_rig):
    """The link check's fix said `bpd firmware build --rig desktop-cartpole`, which is refused (no export, and the
    Nucleo's image needs --board): now the whole build command for the rig's board, and the flash."""
    from hil.commission import _check

    spec = load_rig("desktop-cartpole")
    r = _check(RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path)), spec,
               bench_rig.path)
    assert r["failed"] == ["link"] and len(r["checks"]) == 1
    assert r["checks"][0]["fix"] == (
        "the board runs another rig's firmware: build it for desktop-cartpole (bpd firmware build EXPORT --target "
        "cortex-m4f --board nucleo-f446 --rig desktop-cartpole) and flash it (bpd firmware flash with the build's "
        "directory)")


def test_the_build_command_takes_the_core_from_the_boards_port(monkeypatch):
    """The fix's build command named --target cortex-m4f whatever the board: the core is the board port's own
    (BOARD_PORTS), so a port for another part gets its core; a board the rig names but no port builds is left for the
    user to fill in."""
    from firmware_host.measure import build
    from hil.commission import _build_command

    spec = load_rig("desktop-cartpole")
    assert _build_command(spec, "desktop-cartpole") == (
        "bpd firmware build EXPORT --target cortex-m4f --board nucleo-f446 --rig desktop-cartpole")
    port = build.BOARD_PORTS["nucleo-f446"]
    monkeypatch.setitem(build.BOARD_PORTS, "nucleo-f446", port | {"targets": ("cortex-m7",)})
    assert "--target cortex-m7 --board nucleo-f446" in _build_command(spec, "desktop-cartpole")
    monkeypatch.delitem(build.BOARD_PORTS, "nucleo-f446")
    assert "--target TARGET --board nucleo-f446" in _build_command(spec, "desktop-cartpole")


def test_the_simulated_rig_is_out_of_reach_of_the_terminals_ctrl_c(tmp_path):
    """`bpd rig check --port sim` (and `hil run --port sim`): Ctrl-C at the terminal went to the simulated rig too,
    which closed its pty before the check's stop reached it, and the check said "stop could not be sent, the device
    watchdog zeroes the actuator". The rig now has a process group of its own: the stop goes out, then the rig."""
    import os

    from hil.trial import RigProcess

    rig = RigProcess(["rig", "sim", "--rig", "desktop-cartpole", "--lockstep", "--bench", "--build-dir",
                      str(tmp_path / "b")], str(tmp_path / "b"))
    with rig:
        assert os.getpgid(rig.proc.pid) == rig.proc.pid != os.getpgrp()


def test_a_cart_left_at_its_end_stop_is_said_to_be_there_not_a_dead_motor(tmp_path, bench_rig):
    """The cart standing at its right end stop (a trial or a check ended there, a hand put it there): the rest run
    ends at its first tick on the position limit. The check said "the motor does not move" and "loop timing: the device
    sent no states: check the link"; now only where the cart is, and that the rest was not run."""
    import mujoco

    from hil.commission import _check

    bench_rig.plant.data.qpos[0] = 0.232
    mujoco.mj_forward(bench_rig.plant.model, bench_rig.plant.data)
    spec = load_rig("desktop-cartpole")
    r = _check(RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path)), spec,
               bench_rig.path)
    by = {c["name"]: c for c in r["checks"]}
    assert r["failed"] == ["rig at rest", "cart offset at rest"], r["failed"]
    assert by["rig at rest"]["fix"] == "the cart stands beyond the position limit (its offset below)"
    assert by["cart offset at rest"]["fix"].startswith("cart reads +0.232 at rest, beyond the position limit 0.2: "
                                                       "move it to the centre by hand")
    assert by["motor moves the rig"]["passed"] is None and by["loop timing"]["passed"] is None


def test_an_end_stop_drive_ended_by_another_stop_short_of_the_switch_is_not_the_end_stop(tmp_path, bench_rig,
                                                                                         monkeypatch):
    """The technician pressing the emergency stop before asked, during the drive to the left end stop (or a switch on
    another pin closing there): the run ended as a limit stop at -0.05, which passed as "end stop left fired at
    -0.05" though the left switch (at -0.23) was never reached. A stop far short of the switch's side fails, and the
    emergency stop's, by its own flag, is said to be it. Released, the check went on to drive the cart to the right
    stop and back, nobody asking (ISO 13850: the release restarts nothing): no run starts after it now."""
    from hil import commission

    run = commission.Session.run

    def pressed_early(self, ticks, action, *a, **k):
        def act(tick, obs):
            if len(self.runs) == 3 and float(obs[0]) <= -0.05:  # the drive to the left stop, a fifth of the way
                bench_rig.estop_pressed = True
            return action(tick, obs)
        if len(self.runs) == 3:  # released before the next run (held, it would end that run at its first tick)
            bench_rig.estop_pressed = False
        return run(self, ticks, act, *a, **k)

    monkeypatch.setattr(commission.Session, "run", pressed_early)
    r = commission._check(RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path)),
                          load_rig("desktop-cartpole"), bench_rig.path)
    by = {c["name"]: c for c in r["checks"]}
    assert by["end stop left"]["passed"] is False, by["end stop left"]
    # the emergency stop's own flag names it (a switch on another pin ends the drive as a stop short of the switch)
    left = by["end stop left"]
    assert left["measured"].startswith("the emergency stop ended the drive at -0.05"), left
    assert left["fix"].startswith("the emergency stop was pressed during the drive")
    not_run = "the emergency stop ended a run above, and its release restarts nothing: release it, and check again"
    assert (by["end stop right"]["passed"], by["end stop right"]["measured"]) == (None, f"not driven: {not_run}")
    assert (by["cart back to the centre"]["passed"], by["cart back to the centre"]["measured"]) == (
        None, f"not driven: {not_run}")
    assert r["ticks"] < 3 * int(1e6 / 5000) + 200  # the rest, the move and the drive to -0.05 only


def test_end_stops_wired_to_each_others_inputs_are_said_to_be_swapped():
    """The left switch wired to the right stop's input (and the right to the left's): the drive to the left stop ends
    there as it should, but the switch, still pressed, then blocks the drive to the right (a stop blocks the commands
    towards its own side), and the cart stands at the left stop. That failed "end stop right" with "friction or a
    blocked track"; the stop that tripped is the one on the other side of the drive, and the fix says the stops look
    swapped, naming both pins. A cart that goes its way from the left stop is not said to be held."""
    from hil.commission import check_end_stops

    spec = load_rig("desktop-cartpole")

    class Session:
        def __init__(self, right_moves: bool) -> None:
            self.right_moves, self.calls = right_moves, 0

        def run(self, ticks, action, pos_limit, angle_limit=1e3, until=None):
            self.calls += 1
            if self.calls == 1:  # to the left stop: it fires there
                return np.array([[0.0, math.pi], [-0.23, math.pi]]), [action(0, None)], FLAGS["limit_stop"]
            x = -0.23 + (0.0001 * np.arange(ticks) if self.right_moves else np.zeros(ticks))
            return np.stack([x, np.full(ticks, math.pi)], 1), [action(k, None) for k in range(ticks)], \
                FLAGS["running"]

    left, right = check_end_stops(spec, Session(right_moves=False), 0.3)
    assert left.passed and right.passed is False
    assert right.measured.startswith("did not move off end stop left (from -0.23 to -0.23 in "), right.measured
    assert right.fix == ("the drive towards end stop right is blocked while the switch at end stop left is pressed: "
                         "the end stops look swapped (the left switch wired to PC1, end stop right's input, and the "
                         "right switch to PC0): swap the two pins in wiring.end_stops ([0] and [1]), or the two wires "
                         "at the board")
    _, right = check_end_stops(spec, Session(right_moves=True), 0.3)  # it went its way, slowly, not far enough
    assert right.fix.startswith("the cart did not reach the stop: check for friction"), right.fix


def test_a_held_emergency_stop_ends_the_next_run_at_its_first_tick_and_its_release_restarts_nothing(bench_rig):
    """ISO 13850: releasing the emergency stop must not by itself restart motion. A press while idle was dropped and,
    held, the stop only blocked the commands: the next run went on at zero, and drove the cart with the host's commands
    the moment the stop was released. Now the held stop ends a run at its first tick as a limit stop (as a board's
    tick, bpd_stops_ending), with the emergency stop's flag; released, nothing runs until a new START, whose push
    moves the cart."""
    from hil.link import DeviceLink
    from hil.rig_session import Session, model_response

    spec = load_rig("desktop-cartpole")
    push = 0.3 * spec.limits["action"]
    bench_rig.estop_pressed = True
    time.sleep(0.05)  # idle: the lockstep rig looks every 2 ms
    link = DeviceLink(bench_rig.path, spec.baud)
    try:
        link.handshake()
        session = Session(link, spec, push)
        rows, sent, flags = session.run(50, lambda k, obs: push, spec.limits["position"])
        assert len(rows) == 1 and not sent and flags == FLAGS["estop"]  # its first STATE ended it, its own flag
        bench_rig.estop_pressed = False  # released
        time.sleep(0.05)
        assert bench_rig.device.status()["state"] == STATES["idle"] and bench_rig.device.actuator()[0] == 0
        with pytest.raises(BpdError, match="the emergency stop ended a run of this check, and no run starts after it"):
            session.run(50, lambda k, obs: push, spec.limits["position"])  # the host's own START waits to be told
        assert bench_rig.device.status()["state"] == STATES["idle"]
        session.released()  # the release confirmed (hil/estop.py asks for it)
        rows, sent, flags = session.run(50, lambda k, obs: push, spec.limits["position"])  # a new START
    finally:
        link.close()
    assert len(rows) == 50 and len(sent) == 50 and flags & FLAGS["running"]
    pushed = model_response(spec, sent)[:, 0]
    moved = float(rows[-1, 0] - rows[0, 0])
    assert moved == pytest.approx(float(pushed[-1] - pushed[0]), rel=0.5)


def test_an_emergency_stop_held_from_before_the_question_is_said_so(tmp_path, bench_rig, monkeypatch):
    """The technician pressing the stop before being asked, and holding it: a board drops a press while idle, and the
    held stop ends the run at its first tick (before, the run went on held at zero and the fix said to check the
    button's wiring). Said as a stop held from before the question, not a dead button nor another stop."""
    from hil import estop
    from hil.commission import _check

    told = _technician(bench_rig, monkeypatch, press=False)
    ask_press = estop.TerminalHand.ask_press

    def early(self, pin, window):
        bench_rig.estop_pressed = True
        time.sleep(0.05)  # the idle rig reads it
        ask_press(self, pin, window)

    monkeypatch.setattr(estop.TerminalHand, "ask_press", early)
    r = _check(RigCheckConfig(port=bench_rig.path, rig="desktop-cartpole", record=str(tmp_path), estop=True,
                              estop_window=1.0), load_rig("desktop-cartpole"), bench_rig.path, estop.TerminalHand())
    by = {c["name"]: c for c in r["checks"]}
    assert r["failed"] == ["emergency stop"] and told["press"] == 1
    assert by["emergency stop"]["measured"] == "the run ended at its first tick, before the press"
    assert by["emergency stop"]["fix"] == ("the emergency stop was held down from before this check asked for it "
                                           "(held, it ends every run): release it, then check again and press it "
                                           "when asked")


class _Stopping:
    """A session whose first run the device ends `end` ticks in with `flags`, and whose runs after go on (running)."""

    def __init__(self, end: int, flags: int) -> None:
        self.end, self.flags, self.calls = end, flags, 0

    def released(self) -> None:
        pass

    def run(self, ticks, action, pos_limit, angle_limit=1e3, until=None):
        self.calls += 1
        n = self.end + 1 if self.calls == 1 else ticks
        sent = [action(k, np.zeros(2)) for k in range(n - 1 if self.calls == 1 else n)]
        return np.zeros((n, 2)), sent, self.flags if self.calls == 1 else FLAGS["running"]


@pytest.mark.parametrize("flags, passed", [(FLAGS["estop"], True), (FLAGS["limit_stop"], False),
                                           (FLAGS["estop"] | FLAGS["limit_stop"], True)],
                         ids=["estop", "end-stop", "both"])
def test_an_end_stop_hit_for_the_emergency_stop_does_not_pass_it(flags, passed):
    """The device gave the emergency stop and an end stop one flag (limit_stop), so a technician who hit an end stop
    when asked to press the emergency stop passed its check. Only the emergency stop's own flag passes it now; an end
    stop's says it was one, naming the emergency stop's pin."""
    from hil import estop

    spec = load_rig("desktop-cartpole")
    hand = estop.SimHand(io.StringIO(), spec.period_us)
    rows = estop.estop_checks(spec, _Stopping(hand.press_tick + 4, flags), hand, "", 10.0, 0.3, False)
    assert rows[0].name == "emergency stop" and rows[0].passed is passed, rows[0]
    if not passed:
        assert rows[0].measured == "the run ended at 0.52 s: an end stop's input, not the emergency stop's"
        assert rows[0].fix.startswith("an end stop's input fired, not the emergency stop's: press the emergency stop "
                                      "(PC13) when asked, not an end stop; if it was pressed, check its wiring to PC13")
        assert rows[1].passed is None


def test_estop_asked_but_not_pressed_does_not_pass_the_check(tmp_path, monkeypatch):
    """--estop given, and the cart not brought back to the centre after the end stops (a drive not done is no failure
    of the rig: "-"): the emergency stop was not pressed, yet nothing failed and the check read PASSED, as if the
    stop had been checked. Now its row fails, says why it was not run and what to do."""
    from hil import commission
    from hil.rig_session import Check

    monkeypatch.setattr(commission, "check_return", lambda spec, session, share: Check(
        "cart back to the centre", None, "stopped at +0.2000: not there in 10 s", "move the cart to the centre"))
    r = _check(tmp_path)
    by = {c["name"]: c for c in r["checks"]}
    assert not r["passed"] and r["failed"] == ["emergency stop"], r["failed"]
    assert by["emergency stop"]["measured"] == ("not pressed: the cart not back at the centre (above), where the push "
                                                "after the release starts")
    assert by["emergency stop"]["fix"] == "move the cart to the centre by hand, then check again with --estop"
    assert "emergency stop released" not in by


def test_a_run_cut_short_at_rest_names_the_input_its_flags_name():
    """The second at rest ended by the device: the fix named "an end stop or the emergency stop" whichever had
    closed; the e-stop has its own flag (bit 9), so the fix names it and its pin, or the end stops' pins."""
    from firmware_host.wire.spec import FLAGS
    from hil.commission import check_rest

    spec = load_rig("desktop-cartpole")
    rest = np.stack([np.zeros(20), np.full(20, math.pi)], axis=1)
    fix = {f: {c.name: c for c in check_rest(spec, rest, 200, f)[0]}["rig at rest"].fix
           for f in (FLAGS["estop"], FLAGS["limit_stop"], 0)}
    assert fix[FLAGS["estop"]].startswith("the emergency stop input is closed (pressed, or a loose wire on its pin, "
                                          "wiring.estop PC13): release it, then check again")
    assert "an end stop input is closed" in fix[FLAGS["limit_stop"]] and "PC0, PC1" in fix[FLAGS["limit_stop"]]
    assert fix[0].startswith("an end stop or the emergency stop input closed")


# the swing-up cart-pole (its pendulum hanging within its angle limit, on the desktop cart-pole's wiring): runs go on
@pytest.mark.parametrize("bench_rig", ["desktop-cartpole-swingup"], indirect=True)
def test_a_trial_stops_at_the_episode_the_emergency_stop_ended(tmp_path, bench_rig):
    """ISO 13850: the emergency stop's release must not by itself restart motion. A trial went on to its next episode
    (RESET, CONFIG, START) after the emergency stop ended one: held, every episode ended at its first tick, and the
    first START after its release drove the rig again, with nobody asking. The device's flag names the emergency
    stop now, so the trial stops at that episode, in one line, and runs no other."""
    from hil.trial import HilRunConfig, run_trial
    from tests.conftest import pendulum_export

    bench_rig.estop_pressed = True  # pressed before the trial: its first episode ends at its first tick
    out = tmp_path / "log"
    cfg = HilRunConfig(port=bench_rig.path, rig="desktop-cartpole-swingup", policy=str(pendulum_export()), episodes=3,
                       steps=20, out=str(out), plots=False, unchecked=True)
    with pytest.raises(BpdError, match=r"the emergency stop ended episode 0: the trial stops there, its release "
                                       r"restarts nothing \(ISO 13850; episodes 1-2 not run"):
        run_trial(cfg)
    s = json.loads((out / "summary.json").read_text())
    assert [(e["episode"], e["ended"], e["length"]) for e in s["episodes"]] == [
        (0, "e-stop (the device's emergency stop ended the run)", 1)]
    assert s["ended"].startswith("error: the emergency stop ended episode 0") and bench_rig.device.actuator()[0] == 0


@pytest.mark.parametrize("bench_rig", ["desktop-cartpole-swingup"], indirect=True)
def test_the_serial_env_starts_nothing_after_the_emergency_stop_until_told(bench_rig):
    """SerialRigEnv (a policy's loop on the rig) reset after every episode, the one the emergency stop ended too: held,
    each reset's run ended at its first tick, and on its release the next reset drove the rig again, nobody asking.
    reset() now refuses after the emergency stop's episode, and while it is held, until told it was released."""
    from hil.env import SerialRigEnv

    env = SerialRigEnv(bench_rig.path, "desktop-cartpole-swingup")
    try:
        env.reset(seed=0)
        bench_rig.estop_pressed = True
        for _ in range(20):
            _, _, terminated, _, info = env.step(np.zeros(1))
            if terminated:
                break
        assert terminated and info["flags"] & FLAGS["estop"]
        with pytest.raises(BpdError, match=r"the emergency stop ended the last episode: its release restarts nothing"):
            env.reset()
        with pytest.raises(BpdError, match=r"the emergency stop is pressed \(the run ended at its first tick\)"):
            env.reset(options={"estop_released": True})  # said so, but still held
        with pytest.raises(BpdError, match="the emergency stop ended the last episode"):
            env.reset()
        bench_rig.estop_pressed = False  # released on purpose
        env.reset(options={"estop_released": True})
        _, _, terminated, _, _ = env.step(np.zeros(1))
        assert not terminated and bench_rig.device.status()["state"] == STATES["running"]
        env.reset()  # a run that ended otherwise is followed by the next as before
    finally:
        env.close()
