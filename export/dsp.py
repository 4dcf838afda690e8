"""The integer kernel's layers on cores with the DSP extension (Cortex-M4, M7): straight-line Thumb-2.

Each layer's inputs sit in memory as int16 pairs, one 32-bit word per pair of columns (the pairs chosen
by `training.pairs.pair_columns`, which BPD's pair-partner fine-tune (distill's default) uses too, so
that both halves of a word carry weights in as many rows as possible). A layer is computed in tiles: a
group of R output rows keeps its R accumulators in registers, and for each chunk of C consecutive input words that the
group uses, the words are loaded once (one LDMIA, or an LDR each when fewer are needed) and every (row,
word) with a nonzero weight takes one SMLAD: two 16-bit products and the add in one instruction. The
weights are int16 pairs in one table in the order the code uses them, each group's biases first, loaded
G words at a time with LDMIA; no index, no literal pool. A (row, word) whose pair carries one weight takes
half a table word and one SMLA<w><x> (the weight's half times its input's half), two such to a word
(`pack_words`): fewer loads, cycles and flash where pairs are half full (the paper's BPD students).
R + C + G is at most 12: the accumulators in
r4-r12 and lr, the inputs and weights in what is left of them and in r2 and r3, which hold the output
and the middle of the tanh table (or its knots' words) and are reloaded from the stack (one LDRD)
after a group's sums when the group used them; r0 walks the inputs, r1 the table. R, C and G are
chosen per layer by counting the instructions each choice emits, and rows are grouped by the words
they use.

After a group, each row's accumulator becomes its activation: tanh is `ssat` (the shift to the index's
step and the clamp in one) and the interpolation between two knots in five more (one LDR of the knot's
word, one SMULTB, one SXTAH; fixed_point.py), or one `ldrsh` from the table of every result; ReLU is `usat` with
its shift; the result is stored with `strh` straight into the next layer's pair layout. The
output layer stores its accumulators (int32) for the C that maps them to actions. The straight-line kernel runs
every layer in one function (`net_asm`: one push and pop, the buffers swapped between layers in four instructions,
where a call per layer cost about thirty cycles more each). The numbers equal
the scalar C form's and the numpy model's exactly (fixed_point.py): every product is int16 x int16
and the quantiser bounds every accumulator for any input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpd.errors import BpdError
from export.int_tanh import TANH_KNOT

POOL = ("r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr")  # accumulators, inputs, weights
SPARE = ("r2", "r3")  # the output and tanh pointers: inputs and weights may take them, reloaded after
NUM = {f"r{i}": i for i in range(13)} | {"lr": 14}
MAX_OFFSET = 4095  # the 12-bit immediate of Thumb-2 LDR/STR/STRH/ADDW/SUBW: the assembly's every offset


class OffsetRange(BpdError):
    """A layer needs an offset past the 12-bit immediates (the network is too wide for the assembly)."""


def _off(v: int) -> int:
    if not 0 <= v <= MAX_OFFSET:
        raise OffsetRange(f"offset {v} is beyond the DSP assembly's 12-bit immediates (the network is too wide)")
    return v


def slots(pairs: list[tuple[int, int | None]]) -> dict[int, int]:
    """Column -> halfword index in the pair layout (word p: low half = first column, high = second)."""
    out = {}
    for p, (a, b) in enumerate(pairs):
        out[a] = 2 * p
        if b is not None:
            out[b] = 2 * p + 1
    return out


def words(wq: np.ndarray, pairs: list[tuple[int, int | None]]) -> np.ndarray:
    """rows x pairs uint32: each row's two int16 weights of a pair packed as SMLAD takes them."""
    lo = np.stack([wq[:, a] for a, _ in pairs], 1) if pairs else np.zeros((wq.shape[0], 0), np.int64)
    hi = np.stack([wq[:, b] if b is not None else np.zeros(wq.shape[0], np.int64) for _, b in pairs], 1) \
        if pairs else lo
    return ((hi & 0xFFFF) << 16 | (lo & 0xFFFF)).astype(np.uint32)


def group_rows(used: np.ndarray, r: int) -> list[list[int]]:
    """Rows in groups of r, each group grown greedily from the row using the most words by the rows that
    share the most words with it."""
    left = list(np.argsort(-used.sum(1), kind="stable"))
    groups = []
    while left:
        seed = left.pop(0)
        g = [int(seed)]
        acc = used[seed].copy()
        while left and len(g) < r:  # the best score, ties to the lowest row index
            cand = np.asarray(left)
            sub = used[cand]
            score = (sub & acc).sum(1) - (sub & ~acc).sum(1)
            best = int(cand[score == score.max()].min())
            left.remove(best)
            g.append(int(best))
            acc |= used[best]
        groups.append(g)
    return groups


