"""Commissioning (`bpd rig check`, hil/commission.py) against the simulated rig on the bench: the
correctly wired rig passes every check; each wiring fault the simulated rig can be given is detected
and named, with its fix; `bpd hil run` refuses a real rig whose last check failed."""

import json

import pytest

from bpd.errors import BpdError
from bpd_app.cli import main
from firmware_host.rig import load_rig
from firmware_host.rig.sim import FAULTS
from hil.commission import FINDINGS, RigCheckConfig, found, refuse_unchecked, run_check


def _check(tmp_path, fault=None):
    return run_check(RigCheckConfig(port="sim", rig="desktop-cartpole", fault=fault, record=str(tmp_path)))


def test_a_correctly_wired_rig_passes(tmp_path):
    r = _check(tmp_path)
    assert r["passed"] and r["failed"] == [], r["checks"]
    by = {c["name"]: c for c in r["checks"]}
    assert by["end stop left"]["passed"] and by["end stop right"]["passed"]
    assert by["emergency stop"]["passed"] is None  # a button only a hand can press: said, not faked
    assert json.loads((tmp_path / "desktop-cartpole.json").read_text())["passed"] is True


def test_every_fault_has_a_finding():
    assert set(FINDINGS) == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_detected_and_named(tmp_path, fault):
    r = _check(tmp_path, fault)
    assert not r["passed"]
    assert found(r, fault), (fault, [(c["name"], c["passed"], c["fix"]) for c in r["checks"]])
    assert r["fault"] == fault
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
