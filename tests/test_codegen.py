"""The generated straight-line kernel and the integer-only kernel against known answers.

Float: the golden network (float64 outputs) within 1e-5 for libm tanhf, within each tanh form's own
measured error bound otherwise; NaN/Inf and NULL behaviour as the generic kernel. Integer: the C
is bit-exact with its numpy model, conversions and the tanh table have closed-form answers, the
accumulator bound holds at saturated inputs, and the object file has no float instruction (but for the
observations' VCVT where the core has an FPU: tests/test_fp_inputs.py).
"""

import json
import shutil
import subprocess

import numpy as np
import pytest

from export.c_export import CPolicy
from export.cc import OPT as CC_OPT
from export.cc import STRICT
from export.codegen import LIBM, generate_kernel, select_tanh, tanh_form, tanh_forms
from export.collapse import collapse
from export.fixed_point import (
    ACC_LIMIT,
    SAT,
    IntPolicy,
    generate_int_kernel,
    quantise,
    tanh_q15,
    to_fixed,
    to_float_bits,
)
from tests.test_export_c import TOL, X, Y, golden_policy, random_net

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (make system-deps)")


def gen(net, path, form=LIBM):
    generate_kernel(net, path, "ab" * 32, "bpd export run --out x --kernel generated", form)
    return CPolicy(path)


def test_generated_golden_libm(tmp_path):
    np.testing.assert_allclose(gen(collapse(golden_policy()), tmp_path).act(X), Y, atol=TOL)


def test_every_tanh_form_within_its_error(tmp_path):
    net = collapse(golden_policy())
    errs = []
    for f in tanh_forms():
        e = f.max_error()
        errs.append(e)
        # each output passes through at most two tanh layers with weights |w| <= 2 and scale 2
        got = gen(net, tmp_path / f.name.replace("/", "_"), f).act(X)
        assert np.abs(got - Y).max() <= 2 * (1 + 2 * 2) * e + TOL, f.name
    rational = [f.max_error() for f in tanh_forms() if f.p]
    assert rational[0] > 1e-3 and min(rational) < 5e-7  # the family spans loose to float precision
    table = [f for f in tanh_forms() if f.table]
    assert len(table) == 1 and table[0].max_error() < 3e-7  # a cubic per interval of 1/16; 1 - tanh(8) at the clamp


def test_table_tanh_known_values():
    """The table form at points whose answer is known: 0, +-1 at and beyond the clamp, odd symmetry, and
    within its stated error of tanh on interval edges and midpoints."""
    from export.codegen import table_form

    f = table_form()
    x = np.concatenate([[0.0, 8.0, -8.0, 100.0, -1e30], np.arange(-130, 130) / 16,
                        np.arange(-130, 130) / 16 + 1 / 32]).astype(np.float32)
    y = f.numpy(x)
    assert y[0] == 0 and (y[1:5] == [1, -1, 1, -1]).all()
    assert np.abs(y - np.tanh(x.astype(np.float64))).max() < 3e-7
    np.testing.assert_array_equal(f.numpy(-x), -y)


@pytest.mark.parametrize("activation,output", [("tanh", "tanh"), ("relu", "clip"), ("relu", "tanh")])
def test_generated_random_nets(tmp_path, activation, output):
    rng = np.random.default_rng(4)
    net = random_net(rng, [9, 20, 7, 3], 0.4, activation, output)
    x = rng.normal(size=(300, 9)).astype(np.float32)
    np.testing.assert_allclose(gen(net, tmp_path).act(x), net.act(x), atol=TOL)


def test_generated_nan_inf_and_null(tmp_path):
    pol = gen(collapse(golden_policy()), tmp_path)
    for bad in (np.nan, np.inf, -np.inf):
        rc, a = pol.run(np.array([0.0, bad, 1.0], np.float32))
        assert rc == -1
        np.testing.assert_array_equal(a, [0.0, 0.0])
    assert pol.run(X[2])[0] == 0
    import ctypes
    fp = ctypes.POINTER(ctypes.c_float)
    act = np.full(2, 9, np.float32)
    rc = pol._run(pol._model_ptr, None, act.ctypes.data_as(fp), pol._scratch.ctypes.data_as(fp))
    assert rc == -2 and (act == 0).all()
    assert pol._run(None, None, act.ctypes.data_as(fp), None) == -2


