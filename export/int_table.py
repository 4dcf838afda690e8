"""The integer kernel with its weights in tables (`--kernel integer-table`): the straight-line kernel's
numbers in the flash a small part has.

The straight-line integer kernel (dsp.py) spends about 12 bytes of flash per nonzero weight: every
weight pair is an SMLAD of its own (4 bytes of code) beside its table word (4 bytes), with the loads of
the inputs between. This form computes the same integers (the same
IntNet: IntPolicy checks both bit for bit) with the data apart from the code:

- per layer a stream of words (`bpd_it_wN`): per row its int32 bias, then its int16 weight pairs, each
  pair packed in a word as SMLAD takes it (the columns paired as dsp.py pairs them, training.pairs);
- and a stream of bytes (`bpd_it_bN`): per row of a sparse layer its count of pairs and each pair's
  index among the input words, and per row of a hidden layer the shift of its sum to the activation;
- tanh interpolated between the knots' words as the straight-line kernel does (fixed_point.tanh_words,
  512 bytes), or one lookup in the table of every result (4 kB, four instructions a unit fewer) where
  the flash allows.

A layer is `dense` when its inputs fit in registers (at most DENSE_WORDS words) and the cycle model
counts it cheaper: the words are loaded once and every row is LDMIAs of its bias and weights and one
SMLAD per word, zeros included. Else it is `sparse`: per row, a TBH jumps into an unrolled run of terms
at the point that leaves the row's count of them, and each term is four instructions (the weight pair's
LDR, the index's LDRB, the input pair's LDR and the SMLAD), with no loop counter and no padding. After
the sum: the row's shift (a register ASR), SSAT and the tanh (or USAT for ReLU) and a STRH into
the next layer's pair layout. The code is a few hundred bytes whatever the network's size; the flash
is about 5 bytes per weight pair and 5 per row.

Given room in flash beyond that (int_plan.py's `plan`, from --flash-budget), layers, and the first rows
of one more, become dsp.py's straight-line code, and the tanh table of every result: at a large budget
the kernel is the straight-line one. On cores without the DSP extension (Cortex-M0+, the host) C loops walk the same
streams. The assembly needs every activation shift >= 0 and at most 256 input words per layer (else the
C loops run on Cortex-M4 too, and the report says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpd.errors import BpdError
from export.dsp import slots, words
from export.fixed_point import (
    TANH_BITS,
    TANH_KNOT,
    TANH_WORDS,
    IntNet,
)

DENSE_WORDS = 6  # the most input words a dense layer holds in registers (with the bias, accumulator, pointers)
MAX_WORDS = 256  # a pair's index is one byte
NEAR_WORDS = 64  # up to this many input words, a sparse layer's indices are byte offsets (a 16-bit LDR)
KIND_CODE = {"tanh": 0, "relu": 1, "output": 2}
HALF = 1 << (TANH_BITS - 1)
WORDS_BYTES = 4 * TANH_WORDS  # the interpolation's table
FULL_TANH_BYTES = 2 * 2 * HALF - WORDS_BYTES  # what the table of every result costs beyond it
# what the export report records of this kernel, so that figures of an earlier form are told apart
TABLE_FORM = ("integer weights in tables walked by DSP assembly (dense layers in registers, sparse ones by TBH "
              "into unrolled terms), straight-line layers, and the first rows of one more, where the flash allows "
              "(a pair of one weight in half a table word); the observations in and the actions out by VCVT where "
              "the core has an FPU")
# cycles of the cycle model (firmware_host/measure/cycle_model.py, Cortex-M4F)
_CYCLES = {"load": 2, "store": 1, "branch": 3, "alu": 1}
# per unit, after the sum: the table form's shift byte, ASR, SSAT, one lookup, STRH, loop; the interpolation
# takes INTERP_CYCLES more than the lookup (ASR, LDR, SMULTB, ASR, SXTAH against one LDRSH)
_ACT_CYCLES = {"tanh": 2 + 1 + 1 + 2 + 1 + 4, "relu": 2 + 1 + 1 + 1 + 4, "output": 1 + 4}
INTERP_CYCLES = 4


@dataclass
class TableLayer:
    """One layer in the two streams."""
    form: str  # "dense" (every input word, in registers) or "sparse" (per row a count and word indices)
    kind: str  # "tanh", "relu" or "output"
    order: list[int | None]  # the row computed at each step (None: a gap in the next layer's pair layout)
    in_words: int
    words: list[int]  # uint32
    bytes: list[int]  # uint8
    longest: int  # the most terms of a sparse row

    @property
    def terms(self) -> int:
        return len(self.words) - len(self.order)

    def cycles(self) -> int:
        """Estimated Cortex-M4F cycles (tanh by one lookup: the interpolation's INTERP_CYCLES a unit more)."""
        act = _ACT_CYCLES[self.kind] * len(self.order)
        if self.form == "sparse":  # per row the bias, the count and the TBH; per term three loads and SMLAD
            return len(self.order) * (2 + 2 + 3) + self.terms * 7 + act
        chunks = _chunks(self.in_words)
        return 1 + self.in_words + len(self.order) * (sum(len(c) + 1 + (i == 0) for i, c in enumerate(chunks))
                                                      + self.in_words) + act

    def flash(self) -> int:
        """Estimated bytes: the streams and the code (4 bytes an instruction, TBH's table)."""
        if self.form == "sparse":
            code = 4 * (12 + 4 * self.longest + 12) + 2 * (self.longest + 1)
        else:
            code = 4 * (4 + len(_chunks(self.in_words)) + self.in_words + 12)
        return 4 * len(self.words) + len(self.bytes) + code


def _order(rows: int, next_pairs: list[tuple[int, int | None]] | None) -> list[int | None]:
    """Rows in the order of the slots they write: the next layer's pair layout, or the outputs in order."""
    if next_pairs is None:
        return list(range(rows))
    by_slot = {s: r for r, s in slots(next_pairs).items()}
    return [by_slot.get(s) for s in range(2 * len(next_pairs))]


def table_layer(wq: np.ndarray, bq: np.ndarray, shift: np.ndarray, kind: str, pairs: list[tuple[int, int | None]],
                next_pairs: list[tuple[int, int | None]] | None, form: str, start: int = 0) -> TableLayer:
    """A layer's streams in form 'dense' or 'sparse', from the start-th slot it writes on (the slots before
    it computed by straight-line code: int_plan.py). A gap row (the zero half of an odd pair in the next
    layer) has bias 0 and no weights: it writes 0."""
    wt = words(wq, pairs)
    order = _order(wq.shape[0], next_pairs)[start:]
    w: list[int] = []
    b: list[int] = []
    longest = 0
    for row in order:
        w.append(0 if row is None else int(bq[row]) & 0xFFFFFFFF)
        if form == "dense":
            w += [0] * len(pairs) if row is None else [int(v) for v in wt[row]]
        else:
            used = [] if row is None else [p for p in range(len(pairs)) if wt[row, p]]
            w += [int(wt[row, p]) for p in used]
            b += [len(used), *(4 * p if len(pairs) <= NEAR_WORDS else p for p in used)]
            longest = max(longest, len(used))
        if kind != "output":
            b.append(0 if row is None else int(shift[row]))
    return TableLayer(form, kind, order, len(pairs), w, b, longest)


def table_form(q: IntNet, li: int, pairs: list[list[tuple[int, int | None]]], start: int = 0,
               form: str | None = None) -> TableLayer:
    """Layer li from its start-th slot on in `form`, or the table form the cycle model counts cheaper (dense
    only within 1 to DENSE_WORDS input words: a layer whose weights all quantise to zero reads none, and is
    sparse: each row its bias alone)."""
    L = q.layers[li]
    nxt = pairs[li + 1] if li + 1 < len(q.layers) else None
    if form is not None:
        return table_layer(L.wq, L.bq, L.shift, L.kind, pairs[li], nxt, form, start)
    sparse = table_layer(L.wq, L.bq, L.shift, L.kind, pairs[li], nxt, "sparse", start)
    if not 1 <= len(pairs[li]) <= DENSE_WORDS:
        return sparse
    dense = table_layer(L.wq, L.bq, L.shift, L.kind, pairs[li], nxt, "dense", start)
    return dense if dense.cycles() <= sparse.cycles() else sparse


# beyond the layers: the input stage, bpd_policy_run (its output stage and calls), the descriptor
_FIXED_FLASH = 600


def estimated_flash(q: IntNet, tables: list[TableLayer], inputs: list[tuple[int, int | None]]) -> int:
    """The all-table kernel's flash as estimated before any build: the layers, the interpolation's words, the
    FPU input stage where the inputs (the first layer's column pairs) take it (four bytes an instruction), the
    rest."""
    from export.fp_inputs import fp_inputs_asm

    uses_tanh = any(L.kind == "tanh" for L in q.layers) or q.output == "tanh"
    fp = fp_inputs_asm("x", [int(f) for f in q.in_frac], inputs)
    fp_bytes = 4 * sum(1 for ln in fp.splitlines() if not ln.lstrip().startswith(".") and ":" not in ln) if fp else 0
    return sum(T.flash() for T in tables) + (WORDS_BYTES if uses_tanh else 0) + _FIXED_FLASH + fp_bytes


# ------------------------------------------------------------------------------ Cortex-M4 assembly

_POOL = ("r5", "r6", "r7", "r10", "r11", "r12", "lr", "r0")  # dense: weights, then the inputs from the end
_NUM = {f"r{i}": i for i in range(13)} | {"lr": 14}


def _chunks(n: int) -> list[list[int]]:
    """A dense row's words in LDMIA batches (the first with the bias), as many as the weight registers hold."""
    regs = len(_POOL) - n
    return [list(range(p, min(p + regs, n))) for p in range(0, n, regs)]


def _activation(kind: str, full: bool) -> list[str]:
    """The sum in r4 to its slot of the next layer (r2 advancing); r5 free; the row's shift is the next byte."""
    if kind == "output":
        return ["    str r4, [r2], #4"]
    lines = ["    ldrb r5, [r3], #1", "    asr r4, r4, r5"]
    if kind == "relu":
        return lines + ["    usat r4, #15, r4", "    strh r4, [r2], #2"]
    lines.append(f"    ssat r4, #{TANH_BITS}, r4")
    if full:
        return lines + ["    ldrsh r4, [r9, r4, lsl #1]", "    strh r4, [r2], #2"]
    # the knot's word: its base (low half) plus its rise (high half) times the index, >> TANH_KNOT
    return lines + [f"    asrs r5, r4, #{TANH_KNOT}", "    ldr r5, [r9, r5, lsl #2]", "    smultb r4, r5, r4",
                    f"    asrs r4, r4, #{TANH_KNOT}", "    sxtah r4, r4, r5", "    strh r4, [r2], #2"]


def _function(name: str, body: list[str], saved: tuple[int, int], tanh: bool) -> str:
    """void name(const void *x, const uint32_t *w, void *out, const uint8_t *b, const void *tanh)."""
    regs = f"r{saved[0]}-r{saved[1]}"
    head = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:",
            f"    push {{{regs}, lr}}"]
    if tanh:  # the fifth argument, above the saved registers
        head.append(f"    ldr r9, [sp, #{4 * (saved[1] - saved[0] + 2)}]")
    return "\n".join([*head, *body, f"    pop {{{regs}, pc}}", f"    .size {name}, .-{name}"]) + "\n"