@dataclass
class Act:
    """What follows a row's sum: 'tanh' (shift s, table bits), 'relu' (shift s) or 'store' (int32)."""
    kind: str
    shift: np.ndarray  # per row
    bits: int = 0  # tanh: index bits
    dest: dict[int, int] | None = None  # row -> halfword slot in the next layer (rows left out: unused)
    full: bool = False  # tanh: r3 holds the middle of every result's table (one lookup), not the middle of
    # the interpolation's words (fixed_point.tanh_words)


def _asr(reg: str) -> str:
    """ASRS on a low register (a 16-bit encoding; no code here reads the flags), ASR on a high one."""
    return "asrs" if NUM[reg] < 8 else "asr"


def _act_lines(reg: str, row: int, act: Act) -> list[str]:
    if act.kind == "store":
        return [f"    str {reg}, [r2, #{_off(4 * row)}]"]
    if act.dest is None or row not in act.dest:
        return []
    s = int(act.shift[row])
    if act.kind == "tanh":
        if s >= 0:
            lines = [f"    ssat {reg}, #{act.bits}, {reg}" + (f", asr #{s}" if s else "")]
        else:
            lines = [f"    ssat {reg}, #{act.bits + s}, {reg}", f"    lsl {reg}, {reg}, #{-s}"]
        if act.full:
            lines.append(f"    ldrsh {reg}, [r3, {reg}, lsl #1]")
        else:  # the knot's word (index >> TANH_KNOT): its base (low half) plus its rise (high half) times the
            # index, >> TANH_KNOT (fixed_point.tanh_words); lr is never an accumulator (R < len(POOL)) and is free
            # once the group's sums are done
            lines += [f"    asr lr, {reg}, #{TANH_KNOT}", "    ldr lr, [r3, lr, lsl #2]",
                      f"    smultb {reg}, lr, {reg}", f"    {_asr(reg)} {reg}, {reg}, #{TANH_KNOT}",
                      f"    sxtah {reg}, {reg}, lr"]
    else:
        if s >= 0:
            lines = [f"    usat {reg}, #15, {reg}" + (f", asr #{s}" if s else "")]
        else:
            lines = [f"    usat {reg}, #{15 + s}, {reg}", f"    lsl {reg}, {reg}, #{-s}"]
    return lines + [f"    strh {reg}, [r2, #{_off(2 * act.dest[row])}]"]


def _ldm(base: str, regs: list[str]) -> str:
    if len(regs) == 1:
        return f"    ldr {regs[0]}, [{base}], #4"
    return f"    ldmia {base}!, {{{', '.join(regs)}}}"


def pack_words(ws: list[int], g: int) -> tuple[list[int], list[tuple[int, str]]]:
    """The table words for a stream of (row, pair) weight words ws, used in that order from G registers loaded G
    words at a time, and for each use its word's index and the instruction. A pair with both weights takes its word
    and one SMLAD; a pair with one (the other half zero) takes one half of a word, SMLA<w><x> multiplying that half
    by its input's half (b: bottom, t: top; the same product and sum as the SMLAD of the word with a zero half),
    and the next such pair whose word would still be in the registers takes the other half: half the weight words,
    loads and table of a layer where pairs carry one weight."""
    packed: list[int] = []
    where: list[tuple[int, str]] = []
    half = None  # a word whose top half is free, in the batch of the last word opened
    for w in ws:
        lo, hi = w & 0xFFFF, w >> 16
        if lo and hi:
            where.append((len(packed), "smlad"))
            packed.append(w)
            continue
        xh = "b" if lo else "t"
        if half is not None and half // g == (len(packed) - 1) // g:
            packed[half] |= (lo | hi) << 16
            where.append((half, "smlat" + xh))
            half = None
        else:
            half = len(packed)
            where.append((half, "smlab" + xh))
            packed.append(lo | hi)
    return packed, where