def test_generated_source_readable_no_index_arrays(tmp_path):
    net = collapse(golden_policy())
    generate_kernel(net, tmp_path, "ab" * 32, "bpd export run --out x --kernel generated", tanh_form("rational-7/6"))
    src = (tmp_path / "policy.c").read_text()
    head = src.splitlines()[:4]
    assert head[0].startswith("/* generated - do not edit") and "ab" * 32 in head[1]
    assert "--kernel generated" in head[3]
    assert "[" not in src.split("int bpd_policy_run")[1].replace("obs[", "").replace("action[", "")
    assert src.count("BPD_MAC(h") + src.count("BPD_MAC(y") == sum(np.count_nonzero(w) for w in net.weights)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_generated_and_int_compile_warning_free(tmp_path, cc):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    net = collapse(golden_policy())
    generate_kernel(net, tmp_path / "g", "0" * 64, "t", tanh_form("rational-5/4"))
    generate_int_kernel(net, quantise(net, X, "golden"), tmp_path / "i", "0" * 64, "t")
    for d in ("g", "i"):
        subprocess.run([cc, *STRICT, *CC_OPT, "-c", "policy.c", "policy_weights.c"], check=True, cwd=tmp_path / d)


def test_select_tanh_cheapest_within_budget(tmp_path):
    net = collapse(golden_policy())
    with_ref = Y.astype(np.float32)
    form, tried = select_tanh(net, tmp_path / "out", "0" * 64, "t", X, with_ref, 1e-5, tmp_path / "w")
    assert tried[-1]["within_budget"] and all(not t["within_budget"] for t in tried[:-1])
    assert form.name == tried[-1]["tanh"] and form.cost == min(t["cost"] for t in tried if t["within_budget"])
    loose, tried2 = select_tanh(net, tmp_path / "out2", "0" * 64, "t", X, with_ref, 1e-2, tmp_path / "w2")
    assert loose.cost <= form.cost and len(tried2) <= len(tried)
    np.testing.assert_allclose(CPolicy(tmp_path / "out").act(X), Y, atol=1e-5)


# ------------------------------------------------------------------------------------- integer


def test_to_fixed_known_values():
    """Truncation towards zero and symmetric saturation: 0.75 -> 0, 179.2 -> 179, 32765.44 -> 32765,
    32768 -> 32767, -127.99 * 256 -> -32765."""
    x = np.array([1.5, -1.5, 0.0, -0.0, 1e-30, 1e6, -1e6, 3.0 / 1024, 0.7, 127.99, 128.0, -127.99], np.float32)
    got = to_fixed(x, np.int64(8))
    want = [384, -384, 0, 0, 0, SAT, -SAT, 0, 179, 32765, SAT, -32765]
    np.testing.assert_array_equal(got, want)


def test_to_float_bits_exact_below_2_24():
    v = np.array([1, -1, 384, 12345, -(2**23) - 7, 2**24 - 1, 2**30 + 3], np.int64)
    got = to_float_bits(v, np.int64(8)).view(np.float32)
    want = (v.astype(np.float64) / 256).astype(np.float32)
    np.testing.assert_array_equal(got[:-1], want[:-1])
    assert abs(got[-1] - want[-1]) <= abs(want[-1]) * 2 ** -23  # truncated beyond 24 bits
    assert to_float_bits(np.array([0]), np.int64(3))[0] == 0