def sparse_asm(name: str, L: TableLayer, full: bool) -> str:
    """Per row: bias, count, TBH into the unrolled terms so that `count` of them run, the activation.
    r0 inputs, r1 words, r2 out, r3 bytes, r4 sum, r5 count, r6 weight pair, r7 index then input pair,
    r8 rows left, r9 the tanh table's middle (of every result's, or of the interpolation's words)."""
    n = L.longest
    lab = f".L{name}"
    body = [f"    movw r8, #{len(L.order)}", "1:", "    ldr r4, [r1], #4", "    ldrb r5, [r3], #1",
            "    tbh [pc, r5, lsl #1]", f"{lab}_tab:"]
    body += [f"    .hword ({lab}_t{n - k} - {lab}_tab) / 2" for k in range(n + 1)]
    x = "[r0, r7]" if L.in_words <= NEAR_WORDS else "[r0, r7, lsl #2]"  # a byte offset or a word index
    for t in range(n):
        body += [f"{lab}_t{t}:", "    ldr r6, [r1], #4", "    ldrb r7, [r3], #1", f"    ldr r7, {x}",
                 "    smlad r4, r6, r7, r4"]
    body += [f"{lab}_t{n}:", *_activation(L.kind, full), "    subs r8, r8, #1", "    bne 1b"]
    return _function(name, body, (4, 9), L.kind == "tanh")


