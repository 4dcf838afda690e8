"""Integer-only inference for cores without an FPU (`bpd export --int`).

The float network is turned into integer arithmetic calibrated on observations (the dataset's):

- inputs: each observation is read as IEEE-754 bits and converted with integer operations to
  round(x * 2^fx[j]), saturated to +-32767; fx[j] leaves twice the calibrated max|x_j| of headroom.
  An exponent of 255 (NaN or +-Inf) gives BPD_ERR_NONFINITE and the safe action.
- weights: int16, one power-of-two scale 2^-k per row, with the input scales folded in, so the
  row's sum is an int32 acc = bias_q + sum wq * xq in units of 2^-k. k is the largest value for
  which every |wq| <= 32767 and sum |wq| * 32767 + |bias_q| < 2^31: the accumulator cannot
  overflow for any input, not only the calibrated ones.
- requantisation per row is a rounding shift (no multiply): to Q12 for the tanh table, to the
  layer's calibrated Q format for ReLU (saturated to 32767).
- tanh: a 257-entry Q15 table on [0, 8] with linear interpolation (odd symmetry, 1 beyond 8).
- output: offset + scale * tanh in a Q format chosen per output, clamped to the action bounds in
  integers, and written back as IEEE-754 bits with integer operations.

- on cores with the DSP extension (Cortex-M4, M7) the sums use its dual 16-bit multiply-add: each
  layer's inputs are packed in pairs once (PKHBT; the pairs chosen so that the two columns share as
  many rows' nonzero weights as possible, `pair_columns`), and each row takes one SMLAD per pair with a
  nonzero weight; elsewhere one multiply-add per weight. Both give the same integer (every operand is
  int16 and the accumulator bound above holds for any order), so one numpy model checks both.

The generated C has no float type in any expression, so it compiles to no VFP instruction and no
soft-float call (tests check the object file). `IntPolicy.act` is a bit-exact numpy model of the same
integer arithmetic.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpd.errors import BpdError
from bpd.io import write_text
from export.c_export import KERNEL_DIR, CPolicy
from export.codegen import banner_for, descriptor_sources
from export.collapse import CollapsedNet

Q_TANH_IN = 12  # tanh table input: Q12
TABLE_STEP_BITS = 7  # table step 2^-5 in Q12 units: 2^7
TABLE_SIZE = 257  # [0, 8] in steps of 1/32
SAT = 32767
ACC_LIMIT = 2**31 - 1


def tanh_table() -> np.ndarray:
    return np.rint(SAT * np.tanh(np.arange(TABLE_SIZE) / 32.0)).astype(np.int64)


@dataclass
class IntLayer:
    wq: np.ndarray  # int16 values as int64, rows x cols
    bq: np.ndarray  # int32 bias in units of 2^-k
    k: np.ndarray  # per-row exponent
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


def _row_exponent(w: np.ndarray, b: float, extra: list[float]) -> tuple[int, np.ndarray, int]:
    """Largest k with |wq| <= 32767, sum|wq| * 32767 + |bq| <= 2^31 - 1 and |extra| * 2^k < 2^31."""
    for k in range(40, -40, -1):
        wq = np.rint(w * 2.0 ** k).astype(np.int64)
        bq = int(np.rint(b * 2.0 ** k))
        if np.abs(wq).max(initial=0) > SAT:
            continue
        if int(np.abs(wq).sum()) * SAT + abs(bq) > ACC_LIMIT:
            continue
        if any(abs(e) * 2.0 ** k >= ACC_LIMIT for e in extra):
            continue
        return k, wq, bq
    raise BpdError("a layer's weights cannot be represented in int16 with an int32 accumulator")


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
        ks, wqs, bqs = [], [], []
        for r in range(w.shape[0]):
            extra = [out_low[r], out_high[r]] if last and net.output == "clip" else []
            k, wq, bq = _row_exponent(weff[r], float(b[r]), extra)
            ks.append(k)
            wqs.append(wq)
            bqs.append(bq)
        if last:
            kind, act_frac = "output", 0
        elif net.activation == "tanh":
            kind, act_frac = "tanh", 15
        else:
            kind, act_frac = "relu", min(int(_floor_log2(np.array(SAT / (2 * hidden_max[i])))), 24)
        layers.append(IntLayer(np.stack(wqs), np.array(bqs, np.int64), np.array(ks, np.int64), act_frac, kind))
        frac = np.full(w.shape[0], float(act_frac))
    for i, L in enumerate(layers):  # the C uses 32-bit shifts: keep every shift amount in range
        shifts = L.k - (Q_TANH_IN if L.kind in ("tanh", "output") else L.out_frac)
        if L.k.min() < 0 or shifts.max() > 30 or shifts.min() < -15:
            raise BpdError(f"layer {i}: weights or activations out of the integer kernel's range "
                           f"(row exponents {L.k.min()}..{L.k.max()})")
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


def _rshift_round(a: np.ndarray, s: int) -> np.ndarray:
    return (a + (1 << (s - 1))) >> s if s > 0 else a << -s


def _q12(acc: np.ndarray, k: int) -> np.ndarray:
    """acc in units of 2^-k as a Q12 tanh argument (clamped to +-8 first when shifting left)."""
    s = k - Q_TANH_IN
    if s >= 0:
        return _rshift_round(acc, s)
    return np.clip(acc, -(8 << k), 8 << k) << -s


def to_fixed(x: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """round(x * 2^frac) saturated to +-32767, from the IEEE bits as the C does (half away from zero)."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.int64)
    expo = (bits >> 23) & 0xFF
    m = (bits & 0x7FFFFF) | 0x800000
    e = expo - 127 - 23 + frac
    sh = -e
    v = np.where(sh > 31, 0, (m + (np.int64(1) << np.clip(sh - 1, 0, 62))) >> np.clip(sh, 0, 62))
    v = np.where(sh <= 8, SAT, np.minimum(v, SAT))  # e >= -8: |x| * 2^f >= 2^15
    v = np.where(expo == 0, 0, v)
    return np.where(bits >> 31 == 1, -v, v)