def test_tanh_interpolation_error():
    """tanh_q15 is its knots' values (every 16 index steps: 32767 (t + t (1 - t^2) / 2048), t = tanh(h / 16),
    rounded: tanh moved by half the chord's sag) and linear between them, floored; a sum acc in units of
    2^-(s + TANH_FRAC), with the rounding half the quantiser folds into
    the bias, gives tanh within half an index step (tanh's slope is at most 1), the interpolation's bound
    (step^2 / 8 times max |tanh''| = 4 / (3 sqrt 3)), the knots' rounding and the floor, and beyond the
    index's end tanh(4)'s distance from 1. The Thumb-1 form's table of every result holds the same numbers."""
    from export.fixed_point import TANH_BITS, TANH_FRAC, tanh_error, tanh_index, tanh_table, tanh_words

    half = 1 << (TANH_BITS - 1)
    def knot(h):
        t = np.tanh(h / 16.0)
        return np.rint(SAT * (t + t * (1 - t * t) / 2048)).astype(np.int64)

    h = np.arange(-64, 64)
    knots = knot(h)
    assert tanh_q15(16 * h).tolist() == knots.tolist()
    assert tanh_words()[64] == knot(1) << 16  # knot 0: the rise to knot 1 in the high half, base 0 below
    nxt = knot(h + 1)
    i = np.arange(-half, half)
    by_hand = knots[(i >> 4) + 64] + ((nxt - knots)[(i >> 4) + 64] * (i & 15)) // 16
    assert tanh_q15(i).tolist() == by_hand.tolist() == tanh_table().tolist()
    interp = (1 / 16) ** 2 / 8 * 4 / (3 * np.sqrt(3))
    assert tanh_error() <= interp + 1.5 / SAT + 1e-12
    for s in (0, 3, 11):
        acc = np.arange(-(6 << (s + TANH_FRAC)), 6 << (s + TANH_FRAC), 1 + (1 << s) // 7)
        z = acc * 2.0 ** -(s + TANH_FRAC)
        got = tanh_q15(tanh_index(acc + ((1 << s) >> 1), s)) / SAT
        bound = 2.0 ** -(TANH_FRAC + 1) + interp + 1.5 / SAT + np.where(
            np.abs(z) >= 4 - 2.0 ** -(TANH_FRAC + 1), 1 - np.tanh(4 - 2.0 ** -TANH_FRAC), 0)
        assert (np.abs(got - np.tanh(z)) <= bound + 1e-12).all()


def test_int_c_compiles_and_matches_where_an_observation_is_pruned_whole(tmp_path):
    """A first layer whose column for obs[2] is all zero (the input pruned whole): the C still compiles under
    -Werror (the observation is checked for NaN, not read) and gives the numpy model's bits."""
    rng = np.random.default_rng(11)
    net = random_net(rng, [5, 8, 2], 0.9, "tanh", "tanh")
    net.weights[0][:, 2] = 0.0
    calib = rng.normal(0, 0.5, size=(500, 5)).astype(np.float32)
    q = quantise(net, calib, "test")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    x = rng.normal(0, 1, size=(64, 5)).astype(np.float32)
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x).view(np.uint32), IntPolicy(q).act(x).view(np.uint32))
    rc, _ = CPolicy(tmp_path).run(np.where(np.arange(5) == 2, np.nan, 0.1).astype(np.float32))
    assert rc == -1  # the unread observation is still checked


def test_int_accumulator_cannot_overflow():
    rng = np.random.default_rng(5)
    net = random_net(rng, [6, 30, 12, 2], 0.8, "relu", "clip")
    q = quantise(net, rng.normal(size=(500, 6)), "test")
    for L in q.layers:
        assert (np.abs(L.wq).sum(1) * SAT + np.abs(L.bq) <= ACC_LIMIT).all()
    corners = np.array([[s * 1e9 for s in signs] for signs in rng.choice([-1, 1], size=(200, 6))], np.float32)
    IntPolicy(q).act(corners)  # asserts every accumulator stays within int32