def dense_asm(name: str, L: TableLayer, full: bool) -> str:
    """The input words loaded once into registers; per row LDMIAs of the bias and the weights (as many at
    a time as the registers left hold) and one SMLAD per word, then the activation."""
    n = L.in_words
    if not 1 <= n <= DENSE_WORDS:
        raise BpdError(f"a dense layer takes 1 to {DENSE_WORDS} input words, not {n}")
    xr = sorted(_POOL[len(_POOL) - n:], key=_NUM.__getitem__)  # word p in the p-th lowest register
    wr = _POOL[:len(_POOL) - n]
    body = [f"    ldm r0, {{{', '.join(xr)}}}" if n > 1 else f"    ldr {xr[0]}, [r0]", f"    movw r8, #{len(L.order)}",
            "1:"]
    for c, chunk in enumerate(_chunks(n)):
        regs = (["r4"] if c == 0 else []) + list(wr[:len(chunk)])
        body.append(f"    ldmia r1!, {{{', '.join(regs)}}}" if len(regs) > 1 else f"    ldr {regs[0]}, [r1], #4")
        body += [f"    smlad r4, {wr[i]}, {xr[p]}, r4" for i, p in enumerate(chunk)]
    body += [*_activation(L.kind, full), "    subs r8, r8, #1", "    bne 1b"]
    return _function(name, body, (4, 11), L.kind == "tanh")