def tanh_q15(z: np.ndarray) -> np.ndarray:
    """Q12 in, Q15 out: the table with linear interpolation."""
    t_ = tanh_table()
    a = np.abs(z)
    i = np.minimum(a >> TABLE_STEP_BITS, TABLE_SIZE - 2)
    f = a & ((1 << TABLE_STEP_BITS) - 1)
    t = t_[i] + (((t_[i + 1] - t_[i]) * f + (1 << (TABLE_STEP_BITS - 1))) >> TABLE_STEP_BITS)
    t = np.where(a >= (8 << Q_TANH_IN), SAT, t)
    return np.where(z < 0, -t, t)


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
            out = np.empty_like(acc)
            for r in range(acc.shape[1]):
                if L.kind == "tanh":
                    out[:, r] = tanh_q15(_q12(acc[:, r], int(L.k[r])))
                else:
                    s = int(L.k[r]) - L.out_frac
                    a = np.maximum(acc[:, r], 0)
                    if s < 0:
                        a = np.minimum(a, SAT >> -s)
                    out[:, r] = np.minimum(_rshift_round(a, s), SAT)
            h = out
        if q.output == "tanh":
            t = np.stack([tanh_q15(_q12(y[:, i], int(q.layers[-1].k[i]))) for i in range(y.shape[1])], 1)
            a = q.off_q + ((q.scale_q * t + (1 << 14)) >> 15)
        else:
            a = y
        a = np.minimum(np.maximum(a, q.low_q), q.high_q)
        bits = to_float_bits(a, q.out_frac)
        bits[bad] = q.safe_bits
        return bits.view(np.float32)


# ------------------------------------------------------------------------------ C generation

