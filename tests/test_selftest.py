"""The boot self-test an export carries (export/selftest.py, docs/protocol.md "Self-test"): what is stored
and how it is picked; a classical export's pairs on the firmware core. The device's behaviour on a
passed and a failed self-test is in the conformance suite (tests/test_conformance.py, test_selftest_*)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from export.selftest import FILE, float_tolerance, pick_observation, write_selftest
from firmware_host.rig import load_rig
from firmware_host.rig.classical import export_classical
from firmware_host.rig.device import SoftwareDevice, build_device_library
from firmware_host.wire.codec import Parser
from firmware_host.wire.spec import SELFTEST


def test_pick_avoids_saturated_actions():
    obs = np.arange(12, dtype=np.float32).reshape(4, 3)
    acts = np.array([[1.0], [-0.99], [0.3], [-0.1]], np.float32)
    assert pick_observation(obs, acts, np.array([-1.0]), np.array([1.0])) == 3
    acts[3] = np.nan
    assert pick_observation(obs, acts, np.array([-1.0]), np.array([1.0])) == 2


def test_float_tolerance_is_twice_the_c_parity_tolerance():
    assert float_tolerance({"tolerance": 1e-5}) == 2e-5
    assert float_tolerance({"tolerance": 1e-5, "c_tolerance": 3e-4}) == 6e-4


def test_header_holds_the_pairs_exactly(tmp_path):
    obs = np.array([[0.1, -2.5e-7], [3.0, 1.0 / 3.0]], np.float32)
    act = np.array([[0.25], [-1.0 / 7.0]], np.float32)
    rec = write_selftest(tmp_path, obs, act, 0.0, "integer kernel: bit-exact", "/* banner */\n")
    text = (tmp_path / FILE).read_text()
    assert rec["pairs"] == 2 and "#define BPD_SELFTEST_N 2" in text and "#define BPD_SELFTEST_TOL 0.0f" in text
    got = [float(v.rstrip("f")) for v in re.search(r"_OBS \{ (.*) \}", text).group(1).split(", ")]
    assert np.array_equal(np.array(got, np.float32), obs.ravel())  # every float reads back to its float32
    with pytest.raises(ValueError):
        write_selftest(tmp_path, obs, act[:1], 0.0, "", "")


def _boot_info(tmp_path, rig, export) -> dict:
    dev = SoftwareDevice(rig, build_device_library(tmp_path / "build", rig, export))
    (info,) = Parser().feed(dev.tx())
    return info.fields


def test_classical_export_stores_pairs_that_pass_and_catch_a_changed_gain(tmp_path):
    rig = load_rig("rotary-pendulum")
    info = export_classical(rig.name, tmp_path / "cx")
    st = info["selftest"]
    assert st["pairs"] == 2 and st["tolerance"] == pytest.approx(4e-3)
    assert all(1.0 < abs(a[0]) < 9.0 for a in st["actions"])  # unsaturated
    assert json.loads((tmp_path / "cx" / "export.json").read_text())["files"][FILE]
    assert _boot_info(tmp_path, rig, tmp_path / "cx")["selftest"] == SELFTEST["pass"]
    w = tmp_path / "cx" / "policy_weights.c"
    text = w.read_text()
    m = re.search(r"\{(-?[0-9.e+-]+)f, ", text)  # the first LQR gain
    w.write_text(text[:m.start(1)] + repr(float(m.group(1)) * 1.05) + text[m.end(1):])
    assert _boot_info(tmp_path, rig, tmp_path / "cx")["selftest"] == SELFTEST["fail"]