@pytest.mark.parametrize("activation,output", [("tanh", "tanh"), ("relu", "clip"), ("relu", "tanh")])
def test_int_c_matches_numpy_model_and_float(tmp_path, activation, output):
    rng = np.random.default_rng(6)
    net = random_net(rng, [9, 20, 7, 3], 0.4, activation, output)
    calib = rng.normal(0, 0.5, size=(2000, 9)).astype(np.float32)
    q = quantise(net, calib, "test")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    pol = CPolicy(tmp_path)
    x = np.concatenate([calib[:500], rng.normal(0, 5, size=(200, 9))]).astype(np.float32)
    got = pol.act(x)
    np.testing.assert_array_equal(got.view(np.uint32), IntPolicy(q).act(x).view(np.uint32))
    span = net.action_high - net.action_low
    # within the calibrated range: each tanh good to half an index step (2^-9) and the interpolation's 2e-4,
    # which this net's weights (up to 2.6) carry to the actions
    assert (np.abs(got[:500] - net.act(x[:500])) / span).max() < 4e-3
    for bad in (np.nan, np.inf, -np.inf):
        rc, a = pol.run(np.where(np.arange(9) == 4, bad, 0.1).astype(np.float32))
        assert rc == -1
        np.testing.assert_array_equal(a, np.clip(0, net.action_low, net.action_high))


FLOAT_CALL = ("__aeabi_f", "__aeabi_d", "__aeabi_i2f", "__aeabi_ui2f", "__aeabi_l2f", "sf", "df", "tanhf", "fma")


FP_STAGE = "bpd_fp_inputs"  # export/fp_inputs.py: the function of an integer kernel that converts observations by VCVT
FP_OUT, FP_OUT_OPS = "bpd_policy_run", {"vmov", "vcvt.f32.s32", "vstr"}  # the actions out by VCVT (run_tail)


