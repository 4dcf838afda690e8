"""`bpd firmware build`'s printout: a part's flash and RAM for a Cortex-M image, a host build's sizes named as a
shared library's."""

from pathlib import Path
from types import SimpleNamespace

import pytest


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
    monkeypatch.setattr(build, "firmware_build", lambda cfg: r | {"image": "bench", "elf": "bpd_bench"})
    _build(SimpleNamespace())  # the bench image on the host is a program (bpd_bench), not a library
    assert capsys.readouterr().out.splitlines() == [
        "host: text 23822 B, data + bss 67528 B of a program for this computer (the policy and the bench's entry "
        "point); a part's flash and RAM: --target cortex-m4f", "bpd_bench"]
    monkeypatch.setattr(build, "firmware_build", lambda cfg: r | {"target": "cortex-m4f", "flash_bytes": 9196,
                                                                 "sections": {"text": 9196, "data": 0}})
    _build(SimpleNamespace())
    assert capsys.readouterr().out.splitlines()[0] == (
        "cortex-m4f: flash 9196 B (text 9196 + data 0), RAM 67528 B (data + bss); flash/RAM B by part: policy 1821/0")


def test_a_stack_path_cut_for_the_line_says_it_goes_on(monkeypatch, capsys):
    """The worst-case path is printed to its sixth function: one deeper says '...' and how deep (it ended at the
    sixth as if that were the leaf); one of six or fewer is printed whole. The first line gives RAM with the stack
    too: data + bss alone (1352 B) was the only RAM printed, the figure a 20 kB part is held to left to a sum."""
    import firmware_host.measure.build as build
    from firmware_host.cli import _build

    chain = ["Reset_Handler", "main", "bpd_fw_tick", "enter_fault", "send", "on_frame", "send_info", "bpd_frame",
             "bpd_cobs_encode"]
    st = {"total_bytes": 2048, "main": {"bytes": 1936, "chain": chain},
          "interrupt": {"bytes": 4, "exception_frame": 108}}
    r = {"target": "cortex-m4f", "flash_bytes": 9196, "ram_bytes": 1352, "sections": {"text": 9196, "data": 0},
         "parts": {}, "elf": "fw.elf", "stack": st, "ram_with_stack_bytes": 3400}
    monkeypatch.setattr(build, "firmware_build", lambda cfg: r)
    monkeypatch.setattr("bpd.config.from_namespace", lambda cls, ns: None)
    _build(SimpleNamespace())
    out = capsys.readouterr().out.splitlines()
    # the figure to hold against a part's RAM: data + bss and the stack (build_report.json's ram_with_stack_bytes)
    assert out[0] == ("cortex-m4f: flash 9196 B (text 9196 + data 0), RAM 1352 B (data + bss; 3400 B with the "
                      "worst-case stack); flash/RAM B by part: ")
    assert out[1] == (
        "stack, whole image from its call graph: 2048 B worst case (main path 1936 B through Reset_Handler > main > "
        "bpd_fw_tick > enter_fault > send > on_frame > ... (9 functions, all in build_report.json), interrupt 4 B + "
        "exception frame 108 B)")
    st["main"]["chain"] = chain[:6]
    _build(SimpleNamespace())
    assert "through Reset_Handler > main > bpd_fw_tick > enter_fault > send > on_frame, interrupt" in \
        capsys.readouterr().out


def test_an_image_for_a_rig_whose_plant_the_policy_was_not_trained_on_is_built_with_a_note(monkeypatch, capsys,
                                                                                           tmp_path):
    """The committed export is of InvertedPendulum-v5 (4 -> 1): built for desktop-cartpole (4 -> 1, another
    plant) a note names both, as a trial's does; for gym-inverted-pendulum (its `envs`) nothing is said."""
    import firmware_host.measure.build as build
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    monkeypatch.setattr(build, "_build", lambda cfg, stage, out: {"built": str(out)})  # the note, not the compiler
    exp = str(pendulum_export())
    for rig, note in (("desktop-cartpole", True), ("gym-inverted-pendulum", False)):
        firmware_build(FirmwareBuildConfig(export=exp, rig=rig, out=str(tmp_path / rig)))
        err = capsys.readouterr().err
        assert err == (f"bpd: note: {exp} was trained on InvertedPendulum-v5, not on rig desktop-cartpole's plant "
                       "(bpd/desktop-cartpole-v0); the image is built; on the rig it runs a policy of another plant\n"
                       if note else "")


