"""Cortex-M builds and emulated inference: the golden network on every target, deterministic counts.

Cross-built checks skip only where arm-none-eabi-gcc is missing (`make system-deps` installs it).
"""

import shutil
from collections import Counter

import numpy as np
import pytest

from export.c_export import CPolicy, generate_c
from export.cc import STRICT
from export.collapse import collapse
from firmware_host.measure.build import build_bpd_image, image_report
from firmware_host.measure.cycle_model import estimate_cycles
from firmware_host.measure.emulate import Emulator, classify
from tests.conftest import pendulum_export
from tests.test_export_collapse import GOLDEN, golden_policy

TOL = 1e-5
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (run `make system-deps`)")
TARGETS = ["cortex-m0plus", "cortex-m4f", "cortex-m7"]


@pytest.fixture(scope="module")
def golden_export(tmp_path_factory):
    d = tmp_path_factory.mktemp("golden_export")
    generate_c(collapse(golden_policy()), d, "csr", False, "0" * 64, "test")
    return d


@needs_arm
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fast", [False, True])
def test_emulated_golden_and_deterministic(golden_export, tmp_path, target, fast):
    img = build_bpd_image(golden_export, target, tmp_path / target, fast_tanh=fast)  # -Werror inside
    emu = Emulator(img.elf, target)
    host = CPolicy(golden_export, fast_tanh=fast)
    for x, y in zip(GOLDEN["inputs"], GOLDEN["outputs"]):
        x = np.array(x, np.float32)
        a, b = emu.call(x, 2), emu.call(x, 2)
        assert a.return_code == 0
        assert a.instructions == b.instructions > 0 and a.mix == b.mix  # deterministic
        np.testing.assert_allclose(a.outputs, y, atol=TOL)
        np.testing.assert_allclose(a.outputs, host.act(x), atol=TOL)
    # a fresh emulator gives the same count again
    x0 = np.array(GOLDEN["inputs"][2], np.float32)
    assert Emulator(img.elf, target).call(x0, 2).instructions == emu.call(x0, 2).instructions


@needs_arm
def test_emulated_nan_gives_safe_action(golden_export, tmp_path):
    img = build_bpd_image(golden_export, "cortex-m4f", tmp_path)
    r = Emulator(img.elf, "cortex-m4f").call(np.array([0.0, np.nan, 0.0], np.float32), 2)
    assert r.return_code == -1
    np.testing.assert_array_equal(r.outputs, [0.0, 0.0])


@needs_arm
def test_build_report_sizes(golden_export, tmp_path):
    img = build_bpd_image(golden_export, "cortex-m4f", tmp_path)
    rep = image_report(img, ["policy", "policy_weights"])
    assert rep["flash_bytes"] == rep["sections"]["text"] + rep["sections"]["data"]
    assert rep["ram_bytes"] == rep["sections"]["data"] + rep["sections"]["bss"]
    assert 0 < rep["policy_bytes"] < rep["flash_bytes"]
    assert rep["stack_bytes_by_function"].get("bpd_policy_run", 0) > 0


def test_classify_known_instructions():
    assert classify("vfma.f32", "s15, s14, s13") == ("fp_mac", 1)
    assert classify("vdiv.f32", "s0, s1, s2") == ("fp_div", 1)
    assert classify("ldr", "r3, [r0, #4]") == ("load", 1)
    assert classify("ldrb.w", "r3, [r2], #1") == ("load", 1)
    assert classify("strh", "r3, [r0]") == ("store", 1)
    assert classify("push", "{r4, r5, r6, lr}") == ("mem_multi", 4)
    assert classify("pop", "{r4, r5, pc}") == ("branch_multi", 3)
    assert classify("vpush", "{s16, s17}") == ("fp_mem_multi", 2)
    assert classify("bne", "#0x1a") == ("branch", 1)
    assert classify("bl", "#0x400") == ("call", 1)
    assert classify("adds", "r0, #1") == ("alu", 1)
    assert classify("muls", "r0, r1, r0") == ("mul", 1)