def integer_object(d, target, flags=None) -> list[str]:
    """The mnemonics of d/policy.c compiled for target (or with flags), after checking that it has no VFP
    instruction outside the FPU input stage (FP_STAGE, only where the core has an FPU: VCVT of the
    observations) and no call into soft-float or libm (what an integer kernel must not have)."""
    from firmware_host.measure.build import OPT, TARGETS

    obj = d / "policy.o"
    subprocess.run(["arm-none-eabi-gcc", *STRICT, *(flags or TARGETS[target]["flags"]), *OPT, "-c", "policy.c",
                    "-o", str(obj)], check=True, cwd=d)
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    mnemonics, where = [], []
    func = ""
    for ln in dis.splitlines():
        if ln.endswith(">:"):
            func = ln.split("<")[1].rstrip(">:")
        elif ln.count("\t") >= 2 and ":" in ln:
            mnemonics.append(ln.split("\t")[2].split()[0])
            where.append(func)
    vfp = {f for m, f in zip(mnemonics, where) if m.startswith("v") and not (f == FP_OUT and m in FP_OUT_OPS)}
    hard = "-mfloat-abi=hard" in (flags or TARGETS[target]["flags"])
    assert vfp <= ({FP_STAGE} if hard else set()), f"VFP instruction in the integer kernel, in {vfp}"
    assert hard or not {m for m, f in zip(mnemonics, where) if m.startswith("v")}, "VFP without the FPU"
    undef = subprocess.run(["arm-none-eabi-nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout
    assert not [s for s in undef.split() if any(f in s for f in FLOAT_CALL)], undef
    return mnemonics


@needs_arm
@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "interpolated"])
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m4f"])
def test_int_kernel_has_no_float_instruction(tmp_path, target, lookup):
    """Disassembles the compiled integer policy: no VFP instruction, no call into soft-float or libm."""
    from firmware_host.measure.build import OPT, TARGETS

    net = collapse(golden_policy())
    q = quantise(net, X, "golden")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t", lookup)
    mnemonics = integer_object(tmp_path, target)
    assert len(mnemonics) > 50
    # the DSP extension's dual multiply-add on Cortex-M4 (two int16 products per instruction), none on M0+
    assert ("smlad" in mnemonics) == (target == "cortex-m4f")
    # the observations converted by VCVT where the core has the FPU; a Cortex-M4 without one: no VFP at all
    assert ("vcvt.s16.f32" in mnemonics) == (target == "cortex-m4f")
    # and the actions back to floats by VCVT with their fraction bits
    assert ("vcvt.f32.s32" in mnemonics) == (target == "cortex-m4f")
    if target == "cortex-m4f":
        assert "smlad" in integer_object(tmp_path, target, ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"])
    # the interpolated tanh's one multiply per unit, SMULTB (its knot's rise times the index)
    assert net.activation == "tanh" and ("smultb" in mnemonics) == (target == "cortex-m4f" and not lookup)
    # the float generated kernel, for contrast, does use the FPU on cortex-m4f / soft-float on m0+
    generate_kernel(net, tmp_path / "f", "0" * 64, "t", tanh_form("rational-5/4"))
    subprocess.run(["arm-none-eabi-gcc", *STRICT, *TARGETS[target]["flags"], *OPT, "-c", "policy.c", "-o", "f.o"],
                   check=True, cwd=tmp_path / "f")
    fdis = subprocess.run(["arm-none-eabi-objdump", "-dr", str(tmp_path / "f" / "f.o")], capture_output=True,
                          text=True, check=True).stdout
    assert ("\tvfma" in fdis) if target == "cortex-m4f" else ("__aeabi_f" in fdis)


def test_pair_columns_pairs_the_columns_that_share_rows():
    """Columns 0 and 2 share both rows, 1 and 3 share one: those are the pairs; an empty column is left out
    and an odd one out gets a zero half."""
    from training.pairs import pair_columns

    w = np.array([[1, 5, 2, 0, 0, 7], [3, 0, 4, 6, 0, 0], [0, 1, 0, 1, 0, 0]])
    assert pair_columns(w) == [(0, 2), (1, 3), (5, None)]


@needs_arm
def test_int_dsp_kernel_hand_computed_and_bit_exact_on_cortex_m4f(tmp_path):
    """A 3 -> 2 -> 1 ReLU/clip network with power-of-two weights, so the integer answer is computed by hand:
    the DSP build (SMLAD on packed pairs, emulated Cortex-M4F) and the scalar host build give the same bits
    as the numpy model and the hand-computed value."""
    pytest.importorskip("unicorn")
    from export.collapse import CollapsedNet
    from firmware_host.measure.bench import kernel_cost

    net = CollapsedNet([np.array([[0.5, -0.25, 1.0], [0.0, 2.0, -1.0]], np.float32),
                        np.array([[1.0, -0.5]], np.float32)],
                       [np.array([0.125, -0.5], np.float32), np.array([0.25], np.float32)], "relu", "clip",
                       np.array([-4.0], np.float32), np.array([4.0], np.float32), [3, 2, 1])
    calib = np.array([[1.0, 1.0, 1.0], [-1.0, 0.5, -1.0]], np.float32)
    q = quantise(net, calib, "hand")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    x = np.array([0.5, 0.25, 0.75], np.float32)
    # h0 = relu(0.25 - 0.0625 + 0.75 + 0.125) = 1.0625, h1 = relu(0.5 - 0.75 - 0.5) = 0; y = 1.0625 + 0.25
    want = np.float32(1.3125)
    host = CPolicy(tmp_path).act(x)
    assert host[0] == want and IntPolicy(q).act(x)[0] == want
    cost = kernel_cost(tmp_path, "cortex-m4f")
    assert cost["max_abs_error_vs_host_c"] == 0.0


@needs_arm
@pytest.mark.parametrize("form", ["integer", "integer-table"])
def test_int_kernel_without_a_hidden_layer_hand_computed_on_both_cores(tmp_path, form):
    """3 -> 1 with no hidden layer (a linear teacher's export): y = 0.5 x0 - 0.25 x1 + x2 + 0.125 = 1.0625 on
    [0.5, 0.25, 0.75], exact in the integers. Both integer forms build under the meter's -Werror for Cortex-M4F
    (their assembly once declared a second layer buffer that nothing used) and M0+, and give it on each core."""
    pytest.importorskip("unicorn")
    from export.collapse import CollapsedNet
    from export.int_plan import generate_int_table_kernel
    from firmware_host.measure.bench import kernel_cost

    net = CollapsedNet([np.array([[0.5, -0.25, 1.0]], np.float32)], [np.array([0.125], np.float32)], "relu", "clip",
                       np.array([-4.0], np.float32), np.array([4.0], np.float32), [3, 1])
    q = quantise(net, np.array([[1.0, 1.0, 1.0], [-1.0, 0.5, -1.0]], np.float32), "hand")
    if form == "integer":
        generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    else:
        generate_int_table_kernel(net, q, tmp_path, "0" * 64, "t", tables_only=True)
    assert CPolicy(tmp_path).act(np.array([0.5, 0.25, 0.75], np.float32))[0] == np.float32(1.0625)
    for target in ("cortex-m4f", "cortex-m0plus"):
        assert kernel_cost(tmp_path, target)["max_abs_error_vs_host_c"] == 0.0, target


def hand_tanh_net():
    """A 2 -> 2 -> 1 tanh network with power-of-two weights, quantised on +-1 (inputs in Q13)."""
    from export.collapse import CollapsedNet

    net = CollapsedNet([np.array([[1.0, 0.5], [-2.0, 0.0]], np.float32), np.array([[0.5, 0.25]], np.float32)],
                       [np.array([0.0, 0.0], np.float32), np.array([0.125], np.float32)], "tanh", "tanh",
                       np.array([-1.0], np.float32), np.array([1.0], np.float32), [2, 2, 1])
    return net, quantise(net, np.array([[1.0, 1.0], [-1.0, -1.0]], np.float32), "hand")


def hand_tanh_actions(x: np.ndarray) -> np.ndarray:
    """hand_tanh_net's integer actions computed by hand: each hidden tanh is T at the index round(256 z), T
    the interpolation between the knots at k = i // 16 and k + 1 (tanh(k / 16) moved by half the chord's
    sag, in Q15), floored; the
    output's index is round(256 (0.5 h0 + 0.25 h1 + 0.125)) of the Q15 hidden values, the action
    (T + 1) >> 1 in Q14."""
    from fractions import Fraction

    def knot(k: int) -> int:
        t = np.tanh(k / 16)
        return round(32767 * (t + t * (1 - t * t) / 2048))

    def T(i: int) -> int:
        k = i // 16
        return knot(k) + (knot(k + 1) - knot(k)) * (i - 16 * k) // 16

    def rnd(f: Fraction) -> int:  # round half up, as the bias's folded half does
        return int((f + Fraction(1, 2)) // 1)

    want = []
    top = Fraction(32767, 8192)  # inputs in Q13 (twice the calibrated range fits), saturated at 32767
    for x0, x1 in np.asarray(x, np.float32).astype(np.float64):
        x0, x1 = (max(-top, min(top, Fraction(v))) for v in (x0, x1))
        h0 = T(rnd(256 * (x0 + x1 / 2)))
        h1 = T(max(-1024, min(1023, rnd(256 * -2 * x0))))
        idx = rnd(256 * (Fraction(h0, 2 * 32768) + Fraction(h1, 4 * 32768) + Fraction(1, 8)))
        want.append(np.float32(((T(idx) + 1) >> 1) / 2.0 ** 14))
    return np.array(want, np.float32)[:, None]


@needs_arm
@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "interpolated"])
def test_int_dsp_tanh_kernel_hand_computed_on_cortex_m4f(tmp_path, lookup):
    """A 2 -> 2 -> 1 tanh network with power-of-two weights, so every quantity is exact: each hidden tanh is
    the interpolation's value at the index round(256 z) (hand_tanh_actions), and the output's index is
    round(256 (0.5 h0 + 0.25 h1 + 0.125)) of the Q15 hidden values; the action is (T + 1) >> 1 in Q14. The
    DSP build (emulated Cortex-M4F), the scalar host build and the numpy model give exactly that, on
    observations that saturate too, whether the kernel looks tanh up or interpolates it."""
    pytest.importorskip("unicorn")
    from firmware_host.measure.bench import BENCH, emulate_build

    net, q = hand_tanh_net()
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t", lookup)
    assert ("bpd_tanh_words" in (tmp_path / "policy.c").read_text()) != lookup
    x = np.array([[0.5, 0.25], [0.25, -0.75], [100.0, -100.0]], np.float32)
    want = hand_tanh_actions(x)
    assert q.in_frac.tolist() == [13, 13]
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x), want)
    np.testing.assert_array_equal(IntPolicy(q).act(x), want)
    # a NaN or infinite observation, first or last, gives the safe action (0) on the DSP build too
    bad = np.array([[np.nan, 0.5], [0.5, np.inf], [-np.inf, 0.5]], np.float32)
    e = emulate_build("cortex-m4f", [tmp_path / "policy.c", tmp_path / "policy_weights.c", BENCH / "bench_bpd.c"],
                      [tmp_path, BENCH], tmp_path / "m4f", np.concatenate([x, bad]), 1, set(),
                      ["policy", "policy_weights"])
    np.testing.assert_array_equal(e["outputs"], np.concatenate([want, np.zeros((3, 1), np.float32)]))


