"""The integer kernel's layers on Thumb-1 cores (Cortex-M0, M0+): straight-line ARMv6-M assembly.

One function runs every layer. Its activations sit in its own stack frame as int32 words, two regions
of `width` words (a layer reads one and writes the other), so every load and store of one is a single
SP-relative LDR/STR (8-bit word offset: both regions within 256 words). The weights are one table of
int32 words in the order the code uses them, streamed by LDMIA into up to five registers at a time (r0,
r2, r5, r6, r7: what r1 the table pointer, r3 the sum and r4 the operand leave free). A row is its
bias, moved into the sum, then per nonzero weight three instructions: LDR the input from the frame,
MULS, ADDS. Hidden rows nobody in the next layer reads are left out.

After a row's sum, the activation. A row shifted right (ASRS) is offset by the layer's lower bound and
checked by one unsigned compare against the bounds' span (r8, r9): in range, a branch past the clamp;
out of range (rare), ASRS #31, MVNS and LSRS make the span's end from the sign. A row with no shift, or a
negative one, clamps by compare-and-branch against its own bounds streamed from the table, then shifts
left, as `sat_shift` does. tanh is then one LDRSH from the table's first entry (r10); ReLU's clamp is its
result. The output layer stores its sums (int32) through r11 for the
C that maps them to actions. The numbers equal the scalar C form's and the numpy model's exactly
(fixed_point.py): every product is int16 x int16, MULS keeps the low 32 bits, and the quantiser
bounds every sum for any input.
"""

from __future__ import annotations

import numpy as np

from bpd.errors import BpdError

STREAM = ("r0", "r2", "r5", "r6", "r7")  # LDMIA's registers, in the order it fills them (ascending)
FRAME_WORDS = 256  # SP-relative LDR/STR reach 255 words: both regions within it


class FrameTooSmall(BpdError):
    """The network's widest layer does not fit twice in the 256 words SP-relative loads reach."""


def _layer_bounds(kind: str, bits: int) -> tuple[int, int]:
    """A hidden layer's clamp after its shift: the tanh table's signed index, or ReLU's [0, 32767]."""
    if kind == "tanh":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, 32767


