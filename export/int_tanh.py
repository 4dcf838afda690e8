"""The integer kernel's tanh (fixed_point.py, dsp.py, int_table.py): a linear interpolation between knots, its
table of words, the expansion of every index's result, and the C of both forms.

The sum shifted to a step of 2^-TANH_FRAC and clamped to TANH_BITS signed bits is an index i on [-4, 4). tanh there is
the linear interpolation between knots every 2^TANH_KNOT steps, each knot's Q15 value tanh moved by half the chord's
sag; per knot one word: the rise r to the next knot in its high half and base = the knot's value - r h in its low half,
so tanh_q15(i) = base + ((r i) >> TANH_KNOT) for the index itself.
"""

from __future__ import annotations

import numpy as np

TANH_BITS = 11  # tanh's index: 11 signed bits
TANH_FRAC = TANH_BITS - 3  # its step 2^-8: the index spans [-4, 4)
TANH_KNOT = 4  # a knot every 2^4 index steps (1/16): 2^(TANH_BITS - TANH_KNOT) = 128 words of table
TANH_WORDS = 1 << (TANH_BITS - TANH_KNOT)
SAT = 32767


def tanh_words() -> np.ndarray:
    """The interpolation's table, from knot -2^(TANH_BITS-TANH_KNOT-1): per knot h (at h 2^(TANH_KNOT-TANH_FRAC),
    Q15 value y_h) the word (rise << 16) | (base & 0xFFFF), rise = y_(h+1) - y_h and base = y_h - rise h, as uint32
    in int64: tanh_q15(i) = base + ((rise i) >> TANH_KNOT) for i between the knot and the next."""
    step = 2.0 ** (TANH_KNOT - TANH_FRAC)
    t = np.tanh(np.arange(-TANH_WORDS // 2, TANH_WORDS // 2 + 1) * step)
    # each knot moved off the curve by half the chord's sag there (step^2 / 8 * tanh'' / 2, tanh'' = -2 tanh
    # sech^2): the chords then cross tanh instead of lying on one side of it, which halves the largest error
    # and most of its bias (chords of a concave curve lie below it)
    y = np.rint(SAT * (t + step * step / 8 * t * (1 - t * t))).astype(np.int64)
    rise = np.diff(y)
    # y_h + rise_h (i - h 2^K) / 2^K = base_h + rise_h i / 2^K with base_h = y_h - rise_h h, floored alike (rise_h h is
    # an integer): one multiply by the index itself, no mask of its low bits
    base = y[:-1] - rise * np.arange(-TANH_WORDS // 2, TANH_WORDS // 2)
    assert rise.min() >= 0 and rise.max() < 1 << 15 and np.abs(base).max() < 1 << 15  # SMULTB and SXTAH halfwords
    return ((rise << 16) | (base & 0xFFFF)) & 0xFFFFFFFF


def tanh_q15(idx: np.ndarray) -> np.ndarray:
    """Q15 tanh of idx * 2^-TANH_FRAC for a signed index within TANH_BITS bits: the knot below, plus the rise
    to the next one times the index's steps past it (floored)."""
    idx = np.asarray(idx, np.int64)
    w = tanh_words()[(idx >> TANH_KNOT) + TANH_WORDS // 2]
    base = (w & 0xFFFF) - np.where(w & 0x8000, 1 << 16, 0)
    return base + (((w >> 16) * idx) >> TANH_KNOT)


def tanh_table() -> np.ndarray:
    """Every index's result (the Thumb-1 form's one lookup), for i from -2^(TANH_BITS-1) to 2^(TANH_BITS-1) - 1."""
    half = 1 << (TANH_BITS - 1)
    return tanh_q15(np.arange(-half, half))


def tanh_error() -> float:
    """The largest distance of tanh_q15 / 32767 from tanh at the index's own points, on [-4, 4) (the
    interpolation and the rounding of the knots); the sum's rounding to the index adds half a step, and a
    sum beyond the index's end tanh(4)'s distance from 1."""
    half = 1 << (TANH_BITS - 1)
    i = np.arange(-half, half)
    return float(np.abs(tanh_table() / SAT - np.tanh(i * 2.0 ** -TANH_FRAC)).max())


def tanh_c(lookup: str | None) -> str:
    """The C of tanh_q15(i), Q15 tanh of i * 2^-TANH_FRAC: the interpolation's words (TANH_WORDS_MID, their
    middle), and under the condition `lookup` (a preprocessor expression) instead the table of every result
    (bpd_tanh_q15, one lookup; "1": only that). Both give tanh_q15's numbers."""
    w = [int(v) for v in tanh_words()]
    rows = ",\n".join("    " + ", ".join(f"0x{v & 0xFFFFFFFF:08X}u" for v in w[i:i + 8]) for i in range(0, len(w), 8))
    interp = (f"/* tanh in Q15 of i * 2^-{TANH_FRAC}, interpolated: per knot h (every {1 << TANH_KNOT} steps of i, "
              f"from -{TANH_WORDS // 2}) the rise r to the next knot in the high half and base = its value - r h in "
              f"the low half; between h and h + 1, base + ((r i) >> {TANH_KNOT}) */\n"
              f"static const uint32_t bpd_tanh_words[{TANH_WORDS}] = {{\n{rows}\n}};\n"
              f"#define TANH_WORDS_MID (bpd_tanh_words + {TANH_WORDS // 2})\n"
              "static inline int32_t tanh_q15(int32_t i)\n{\n"
              f"    const uint32_t w = TANH_WORDS_MID[i >> {TANH_KNOT}];\n"
              "    return (int32_t)(w & 0xFFFFu) - (int32_t)((w & 0x8000u) << 1)"
              f" + ((((int32_t)w >> 16) * i) >> {TANH_KNOT});\n}}\n")
    if lookup is None:
        return "\n" + interp
    t = [int(v) for v in tanh_table()]
    half = 1 << (TANH_BITS - 1)
    rows = ",\n".join("    " + ", ".join(str(v) for v in t[i:i + 16]) for i in range(0, len(t), 16))
    full = (f"/* the same numbers for every i from -{half} to {half - 1}: one lookup */\n"
            f"static const int16_t bpd_tanh_q15[{len(t)}] = {{\n{rows}\n}};\n"
            f"static inline int32_t tanh_q15(int32_t i) {{ return bpd_tanh_q15[i + {half}]; }}\n")
    return "\n" + full if lookup == "1" else f"\n#if {lookup}\n{full}#else\n{interp}#endif\n"