def test_int_kernel_too_wide_for_the_dsp_offsets_is_scalar_on_cortex_m4f(tmp_path):
    """A hidden layer of 2,100 units needs offsets past the 12-bit immediates of the DSP assembly: the
    kernel is the scalar C form on every core, and the emulated M4F build equals the numpy model."""
    pytest.importorskip("unicorn")
    from export.collapse import CollapsedNet
    from export.dsp import MAX_OFFSET, OffsetRange, _off
    from firmware_host.measure.bench import BENCH, emulate_build

    rng = np.random.default_rng(5)
    w0 = (rng.standard_normal((2100, 3)) * (rng.random((2100, 3)) < 0.3)).astype(np.float32)
    w1 = (rng.standard_normal((1, 2100)) * 0.02).astype(np.float32)  # every unit used: 1,050 input words
    net = CollapsedNet([w0, w1], [np.zeros(2100, np.float32), np.zeros(1, np.float32)], "tanh", "tanh",
                       np.array([-1.0], np.float32), np.array([1.0], np.float32), [3, 2100, 1])
    x = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
    q = quantise(net, x, "test")
    assert generate_int_kernel(net, q, tmp_path, "0" * 64, "t") == {"dsp_layers": [], "thumb1": None,
                                                                    "fpu_inputs": False}
    assert "too wide for the assembly's 12-bit offsets" in (tmp_path / "policy.c").read_text()
    assert _off(MAX_OFFSET) == MAX_OFFSET
    with pytest.raises(OffsetRange, match="12-bit"):
        _off(MAX_OFFSET + 1)
    e = emulate_build("cortex-m4f", [tmp_path / "policy.c", tmp_path / "policy_weights.c", BENCH / "bench_bpd.c"],
                      [tmp_path, BENCH], tmp_path / "m4f", x, 1, set(), ["policy", "policy_weights"])
    np.testing.assert_array_equal(e["outputs"], IntPolicy(q).act(x))


