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
