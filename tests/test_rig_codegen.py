"""One rig description for every consumer: the YAML generates the C configuration the firmware
core, the host build and the boards include; the Python side reads the same facts from the YAML."""

import re

import numpy as np
import pytest

from bpd.errors import BpdError
from firmware_host.rig import ObservationFilter, load_rig
from firmware_host.rig.codegen import generate_rig_header
from firmware_host.rig.device import SoftwareDevice, build_device_library
from firmware_host.wire.codec import Parser, encode


def _defines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (BPD_RIG_\w+) (.+?)(?:\s+/\*.*)?$", text, re.M))


def test_header_carries_the_yaml():
    d = _defines(generate_rig_header(load_rig("desktop-cartpole")))
    assert d["BPD_RIG_PERIOD_US"] == "5000u" and d["BPD_RIG_OBS_DIM"] == "4u" and d["BPD_RIG_N_RAW"] == "2u"
    assert d["BPD_RIG_COUNTS_PER_UNIT"] == "{10000.0f, 651.8986f}"
    assert d["BPD_RIG_VELOCITY_FILTER_HZ"] == "{50.0f, 50.0f}"
    assert d["BPD_RIG_WATCHDOG_TICKS"] == "10u" and d["BPD_RIG_POS_LIMIT"] == "0.2f"
    assert d["BPD_RIG_TRACK"] == "0.25f"  # the hard stops: the widest position limit the firmware takes
    assert (d["BPD_RIG_POS_INDEX"], d["BPD_RIG_ANGLE_INDEX"]) == ("0u", "1u")
    g = _defines(generate_rig_header(load_rig("gym-inverted-pendulum")))
    assert g["BPD_RIG_MEASURED_VELOCITY"] == "1u" and g["BPD_RIG_N_RAW"] == "4u" and g["BPD_RIG_PERIOD_US"] == "40000u"
    assert g["BPD_RIG_TRACK"] == "0.0f"  # no track in its YAML: no bound but positive finite
    assert _defines(generate_rig_header(load_rig("rotary-pendulum")))["BPD_RIG_TRACK"] == "0.0f"
    assert _defines(generate_rig_header(load_rig("desktop-cartpole-swingup")))["BPD_RIG_TRACK"] == "0.25f"  # its base's


def _rig_yaml(tmp_path, **over) -> str:
    import yaml

    raw = yaml.safe_load(load_rig("desktop-cartpole").path.read_text())
    raw.pop("wiring")  # a board's pin map follows the sensors; these cases change the sensors (test_board_nucleo.py)
    for k, v in over.items():
        raw["sensors" if k in ("counts_per_unit", "velocity_filter_hz", "noise_std") else "limits"][k] = v
    p = tmp_path / "rig.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_three_sensors_per_sensor_filters_and_indices(tmp_path):
    """Any number of sensors, a filter per sensor, the limit indices: the header and the host-built
    device follow the YAML, and the device's velocities match the Gym env's filter."""
    spec = load_rig(_rig_yaml(tmp_path, counts_per_unit=[1000.0, 0.0, 500.0], velocity_filter_hz=[0, 20, 80],
                              noise_std=[0, 0, 0], position_index=2, angle_index=1))
    d = _defines(generate_rig_header(spec))
    assert d["BPD_RIG_OBS_DIM"] == "6u" and d["BPD_RIG_VELOCITY_FILTER_HZ"] == "{0.0f, 20.0f, 80.0f}"
    assert d["BPD_RIG_POS_INDEX"] == "2u"
    dev = SoftwareDevice(spec, build_device_library(tmp_path / "b", spec))
    p = Parser()
    # the rig's own watchdog (a CONFIG may not lengthen it: each STATE is answered), the position limit at the track
    dev.rx(encode("config", 0, period_us=0, watchdog_ticks=spec.watchdog_ticks, mode=0, action_limit=1.0,
                  pos_limit=0.25, angle_limit=1e3) + encode("start", 1))
    filt = ObservationFilter(spec)
    rng = np.random.default_rng(0)
    for k in range(1, 30):
        raw = np.array([rng.integers(-50, 50), rng.normal() * 0.01, rng.integers(-50, 50)], np.float32)
        dev.set_time(k * spec.period_us)
        dev.set_sensors(raw)
        dev.tick()
        (st,) = [f for f in p.feed(dev.tx()) if f.name == "state"]
        np.testing.assert_allclose(st.fields["obs"], filt(raw), rtol=1e-4, atol=1e-5)
        dev.rx(encode("action", k + 1, echo_seq=st.seq, n_act=1, action=[0.0]))


def test_limit_index_stops_on_the_named_observation(tmp_path):
    spec = load_rig(_rig_yaml(tmp_path, position_index=1, angle_index=0, angle=5.0, position=0.1))
    dev = SoftwareDevice(spec, build_device_library(tmp_path / "b", spec))
    p = Parser()
    dev.rx(encode("start", 0))
    dev.set_time(spec.period_us)
    dev.set_sensors(np.array([0.0, 0.2 * 651.8986], np.float32))  # angle 0.2 rad: past the 0.1 "position" limit
    dev.tick()
    (st,) = [f for f in p.feed(dev.tx()) if f.name == "state"]
    assert st.fields["flags"] & 4


@pytest.mark.parametrize("over,msg", [(dict(velocity_filter_hz=[1, 2, 3]), "one value per position sensor"),
                                      (dict(angle_index=9), "angle_index outside"),
                                      (dict(counts_per_unit=[0.0] * 9), "observations")])
def test_bad_descriptions_refused(tmp_path, over, msg):
    with pytest.raises(BpdError, match=msg):
        load_rig(_rig_yaml(tmp_path, **over))