def test_with_no_rig_named_the_exports_own_rig_is_built_else_the_bench_image(monkeypatch, capsys, tmp_path):
    """README walkthrough 1 builds a Hopper export with no --rig: it was refused against gym-inverted-pendulum's
    sizes (4 -> 1). Now an export of a shipped rig's environment builds that rig's firmware, one of another task
    the bench image with a note, and a board's firmware asks for the rig."""
    import export.verify
    import firmware_host.measure.build as build
    from bpd.errors import BpdError
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from firmware_host.rig.yaml_env import rig_of

    built = []
    monkeypatch.setattr(build, "_build", lambda cfg, stage, out: built.append((cfg.image, cfg.rig, out.name)) or {})
    for env, sizes, rig in (("InvertedPendulum-v5", (4, 1), "gym-inverted-pendulum"),
                            ("firmware_host.rig:bpd/desktop-cartpole-v0", (4, 1), "desktop-cartpole"),
                            ("firmware_host.rig:bpd/rotary-pendulum-dr-v0", (4, 1), "rotary-pendulum"),
                            ("Hopper-v5", (11, 3), None), ("InvertedPendulum-v5", (5, 1), None), (None, (4, 1), None)):
        assert rig_of(env, *sizes) == rig, env
    info = {"env_id": "Hopper-v5", "obs_dim": 11, "act_dim": 3}
    monkeypatch.setattr(export.verify, "verify_export", lambda d: info)
    firmware_build(FirmwareBuildConfig(export=str(tmp_path / "exp")))
    assert built.pop() == ("bench", None, "build-cortex-m4f-bench")
    assert capsys.readouterr().err.startswith("bpd: note: no shipped rig is of this policy of Hopper-v5: building "
                                              "the bench image")
    info.update(env_id="InvertedPendulum-v5", obs_dim=4, act_dim=1)
    for board in ("nucleo-f446", "stm32f4"):  # a real board's rig is never guessed, even where one would match
        with pytest.raises(BpdError, match=rf"^--board {board}: name the rig it drives \(--rig NAME"):
            firmware_build(FirmwareBuildConfig(export=str(tmp_path / "exp"), board=board))
    firmware_build(FirmwareBuildConfig(export=str(tmp_path / "exp")))
    assert built.pop() == ("firmware", "gym-inverted-pendulum",
                           "build-cortex-m4f-firmware-generic-gym-inverted-pendulum")
    assert capsys.readouterr().err == ""


def test_fast_tanh_is_built_in_where_the_kernel_offers_it_and_refused_where_it_does_not(monkeypatch, tmp_path):
    """--fast-tanh was taken and dropped without a word: by every kernel but the generic one (they compile in the
    tanh their export chose) and by the host firmware (the simulated rig's device), built without -DBPD_FAST_TANH.
    Now the generic kernel's host and Cortex-M builds call no tanhf with it (and do without it), the report says
    which, and an export whose kernel has no build-time tanh refuses it in one line."""
    import shutil
    import subprocess

    import export.verify
    import firmware_host.measure.build as build
    from bpd.errors import BpdError
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    exp = str(pendulum_export())  # the generic kernel
    targets = [("host", "nm")] + ([("cortex-m4f", "arm-none-eabi-nm")] if shutil.which(build.ARM_GCC) else [])
    for target, nm in targets:
        for fast in (False, True):
            out = tmp_path / f"{target}-{fast}"
            rep = firmware_build(FirmwareBuildConfig(export=exp, target=target, out=str(out), fast_tanh=fast))
            calls = subprocess.run([nm, "-u", str(out / "policy.o")], capture_output=True, text=True).stdout
            assert ("tanhf" in calls) is not fast, (target, fast, calls)
            assert rep["fast_tanh"] is fast
    compact = tmp_path / "compact"
    compact.mkdir()
    (compact / "policy.c").write_text("/* straight-line layers, the tanh the export chose */\n")
    monkeypatch.setattr(export.verify, "verify_export", lambda d: {"kernel": "compact", "env_id": "InvertedPendulum-v5",
                                                                   "obs_dim": 4, "act_dim": 1})
    monkeypatch.setattr(build, "_build", lambda cfg, stage, out: {})
    with pytest.raises(BpdError, match=r"^--fast-tanh: the compact kernel of .*compact compiles in the tanh its export "
                                       r"chose, .*leave out --fast-tanh$"):
        firmware_build(FirmwareBuildConfig(export=str(compact), fast_tanh=True))
    assert firmware_build(FirmwareBuildConfig(export=str(compact), out=str(tmp_path / "c"))) == {}


