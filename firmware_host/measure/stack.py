"""Stack of a whole linked Cortex-M image: a call graph over every function in it, and a
painted-stack measurement under emulation to check it against.

Static: every function symbol of the ELF is disassembled (capstone). Its frame is what its own
code takes from sp (push, vpush, sub sp), or the compiler's -fstack-usage figure where the function
was compiled by us; its callees are the targets of bl and of tail-call branches, and an indirect
call (blx/bx through a register) may reach any function whose address is stored in the image
outside the vector table. The worst path from a root is the deepest sum of frames; a cycle or a
dynamic sp adjustment makes the bound unknown (reported, never guessed). The worst case of the
running firmware is the deepest path from Reset_Handler plus the deepest interrupt handler and the
exception entry frame the core pushes (32 B, 104 B with the FPU's lazy context, plus 4 B alignment).

Painted: the stack area is filled with a pattern, the firmware runs from Reset_Handler in unicorn
with host frames fed into its receive ring (a session that starts device mode) and a tick flagged
every time the main loop idles; the lowest address overwritten is the stack actually used.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from bpd.errors import BpdError

EXCEPTION_FRAME = {"cortex-m0plus": 32, "cortex-m4f": 104, "cortex-m7": 104}
ALIGN_PAD = 4
PAINT = 0xA5


@dataclass
class Function:
    name: str
    addr: int
    size: int
    frame: int = 0
    calls: set[str] = field(default_factory=set)
    indirect: bool = False
    dynamic: bool = False  # sp moved by a register amount (alloca, VLA)
    source: str = "disassembly"


_SP_IMM = re.compile(r"^sp,\s*(?:sp,\s*)?#(-?(?:0x)?[0-9a-f]+)$")
_PRE_INDEX = re.compile(r"\[sp,\s*#-(\d+|0x[0-9a-f]+)\]!$")


def _regs(op_str: str) -> list[str]:
    inner = op_str[op_str.index("{") + 1:op_str.index("}")]
    out = []
    for part in inner.split(","):
        lo, _, hi = part.strip().partition("-")
        if hi:
            out += [f"{lo[0]}{i}" for i in range(int(lo[1:]), int(hi.strip()[1:]) + 1)]
        else:
            out.append(lo)
    return out


def _symbols(elf_path: Path) -> tuple[dict[str, Function], dict[str, int], list[tuple[int, bytes, str]]]:
    from elftools.elf.elffile import ELFFile

    from firmware_host.measure.elf import symbol_table

    with open(elf_path, "rb") as f:
        e = ELFFile(f)
        tab = symbol_table(e, elf_path)
        funcs: dict[str, Function] = {}
        objects: dict[str, int] = {}
        for s in tab.iter_symbols():
            kind = s["st_info"]["type"]
            if not s.name or s["st_shndx"] == "SHN_UNDEF":
                continue
            if kind == "STT_FUNC" and s["st_size"] > 0:
                funcs.setdefault(s.name, Function(s.name, s["st_value"] & ~1, s["st_size"]))
            elif kind == "STT_OBJECT" or s.name in ("_estack", "_ebss", "_sbss"):
                objects[s.name] = s["st_value"]
        sections = [(sec["sh_addr"], sec.data(), sec.name) for sec in e.iter_sections()
                    if sec["sh_flags"] & 0x2 and sec["sh_type"] == "SHT_PROGBITS"]
    return funcs, objects, sections


def _read(sections, addr: int, size: int) -> bytes:
    for base, data, _ in sections:
        if base <= addr and addr + size <= base + len(data):
            return data[addr - base:addr - base + size]
    raise BpdError(f"address 0x{addr:x} is not in the image")


def analyse(elf_path: Path, su: dict[str, int] | None = None) -> dict[str, Function]:
    """Every function of the image with its frame and callees (su: -fstack-usage figures by name)."""
    import capstone

    funcs, _, sections = _symbols(elf_path)
    by_addr = {f.addr: f.name for f in funcs.values()}
    cs = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    cs.skipdata = True
    for fn in funcs.values():
        code = _read(sections, fn.addr, fn.size)
        frame = 0
        for ins in cs.disasm(code, fn.addr):
            m, ops = ins.mnemonic.split(".")[0], ins.op_str
            if m in ("push", "stmdb") and (m == "push" or ops.startswith("sp!")):
                frame += 4 * len(_regs(ops))
            elif m == "vpush":
                regs = _regs(ops)
                frame += sum(8 if r.startswith("d") else 4 for r in regs)
            elif m in ("sub", "subw") and ops.startswith("sp,"):
                mt = _SP_IMM.match(ops)
                if mt:
                    frame += int(mt.group(1), 0)
                else:
                    fn.dynamic = True
            elif m == "str" and (pre := _PRE_INDEX.search(ops)):
                frame += int(pre.group(1), 0)
            elif m in ("bl", "b") and ops.startswith("#"):
                target = int(ops[1:], 0) & ~1
                callee = by_addr.get(target)
                if callee and callee != fn.name and (m == "bl" or not fn.addr <= target < fn.addr + fn.size):
                    fn.calls.add(callee)
            elif m == "blx" or (m == "bx" and ops != "lr"):
                fn.indirect = True
        fn.frame = frame
        if su and fn.name in su:
            fn.frame, fn.source = su[fn.name], "-fstack-usage"
    return funcs


def address_taken(elf_path: Path, funcs: dict[str, Function]) -> set[str]:
    """Functions whose (Thumb) address is stored as a word in the image, outside the vector table."""
    _, _, sections = _symbols(elf_path)
    starts = {f.addr | 1: f.name for f in funcs.values()}
    taken = set()
    for base, data, name in sections:
        if name == ".isr_vector":
            continue
        for off in range((-base) % 4, len(data) - 3, 4):
            (word,) = struct.unpack_from("<I", data, off)
            if word in starts:
                taken.add(starts[word])
    return taken


def worst_path(funcs: dict[str, Function], root: str, indirect: set[str]) -> tuple[int | None, list[str]]:
    """Deepest stack from root and its call chain; None when a direct-call cycle or a dynamic frame
    leaves it unbounded. An indirect call is taken to reach no function already on the call chain:
    the firmware does not recurse, and a callback's caller is not its own target."""
    memo: dict[str, tuple[int | None, list[str]]] = {}
    active: list[tuple[str, bool]] = []  # the chain: (function, entered through an indirect call)
    skip = -1  # a path that needs an indirect call to close a cycle: not a path of the firmware

    def go(name: str, via_indirect: bool) -> tuple[int | None, list[str], bool]:
        """(depth or skip, chain, whether the answer depended on the chain above it)"""
        names = [n for n, _ in active]
        if name in names:
            if via_indirect or any(v for _, v in active[names.index(name) + 1:]):
                return skip, [], True
            return None, [name, "(cycle)"], False
        if name in memo:
            return (*memo[name], False)
        fn = funcs[name]
        if fn.dynamic:
            return None, [name, "(dynamic stack)"], False
        active.append((name, via_indirect))
        best, chain, contextual = 0, [], False
        callees = [(c, False) for c in sorted(fn.calls)] + [(c, True) for c in sorted(indirect) if fn.indirect]
        for c, ind in callees:
            d, ch, ctx = go(c, ind)
            contextual |= ctx
            if d is None:
                active.pop()
                return None, [name] + ch, contextual
            if d > best:
                best, chain = d, ch
        active.pop()
        if not contextual:
            memo[name] = (fn.frame + best, [name] + chain)
        return fn.frame + best, [name] + chain, contextual

    if root not in funcs:
        raise BpdError(f"no function {root!r} in the image")
    d, chain, _ = go(root, False)
    return d, chain