def test_export_cli_generated_and_int(tiny_pipeline, tmp_path):
    from tests.conftest import run_bpd

    out = tmp_path / "exp"
    p = run_bpd("export", str(tiny_pipeline / "run"), "--out", str(out), "--kernel", "generated", "--int",
                "--episodes", "1", "--parity-samples", "2000")
    assert "generated kernel: tanh" in p.stdout and "integer kernel (int/ in the export)" in p.stdout
    rep = json.loads((out / "export_report.json").read_text())
    assert rep["int"]["dir"] == "int" and (out / rep["int"]["dir"] / "export.json").is_file()  # not the staging dir
    assert rep["parity"]["pass"] and rep["parity"]["c_vs_torch"] <= 1e-5
    k = rep["kernel"]
    assert k["kind"] == "generated" and k["tanh_budget"] == 1e-5
    assert k["tanh"] == [t for t in k["tanh_candidates"] if t["within_budget"]][0]["tanh"]
    assert rep["int"]["c_matches_numpy_model"] and rep["int"]["calibration"]["origin"].startswith("dataset")
    assert set(rep["returns"]) >= {"torch", "c", "c_int"}
    assert "--kernel generated" in (out / "policy.c").read_text().splitlines()[3]
    ev = json.loads(run_bpd("evaluate", str(out / "int"), "--episodes", "1", "--json").stdout)
    assert ev["return_mean"] > 0
    bad = run_bpd("export", str(tiny_pipeline / "run"), "--out", str(tmp_path / "e2"), "--kernel", "generated",
                  "--tanh-budget", "1e-9", "--episodes", "0", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("bpd: error:") and "tanh-budget" in bad.stderr


def test_pack_words_shares_a_word_between_two_single_weight_pairs():
    """Weight words of a stream of (row, pair) uses, G = 2 registers: a full pair takes its word and an SMLAD; a
    pair with one weight takes a word's bottom half (SMLAB<x>, x the input's half that weight multiplies) and the
    next such pair its top half (SMLAT<x>) while that word is still in the registers; past a batch of G words, a
    new word."""
    from export.dsp import pack_words

    full, lo, hi = 0x0003_0002, 0x0000_FFFF, 0x0005_0000  # (3, 2); (0, -1): the low input; (5, 0): the high
    packed, where = pack_words([lo, full, hi, hi, lo, lo], 2)
    assert packed == [0x0005_FFFF, full, 0xFFFF_0005, 0xFFFF]
    assert where == [(0, "smlabb"), (1, "smlad"), (0, "smlatt"), (2, "smlabt"), (2, "smlatb"), (3, "smlabb")]
    # G = 1: the full pair's word replaces the open one in the register, so the next single opens a word of its own
    assert pack_words([lo, full, lo], 1) == ([0xFFFF, full, 0xFFFF], [(0, "smlabb"), (1, "smlad"), (2, "smlabb")])


@needs_arm
def test_int_dsp_kernel_with_single_weight_pairs_is_bit_exact_on_cortex_m4f(tmp_path):
    """A 4 -> 6 -> 1 tanh network whose columns pair as (0, 1) and (2, 3) and whose rows keep one weight of a
    pair in either half: the kernel multiplies them with all four SMLA<w><x> forms, two to a table word, and the
    emulated Cortex-M4F build gives the host C build's bits on random observations."""
    pytest.importorskip("unicorn")
    from export.collapse import CollapsedNet
    from firmware_host.measure.bench import kernel_cost

    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1]], bool)
    w0 = np.random.default_rng(3).normal(0, 0.7, mask.shape).astype(np.float32) * mask
    net = CollapsedNet([w0, np.full((1, 6), 0.3, np.float32)], [np.full(6, 0.05, np.float32), np.zeros(1, np.float32)],
                       "tanh", "tanh", np.array([-1.0], np.float32), np.array([1.0], np.float32), [4, 6, 1])
    q = quantise(net, np.random.default_rng(4).uniform(-1, 1, (64, 4)).astype(np.float32), "singles")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    c = "".join(p.read_text() for p in tmp_path.glob("*.c"))
    assert all(op in c for op in ("smlabb", "smlabt", "smlatb", "smlatt"))
    assert kernel_cost(tmp_path, "cortex-m4f")["max_abs_error_vs_host_c"] == 0.0