def test_a_rebuild_stopped_after_its_link_leaves_the_previous_build_whole(monkeypatch, tmp_path):
    """A build is made beside --out and swapped in whole. Before, a rebuild into the same directory stopped (Ctrl-C)
    between its link and its report left the new image beside the previous build's build_report.json, which names
    the board `bpd firmware flash` and `bpd rig pil` go by. A directory that is no build is refused, not replaced."""
    import firmware_host.measure.build as build
    from bpd.errors import BpdError
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    if build.shutil.which(build.ARM_GCC) is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    exp, out = str(pendulum_export()), tmp_path / "fw"
    rep = firmware_build(FirmwareBuildConfig(export=exp, out=str(out)))
    assert rep["elf"] == str(out / "bpd_firmware.elf") and rep["board"] == "generic"
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}

    def stopped(*a, **k):
        assert (Path(a[0].elf)).is_file()  # linked
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "image_report", stopped)
    with pytest.raises(KeyboardInterrupt):
        firmware_build(FirmwareBuildConfig(export=exp, out=str(out), board="stm32f4", rig="gym-inverted-pendulum"))
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]  # no stage left beside it
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("kept")
    with pytest.raises(BpdError, match=r"mine: exists and is not a firmware build \(no build_report.json\); "
                                       r"choose another --out or remove it$"):
        firmware_build(FirmwareBuildConfig(export=exp, out=str(other)))
    assert (other / "notes.txt").read_text() == "kept"


def test_a_staged_directory_is_never_the_working_directory_and_a_failed_swap_leaves_nothing(monkeypatch, tmp_path):
    """`firmware build --out .` (or `export --out .`) swapped the working directory away: refused in one line, as is
    a directory that holds it; a swap whose first rename fails (a mount point, EBUSY) leaves no .old-* directory."""
    import os

    from bpd.errors import BpdError
    from bpd.io import StagedDir

    (tmp_path / "fw" / "sub").mkdir(parents=True)
    (tmp_path / "fw" / "build_report.json").write_text("{}")
    monkeypatch.chdir(tmp_path / "fw" / "sub")
    for out in (".", "..", str(tmp_path / "fw"), "../sub"):
        with pytest.raises(BpdError, match="is the working directory or holds it"):
            StagedDir(out).__enter__()
    monkeypatch.chdir(tmp_path)
    real = os.replace

    def busy(src, dst):
        if Path(src).name == "fw":
            raise OSError(16, "Device or resource busy")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    with pytest.raises(OSError, match="busy"):
        with StagedDir("fw") as stage:
            (stage.path / "new").write_text("x")
            stage.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]  # no stage, no .fw.old-*
    assert (tmp_path / "fw" / "build_report.json").read_text() == "{}"