_PRELUDE = """\
/* Thumb-1 cores (Cortex-M0/M0+): at -O2 GCC turns every constant multiply into shifts and adds; at -Os
 * it keeps one MULS (a single cycle on the usual multiplier). Measured on the emulated Cortex-M0+:
 * about a third fewer instructions and a quarter fewer cycles (benchmarks/results/cost/cost.md). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__thumb__) && !defined(__thumb2__)
#pragma GCC optimize ("Os")
#endif
#include "policy.h"
#include "policy_weights.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Integer-only: observations and actions cross the interface as IEEE-754 bit patterns moved with
 * memcpy; no expression has a floating type. Right shifts of negative values are arithmetic
 * (true of GCC and Clang on every target bpd builds for). */

/* round(x * 2^f) saturated to +-32767, from the bits of x; zero and subnormals give 0 */
static int32_t to_fixed(uint32_t bits, int32_t f)
{
    const uint32_t expo = (bits >> 23) & 0xFFu;
    const uint32_t m = (bits & 0x7FFFFFu) | 0x800000u;
    const int32_t sh = 127 + 23 - f - (int32_t)expo; /* x * 2^f = m / 2^sh */
    int32_t v;
    if (expo == 0u) return 0;
    if (sh <= 8) v = 32767;
    else if (sh > 31) v = 0;
    else {
        v = (int32_t)((m + (1u << (sh - 1))) >> sh);
        if (v > 32767) v = 32767;
    }
    return (bits >> 31) ? -v : v;
}

/* v * 2^-f as IEEE-754 single bits (exact below 2^24, truncated above) */
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
    if (m >= (1u << 24)) {
        if (m >= (1u << 28)) { m >>= 4; e += 4; }
        if (m >= (1u << 26)) { m >>= 2; e += 2; }
        if (m >= (1u << 25)) { m >>= 1; e += 1; }
        if (m >= (1u << 24)) { m >>= 1; e += 1; }
    }
    if (m < (1u << 8)) { m <<= 16; e -= 16; }
    if (m < (1u << 16)) { m <<= 8; e -= 8; }
    if (m < (1u << 20)) { m <<= 4; e -= 4; }
    if (m < (1u << 22)) { m <<= 2; e -= 2; }
    if (m < (1u << 23)) { m <<= 1; e -= 1; }
    return s | ((uint32_t)(e + 23 - f + 127) << 23) | (m & 0x7FFFFFu);
}

static uint32_t load_bits(const float *p)
{
    uint32_t b;
    memcpy(&b, p, sizeof b);
    return b;
}

static void store_bits(float *p, uint32_t b) { memcpy(p, &b, sizeof b); }

/* Cores with the DSP extension (Cortex-M4, M7): the sums take two int16 products per instruction
 * (SMLAD) over input pairs packed once per layer (PKHBT). The sum is the same integer either way: every
 * value is int16 and the accumulator cannot overflow (the quantiser's bound), so both forms are exact. */
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
#include <arm_acle.h>
#define BPD_INT_DSP 1
#define BPD_PACK(lo, hi) ((uint32_t)(uint16_t)(lo) | ((uint32_t)(hi) << 16)) /* one PKHBT */
#define BPD_SMLAD(w, x, acc) __smlad((w), (x), (acc))
#else
#define BPD_INT_DSP 0
#endif
"""

_TANH = """
/* tanh in Q15 of a Q12 argument: 257 points on [0, 8], linear interpolation, odd symmetry */
static const int16_t tanh_q15_table[257] = {
%s
};

static int32_t tanh_q15(int32_t z)
{
    const int32_t a = z < 0 ? -z : z;
    int32_t t;
    if (a >= (8 << 12)) {
        t = 32767;
    } else {
        const int32_t i = a >> 7, f = a & 127;
        const int32_t t0 = tanh_q15_table[i], t1 = tanh_q15_table[i + 1];
        t = t0 + (((t1 - t0) * f + 64) >> 7);
    }
    return z < 0 ? -t : t;
}
"""


def _shift_expr(var: str, s: int) -> str:
    return f"(({var} + {1 << (s - 1)}) >> {s})" if s > 0 else (f"({var} << {-s})" if s < 0 else var)


def _q12_c(var: str, k: int) -> list[str]:
    """Statements turning acc var (units 2^-k) into a Q12 tanh argument in var."""
    s = k - Q_TANH_IN
    if s >= 0:
        return [f"    {var} = {_shift_expr(var, s)};\n"] if s else []
    lim = 8 << k
    return [f"    if ({var} > {lim}) {var} = {lim};\n", f"    if ({var} < -{lim}) {var} = -{lim};\n",
            f"    {var} <<= {-s};\n"]


def _hex(v: int) -> str:
    return f"0x{int(v):08X}u"