def vector_handlers(elf_path: Path, funcs: dict[str, Function]) -> list[str]:
    """Handlers named in the vector table (after the initial stack pointer)."""
    _, _, sections = _symbols(elf_path)
    starts = {f.addr | 1: f.name for f in funcs.values()}
    for _base, data, name in sections:
        if name == ".isr_vector":
            words = struct.unpack_from(f"<{len(data) // 4}I", data)
            return sorted({starts[w] for w in words[1:] if w in starts})
    return []


def stack_report(elf_path: Path, target: str, su: dict[str, int] | None = None,
                 parts: tuple[str, ...] = ("bpd_fw_tick", "bpd_policy_run")) -> dict:
    """Worst-case stack of the image (main path + deepest interrupt) and of named parts."""
    funcs = analyse(elf_path, su)
    indirect = address_taken(elf_path, funcs)
    out: dict = {"functions": len(funcs), "indirect_targets": sorted(indirect),
                 "from_stack_usage": sum(f.source == "-fstack-usage" for f in funcs.values())}
    for name in parts:
        if name in funcs:
            d, chain = worst_path(funcs, name, indirect)
            out[name] = {"bytes": d, "chain": chain}
    if "Reset_Handler" in funcs:
        main_d, main_chain = worst_path(funcs, "Reset_Handler", indirect)
        handlers = [h for h in vector_handlers(elf_path, funcs) if h != "Reset_Handler"]
        isr = [(worst_path(funcs, h, indirect), h) for h in handlers]
        isr_d = max((d for (d, _), _ in isr if d is not None), default=0)
        isr_name = next((h for (d, _), h in isr if d == isr_d), None)
        exc = EXCEPTION_FRAME.get(target, 104) + ALIGN_PAD
        out["main"] = {"bytes": main_d, "chain": main_chain}
        out["interrupt"] = {"bytes": isr_d, "handler": isr_name, "exception_frame": exc}
        out["total_bytes"] = None if main_d is None else main_d + isr_d + exc
    return out


