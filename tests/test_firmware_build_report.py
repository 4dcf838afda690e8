"""`bpd firmware build`'s printout: a part's flash and RAM for a Cortex-M image, a host build's sizes named as a
shared library's."""

from types import SimpleNamespace


def test_a_host_build_is_not_reported_in_a_parts_flash_and_ram(monkeypatch, capsys):
    import firmware_host.measure.build as build
    from firmware_host.cli import _build

    r = {"target": "host", "flash_bytes": 24758, "ram_bytes": 67528, "sections": {"text": 23822, "data": 936},
         "parts": {"policy": {"flash_bytes": 1821, "ram_bytes": 0}}, "elf": "lib.so"}
    monkeypatch.setattr(build, "firmware_build", lambda cfg: r)
    monkeypatch.setattr("bpd.config.from_namespace", lambda cls, ns: None)
    _build(SimpleNamespace())
    out = capsys.readouterr().out.splitlines()
    assert out == ["host: text 23822 B, data + bss 67528 B of a shared library for this computer (the simulated "
                   "rig's device, the tests); a part's flash and RAM: --target cortex-m4f", "lib.so"]
    monkeypatch.setattr(build, "firmware_build", lambda cfg: r | {"target": "cortex-m4f", "flash_bytes": 9196,
                                                                 "sections": {"text": 9196, "data": 0}})
    _build(SimpleNamespace())
    assert capsys.readouterr().out.splitlines()[0] == (
        "cortex-m4f: flash 9196 B (text 9196 + data 0), RAM 67528 B (data + bss); flash/RAM B by part: policy 1821/0")


def test_an_image_for_a_rig_whose_plant_the_policy_was_not_trained_on_is_built_with_a_note(monkeypatch, capsys,
                                                                                           tmp_path):
    """The committed export is of InvertedPendulum-v5 (4 -> 1): built for desktop-cartpole (4 -> 1, another
    plant) a note names both, as a trial's does; for gym-inverted-pendulum (its `envs`) nothing is said."""
    import firmware_host.measure.build as build
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    monkeypatch.setattr(build, "_build", lambda cfg, out: {"built": str(out)})  # the note, not the compiler
    exp = str(pendulum_export())
    for rig, note in (("desktop-cartpole", True), ("gym-inverted-pendulum", False)):
        firmware_build(FirmwareBuildConfig(export=exp, rig=rig, out=str(tmp_path / rig)))
        err = capsys.readouterr().err
        assert err == (f"bpd: note: {exp} was trained on InvertedPendulum-v5, not on rig desktop-cartpole's plant "
                       "(bpd/desktop-cartpole-v0); the image is built; on the rig it runs a policy of another plant\n"
                       if note else "")
