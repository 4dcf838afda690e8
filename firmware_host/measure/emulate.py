"""Run a function of a Cortex-M image in unicorn and count what it executes.

Instructions are counted per executed basic block (UC_HOOK_BLOCK) with capstone sizing each
block, so instructions skipped inside an IT block still count, as they take an issue slot on the
core. Counts are deterministic: same image, same inputs, same count. The instruction mix feeds
the cycle model in cycle_model.py, which gives estimates, not measurements.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpd.errors import BpdError

FLASH_BASE, FLASH_SIZE = 0x00000000, 0x00100000
RAM_BASE, RAM_SIZE = 0x20000000, 0x00080000
PERIPH_BASE, PERIPH_SIZE = 0xE0000000, 0x00100000  # system control space (CPACR, DWT)
IO_ADDR = RAM_BASE + 0x60000  # observation and action buffers
STACK_TOP = RAM_BASE + RAM_SIZE - 0x10
STOP_ADDR = 0x30000000  # return address that ends the call

CPU_MODEL = {"cortex-m0plus": "UC_CPU_ARM_CORTEX_M0", "cortex-m4f": "UC_CPU_ARM_CORTEX_M4",
             "cortex-m7": "UC_CPU_ARM_CORTEX_M7"}


@dataclass
class Execution:
    instructions: int
    mix: Counter
    outputs: np.ndarray
    return_code: int = 0


_COND = re.compile(r"(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)$")
_CLASSES = {
    "fp_div": {"vdiv", "vsqrt"},
    "fp_mac": {"vmla", "vmls", "vfma", "vfms", "vnmla", "vnmls", "vfnma", "vfnms"},
    "fp_mem": {"vldr", "vstr"},
    "fp_mem_multi": {"vldm", "vstm", "vpush", "vpop", "vldmia", "vstmia", "vstmdb", "vldmdb"},
    "mem_multi": {"push", "pop", "ldm", "stm", "ldmia", "stmia", "stmdb", "ldmdb", "ldmfd", "stmfd"},
    "call": {"bl", "blx"},
    "branch": {"b", "bx", "cbz", "cbnz", "tbb", "tbh"},
    "div": {"sdiv", "udiv"},
    "mul": {"mul", "muls", "mla", "mls", "smull", "umull", "smlal", "umlal", "smulbb", "smlabb"},
}


def _register_count(op_str: str) -> int:
    if "{" not in op_str:
        return 1
    n = 0
    for part in op_str[op_str.index("{") + 1:op_str.index("}")].split(","):
        lo, _, hi = part.strip().partition("-")
        n += int(hi.strip()[1:]) - int(lo[1:]) + 1 if hi and lo[1:].isdigit() and hi.strip()[1:].isdigit() else 1
    return n


def _base(mnemonic: str) -> str:
    """The mnemonic without width suffix and, when that is not itself known, its condition code."""
    m = mnemonic.split(".")[0]
    if any(m in names for names in _CLASSES.values()) or m.startswith(("ldr", "str")):
        return m
    stripped = _COND.sub("", m)
    return stripped if stripped and stripped != m and len(m) > 2 else m


def classify(mnemonic: str, op_str: str) -> tuple[str, int]:
    """(class, registers transferred) of one Thumb instruction, for the cycle model."""
    m = _base(mnemonic)
    nregs = _register_count(op_str)
    if m == "pop" and "pc" in op_str:
        return "branch_multi", nregs
    for cls in ("fp_div", "fp_mac", "fp_mem", "fp_mem_multi", "mem_multi"):
        if m in _CLASSES[cls]:
            return cls, (nregs if cls.endswith("multi") else 1)
    if m.startswith("v"):
        return "fp", 1
    if m.startswith("ldr"):
        return ("branch" if op_str.startswith("pc") else "load"), 1
    if m.startswith("str"):
        return "store", 1
    for cls in ("call", "branch", "div", "mul"):
        if m in _CLASSES[cls]:
            return cls, 1
    return "alu", 1


class Emulator:
    """A loaded image for one target, ready to call bench_infer(obs, action) repeatedly."""

    def __init__(self, elf: str | Path, target: str, entry: str = "bench_infer") -> None:
        try:
            import capstone
            import unicorn
            from unicorn import arm_const
        except ImportError as e:
            raise BpdError(f"emulation needs the 'emulate' extra (unicorn, capstone): {e}") from None
        from elftools.elf.elffile import ELFFile

        from firmware_host.measure.elf import symbol_table

        if target not in CPU_MODEL:
            raise BpdError(f"no emulator model for target {target!r}")
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(getattr(arm_const, CPU_MODEL[target]))
        self.arm = arm_const
        self.cs = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        for base, size in ((FLASH_BASE, FLASH_SIZE), (RAM_BASE, RAM_SIZE), (PERIPH_BASE, PERIPH_SIZE),
                           (STOP_ADDR, 0x1000)):
            self.uc.mem_map(base, size)
        self.uc.mem_write(STOP_ADDR, b"\x00\xbf" * 0x800)  # nop
        with open(elf, "rb") as f:
            ef = ELFFile(f)
            for seg in ef.iter_segments():
                if seg["p_type"] != "PT_LOAD" or not seg["p_filesz"]:
                    continue
                self.uc.mem_write(seg["p_paddr"], seg.data())
                if seg["p_vaddr"] != seg["p_paddr"]:  # .data: copied to RAM as start-up would
                    self.uc.mem_write(seg["p_vaddr"], seg.data())
            syms = {s.name: s["st_value"] for s in symbol_table(ef, elf).iter_symbols() if s.name}
        if entry not in syms:
            raise BpdError(f"{elf}: no symbol {entry!r}")
        self.entry = syms[entry] & ~1
        self._blocks: dict[tuple[int, int], list[tuple[str, int]]] = {}
        self._hits: dict[tuple[int, int], int] = {}  # the blocks run since the last call, in the order first run
        self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)

    def _on_block(self, uc, address: int, size: int, _user) -> None:
        """Called for every block run (millions in a measurement): it only counts; counted() classifies."""
        hits, key = self._hits, (address, size)
        hits[key] = hits.get(key, 0) + 1

    def counted(self) -> tuple[int, Counter]:
        """The instructions and their mix over the blocks run since the last call: each block's instructions
        (disassembled once: the code does not change as it runs) times the times it ran."""
        count, mix = 0, Counter[str]()
        for key, hits in self._hits.items():
            info = self._blocks.get(key)
            if info is None:
                address, size = key
                code = bytes(self.uc.mem_read(address, size))
                info = [classify(i.mnemonic, i.op_str) for i in self.cs.disasm(code, address)]
                self._blocks[key] = info
            count += len(info) * hits
            for cls, n in info:
                mix[cls] += hits
                if n > 1:
                    mix[cls + "_regs"] += n * hits
        return count, mix

    def call(self, obs: np.ndarray, act_dim: int) -> Execution:
        """One call of the entry function on obs; returns the count, mix and outputs."""
        a = self.arm
        obs = np.ascontiguousarray(obs, np.float32)
        out_addr = IO_ADDR + 4 * len(obs) + 64
        self.uc.mem_write(IO_ADDR, obs.tobytes())
        self.uc.mem_write(out_addr, b"\x00" * 4 * act_dim)
        self.uc.reg_write(a.UC_ARM_REG_SP, STACK_TOP)
        self.uc.reg_write(a.UC_ARM_REG_R0, IO_ADDR)
        self.uc.reg_write(a.UC_ARM_REG_R1, out_addr)
        self.uc.reg_write(a.UC_ARM_REG_LR, STOP_ADDR | 1)
        self._hits = {}
        self.uc.emu_start(self.entry | 1, STOP_ADDR, count=200_000_000)
        if self.uc.reg_read(a.UC_ARM_REG_PC) & ~1 != STOP_ADDR:
            raise BpdError("emulation did not return from the entry function")
        rc = struct.unpack("<i", struct.pack("<I", self.uc.reg_read(a.UC_ARM_REG_R0)))[0]
        outs = np.frombuffer(bytes(self.uc.mem_read(out_addr, 4 * act_dim)), np.float32).copy()
        return Execution(*self.counted(), outs, rc)
