"""A rig built on another's hardware (`base:`, firmware_host/rig/rig_yaml.py): the swing-up cart-pole takes the
desktop cart-pole's plant, sensing, wiring and link from its one source, and a change there reaches it."""

from __future__ import annotations

import json

import pytest
import yaml

from bpd.errors import BpdError
from firmware_host.rig import load_rig
from firmware_host.rig.codegen import generate_rig_header, wiring_table
from hil.check_record import refuse_unchecked, rig_hash

SWINGUP_OWN = {"name", "task", "units", "initial_qpos", "reset_noise", "max_episode_steps", "limits", "task_spec",
               "randomization"}


def test_the_swingup_cartpole_is_the_desktop_cartpoles_hardware():
    """It had no wiring block, so it could not be built for the Nucleo its base is wired to; its plant's facts were
    typed twice. Now every key but its task's own is its base's, the wiring included, and its robustness grid (the
    base's, made for balancing) is removed by its null."""
    base, swing = load_rig("desktop-cartpole").raw, load_rig("desktop-cartpole-swingup").raw
    assert set(swing) == (set(base) - {"robustness"}) | SWINGUP_OWN
    for key in set(swing) - SWINGUP_OWN:
        assert swing[key] == base[key], key
    assert swing["wiring"]["board"] == "nucleo-f446" and swing["wiring"]["estop"] == "PC13"
    assert swing["limits"] == {"action": 3.0, "position": 0.22, "angle": 12.0}  # replaced whole, not merged
    # the Nucleo's wiring table and header come out of it as they do for its base
    tables = [wiring_table(load_rig(r)).split("\n", 1) for r in ("desktop-cartpole-swingup", "desktop-cartpole")]
    assert tables[0][1] == tables[1][1] and "codegen desktop-cartpole-swingup --wiring" in tables[0][0]
    head = generate_rig_header(load_rig("desktop-cartpole-swingup"))
    assert "desktop-cartpole-swingup.yaml on firmware_host/rig/rigs/desktop-cartpole.yaml (sha256 " in head
    assert "#define BPD_STOP_N 3u  /* left, right, estop */" in head


def _write(p, raw) -> str:
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_a_base_beside_the_file_a_chain_and_null(tmp_path):
    """A base is a shipped rig's name or a YAML beside the file; a chain of bases reads as one; null removes."""
    raw = yaml.safe_load(load_rig("desktop-cartpole").path.read_text())
    _write(tmp_path / "mine.yaml", dict(raw, name="mine", watchdog_ticks=7))
    _write(tmp_path / "mid.yaml", {"base": "mine.yaml", "name": "mid", "serial": {"baud": 115200}})
    top = load_rig(_write(tmp_path / "top.yaml", {"base": "mid.yaml", "name": "top", "robustness": None}))
    assert (top.name, top.watchdog_ticks, top.baud, top.robustness) == ("top", 7, 115200, None)
    assert top.sources == tuple((tmp_path / f).resolve() for f in ("top.yaml", "mid.yaml", "mine.yaml"))
    assert top.wiring == raw["wiring"]


@pytest.mark.parametrize("base, msg", [
    ("no-such-rig", "base 'no-such-rig' is neither a rig (desktop-cartpole, "),
    (3, "base must name a rig or a YAML path (got 3)"),
    ("self.yaml", "base 'self.yaml' comes back to self.yaml: a rig cannot be its own base"),
])
def test_a_bad_base_is_one_line(tmp_path, base, msg):
    p = _write(tmp_path / "self.yaml", {"base": base, "name": "self"})
    with pytest.raises(BpdError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        load_rig(p)


def test_a_change_to_the_base_is_a_change_to_the_rig(tmp_path):
    """`bpd hil run` refuses a rig whose YAML changed since its last check: a rig on a base changes when its base
    does, though its own file does not (its hash was its own file's bytes)."""
    raw = yaml.safe_load(load_rig("desktop-cartpole").path.read_text())
    _write(tmp_path / "hw.yaml", dict(raw, name="hw"))
    mine = _write(tmp_path / "mine.yaml", {"base": "hw.yaml", "name": "mine"})
    before = rig_hash(load_rig(mine))
    record = tmp_path / "checks"
    record.mkdir()
    (record / "mine.json").write_text(json.dumps({"passed": True, "rig_sha256": before}))
    refuse_unchecked(load_rig(mine), record)  # as checked: taken
    _write(tmp_path / "hw.yaml", dict(raw, name="hw", watchdog_ticks=50))
    assert rig_hash(load_rig(mine)) != before
    with pytest.raises(BpdError, match="changed"):
        refuse_unchecked(load_rig(mine), record)


def test_the_swingup_cartpole_builds_for_the_nucleo(tmp_path):
    """`bpd firmware build EXPORT --board nucleo-f446 --rig desktop-cartpole-swingup` was refused (no wiring)."""
    import shutil

    from firmware_host.measure.build import build_firmware_image
    from tests.conftest import pendulum_export

    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed (make system-deps installs it)")
    img = build_firmware_image(pendulum_export(), "cortex-m4f", tmp_path / "b", rig="desktop-cartpole-swingup",
                               board="nucleo-f446")
    assert img.elf.is_file() and img.elf.stat().st_size > 0


def test_a_number_in_e_notation_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 (PyYAML) read `pole_friction: 5e-4` as the text '5e-4', and the rig was refused with "must be a
    finite number (got '5e-4')"; read_yaml takes it as the number every other reader would. Quoted, it stays text."""
    from bpd.io import read_yaml

    text = load_rig("desktop-cartpole").path.read_text().replace("pole_friction: 0.0005", "pole_friction: 5e-4")
    assert "5e-4" in text
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    assert load_rig(p).raw["pole_friction"] == 5e-4
    (tmp_path / "n.yaml").write_text("a: 1E3\nb: -2.5e+2\nc: '1e3'\nd: 1e\ne: 12\n")
    assert read_yaml(tmp_path / "n.yaml") == {"a": 1000.0, "b": -250.0, "c": "1e3", "d": "1e", "e": 12}


@pytest.mark.parametrize("own", [{}, {"name": "desktop-cartpole"}, {"name": "hw"}],
                         ids=["none", "the-base's", "a-base's"])
def test_a_rig_on_a_base_names_itself(tmp_path, own):
    """A rig on a base that gave no name took its base's: `bpd rig check --rig mine.yaml` then wrote its record as
    rig_checks/desktop-cartpole.json, over the base's, and `bpd hil run --rig desktop-cartpole` refused the base as
    changed since its check (or as failed, the other rig's failure). A rig on a base names itself, other than any
    base's."""
    _write(tmp_path / "hw.yaml", {"base": "desktop-cartpole", "name": "hw"})
    p = _write(tmp_path / "mine.yaml", {"base": "hw.yaml", "limits": {"action": 2.0, "position": 0.1, "angle": 0.5},
                                        **own})
    what = "missing key 'name'" if not own else f"name {own['name']!r} is its base's"
    with pytest.raises(BpdError, match=f"mine.yaml: not a valid rig description: {what}: a rig on a base names "
                                       r"itself \(its check record, rig_checks/NAME.json, goes by name"):
        load_rig(p)