def layer_code(wq: np.ndarray, bq: np.ndarray, pairs: list[tuple[int, int | None]], act: Act,
               r: int, c: int, g: int, groups: list[list[int]] | None = None) -> tuple[list[str], list[int]]:
    """The body of one layer (between the prologue and epilogue) for R=r, C=c, G=g, and its table words
    (groups: group_rows of the layer for r, when the caller has them)."""
    wt = words(wq, pairs)
    used = wt != 0
    n_words = len(pairs)
    acc = list(POOL[:r])
    rest = sorted(SPARE + POOL[r:], key=NUM.__getitem__)
    rest = rest[len(SPARE):] if r + c + g <= len(POOL) else rest  # r2 and r3 only when the others run out
    xr, wr = rest[:c], rest[c:c + g]
    spill = any(x in SPARE for x in xr + wr)
    lines: list[str] = []
    table: list[int] = []
    for grp in groups if groups is not None else group_rows(used, r):
        regs = acc[:len(grp)]
        table += [int(bq[row]) & 0xFFFFFFFF for row in grp]
        lines.append(_ldm("r1", regs))
        pos = 0  # words r0 has advanced past the layer's inputs
        stream: list[tuple[list[str], list[tuple[str, str, int]]]] = []
        for c0 in range(0, n_words, c):
            cols = [p for p in range(c0, min(c0 + c, n_words)) if used[grp, p].any()]
            if not cols:
                continue
            if len(cols) <= 1 + (cols[0] != pos):  # an LDR each, r0 stays
                loads = [f"    ldr {xr[p - c0]}, [r0, #{_off(4 * (p - pos))}]" for p in cols]
            else:  # one LDMIA over the words from the first to the last used, r0 moved there first
                first, last = cols[0], cols[-1] + 1
                loads = [f"    add r0, r0, #{_off(4 * (first - pos))}"] if first != pos else []
                loads.append(_ldm("r0", xr[first - c0:last - c0]))
                pos = last
            macs = [(acc[i], xr[p - c0], int(wt[row, p])) for p in cols for i, row in enumerate(grp) if used[row, p]]
            stream.append((loads, macs))
        # weights G words at a time, loaded when the registers run dry (an x load between does not touch them)
        packed, where = pack_words([w for _, macs in stream for _, _, w in macs], g)
        loaded = -1
        uses = iter(where)
        for loads, macs in stream:
            lines += loads
            for a, x, _ in macs:
                wi, op = next(uses)
                if wi // g != loaded:  # words are first used in order: the first use of a batch's first word
                    loaded = wi // g
                    lines.append(_ldm("r1", wr[:min(g, len(packed) - loaded * g)]))
                lines.append(f"    {op} {a}, {wr[wi - loaded * g]}, {x}, {a}")
        table += packed
        if pos:
            lines.append(f"    sub r0, r0, #{_off(4 * pos)}")
        if spill:
            lines.append("    ldrd r2, r3, [sp]")
        for i, row in enumerate(grp):
            lines += _act_lines(acc[i], row, act)
    return lines, table


def count(lines: list[str]) -> int:
    return len(lines)


MIX = ("multiplies", "weight_loads", "input_loads", "activations", "stores", "other")


def mix(lines: list[str]) -> dict[str, int]:
    """A layer body's instructions by what they do (straight-line code: each runs once an inference): the
    multiplies (SMLAD, SMLA<w><x>), the loads of the weight table (r1) and of the inputs (r0, with the moves of r0),
    the activations (clamp, lookup or interpolation; the biases come with the weights), the stores, and the rest
    (r2 and r3 reloaded)."""
    out = dict.fromkeys(MIX, 0)
    for line in lines:
        op, _, args = line.strip().partition(" ")
        base = args.partition("[")[2].partition(",")[0].rstrip("]") if op == "ldr" else args.partition("!")[0]
        if op in ("smlad", "smlabb", "smlabt", "smlatb", "smlatt"):
            kind = "multiplies"
        elif op in ("ldmia", "ldr") and base == "r1":
            kind = "weight_loads"
        elif (op in ("ldmia", "ldr") and base == "r0") or (op in ("add", "sub") and args.startswith("r0,")):
            kind = "input_loads"
        elif op in ("str", "strh"):
            kind = "stores"
        elif op == "ldrd":
            kind = "other"
        else:
            kind = "activations"
        out[kind] += 1
    return out


_BEST: dict[tuple, tuple[list[str], list[int], tuple[int, int, int]]] = {}  # best_layer's answers, by content


def best_layer(wq: np.ndarray, bq: np.ndarray, pairs: list[tuple[int, int | None]], act: Act
               ) -> tuple[list[str], list[int], tuple[int, int, int]]:
    """The (R, C, G) with the fewest instructions (ties: fewer table words, then the first tried). An export
    builds the integer kernel in several forms whose layers repeat: a layer searched before in this process is
    answered from memory (the answer depends on the arguments' values alone)."""
    key = (wq.shape, str(wq.dtype), wq.tobytes(), bq.tobytes(), tuple(pairs), act.kind,
           np.asarray(act.shift).tobytes(), act.bits, tuple(sorted(act.dest.items())) if act.dest else None, act.full)
    if key not in _BEST:
        if len(_BEST) >= 256:
            _BEST.clear()
        _BEST[key] = _best_layer(wq, bq, pairs, act)
    lines, table, rcg = _BEST[key]
    return list(lines), list(table), rcg


