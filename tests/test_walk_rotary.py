"""The rotary (Furuta) pendulum rig as a newcomer with another Furuta pendulum walks it: a YAML of their own,
copied from rotary-pendulum.yaml and edited. Each mistake in it is one line naming the key, before any rig,
build or trial starts."""

from __future__ import annotations

import re

import pytest
import yaml

from bpd.errors import BpdError
from firmware_host.rig import load_rig


def _rig(tmp_path, **changes) -> str:
    """rotary-pendulum.yaml with changes: key (a__b for a nested one) to a value, None to delete it."""
    raw = yaml.safe_load(load_rig("rotary-pendulum").path.read_text())
    raw["name"] = "my-furuta"
    for k, v in changes.items():
        *path, last = k.split("__")
        node = raw
        for part in path:
            node = node[part]
        if v is None:
            del node[last]
        else:
            node[last] = v
    p = tmp_path / "my-furuta.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_another_furuta_pendulum_loads(tmp_path):
    spec = load_rig(_rig(tmp_path, arm__length=0.1, limits__action=6.0))
    assert (spec.name, spec.raw["arm"]["length"], spec.limits["action"]) == ("my-furuta", 0.1, 6.0)


@pytest.mark.parametrize("units, msg", [
    ("V", "units must map position, angle and action to their names (got 'V')"),
    ({"action": ["V"]}, "units must map position, angle and action to their names"),
    ({"actoin": "V"}, "unknown key units.'actoin' (did you mean 'action'?)"),
])
def test_units_that_are_not_a_mapping_of_names_are_refused(tmp_path, units, msg):
    """`units: V` was taken, and every trial (the tick log's labels) and `rig sim --view` ended in an internal
    error: AttributeError: 'str' object has no attribute 'get'."""
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(msg)):
        load_rig(_rig(tmp_path, units=units))


def test_a_trial_on_a_rig_with_bad_units_is_one_line(tmp_path, capsys):
    from bpd_app.cli import main
    from firmware_host.rig.classical import export_classical

    export_classical("rotary-pendulum", tmp_path / "cx")
    rig = _rig(tmp_path, units="V")
    assert main(["hil", "run", "--port", "sim", "--lockstep", "--rig", rig, "--policy", str(tmp_path / "cx"),
                 "--steps", "5", "--out", str(tmp_path / "log"), "--no-plots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bpd: error: ") and "units must map" in err[0]
