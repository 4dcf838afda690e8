"""Integer-only inference (`bpd export --int`): the DSP kernel on Cortex-M4/M7, scalar C elsewhere.

The float network is turned into integer arithmetic calibrated on observations (the dataset's):

- inputs: each observation is read as IEEE-754 bits and converted with integer operations to
  trunc(x * 2^fx[j]) (towards zero), saturated to +-32767; fx[j] leaves twice the calibrated max|x_j|
  of headroom. An exponent of 255 (NaN or +-Inf) gives BPD_ERR_NONFINITE and the safe action.
- weights: int16, one power-of-two scale 2^-k per row, with the input scales folded in, so the
  row's sum is an int32 acc = bias_q + sum wq * xq in units of 2^-k. k is the largest value for
  which every |wq| <= 32767 and sum |wq| * 32767 + |bias_q| < 2^31: the accumulator cannot
  overflow for any input, not only the calibrated ones. The bias carries half of the row's shift
  below, so every shift rounds to nearest.
- tanh: the accumulator shifted to a step of 2^-TANH_FRAC and clamped to TANH_BITS signed bits (one
  SSAT on Armv7E-M) is an index i on [-4, 4); tanh is interpolated linearly between knots every
  2^TANH_KNOT steps (each knot's Q15 value tanh moved by half the chord's sag): a table of
  2^(TANH_BITS - TANH_KNOT) words, each the rise r to the next knot in its high half and base = the
  knot's value - r h in its low half, gives base + ((r i) >> TANH_KNOT) (`tanh_words`: 512 bytes; four
  instructions a unit beyond a lookup on Armv7E-M). The `integer` kernel (and `--int`) and the Thumb-1
  assembly take the same numbers from one lookup in their expansion, a table of all 2^TANH_BITS results
  (4 kB); `integer-interp` interpolates on Cortex-M4/M7 and in C. Max error: half an index step (the
  rounding of the sum), the interpolation's (`tanh_error`, 2.1e-4) and beyond the index's end tanh(4)'s
  distance from 1.
- ReLU: the accumulator shifted to the layer's calibrated Q format and clamped to [0, 32767] (one
  USAT on Armv7E-M).
- output: offset + scale * tanh in a Q format chosen per output, clamped to the action bounds in
  integers, and written back as IEEE-754 bits with integer operations (with the FPU: one VCVT with the
  format's fraction bits, the same bits).

On cores with the DSP extension (Cortex-M4, M7) the layers are straight-line assembly (dsp.py): inputs
packed in int16 pairs, one SMLAD per pair with a nonzero weight, the weights streamed from a table by
LDMIA. On Thumb-1 cores (Cortex-M0, M0+) one straight-line ARMv6-M function (thumb1.py) goes from the
observations' bits to the output sums, one MULS and ADDS per weight; the C then maps them to actions (no
CLZ there: the float bits' leading one found in halving steps). Elsewhere (the host, a network too wide
for the Thumb-1 frame) the same sums are scalar C, one multiply-add per weight. All give the same
integers (every operand is int16 and the accumulator bound above holds for any order), so one numpy
model, `IntPolicy`, checks them bit for bit.

Without an FPU the generated code has no float type in any expression and no VFP instruction (tests check
the object files); with one (BPD_INT_FP: Cortex-M4F, M7) the observations come in and the actions go out
through VCVT, and nothing between them touches a float.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bpd.errors import BpdError
from bpd.io import write_text
from export.c_export import KERNEL_DIR
from export.codegen import banner_for, descriptor_sources
from export.collapse import CollapsedNet
from export.dsp_net import dsp_layers  # noqa: F401  (where the kernel's callers, the mask meter among them, find it)
from export.int_tanh import (  # noqa: F401  (the tanh's names, as the kernel's modules and tests use them)
    SAT,
    TANH_BITS,
    TANH_FRAC,
    TANH_KNOT,
    TANH_WORDS,
    tanh_c,
    tanh_error,
    tanh_q15,
    tanh_table,
    tanh_words,
)

# what the export report and the cost benchmark record of this kernel, so that figures of an earlier form are
# told apart from its
INT_FORM = ("dsp-assembly (M4/M7; every layer in one function; a pair of one weight in half a table word; the "
            "observations in and the actions out by VCVT where the core has an FPU), thumb1-assembly from the "
            "observations' bits (M0/M0+)")


def int_form(lookup: bool) -> str:
    """INT_FORM and the kernel's tanh: by one lookup in the table of every result (4 kB), or interpolated
    between the knots (512 B; Thumb-1 still looks the same numbers up)."""
    return INT_FORM + (f", tanh by one lookup in 2^{TANH_BITS} ({TANH_WORDS} knots' interpolation)" if lookup else
                       f", tanh interpolated between {TANH_WORDS} knots (Thumb-1: looked up in 2^{TANH_BITS})")


ACC_LIMIT = 2**31 - 1


class IntRange(BpdError):
    """The network's weights or sums are past what int16 weights and int32 sums can hold (`bpd export` then
    ships a float kernel, or says this where the integer kernel was asked for)."""


@dataclass
class IntLayer:
    wq: np.ndarray  # int16 values as int64, rows x cols
    bq: np.ndarray  # int32 bias in units of 2^-k
    k: np.ndarray  # per-row exponent
    shift: np.ndarray  # per row: the sum's shift to the activation's input (tanh table step, ReLU's Q format)
    out_frac: int  # Q format of the activation this layer writes (hidden layers)
    kind: str  # "tanh", "relu" or "output"


@dataclass
class IntNet:
    in_frac: np.ndarray  # per input
    layers: list[IntLayer]
    output: str
    out_frac: np.ndarray  # per action: Q format of offset/scale/bounds (tanh output) or = k (clip)
    off_q: np.ndarray
    scale_q: np.ndarray
    low_q: np.ndarray
    high_q: np.ndarray
    safe_bits: np.ndarray  # uint32 IEEE bits of the safe action
    calibration: dict


def _floor_log2(x: np.ndarray) -> np.ndarray:
    return np.floor(np.log2(x)).astype(np.int64)


def _row_exponent(w: np.ndarray, b: float, extra: list[float], frac: int | None, least: int
                  ) -> tuple[int, np.ndarray, int]:
    """Largest k with |wq| <= 32767, sum|wq| * 32767 + |bq| <= 2^31 - 1 and |extra| * 2^k < 2^31, and, where
    the row is shifted to Q(frac) after its sum, a shift s = k - frac in [least, 31]; bq then carries the
    shift's rounding half."""
    for k in range(40, -40, -1):
        if np.abs(w).max(initial=0) * 2.0 ** k > SAT + 0.5:  # rounds past SAT (and past int64: no cast)
            continue
        wq = np.rint(w * 2.0 ** k).astype(np.int64)
        bq = int(np.rint(b * 2.0 ** k))
        if np.abs(wq).max(initial=0) > SAT:
            continue
        if frac is not None:
            if k - frac > 31:
                continue
            if k - frac < least:
                break
            bq += 1 << (k - frac - 1) if k - frac >= 1 else 0
        if int(np.abs(wq).sum()) * SAT + abs(bq) > ACC_LIMIT:
            continue
        if any(abs(e) * 2.0 ** k >= ACC_LIMIT for e in extra):
            continue
        return k, wq, bq
    raise IntRange("a layer's weights cannot be represented in int16 with an int32 accumulator and the "
                   "activation's shift")