def network_asm(name: str, layers: list, obs_dim: int, bits: int) -> tuple[str, list[int], dict]:
    """ARMv6-M assembly of `name`(const int32_t *x, const int32_t *table, int32_t *out, const int16_t
    *tanh), tanh the table's first entry (index -2^(bits-1)), for the integer layers (fixed_point.IntLayer);
    the weight table it streams (int32 words); what the export report records of it (frame words,
    instructions emitted)."""
    widths = [obs_dim] + [int(L.wq.shape[0]) for L in layers[:-1]]
    width = max(widths)
    if 2 * width > FRAME_WORDS:
        raise FrameTooSmall(f"a layer of {width} units does not fit the Thumb-1 assembly's frame (at most "
                            f"{FRAME_WORDS // 2}): scalar C")
    code: list[str] = []
    table: list[int] = []
    frame = 4 * 2 * width
    e = code.append
    e("    push {r4, r5, r6, r7, lr}")
    e("    mov r4, r8")
    e("    mov r5, r9")
    e("    mov r6, r10")
    e("    mov r7, r11")
    e("    push {r4, r5, r6, r7}")
    e("    mov r10, r3")
    e("    mov r11, r2")
    left = frame
    while left:
        step = min(left, 508)
        e(f"    sub sp, #{step}")
        left -= step
    # the inputs into region 0, six words a load (r0 walks them; r1 keeps the table)
    regs6 = ("r2", "r3", "r4", "r5", "r6", "r7")
    for j0 in range(0, obs_dim, 6):
        n = min(6, obs_dim - j0)
        e(f"    ldmia r0!, {{{', '.join(regs6[:n])}}}")
        for i in range(n):
            e(f"    str {regs6[i]}, [sp, #{4 * (j0 + i)}]")
    for li, L in enumerate(layers):
        src, dst = (li % 2) * width, ((li + 1) % 2) * width
        last = li == len(layers) - 1
        wq = np.asarray(L.wq, np.int64)
        rows = list(range(wq.shape[0]))
        if not last:
            reads = np.asarray(layers[li + 1].wq) != 0
            rows = [r for r in rows if reads[:, r].any()]  # a unit nobody reads is left out
            lo, hi = _layer_bounds(L.kind, bits)
            table += [-lo, hi - lo]
            e("    ldmia r1!, {r4, r5}")
            e("    mov r8, r4")
            e("    mov r9, r5")
        for r in rows:
            items = [("bias", int(L.bq[r]))] + [("w", int(c)) for c in np.flatnonzero(wq[r])]
            for k0 in range(0, len(items), len(STREAM)):
                batch = items[k0:k0 + len(STREAM)]
                e(f"    ldmia r1!, {{{', '.join(STREAM[:len(batch)])}}}")
                for (kind, v), reg in zip(batch, STREAM):
                    if kind == "bias":
                        table.append(v & 0xFFFFFFFF)
                        e(f"    movs r3, {reg}")
                    else:
                        table.append(int(wq[r, v]) & 0xFFFFFFFF)
                        e(f"    ldr r4, [sp, #{4 * (src + v)}]")
                        e(f"    muls r4, {reg}, r4")
                        e("    adds r3, r3, r4")
            if last:
                e("    mov r4, r11")
                if r < 32:
                    e(f"    str r3, [r4, #{4 * r}]")
                else:
                    raise FrameTooSmall("more than 32 outputs: scalar C")
                continue
            s = int(L.shift[r])
            lo, hi = _layer_bounds(L.kind, bits)
            assert (hi - lo) & (hi - lo + 1) == 0  # all ones: the out-of-range answer is a shift of -1
            if s >= 1:  # shifted right, the sum plus -lo cannot overflow: one unsigned compare tells in range
                e(f"    asrs r3, r3, #{s}")
                if lo:
                    e("    add r3, r8")  # r8: -lo, r9: hi - lo
                e("    cmp r3, r9")
                e("    bls 1f")
                e("    asrs r3, r3, #31")  # out of range: below gives 0, above gives hi - lo (all ones, shifted)
                e("    mvns r3, r3")
                e(f"    lsrs r3, r3, #{32 - (hi - lo).bit_length()}")
                e("1:")
                if L.kind == "tanh":  # r10: the table's first entry
                    e("    lsls r3, r3, #1")
                    e("    mov r4, r10")
                    e("    ldrsh r3, [r4, r3]")
                e(f"    str r3, [sp, #{4 * (dst + r)}]")
                continue
            if s == 0:
                e("    ldmia r1!, {r4, r5}")
                table += [lo & 0xFFFFFFFF, hi & 0xFFFFFFFF]
                lo_reg, hi_reg = "r4", "r5"
            else:  # clamp to the bounds shifted right, then shift left (never leaves the range)
                table += [(lo >> -s) & 0xFFFFFFFF, (hi >> -s) & 0xFFFFFFFF]
                e("    ldmia r1!, {r4, r5}")
                lo_reg, hi_reg = "r4", "r5"
            e(f"    cmp r3, {hi_reg}")
            e("    ble 1f")
            e(f"    mov r3, {hi_reg}")
            e("1:")
            e(f"    cmp r3, {lo_reg}")
            e("    bge 1f")
            e(f"    mov r3, {lo_reg}")
            e("1:")
            if s < 0:
                e(f"    lsls r3, r3, #{-s}")
            if L.kind == "tanh":
                e(f"    adds r3, #{-lo}" if -lo <= 255 else "    add r3, r8")
                e("    lsls r3, r3, #1")
                e("    mov r4, r10")
                e("    ldrsh r3, [r4, r3]")
            e(f"    str r3, [sp, #{4 * (dst + r)}]")
    left = frame
    while left:
        step = min(left, 508)
        e(f"    add sp, #{step}")
        left -= step
    e("    pop {r4, r5, r6, r7}")
    e("    mov r8, r4")
    e("    mov r9, r5")
    e("    mov r10, r6")
    e("    mov r11, r7")
    e("    pop {r4, r5, r6, r7, pc}")
    body = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:", *code,
            f"    .size {name}, . - {name}"]
    emitted = sum(1 for ln in code if not ln.endswith(":"))
    return "\n".join(body) + "\n", table, {"frame_words": 2 * width, "instructions": emitted,
                                           "table_words": len(table)}
