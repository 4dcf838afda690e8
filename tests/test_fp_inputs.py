"""The integer kernel's input stage on a core with the FPU (export/fp_inputs.py) against known answers.

A network of one output layer, action i = observation i (weight 1, clip output, wide bounds), shows each
observation as the kernel converted it: trunc(obs * 2^f) saturated to +-32767, times 2^-f. Built for the
emulated Cortex-M4F, both integer forms (straight-line DSP layers, the table form) run the FPU stage (VCVT)
and fall back to the integer loop on what it cannot decide; on every edge (the one value VCVT leaves in range
that the stage must clamp, -32768 * 2^-f; values just inside and past saturation; NaN and +-Inf in a used
and in an unused column; subnormals; -0) the actions are the hand-computed ones and the host C kernel's bits.
17 and 32 observations take the path that saves s16 and up (one register, all of them); 5 do not.
"""

import numpy as np
import pytest

from export.c_export import CPolicy
from export.collapse import CollapsedNet
from export.fixed_point import generate_int_kernel, quantise
from export.fp_inputs import fp_inputs_asm
from export.int_plan import generate_int_table_kernel
from tests.test_codegen import needs_arm
from tests.test_int_table import _m4f


def _identity(n: int, unused: int) -> CollapsedNet:
    """action i = obs i for every i but `unused` (its column all zero: checked, never converted)."""
    w = np.eye(n, dtype=np.float32)
    w[unused, unused] = 0.0
    w[unused, (unused + 1) % n] = 1.0  # its action repeats the next observation
    return CollapsedNet([w], [np.zeros(n, np.float32)], "relu", "clip", np.full(n, -100.0, np.float32),
                        np.full(n, 100.0, np.float32), widths_before=[n, n])


def _expected(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """trunc(x * 2^f) saturated to +-32767, times 2^-f (float64 exact; NaN rows give NaN)."""
    v = np.clip(np.trunc(x.astype(np.float64) * 2.0 ** f), -32767, 32767)
    return v * 2.0 ** -f


def _edges(n: int, f: np.ndarray, unused: int) -> np.ndarray:
    rows = []
    for j in range(n):
        s = 2.0 ** -float(f[j])
        for v in (-32768 * s, -32767.5 * s, -32767 * s, 32767.9 * s, 32768 * s, 40000 * s, -1e30, 1e-42, -0.0,
                  0.3 * s, -1.7 * s):
            r = np.full(n, 0.25, np.float32)
            r[j] = np.float32(v)
            rows.append(r)
    for bad in (np.nan, np.inf, -np.inf):
        for j in (0, unused, n - 1):
            r = np.full(n, 0.25, np.float32)
            r[j] = bad
            rows.append(r)
    return np.array(rows, np.float32)


@needs_arm
@pytest.mark.parametrize("n", [5, 17, 32])
@pytest.mark.parametrize("form", ["straight", "table"])
def test_fpu_stage_gives_the_integer_stages_bits_on_every_edge(tmp_path, n, form):
    rng = np.random.default_rng(n)
    unused = 2
    net = _identity(n, unused)
    calib = rng.uniform(-4.0, 4.0, (200, n))
    q = quantise(net, calib, "test")
    f = np.asarray(q.in_frac, np.int64)
    assert fp_inputs_asm("x", list(f), [(j, None) for j in range(n) if j != unused]) is not None
    x = np.concatenate([rng.uniform(-5, 5, (20, n)).astype(np.float32), _edges(n, f, unused)])
    if form == "straight":
        generate_int_kernel(net, q, tmp_path, "0" * 64, "t", True)
    else:
        generate_int_table_kernel(net, q, tmp_path, "0" * 64, "t", tables_only=True)
    assert "bpd_fp_inputs" in (tmp_path / "policy.c").read_text()
    if form == "straight":  # the report says which input stage the kernel has
        assert generate_int_kernel(net, q, tmp_path / "again", "0" * 64, "t", True)["fpu_inputs"] is True
    host = CPolicy(tmp_path).act(x)
    m4f = _m4f(tmp_path, x, n)
    assert np.array_equal(m4f.view(np.uint32), host.view(np.uint32))
    finite = np.isfinite(x).all(1)
    src = np.where(np.arange(n) == unused, (unused + 1) % n, np.arange(n))
    want = _expected(x[finite][:, src], f[src])
    np.testing.assert_array_equal(m4f[finite].astype(np.float64), want)
    assert (m4f[~finite] == 0).all()  # a non-finite observation anywhere: zero commanded (clip of 0)
    # the one value VCVT leaves in range that the stage clamps: -32768 * 2^-f in, -32767 * 2^-f out
    j = 0
    row = np.flatnonzero(x[:, j] == np.float32(-32768 * 2.0 ** -float(f[j])))[0]
    assert m4f[row, j] == -32767 * 2.0 ** -float(f[j])


def test_fpu_stage_declines_what_vcvt_cannot_take():
    pairs = [(0, 1), (2, None)]
    assert fp_inputs_asm("x", [12, 16, 1], pairs) is not None
    assert fp_inputs_asm("x", [12, 17, 1], pairs) is None  # VCVT.S16 takes 1-16 fraction bits
    assert fp_inputs_asm("x", [12, 0, 1], pairs) is None
    assert fp_inputs_asm("x", [12, 16, 1, 30], pairs) is not None  # an unused column's format is never used
    assert fp_inputs_asm("x", [12] * 33, [(0, 1)]) is None  # more than s0-s31
    asm = fp_inputs_asm("x", [12] * 17, [(0, 16)])
    assert "vpush {s16}" in asm and "vpop {s16}" in asm and "pkhbt r0, r0, r12, lsl #16" in asm


def test_a_q_format_vcvt_cannot_take_keeps_the_integer_stage(tmp_path):
    """Observations of magnitude 1e5 get a Q format below 1: no FPU stage, the report says so."""
    net = _identity(3, 1)
    q = quantise(net, np.random.default_rng(0).uniform(-1e5, 1e5, (50, 3)), "test")
    assert min(q.in_frac) < 1
    assert generate_int_kernel(net, q, tmp_path, "0" * 64, "t", True)["fpu_inputs"] is False
    assert "bpd_fp_inputs" not in (tmp_path / "policy.c").read_text()

