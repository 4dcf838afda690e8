"""Whole-image stack figures: call graph over every function against known frames, and the firmware's
static bound against a painted-stack measurement under emulation."""

import shutil

import pytest

from firmware_host.measure.build import FIRMWARE_PARTS, build_firmware_image, compile_image, image_report
from firmware_host.measure.stack import analyse, painted_stack, stack_report
from tests.conftest import pendulum_export

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (make system-deps)")

CHAIN_C = """
#include <stdint.h>
__attribute__((noinline)) int leaf(int x);
__attribute__((noinline)) int mid(int x);
int leaf(int x) { volatile char b[64]; b[x & 63] = 1; return b[0]; }
int mid(int x) { volatile char b[128]; b[x & 127] = 2; return leaf(x) + b[1]; }
int (*volatile fp)(int) = mid;
int main(void);
int main(void) { volatile int s = 0; for (;;) s += fp(3); }
"""


@needs_arm
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m4f"])
def test_call_graph_known_chain(tmp_path, target):
    src = tmp_path / "chain.c"
    src.write_text(CHAIN_C)
    img = compile_image(target, [src], [], tmp_path / "b", "chain")
    funcs = analyse(img.elf)  # frames from the disassembly alone
    for name, su in img.stack.items():  # ... agree with the compiler's own figures
        if name in funcs:
            assert funcs[name].frame == su, name
    assert funcs["leaf"].frame >= 64 and funcs["mid"].frame >= 128
    rep = stack_report(img.elf, target, img.stack)
    # main reaches mid only through the function pointer, stored in .data
    assert rep["main"]["chain"] == ["Reset_Handler", "main", "mid", "leaf"]
    want = sum(img.stack[n] for n in ("main", "mid", "leaf")) + funcs["Reset_Handler"].frame
    assert rep["main"]["bytes"] == want
    exc = 32 if target == "cortex-m0plus" else 104
    assert rep["total_bytes"] == want + rep["interrupt"]["bytes"] + exc + 4


@needs_arm
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m4f"])
def test_firmware_stack_bound_holds_against_painted_stack(tmp_path, target):
    from firmware_host.wire.codec import encode

    img = build_firmware_image(pendulum_export(), target, tmp_path)
    rep = image_report(img, ["policy", "policy_weights"], FIRMWARE_PARTS)
    st = rep["stack"]
    assert st["from_stack_usage"] >= 30 and st["functions"] > st["from_stack_usage"]  # library code too
    assert st["bpd_fw_tick"]["bytes"] > img.stack["bpd_fw_tick"]  # the tick calls on; not its frame alone
    rx = (encode("hello", 1, protocol=1) + encode("config", 2, period_us=0, watchdog_ticks=5, mode=1,
                                                   action_limit=3.0, pos_limit=1.0, angle_limit=1.0)
          + encode("start", 3))
    painted = painted_stack(img.elf, target, rx, ticks=3)
    assert painted["ticks"] == 3 and painted["policy_calls"] == 1 + 3  # the boot self-test's, then device mode's
    assert 0.5 * st["main"]["bytes"] <= painted["bytes"] <= st["main"]["bytes"]
    assert rep["stack_bytes"] == st["total_bytes"] > st["main"]["bytes"]
    parts = rep["parts"]
    assert set(parts) == {"policy", "firmware core", "board", "other"}
    assert sum(p["flash_bytes"] for p in parts.values()) == rep["flash_bytes"]
    assert sum(p["ram_bytes"] for p in parts.values()) == rep["ram_bytes"]
    assert parts["policy"]["flash_bytes"] == rep["policy_bytes"]