class TableRange(BpdError):
    """A network the table form's assembly cannot take (a negative activation shift, an input too wide)."""


def check_asm(q: IntNet, layers: list[TableLayer]) -> None:
    """Raise TableRange where the assembly cannot run this network (the C loops still can)."""
    for li, (L, T) in enumerate(zip(q.layers, layers)):
        if T.in_words > MAX_WORDS:
            raise TableRange(f"layer {li}: {T.in_words} input words, past the byte index ({MAX_WORDS})")
        if L.kind != "output" and L.shift.min() < 0:
            raise TableRange(f"layer {li}: a negative activation shift ({int(L.shift.min())}): the assembly "
                             "shifts right only")
    for j, f in enumerate(q.in_frac):
        if not 0 <= 150 - int(f) <= 255:
            raise TableRange(f"input {j}: Q{int(f)} is out of the input stage's range")


# ------------------------------------------------------------------------------ C

# Thumb-1 has no post-increment for words and no dual multiply: one pair of int16 at a time from a word
_LOOPS = """
#if !BPD_INT_DSP
/* Conversions of out-of-range values to signed types keep the low bits (true of GCC and Clang on every
 * target bpd builds for): a word's halves as int16, a bias word as int32. */
#define LO16(v) ((int32_t)(int16_t)(uint16_t)(v))
#define HI16(v) ((int32_t)(v) >> 16)

/* v >> s clamped to [lo, hi] (s < 0: v clamped to [lo >> -s, hi >> -s], then << -s), as SSAT/USAT do */
static int32_t sat_shift(int32_t v, int32_t s, int32_t lo, int32_t hi)
{
    if (s >= 0) return sat(v >> s, lo, hi);
    return sat(v, lo >> -s, hi >> -s) * (1 << -s);
}

/* the activation of a row's sum (kind 0 tanh, 1 ReLU) with its shift s */
static int16_t act(int32_t acc, int32_t s, int32_t kind)
{
    return (int16_t)(KIND_TANH);
}

/* Dense: every input pair (x[2t], x[2t + 1]) times the row's weight pair; per row the bias first.
 * Hidden rows (kind 0, 1) write h[r] with the shift byte that follows; the output (kind 2) y[r]. */
static void walk_dense(const int16_t *x, int32_t n, const uint32_t *w, const uint8_t *b, int32_t rows,
                       int32_t kind, int16_t *h, int32_t *y)
{
    int32_t r, t;
    for (r = 0; r < rows; r++) {
        int32_t acc = (int32_t)*w++;
        for (t = 0; t < n; t++, w++)
            acc += LO16(*w) * x[2 * t] + HI16(*w) * x[2 * t + 1];
        if (kind == 2) y[r] = acc;
        else h[r] = act(acc, (int32_t)*b++, kind);
    }
}

/* Sparse: per row the bias, then a count byte and that many input word indices (times 4 = 1 << k: byte
 * offsets where the layer has at most 64 input words) with their weight pairs */
static void walk_sparse(const int16_t *x, int32_t k, const uint32_t *w, const uint8_t *b, int32_t rows,
                        int32_t kind, int16_t *h, int32_t *y)
{
    int32_t r, t;
    for (r = 0; r < rows; r++) {
        int32_t acc = (int32_t)*w++;
        const int32_t n = (int32_t)*b++;
        for (t = 0; t < n; t++, w++) {
            const int16_t *v = x + 2 * (*b++ >> k);
            acc += LO16(*w) * v[0] + HI16(*w) * v[1];
        }
        if (kind == 2) y[r] = acc;
        else h[r] = act(acc, (int32_t)*b++, kind);
    }
}
#endif
"""