def test_dsp_mix_counts_a_hand_built_layer_by_kind():
    """The 6 x 4 layer above, its columns paired (0, 1) and (2, 3), in one group of 6 rows, its 2 input words in
    one chunk, 4 weight registers (r2 and r3 taken, so reloaded once): 12 multiplies (every row has a weight in both
    pairs), one LDMIA of the biases and one for every 4 table words, one LDMIA of the inputs and r0 moved back, per
    unit a clamp, a lookup and a store."""
    from export.dsp import MIX, Act, layer_code, mix, pack_words, words

    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1]], bool)
    wq = np.where(mask, np.arange(1, 25).reshape(6, 4), 0)
    pairs: list[tuple[int, int | None]] = [(0, 1), (2, 3)]
    act = Act("tanh", np.full(6, 2), bits=10, dest={r: r for r in range(6)}, full=True)
    lines, table = layer_code(wq, np.arange(6), pairs, act, 6, 2, 4)
    m = mix(lines)
    stream = [int(w) for row in words(wq, pairs) for w in row if w]  # one group: rows in order, words in order
    n_words = len(pack_words(stream, 4)[0])
    assert len(table) == 6 + n_words
    assert m == {"multiplies": 12, "weight_loads": 1 + -(-n_words // 4), "input_loads": 2, "activations": 12,
                 "stores": 6, "other": 1}
    assert sum(m[k] for k in MIX) == len(lines)