def quantise(net: CollapsedNet, calib_obs: np.ndarray, origin: str) -> IntNet:
    """Integer form of net, its input and ReLU scales calibrated on calib_obs."""
    net = net.folded()  # integer inputs are the raw observations: the offset goes into the first bias
    obs = np.asarray(calib_obs, np.float64)
    if obs.ndim != 2 or obs.shape[1] != net.obs_dim or len(obs) == 0:
        raise BpdError(f"calibration needs observations of dimension {net.obs_dim}")
    xmax = np.maximum(np.abs(obs).max(0), 1e-6)
    in_frac = np.minimum(_floor_log2(SAT / (2 * xmax)), 30)
    # float forward on the calibration set for ReLU ranges
    h = obs
    hidden_max = []
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        h = h @ w.T.astype(np.float64) + b
        h = np.tanh(h) if net.activation == "tanh" else np.maximum(h, 0)
        hidden_max.append(float(max(h.max(initial=0), 1e-6)))
    layers = []
    frac = in_frac.astype(np.float64)
    n = len(net.weights)
    out_low, out_high = net.action_low.astype(np.float64), net.action_high.astype(np.float64)
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        last = i == n - 1
        weff = w.astype(np.float64) * 2.0 ** -frac[None, :]
        if last:
            kind, act_frac = "output", 0
        elif net.activation == "tanh":
            kind, act_frac = "tanh", 15
        else:
            kind, act_frac = "relu", min(int(_floor_log2(np.array(SAT / (2 * hidden_max[i])))), 24)
        # the sum is shifted to the tanh table's step (hidden tanh, tanh output) or to ReLU's Q format;
        # a clipped output is not shifted
        to, least = {"tanh": (TANH_FRAC, 2 - TANH_BITS), "relu": (act_frac, -14)}.get(kind, (None, 0))
        if kind == "output" and net.output == "tanh":
            to, least = TANH_FRAC, 2 - TANH_BITS
        ks, wqs, bqs = [], [], []
        for r in range(w.shape[0]):
            extra = [out_low[r], out_high[r]] if last and net.output == "clip" else []
            k, wq, bq = _row_exponent(weff[r], float(b[r]), extra, to, least)
            ks.append(k)
            wqs.append(wq)
            bqs.append(bq)
        karr = np.array(ks, np.int64)
        shift = karr - to if to is not None else np.zeros_like(karr)
        layers.append(IntLayer(np.stack(wqs), np.array(bqs, np.int64), karr, shift, act_frac, kind))
        frac = np.full(w.shape[0], float(act_frac))
    for i, L in enumerate(layers):
        if L.k.min() < 0:
            raise IntRange(f"layer {i}: weights out of the integer kernel's range (row exponents "
                           f"{L.k.min()}..{L.k.max()})")
    k_out = layers[-1].k
    if net.output == "tanh":
        big = np.maximum.reduce([np.abs(net.out_scale), np.abs(net.out_offset) + np.abs(net.out_scale),
                                 np.abs(out_low), np.abs(out_high), np.full(net.act_dim, 1e-6)])
        out_frac = np.minimum(_floor_log2(SAT / big), 30)
    else:
        out_frac = k_out.copy()
    q = lambda a: np.rint(np.asarray(a, np.float64) * 2.0 ** out_frac).astype(np.int64)
    safe = np.clip(np.zeros(net.act_dim, np.float32), net.action_low, net.action_high).astype(np.float32)
    calibration = {"observations": int(len(obs)), "origin": origin, "input_frac_bits": in_frac.tolist(),
                   "input_saturation": (SAT * 2.0 ** -in_frac).tolist(), "hidden_max": hidden_max,
                   "row_exponents": [L.k.tolist() for L in layers],
                   "activation_frac_bits": [L.out_frac for L in layers[:-1]],
                   "output_frac_bits": out_frac.tolist()}
    return IntNet(in_frac, layers, net.output, out_frac, q(net.out_offset), q(net.out_scale), q(out_low), q(out_high),
                  safe.view(np.uint32), calibration)