@needs_arm
def test_emulated_count_of_a_hand_written_loop(tmp_path):
    """Each instruction of each block run counts once a run, IT-free Thumb by hand: movs, then subs/bne five times
    (the first pass in the entry's block, four more in the loop's own), push and pop of two registers, bx lr:
    14 instructions, 6 ALU, 6 branches, 2 multiple transfers of 2 registers each; the same again on a second call."""
    import subprocess

    (tmp_path / "t.s").write_text(".syntax unified\n.thumb\n.global bench_infer\n.thumb_func\nbench_infer:\n"
                                  "    movs r2, #5\n1:  subs r2, r2, #1\n    bne 1b\n    push {r4, r5}\n"
                                  "    pop {r4, r5}\n    bx lr\n")
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-Wl,-Ttext=0",
                    "-Wl,--entry=bench_infer", "-o", str(tmp_path / "t.elf"), str(tmp_path / "t.s")], check=True)
    emu = Emulator(tmp_path / "t.elf", "cortex-m4f")
    for _ in range(2):
        run = emu.call(np.zeros(1, np.float32), 1)
        assert run.instructions == 14
        assert run.mix == Counter({"alu": 6, "branch": 6, "mem_multi": 2, "mem_multi_regs": 4})


def test_cycle_model_known_mix():
    mix = Counter({"alu": 10, "load": 4, "store": 2, "fp_mac": 3, "fp_div": 1, "mem_multi": 1, "mem_multi_regs": 4})
    # M4: 10*1 + 4*2 + 2*1 + 3*3 + 1*14 + 1*1 + 4*1 = 48
    assert estimate_cycles("cortex-m4f", mix) == 48
    # M0+: 10 + 4*2 + 2*2 + 0 + 0 + 1 + 4 = 27
    assert estimate_cycles("cortex-m0plus", mix) == 27


@needs_arm
@pytest.mark.parametrize("target", TARGETS)
def test_firmware_image_builds_warning_free(tmp_path, target):

    from firmware_host.measure.build import build_firmware_image

    img = build_firmware_image(pendulum_export(), target, tmp_path)  # every source with -Werror -pedantic
    rep = image_report(img, ["policy", "policy_weights"])
    assert 0 < rep["flash_bytes"] < 64 * 1024 and rep["ram_bytes"] < 8 * 1024


@needs_arm
@pytest.mark.parametrize("board", ["stm32f4", "stm32f4-pil"])
@pytest.mark.parametrize("rig", ["gym-inverted-pendulum", "desktop-cartpole"])
def test_stm32f4_images(tmp_path, board, rig):
    """The STM32F4 port links at the part's flash address, with its interrupt vectors, for each rig."""
    from elftools.elf.elffile import ELFFile

    from firmware_host.measure.build import build_firmware_image

    img = build_firmware_image(pendulum_export(), "cortex-m4f", tmp_path, rig=rig, board=board)
    with open(img.elf, "rb") as f:
        elf = ELFFile(f)
        vec = elf.get_section_by_name(".isr_vector")
        assert vec["sh_addr"] == 0x08000000 and vec["sh_size"] == 4 * (16 + 96)
        names = {s.name for s in elf.get_section_by_name(".symtab").iter_symbols()}
    assert "board_irq" in names and "board_init" in names
    assert ("board_aux_write" in names) == (board == "stm32f4-pil")  # the plant port only in the PIL build


def test_board_for_the_wrong_core_is_refused(tmp_path):
    from bpd.errors import BpdError
    from firmware_host.measure.build import build_firmware_image

    with pytest.raises(BpdError, match="cortex-m4f"):
        build_firmware_image(pendulum_export(), "cortex-m0plus", tmp_path, board="stm32f4")


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_firmware_core_host_build_warning_free(tmp_path, cc):
    import subprocess
    from pathlib import Path

    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    from firmware_host.rig import load_rig
    from firmware_host.rig.codegen import write_rig_header

    c = Path(__file__).resolve().parents[1] / "firmware_host" / "c" / "core"
    fix = pendulum_export()
    rig = write_rig_header(load_rig("desktop-cartpole"), tmp_path / "rig").parent
    for extra in ([], ["-DBPD_SIM_POLICY", f"-I{fix}"]):
        subprocess.run([cc, *STRICT, "-O2", "-fPIC", f"-I{c}",
                        f"-I{rig}", *extra,
                        "-c", *(str(c / f) for f in ("bpd_fw.c", "bpd_wire.c", "bpd_msgs.c", "hal_host.c"))],
                       check=True, cwd=tmp_path)