def pair_columns(w: np.ndarray) -> list[tuple[int, int | None]]:
    """Pairs of a layer's inputs for the dual 16-bit multiply-add (SMLAD): greedily the two columns whose
    nonzero weights share the most rows, so that few rows carry a pair with one weight zero. Columns
    without any weight are left out; an odd one out is paired with None (a zero half)."""
    nz = w != 0
    cols = [j for j in range(w.shape[1]) if nz[:, j].any()]
    overlap = (nz[:, cols].T.astype(np.int64) @ nz[:, cols].astype(np.int64))
    cand = sorted(((int(overlap[a, b]), -a, -b) for a in range(len(cols)) for b in range(a + 1, len(cols))),
                  reverse=True)
    used: set[int] = set()
    pairs: list[tuple[int, int | None]] = []
    for _, na, nb in cand:
        a, b = -na, -nb
        if a not in used and b not in used:
            used |= {a, b}
            pairs.append((cols[a], cols[b]))
    pairs += [(cols[a], None) for a in range(len(cols)) if a not in used]
    return sorted(pairs)


def _dsp_word(lo: int, hi: int) -> str:
    return _hex(((hi & 0xFFFF) << 16) | (lo & 0xFFFF))


def _dsp_rows(L: IntLayer, li: int, prev: list[str], names: list[str]) -> tuple[list[str], list[list[str]]]:
    """The DSP form of a layer's sums: its input pairs packed once (PKHBT), then per row one SMLAD per
    pair with a nonzero weight. Returns (packing statements, per-row statements)."""
    pairs = pair_columns(L.wq)
    pack = [f"    const uint32_t p{li}_{i} = BPD_PACK({prev[a]}, {'0' if b is None else prev[b]});\n"
            for i, (a, b) in enumerate(pairs)]
    rows = []
    for r in range(L.wq.shape[0]):
        st = []
        for i, (a, b) in enumerate(pairs):
            wa, wb = int(L.wq[r, a]), (0 if b is None else int(L.wq[r, b]))
            if wa or wb:
                st.append(f"    {names[r]} = BPD_SMLAD({_dsp_word(wa, wb)}, p{li}_{i}, {names[r]});\n")
        rows.append(st)
    return pack, rows


def kernel_source(q: IntNet, banner: str) -> str:
    obs_dim = len(q.in_frac)
    act_dim = len(q.out_frac)
    uses_tanh = q.output == "tanh" or any(L.kind == "tanh" for L in q.layers)
    out = [banner, _PRELUDE]
    if uses_tanh:
        t = tanh_table()
        rows = [", ".join(str(int(v)) for v in t[i:i + 16]) for i in range(0, len(t), 16)]
        out.append(_TANH % ("    " + ",\n    ".join(rows)))
    out.append("\nstatic void safe_output(float *action)\n{\n"
               + "".join(f"    store_bits(&action[{i}], {_hex(b)});\n" for i, b in enumerate(q.safe_bits)) + "}\n")
    out.append("\n/* The weights are compiled in: model is checked for NULL only and scratch is not used. */\n"
               "int bpd_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch)\n{\n"
               "    if (model == NULL || action == NULL) return BPD_ERR_ARG;\n"
               "    if (obs == NULL || scratch == NULL) {\n        safe_output(action);\n        return BPD_ERR_ARG;\n"
               "    }\n")
    out += [f"    const uint32_t b{j} = load_bits(&obs[{j}]);\n" for j in range(obs_dim)]
    out.append("    /* exponent 255: NaN or +-Inf */\n    if (" + " || ".join(
        f"((b{j} >> 23) & 0xFFu) == 0xFFu" for j in range(obs_dim)) + ") {\n"
               "        safe_output(action);\n        return BPD_ERR_NONFINITE;\n    }\n")
    out += [f"    const int32_t x{j} = to_fixed(b{j}, {int(q.in_frac[j])}); /* obs[{j}] in Q{int(q.in_frac[j])} */\n"
            for j in range(obs_dim)]
    prev = [f"x{j}" for j in range(obs_dim)]
    for li, L in enumerate(q.layers):
        out.append(f"    /* layer {li}: {L.wq.shape[1]} -> {L.wq.shape[0]}, {np.count_nonzero(L.wq)} int16 weights, "
                   f"{L.kind}" + ("" if L.kind == "output" else f", writes Q{L.out_frac}") + " */\n")
        names = [f"y{r}" if L.kind == "output" else f"h{li}_{r}" for r in range(L.wq.shape[0])]
        pack, dsp_rows = _dsp_rows(L, li, prev, names)
        out += ["#if BPD_INT_DSP\n", *pack, "#endif\n"]
        for r in range(L.wq.shape[0]):
            k = int(L.k[r])
            out.append(f"    int32_t {names[r]} = {int(L.bq[r])}; /* units of 2^-{k} */\n")
            out += ["#if BPD_INT_DSP\n", *dsp_rows[r], "#else\n"]
            for j in np.flatnonzero(L.wq[r]):
                out.append(f"    {names[r]} += {int(L.wq[r, j])} * {prev[j]};\n")
            out.append("#endif\n")
            v = names[r]
            if L.kind == "tanh":
                out += _q12_c(v, k)
                out.append(f"    {v} = tanh_q15({v});\n")
            elif L.kind == "relu":
                s = k - L.out_frac
                out.append(f"    if ({v} < 0) {v} = 0;\n")
                if s < 0:
                    out.append(f"    if ({v} > {SAT >> -s}) {v} = {SAT >> -s};\n")
                out.append(f"    {v} = {_shift_expr(v, s)};\n")
                out.append(f"    if ({v} > 32767) {v} = 32767;\n")
        prev = names
    out.append("    /* action units and bounds */\n")
    for i in range(act_dim):
        v, f = f"y{i}", int(q.out_frac[i])
        if q.output == "tanh":
            out += _q12_c(v, int(q.layers[-1].k[i]))
            out.append(f"    {v} = {int(q.off_q[i])} + (({int(q.scale_q[i])} * tanh_q15({v}) + 16384) >> 15);"
                       f" /* Q{f} */\n")
        out.append(f"    if ({v} < {int(q.low_q[i])}) {v} = {int(q.low_q[i])};\n"
                   f"    if ({v} > {int(q.high_q[i])}) {v} = {int(q.high_q[i])};\n"
                   f"    store_bits(&action[{i}], to_float_bits({v}, {f}));\n")
    out.append("    return BPD_OK;\n}\n")
    return "".join(out)