# ------------------------------------------------------------------------- bit-exact numpy model


def sat_shift(acc: np.ndarray, s: int, lo: int, hi: int) -> np.ndarray:
    """acc >> s (arithmetic) clamped to [lo, hi]; for s < 0, acc clamped to [lo, hi] >> -s, then << -s
    (as SSAT/USAT then LSL do: the left shift never leaves the range)."""
    if s >= 0:
        return np.clip(acc >> s, lo, hi)
    return np.clip(acc, lo >> -s, hi >> -s) << -s


def tanh_index(acc: np.ndarray, s: int) -> np.ndarray:
    half = 1 << (TANH_BITS - 1)
    return sat_shift(acc, s, -half, half - 1)


def relu_q(acc: np.ndarray, s: int) -> np.ndarray:
    return sat_shift(acc, s, 0, SAT)


def to_fixed(x: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """trunc(x * 2^frac) saturated to +-32767, from the IEEE bits as the C does; zero and subnormals give 0."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.int64)
    expo = (bits >> 23) & 0xFF
    m = ((bits << 8) | 0x80000000) & 0xFFFFFFFF  # the significand with its leading one at bit 31
    sh = 158 - frac - expo  # x * 2^frac = m / 2^sh
    v = np.where(sh <= 16, SAT, np.where(sh > 31, 0, m >> np.clip(sh, 0, 63)))
    return np.where(bits >> 31 == 1, -v, v)


def to_float_bits(v: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """v * 2^-frac as IEEE single bits, normalised with integer shifts (truncating beyond 24 bits)."""
    v = np.asarray(v, np.int64)
    sign = np.where(v < 0, np.int64(1) << 31, 0)
    m = np.abs(v)
    e = np.zeros_like(m)
    for t, s in ((28, 4), (26, 2), (25, 1), (24, 1)):  # down to below 2^24
        big = m >= (np.int64(1) << t)
        m = np.where(big, m >> s, m)
        e = np.where(big, e + s, e)
    for t, s in ((8, 16), (16, 8), (20, 4), (22, 2), (23, 1)):  # up to 2^23 or more
        small = (m != 0) & (m < (np.int64(1) << t))
        m = np.where(small, m << s, m)
        e = np.where(small, e - s, e)
    bits = sign | ((e + 23 - frac + 127) << 23) | (m & 0x7FFFFF)
    return np.where(v == 0, 0, bits).astype(np.uint32)


class IntPolicy:
    """The integer kernel's arithmetic in numpy (int64, checked not to leave int32)."""

    def __init__(self, q: IntNet) -> None:
        self.q = q

    def act(self, obs: np.ndarray) -> np.ndarray:
        q = self.q
        obs = np.atleast_2d(np.asarray(obs, np.float32))
        bad = ((obs.view(np.uint32) >> 23) & 0xFF == 0xFF).any(1)
        h = to_fixed(obs, q.in_frac)
        for L in q.layers:
            acc = h @ L.wq.T + L.bq
            assert np.abs(acc).max(initial=0) <= ACC_LIMIT
            if L.kind == "output":
                y = acc
                break
            act = (lambda a, s: tanh_q15(tanh_index(a, s))) if L.kind == "tanh" else relu_q
            h = np.stack([act(acc[:, r], int(L.shift[r])) for r in range(acc.shape[1])], 1)
        if q.output == "tanh":
            t = np.stack([tanh_q15(tanh_index(y[:, i], int(q.layers[-1].shift[i]))) for i in range(y.shape[1])], 1)
            a = q.off_q + ((q.scale_q * t + (1 << 14)) >> 15)
        else:
            a = y
        a = np.minimum(np.maximum(a, q.low_q), q.high_q)
        bits = to_float_bits(a, q.out_frac)
        bits[bad] = q.safe_bits
        return bits.view(np.float32)


# ------------------------------------------------------------------------------ C generation

_OS_PRAGMA = """\
/* Thumb-1 cores (Cortex-M0/M0+), where the layers are scalar C: at -O2 GCC turns every constant multiply
 * into shifts and adds; at -Os it keeps one MULS (a single cycle on the usual multiplier). Measured on the
 * emulated Cortex-M0+: about a third fewer instructions and a quarter fewer cycles. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__thumb__) && !defined(__thumb2__)
#pragma GCC optimize ("Os")
#endif
"""

_PRELUDE = _OS_PRAGMA + """\
#include "policy.h"
#include "policy_weights.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Integer-only: observations and actions cross the interface as IEEE-754 bit patterns moved with
 * memcpy; no expression has a floating type (where the core has the FPU, BPD_INT_FP, VCVT converts at both
 * ends). Right shifts of negative values are arithmetic
 * (true of GCC and Clang on every target bpd builds for). */

/* Cores with the DSP extension (Cortex-M4, M7): the layers are the assembly below (SMLAD on int16 pairs) */
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && defined(__thumb2__)
#define BPD_INT_DSP 1
#else
#define BPD_INT_DSP 0
#endif

/* ... with a single-precision FPU (M4F, M7): the observations by VCVT first (fp_inputs.py; -DBPD_INT_FP=0: not) */
#ifndef BPD_INT_FP
#if BPD_INT_DSP && defined(__ARM_FP) && (__ARM_FP & 4)
#define BPD_INT_FP 1
#else
#define BPD_INT_FP 0
#endif
#endif

/* Thumb-1 cores (Cortex-M0, M0+): observations to output sums in the ARMv6-M assembly below (thumb1.py), where
 * it was made */
#if !BPD_INT_DSP && defined(__GNUC__) && defined(__thumb__) && !defined(__thumb2__)
#define BPD_INT_T1 1
#else
#define BPD_INT_T1 0
#endif

#if !BPD_INT_DSP /* the DSP form reads the observations in its own assembly */
/* trunc(x * 2^f) saturated to +-32767, from the bits of x (k = 158 - f); zero and subnormals give 0 */
static int32_t to_fixed(uint32_t bits, int32_t k)
{
    const int32_t sh = k - (int32_t)((bits >> 23) & 0xFFu); /* x * 2^f = m / 2^sh */
    int32_t v;
    if (sh <= 16) v = 32767;
    else if (sh > 31) v = 0;
    else v = (int32_t)(((bits << 8) | 0x80000000u) >> sh);
    return (bits >> 31) ? -v : v;
}

static uint32_t load_bits(const float *p)
{
#if defined(__GNUC__) /* one LDR: GCC keeps memcpy a call on cores without unaligned access (Cortex-M0+) */
    typedef uint32_t __attribute__((may_alias)) bits_alias;
    return *(const bits_alias *)p;
#else
    uint32_t b;
    memcpy(&b, p, sizeof b);
    return b;
#endif
}
#endif

/* v * 2^-f as IEEE-754 single bits (exact below 2^24, truncated above); unused where every action goes out by the
 * FPU's VCVT (BPD_INT_FP) */
#if defined(__GNUC__)
__attribute__((unused))
#endif
static uint32_t to_float_bits(int32_t v, int32_t f)
{
    uint32_t s = 0u, m;
    int32_t e = 0;
    if (v == 0) return 0u;
    if (v < 0) {
        s = 0x80000000u;
        m = (uint32_t)(-v);
    } else {
        m = (uint32_t)v;
    }
#if defined(__ARM_FEATURE_CLZ) && defined(__GNUC__)
    { /* one CLZ instead of the search below: the same bits */
        const int32_t n = __builtin_clz(m);
        if (n <= 8) { m >>= 8 - n; } else { m <<= n - 8; }
        e = 8 - n;
    }
#else /* no CLZ (Cortex-M0/M0+): the leading one to bit 31 in halving steps, then to bit 23 (dropping the bits
       * below, as the right shift above does) */
    e = 8;
    if (!(m >> 16)) { m <<= 16; e -= 16; }
    if (!(m >> 24)) { m <<= 8; e -= 8; }
    if (!(m >> 28)) { m <<= 4; e -= 4; }
    if (!(m >> 30)) { m <<= 2; e -= 2; }
    if (!(m >> 31)) { m <<= 1; e -= 1; }
    m >>= 8;
#endif
    return s | ((uint32_t)(e + 23 - f + 127) << 23) | (m & 0x7FFFFFu);
}

static int32_t sat(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

static void store_bits(float *p, uint32_t b)
{
#if defined(__GNUC__)
    typedef uint32_t __attribute__((may_alias)) bits_alias;
    *(bits_alias *)p = b;
#else
    memcpy(p, &b, sizeof b);
#endif
}
"""

_INPUTS_GUARD = "#if !BPD_INT_DSP /* the DSP form reads the observations in its own assembly */\n"


def _hex(v: int) -> str:
    return f"0x{int(v) & 0xFFFFFFFF:08X}u"


def _shifted(var: str, s: int, lo: int, hi: int) -> str:
    """C for sat_shift: var >> s clamped to [lo, hi] (s < 0: clamped to [lo, hi] >> -s, then << -s)."""
    if s >= 0:
        return f"sat({var}{f' >> {s}' if s else ''}, {lo}, {hi})"
    return f"(sat({var}, {lo >> -s}, {hi >> -s}) << {-s})"


def _activation_c(v: str, L: IntLayer, r: int) -> str:
    s = int(L.shift[r])
    if L.kind == "tanh":
        half = 1 << (TANH_BITS - 1)
        return f"    {v} = tanh_q15({_shifted(v, s, -half, half - 1)});\n"
    return f"    {v} = {_shifted(v, s, 0, SAT)};\n"


def kernel_source(q: IntNet, banner: str, lookup: bool = True) -> tuple[str, dict]:
    """policy.c of the integer kernel, tanh by one lookup in the table of every result (lookup) or, on
    Cortex-M4/M7 and in C, interpolated between the knots (Thumb-1 looks up either way), and what the
    report records of its assembly: each DSP layer's chosen (R, C, G) and instruction count, and the
    Thumb-1 form's frame, instructions and choices (None where the network does not fit it)."""
    obs_dim = len(q.in_frac)
    act_dim = len(q.out_frac)
    uses_tanh = q.output == "tanh" or any(L.kind == "tanh" for L in q.layers)
    from export.dsp import OffsetRange, asm_block, slots
    from export.fp_inputs import fp_c, fp_call, input_bytes

    try:  # the DSP assembly, unless an offset in it would pass the 12-bit immediates
        dsp: tuple | None = dsp_layers(q, lookup)
    except OffsetRange:
        dsp = None
    from export.thumb1 import FrameTooSmall, c_parts, network_asm

    try:  # the Thumb-1 assembly, unless the network does not fit it (a layer too wide for its frame)
        t1: tuple | None = network_asm("bpd_t1_net", q.layers, [int(f) for f in q.in_frac], TANH_BITS)
    except FrameTooSmall:
        t1 = None
    guard = "#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && defined(__thumb2__)\n"
    assert guard in _PRELUDE
    prelude = _PRELUDE if dsp else _PRELUDE.replace(
        guard, "#if 0 /* this network's layers are too wide for the assembly's 12-bit offsets: scalar C */\n")
    if t1:  # Thumb-1 assembly from the observations: what is left in C (the output) is better at -O2
        assert _INPUTS_GUARD in prelude
        prelude = prelude.replace(_OS_PRAGMA, "").replace(_INPUTS_GUARD, "#if !BPD_INT_DSP && !BPD_INT_T1 /* the "
                                                          "assembly forms read the observations themselves */\n")
    out = [banner, prelude]
    if uses_tanh:  # Thumb-1's assembly looks every result up; the rest interpolates unless `lookup`
        out.append(tanh_c("1" if lookup else "BPD_INT_T1" if t1 else None))
    chosen: list[dict] = []
    tanh_arg = "NULL" if not uses_tanh else f"(bpd_tanh_q15 + {1 << (TANH_BITS - 1)})" if lookup else "TANH_WORDS_MID"
    if dsp:
        asm, table, pairs, chosen, (inputs, fp) = dsp
        out.append("\n#if BPD_INT_DSP\n/* every bias and int16 weight pair, in the order the layers use them */\n"
                   f"static const uint32_t bpd_dsp_table[{max(len(table), 1)}] = {{\n")
        for i in range(0, len(table), 8):
            out.append("    " + ", ".join(_hex(v) for v in table[i:i + 8]) + ",\n")
        out.append("};\n")
        out.append("int bpd_dsp_inputs(const float *obs, int16_t *x);\n")
        out.append("void bpd_dsp_net(const void *x, const uint32_t *t, void *out, const void *tanh, int32_t *acc);\n")
        out.append(asm_block(asm + ("" if fp else inputs)))
        if fp:  # the integer stage where the core has no FPU; the FPU stage and the loop where it has
            out.append("#if !BPD_INT_FP\n" + asm_block(inputs) + "#endif\n")
        out.append(fp_c(fp, input_bytes([int(f) for f in q.in_frac], slots(pairs[0]))) + "#endif\n")
    names = [f"y{i}" for i in range(act_dim)]
    if t1:
        t1_decl, t1_call = c_parts(t1[0], t1[1], names, uses_tanh)
        out.append(t1_decl)
    out.append(run_head(q, names))
    if dsp:
        # DSP: inputs into the first layer's pair layout, the layers in assembly, the output sums read back
        width = max(len(p) for p in pairs)
        xb = f", xb[{2 * width}] __attribute__((aligned(4)))" if len(q.layers) > 1 else ""  # no hidden layer: no xb
        out.append("#if BPD_INT_DSP\n    {\n"
                   f"        int16_t xa[{2 * width}] __attribute__((aligned(4))){xb};\n"
                   f"        int32_t acc[{act_dim}];\n")
        out.append("        /* every observation checked (exponent 255: NaN or +-Inf), the used ones in Q formats */\n"
                   + fp_call("bpd_dsp_inputs(obs, xa)", fp, obs_dim) + "            safe_output(action);\n"
                   "            return BPD_ERR_NONFINITE;\n        }\n")
        # every layer in one call (dsp.net_asm): xa in, the hidden layers to xb, xa, ..., the output sums to acc
        first_out = "acc" if len(q.layers) == 1 else "xb"
        out.append(f"        bpd_dsp_net(xa, bpd_dsp_table, {first_out}, {tanh_arg}, acc);\n")
        out += [f"        {v} = acc[{i}];\n" for i, v in enumerate(names)]
        out.append("    }\n#else\n")
    if t1:  # Thumb-1: observations to output sums in the assembly
        out.append(t1_call)
    out += [f"    const uint32_t b{j} = load_bits(&obs[{j}]);\n" for j in range(obs_dim)]
    out.append("    /* exponent 255: NaN or +-Inf */\n    if (" + " || ".join(
        f"((b{j} >> 23) & 0xFFu) == 0xFFu" for j in range(obs_dim)) + ") {\n"
               "        safe_output(action);\n        return BPD_ERR_NONFINITE;\n    }\n")
    out += [f"    const int32_t x{j} = to_fixed(b{j}, {158 - int(q.in_frac[j])}); /* obs[{j}] in "
            f"Q{int(q.in_frac[j])} */\n" for j in range(obs_dim)]
    # an observation no first-layer weight reads (pruned whole) is checked, not used
    out += [f"    (void)x{j};\n" for j in range(obs_dim) if not np.any(q.layers[0].wq[:, j])]
    prev = [f"x{j}" for j in range(obs_dim)]
    for li, L in enumerate(q.layers):
        out.append(f"    /* layer {li}: {L.wq.shape[1]} -> {L.wq.shape[0]}, {np.count_nonzero(L.wq)} int16 weights, "
                   f"{L.kind}" + ("" if L.kind == "output" else f", writes Q{L.out_frac}") + " */\n")
        rows = names if L.kind == "output" else [f"h{li}_{r}" for r in range(L.wq.shape[0])]
        for r, v in enumerate(rows):
            decl = "" if L.kind == "output" else "int32_t "
            out.append(f"    {decl}{v} = {int(L.bq[r])}; /* units of 2^-{int(L.k[r])} */\n")
            out += [f"    {v} += {int(L.wq[r, j])} * {prev[j]};\n" for j in np.flatnonzero(L.wq[r])]
            if L.kind != "output":
                out.append(_activation_c(v, L, r))
        prev = rows
    out.append(("#endif\n" if t1 else "") + ("#endif\n" if dsp else "") + run_tail(q, names))
    return "".join(out), {"dsp_layers": chosen, "thumb1": t1[2] if t1 else None, "fpu_inputs": bool(dsp and dsp[-1][1])}


def run_head(q: IntNet, names: list[str]) -> str:
    """safe_output() and the head of bpd_policy_run: the argument checks and the output sums' declarations."""
    return ("\nstatic void safe_output(float *action)\n{\n"
            + "".join(f"    store_bits(&action[{i}], {_hex(b)});\n" for i, b in enumerate(q.safe_bits)) + "}\n"
            "\n/* The weights are compiled in: model is checked for NULL only and scratch is not used. */\n"
            "int bpd_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch)\n{\n"
            "    if (model == NULL || action == NULL) return BPD_ERR_ARG;\n"
            "    if (obs == NULL || scratch == NULL) {\n        safe_output(action);\n        return BPD_ERR_ARG;\n"
            "    }\n    int32_t " + ", ".join(names) + ";\n")


def run_tail(q: IntNet, names: list[str]) -> str:
    """The end of bpd_policy_run: each output sum (names) to its action's units and bounds and IEEE bits
    (a tanh output through tanh_q15); where the core has the FPU (BPD_INT_FP), the bounded sum to a float by
    one VCVT with its fraction bits (two instructions and the store, where the integer form takes fifteen;
    exact, as the integer form is, for every sum within the bounds)."""
    out = ["    /* action units and bounds */\n"]
    half = 1 << (TANH_BITS - 1)
    for i, v in enumerate(names):
        f, s = int(q.out_frac[i]), int(q.layers[-1].shift[i])
        lo, hi = int(q.low_q[i]), int(q.high_q[i])

        tanh_out = (f"    {v} = {int(q.off_q[i])} + (({int(q.scale_q[i])} * tanh_q15({{}}) + 16384) >> 15); "
                    f"/* Q{f} */\n").format
        to_bits = (tanh_out(_shifted(v, s, -half, half - 1)) if q.output == "tanh" else "") \
            + f"    store_bits(&action[{i}], to_float_bits(sat({v}, {lo}, {hi}), {f}));\n"
        if 0 < f <= 32 and max(abs(lo), abs(hi)) < 1 << 24:  # exact in a float: the same bits either way
            out.append("#if BPD_INT_FP\n" + (_ssat_index(v, s, tanh_out) if q.output == "tanh" else "")
                       + f"    {v} = sat({v}, {lo}, {hi});\n    {{\n        float a_;\n"
                       f"        __asm__(\"vmov %0, %1\\n\\tvcvt.f32.s32 %0, %0, #{f}\" : \"=&t\"(a_) : \"r\"({v}));\n"
                       f"        action[{i}] = a_;\n    }}\n#else\n{to_bits}#endif\n")
        else:
            out.append(to_bits)
    out.append("    return BPD_OK;\n}\n")
    return "".join(out)


def write_kernel(net: CollapsedNet, out_dir: Path, source_hash: str, command: str, kernel: str,
                 source: Callable[[str], tuple[str, Any]]) -> Any:
    """Write a generated kernel's policy.c (source(banner): its text and what the report records of it), its
    descriptor files and policy.h into out_dir; returns what source recorded."""
    banner = banner_for(net, source_hash, command)
    wc, wh, cfg = descriptor_sources(net, banner, kernel)
    out_dir.mkdir(parents=True, exist_ok=True)
    src, info = source(banner)
    write_text(out_dir / "policy.c", src)
    write_text(out_dir / "policy_weights.c", wc)
    write_text(out_dir / "policy_weights.h", wh)
    write_text(out_dir / "policy_config.h", cfg)
    shutil.copyfile(KERNEL_DIR / "policy.h", out_dir / "policy.h")
    return info


def _ssat_index(v: str, s: int, tanh_out: Callable[[str], str]) -> str:
    """The tanh output's index in one SSAT (shift and clamp) by inline assembly: arm_acle.h's __ssat gives an
    unsigned int to an int32_t inside its own macro, a warning in a build with -Wsign-conversion."""
    if s < 0:
        return tanh_out(_shifted(v, s, -(1 << (TANH_BITS - 1)), (1 << (TANH_BITS - 1)) - 1))
    asr = f", asr #{s}" if s else ""
    return (f"    {{\n        int32_t i_;\n"
            f"        __asm__(\"ssat %0, #{TANH_BITS}, %1{asr}\" : \"=r\"(i_) : \"r\"({v}));\n"
            f"    {tanh_out('i_')}    }}\n")


def generate_int_kernel(net: CollapsedNet, q: IntNet, out_dir: Path, source_hash: str, command: str,
                        lookup: bool = True) -> dict:
    """Write the integer kernel (policy.c; tanh by lookup or interpolated), its descriptor files and policy.h
    into out_dir; returns what kernel_source records of its assembly forms."""
    return write_kernel(net, out_dir, source_hash, command, "integer",
                        lambda banner: kernel_source(q, banner, lookup))