# ---------------------------------------------------------------------------------- painted stack


def painted_stack(elf_path: Path, target: str, rx: bytes, ticks: int = 3, budget: int = 5_000_000) -> dict:
    """Run the firmware image from Reset_Handler in unicorn: feed rx into its receive ring, flag a
    control tick each time the main loop idles, and after `ticks` ticks measure the deepest stack
    word written below _estack; `policy_calls` counts the policy's runs (the boot self-test's alone: the session
    never ran device mode, a CONFIG refused, say)."""
    import unicorn

    from firmware_host.measure.emulate import Emulator

    emu = Emulator(elf_path, target, entry="Reset_Handler")
    funcs, objects, _ = _symbols(elf_path)
    for need in ("rx_ring", "rx_head", "tick_due", "_estack", "_ebss"):
        if need not in objects and need not in funcs:
            raise BpdError(f"{elf_path}: no symbol {need!r}: not a bpd firmware image")
    top, bottom = objects["_estack"], objects["_ebss"]
    uc, a = emu.uc, emu.arm
    uc.mem_write(bottom, bytes([PAINT]) * (top - bottom))
    state = {"idles": 0, "ticks": 0, "policy_calls": 0}
    ring = objects["rx_ring"]

    def on_idle(uc_: unicorn.Uc, address: int, size: int, _: object) -> None:
        state["idles"] += 1
        if state["idles"] == 1:  # start-up done: the host's frames arrive
            uc_.mem_write(ring, rx)
            uc_.mem_write(objects["rx_head"], struct.pack("<H", len(rx)))
        elif state["ticks"] >= ticks:
            uc_.emu_stop()
        else:
            uc_.mem_write(objects["tick_due"], b"\x01")

    def on_tick(uc_: unicorn.Uc, address: int, size: int, _: object) -> None:
        state["ticks"] += 1

    def on_policy(uc_: unicorn.Uc, address: int, size: int, _: object) -> None:
        state["policy_calls"] += 1

    if "bpd_policy_run" in funcs:
        run = funcs["bpd_policy_run"].addr
        uc.hook_add(unicorn.UC_HOOK_CODE, on_policy, begin=run, end=run)
    idle = funcs["board_idle"].addr
    uc.hook_add(unicorn.UC_HOOK_CODE, on_idle, begin=idle, end=idle)
    tick = funcs["bpd_fw_tick"].addr
    uc.hook_add(unicorn.UC_HOOK_CODE, on_tick, begin=tick, end=tick)
    if len(rx) >= 512:
        raise BpdError("receive ring holds 511 bytes")
    uc.reg_write(a.UC_ARM_REG_SP, top)
    uc.emu_start(funcs["Reset_Handler"].addr | 1, 0, count=budget)
    mem = bytes(uc.mem_read(bottom, top - bottom))
    lowest = next((i for i, b in enumerate(mem) if b != PAINT), len(mem))
    used = len(mem) - lowest
    return {"bytes": used, "ticks": state["ticks"], "policy_calls": state["policy_calls"],
            "instructions": emu.counted()[0]}