def _best_layer(wq: np.ndarray, bq: np.ndarray, pairs: list[tuple[int, int | None]], act: Act
                ) -> tuple[list[str], list[int], tuple[int, int, int]]:
    best = None
    used = words(wq, pairs) != 0
    groups = {r: group_rows(used, r) for r in range(1, len(POOL))}  # they depend on R alone
    for total in (len(POOL), len(POOL) + len(SPARE)):  # without r2 and r3, then with them
        for r in range(1, len(POOL)):
            for c in range(1, total - r):
                lines, table = layer_code(wq, bq, pairs, act, r, c, total - r - c, groups[r])
                key = (count(lines), len(table))
                if best is None or key < best[0]:
                    best = (key, lines, table, (r, c, total - r - c))
    assert best is not None
    return best[1], best[2], best[3]


def asm_block(text: str) -> str:
    """Assembly text as a GNU C top-level __asm__ statement (unified syntax, .text, word-aligned)."""
    return ('__asm__(\n    ".syntax unified\\n"\n    ".text\\n"\n    ".balign 4\\n"\n'
            + "".join(f'    "{line}\\n"\n' for line in text.splitlines()) + ");\n")


def layer_asm(name: str, body: list[str]) -> str:
    """void name(const void *x, const uint32_t *table, void *out, const void *tanh): tanh the middle of the
    tanh table or of its knots' words."""
    return "\n".join([f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:",
                      "    push {r2-r11, lr}", *body, "    pop {r2-r11, pc}", f"    .size {name}, .-{name}"]) + "\n"


ACC_ARG = 44  # the fifth argument (the output sums) on the stack, above the eleven words net_asm pushes


def net_asm(name: str, bodies: list[list[str]]) -> str:
    """void name(const void *x, const uint32_t *table, void *out, const void *tanh, int32_t *acc): every layer
    in one function (one push and pop, not one per layer), the layers' tables one after the other (r1 runs on
    from one to the next). Layer i reads r0 and writes r2, the pointer the stack's first word keeps for the
    groups that spill r2 and r3: between two hidden layers the buffers swap (the input just read is the next
    output, four instructions); before the output layer, the sums' pointer (acc, the fifth argument) takes
    r2's place (three). x and out hold the widest layer's int16 pairs."""
    lines = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:",
             "    push {r2-r11, lr}"]
    for i, body in enumerate(bodies):
        if i and i == len(bodies) - 1:
            lines += ["    mov r0, r2", f"    ldr r2, [sp, #{ACC_ARG}]", "    str r2, [sp]"]
        elif i:
            lines += ["    str r0, [sp]", "    mov r4, r2", "    mov r2, r0", "    mov r0, r4"]
        lines += body
    return "\n".join([*lines, "    pop {r2-r11, pc}", f"    .size {name}, .-{name}"]) + "\n"


def inputs_asm(name: str, fracs: list[int], dest: dict[int, int]) -> str:
    """int name(const float *obs, int16_t *x): every observation's IEEE bits checked (exponent 255: NaN or
    +-Inf, returns 1) and, for the columns the first layer uses, trunc(obs[j] * 2^f_j) saturated to +-32767
    written to its slot of the pair layout; returns 0. From the 24-bit significand m (leading one at bit
    23), the value is m >> (150 - f - exponent): USAT clamps a negative shift to 0 (then the value is at
    least 2^15) and the result to 32767, a register shift of 32 or more gives 0 (zero and subnormals),
    and the sign is applied with an EOR and a SUB of the sign word."""
    lines = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:"]
    for j, f in enumerate(fracs):
        if not 0 <= 150 - f <= 255:
            raise BpdError(f"input {j}: Q{f} is out of the DSP input stage's range")
        lines += [f"    ldr r2, [r0, #{_off(4 * j)}]", "    ubfx r3, r2, #23, #8", "    cmp r3, #255", "    beq 9f"]
        if j not in dest:
            continue
        lines += ["    ubfx r12, r2, #0, #23", "    orr r12, r12, #0x800000", f"    rsb r3, r3, #{150 - f}",
                  "    usat r3, #8, r3", "    lsr r12, r12, r3", "    usat r12, #15, r12",
                  "    eor r12, r12, r2, asr #31", "    sub r12, r12, r2, asr #31",
                  f"    strh r12, [r1, #{_off(2 * dest[j])}]"]
    lines += ["    movs r0, #0", "    bx lr", "9:", "    movs r0, #1", "    bx lr", f"    .size {name}, .-{name}"]
    return "\n".join(lines) + "\n"
