"""The integer kernel's input stage on Cortex-M4/M7: the observations (IEEE-754 floats) to the first layer's
int16 pairs in their Q formats, trunc(obs[j] * 2^f_j) saturated to +-32767, every observation checked for
NaN and +-Inf (the kernel then returns BPD_ERR_NONFINITE and commands zero).

Three forms. dsp.inputs_asm: straight-line integer code from the bits, thirteen instructions an observation.
loop_inputs_asm: the same steps in a loop over a byte table (each observation's slot and 150 - f), for the
table form and as the FPU stage's fallback. fp_inputs_asm: on cores with a single-precision FPU (Cortex-M4F,
M7), VCVT with the Q format as fraction bits, about four instructions an observation; it hands the cases it
cannot decide exactly (NaN, +-Inf, a saturated input) to the loop, which gives the same bits. The C picks by
the core: BPD_INT_FP (the FPU stage, then the loop where it returns 1), else the integer form alone.
"""

from __future__ import annotations

from export.dsp import _off, asm_block

FP_FRACS = range(1, 17)  # the fraction bits VCVT.S16.F32 takes
FP_MAX_INPUTS = 32  # s0-s31: s16 and up pushed and popped


def fp_inputs_asm(name: str, fracs: list[int], pairs: list[tuple[int, int | None]]) -> str | None:
    """int name(const float *obs, int16_t *x): the input stage on cores with a single-precision FPU
    (Cortex-M4F, M7), the same int16 words as inputs_asm's when it returns 0, in about four instructions an
    observation instead of thirteen. Every observation is loaded with one VLDM and converted in place by
    VCVT: a used column to int16 with its Q format as fraction bits (trunc(obs[j] * 2^f_j), rounded
    towards zero as the integer stage does), an unused one to int32 (its check alone). VCVT flags an
    invalid operation (FPSCR.IOC) on NaN, +-Inf and any result out of its range, so the stage clears the
    flags first (the caller's FPSCR restored after) and returns 1 when IOC is set: the integer stage then
    decides (NaN, +-Inf, a saturated input), bit for bit. What VCVT leaves in range but the integer stage
    saturates is the one value -32768 (its clamp is +-32767): a pair's two results packed with PKHBT, QSUB16
    then QADD16 of 1 in each half take -32768 to -32767 and leave the rest, and the word is stored with
    one STR. The loop (loop_inputs_asm) then decides where it returns 1. None where a used column's Q format
    is outside 1-16 or there are more than 32 observations."""
    n = len(fracs)
    used = {c for p in pairs for c in p if c is not None}
    if not 0 < n <= FP_MAX_INPUTS or any(int(fracs[j]) not in FP_FRACS for j in used):
        return None
    lines = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:",
             "    vmrs r2, fpscr", "    bic r3, r2, #0x9f", "    vmsr fpscr, r3"]  # IOC DZC OFC UFC IXC IDC cleared
    high = f"{{s16-s{n - 1}}}" if n > 17 else "{s16}"
    if n > 16:
        lines.append(f"    vpush {high}")
    lines.append(f"    vldmia r0, {{s0-s{n - 1}}}" if n > 1 else "    vldr s0, [r0]")
    for j in range(n):
        lines.append(f"    vcvt.s16.f32 s{j}, s{j}, #{int(fracs[j])}" if j in used else f"    vcvt.s32.f32 s{j}, s{j}")
    lines.append("    mov r3, #0x00010001")
    for p, (a, b) in enumerate(pairs):
        lines.append(f"    vmov r0, s{a}")
        if b is not None:
            lines += [f"    vmov r12, s{b}", "    pkhbt r0, r0, r12, lsl #16"]
        lines += ["    qsub16 r0, r0, r3", "    qadd16 r0, r0, r3",
                  f"    str r0, [r1, #{_off(4 * p)}]" if b is not None else f"    strh r0, [r1, #{_off(4 * p)}]"]
    if n > 16:
        lines.append(f"    vpop {high}")
    lines += ["    vmrs r0, fpscr", "    vmsr fpscr, r2", "    and r0, r0, #1", "    bx lr",
              f"    .size {name}, .-{name}"]
    return "\n".join(lines) + "\n"


def loop_inputs_asm(name: str) -> str:
    """int name(const float *obs, int16_t *x, const uint8_t *in, int n): every observation's IEEE bits
    checked (exponent 255: NaN or +-Inf, returns 1) and, where its slot in the pair layout (in[2j]) is
    not 255, trunc(obs[j] * 2^f) saturated to +-32767 written there (in[2j+1] = 150 - f), as
    dsp.inputs_asm does in straight-line code; returns 0."""
    body = ["1:", "    ldr r4, [r0], #4", "    ubfx r5, r4, #23, #8", "    cmp r5, #255", "    beq 9f",
            "    ldrb r6, [r2], #1", "    ldrb r12, [r2], #1", "    cmp r6, #255", "    beq 2f",
            "    sub r5, r12, r5", "    usat r5, #8, r5", "    ubfx r12, r4, #0, #23", "    orr r12, r12, #0x800000",
            "    lsr r12, r12, r5", "    usat r12, #15, r12", "    eor r12, r12, r4, asr #31",
            "    sub r12, r12, r4, asr #31", "    strh r12, [r1, r6, lsl #1]", "2:", "    subs r3, r3, #1",
            "    bne 1b", "    movs r0, #0", "    pop {r4-r6, pc}", "9:", "    movs r0, #1"]
    return "\n".join([f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:",
                      "    push {r4-r6, lr}", *body, "    pop {r4-r6, pc}", f"    .size {name}, .-{name}"]) + "\n"


def input_bytes(fracs: list[int], dest: dict[int, int]) -> list[int]:
    """loop_inputs_asm's table: per observation its halfword in the first layer's pair layout (255: unused)
    and 150 - its Q format."""
    return [v for j, f in enumerate(fracs) for v in (dest.get(j, 255), 150 - int(f))]


def fp_c(fp: str | None, loop: list[int] | None = None) -> str:
    """The FPU input stage's declaration and assembly (fp_inputs_asm) for cores with the FPU, and, given its
    byte table (input_bytes), the loop it falls back to (a kernel that has no loop stage of its own)."""
    if fp is None:
        return ""
    asm, decl = fp, "int bpd_fp_inputs(const float *obs, int16_t *x);\n"
    if loop is not None:
        asm += loop_inputs_asm("bpd_it_inputs")
        decl += ("int bpd_it_inputs(const float *obs, int16_t *x, const uint8_t *in, int n);\n"
                 "/* per observation: its halfword in the first layer's pair layout (255: unused), 150 - its Q "
                 f"format */\nstatic const uint8_t bpd_it_in[{len(loop)}] = {{{', '.join(map(str, loop))}}};\n")
    return "#if BPD_INT_FP\n" + decl + asm_block(asm) + "#endif\n"


def fp_call(integer: str, fp: str | None, n: int) -> str:
    """The `if (` that runs the input stage (the call `integer` where the core has no FPU): the FPU stage,
    then the loop only where it could not decide (it returned 1)."""
    if fp is None:
        return f"        if ({integer}) {{\n"
    return (f"#if BPD_INT_FP\n        if (bpd_fp_inputs(obs, xa) && bpd_it_inputs(obs, xa, bpd_it_in, {n})) {{\n"
            f"#else\n        if ({integer}) {{\n#endif\n")