def generate_int_kernel(net: CollapsedNet, q: IntNet, out_dir: Path, source_hash: str, command: str) -> None:
    """Write the integer kernel (policy.c), its descriptor files and policy.h into out_dir."""
    banner = banner_for(net, source_hash, command)
    wc, wh, cfg = descriptor_sources(net, banner, "integer")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "policy.c", kernel_source(q, banner))
    write_text(out_dir / "policy_weights.c", wc)
    write_text(out_dir / "policy_weights.h", wh)
    write_text(out_dir / "policy_config.h", cfg)
    shutil.copyfile(KERNEL_DIR / "policy.h", out_dir / "policy.h")


def integer_kernel(net: CollapsedNet, out: Path, source_hash: str, command: str, obs: np.ndarray, ref: np.ndarray,
                   dataset: str | None) -> tuple[dict, CPolicy]:
    """`bpd export --int`: the integer kernel in out, calibrated on the dataset's observations (or,
    without one, on the parity states), checked bit-exact against IntPolicy, with its error against
    the float student's actions ref on obs. Returns the report's `int` entry and the compiled kernel."""
    from training.collect import load_dataset

    if dataset and Path(dataset).is_file():
        calib, origin = load_dataset(dataset, net.obs_dim).observations, f"dataset {dataset}"
    else:
        calib, origin = obs, "parity states (no dataset found)"
    q = quantise(net, calib, origin)
    generate_int_kernel(net, q, out, source_hash, command)
    ic = CPolicy(out)
    c_int = ic.act(obs)
    exact = bool(np.array_equal(c_int.view(np.uint32), IntPolicy(q).act(obs).view(np.uint32)))
    if not exact:
        raise BpdError("the integer C kernel differs from its numpy model: a compiler or generator fault")
    err = np.abs(c_int - ref)
    span = np.maximum(net.action_high - net.action_low, 1e-12)
    return {"dir": str(out), "calibration": q.calibration, "states": len(obs), "c_matches_numpy_model": exact,
            "max_abs_error_vs_float": float(err.max()), "mean_abs_error_vs_float": float(err.mean()),
            "max_error_vs_action_range": float((err / span).max())}, ic