@pytest.mark.skipif(__import__("shutil").which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_an_image_over_its_parts_flash_or_ram_says_by_how_much_and_of_what(tmp_path):
    """The linker's 'section .text will not fit in region FLASH' (naming the stage's ELF, not by how much) became the
    region's size from the board's linker script and the bytes over (a 400x400 policy on the Nucleo's 512 KiB)."""
    import re

    from bpd.errors import BpdError
    from firmware_host.measure.build import compile_image

    src = tmp_path / "big.c"
    src.write_text("const char big[600 * 1024] = {1};\nvolatile char ram[200 * 1024];\n"
                   "int main(void) { return big[ram[7]]; }\n")
    msg = {}
    for ld in ("stm32f405.ld", "stm32f446.ld"):  # 1 MiB and 512 KiB of flash, 128 KiB of RAM each
        with pytest.raises(BpdError) as e:
            compile_image("cortex-m4f", [src], [], tmp_path / ld, "x", strict=set(), ldscript=ld)
        msg[ld] = str(e.value)
    m = re.fullmatch(r"linking failed: the image does not fit the memory map of stm32f405\.ld: RAM \(128K\) by (\d+) B "
                     r"\(a smaller policy, or a part with more memory\)", msg["stm32f405.ld"])
    assert m and 72 * 1024 <= int(m[1]) < 73 * 1024, msg  # 200 KiB of bss in 128 KiB, and the C library's few bytes
    m = re.fullmatch(r"linking failed: the image does not fit the memory map of stm32f446\.ld: FLASH \(512K\) by "
                     r"(\d+) B; RAM \(128K\) by (\d+) B \(a smaller policy, or a part with more memory\)",
                     msg["stm32f446.ld"])
    assert m and 88 * 1024 <= int(m[1]) < 90 * 1024 and 72 * 1024 <= int(m[2]) < 73 * 1024, msg
    src.write_text("int main(void) { return 0; }\n")  # fits: built
    img = compile_image("cortex-m4f", [src], [], tmp_path / "c", "x", strict=set(), ldscript="stm32f446.ld")
    assert img.elf.is_file()


@pytest.mark.parametrize("image", ["firmware", "bench"])
def test_the_policys_scratch_buffer_is_the_policys_ram_not_the_boards(tmp_path, image):
    """The policy's working memory (`float scratch[BPD_SCRATCH_FLOATS]`, 10 floats in the committed export) is
    declared by its caller, the board layer or the bench's entry point: the build report gave it to `board` (a
    teacher's 2 kB of activations read as board RAM, the policy's as 0). It is the policy's RAM now."""
    import shutil

    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (make system-deps)")
    exp = pendulum_export()
    r = firmware_build(FirmwareBuildConfig(export=str(exp), image=image, out=str(tmp_path / "b")))
    assert "#define BPD_SCRATCH_FLOATS 10" in (Path(exp) / "policy_weights.h").read_text()
    assert r["parts"]["policy"]["ram_bytes"] == 40
    assert sum(p["ram_bytes"] for p in r["parts"].values()) == r["ram_bytes"]


def test_the_firmware_policy_part_is_the_exports_policy_flash_and_the_model_hash(tmp_path):
    """docs/cycle_model.md: the firmware image's policy part is the policy flash the export and the bench give (the
    bench image's) plus the model hash string the firmware reports, 64 hex digits and a NUL."""
    import json
    import shutil

    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (make system-deps)")
    exp = pendulum_export()
    fw, bench = (firmware_build(FirmwareBuildConfig(export=str(exp), image=i, out=str(tmp_path / i)))
                 for i in ("firmware", "bench"))
    assert len(json.loads((exp / "export.json").read_text())["model_hash"]) == 64
    assert fw["parts"]["policy"]["flash_bytes"] == bench["policy_bytes"] + 65


def test_a_board_built_for_a_core_it_is_not_is_named_before_the_rig_is_asked_for(tmp_path):
    """--target cortex-m7 --board stm32f4 asked first to name the rig (--rig), and once it was named said the board is
    a Cortex-M4F part: two tries for one mistake. Now the board's core is said first."""
    from bpd.errors import BpdError
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from tests.conftest import pendulum_export

    for board in ("stm32f4", "stm32f4-pil", "nucleo-f446"):
        with pytest.raises(BpdError, match=rf"^board {board} is a cortex-m4f part, not cortex-m7$"):
            firmware_build(FirmwareBuildConfig(export=str(pendulum_export()), target="cortex-m7", board=board,
                                               out=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()
