"""The integer kernel's Thumb-1 assembly (export/thumb1.py) on the emulated Cortex-M0+, against known answers:
hand-computed networks and tables, each activation's form from its row's bound (the offset folded in the bias,
the sum that may pass 2^31 - 1 on its way, the rows that need no check or only the lower one), the inputs'
conversion at every edge of its range, and the numpy model (IntPolicy) bit for bit on wider networks whose rows
take every path (shifts of either sign, both clamps, dead units, rows in groups, rows of more weights than one load
takes)."""

import shutil
import subprocess

import numpy as np
import pytest

from export.c_export import CPolicy
from export.collapse import CollapsedNet
from export.fixed_point import IntLayer, IntPolicy, generate_int_kernel, quantise, to_fixed
from export.int_tanh import tanh_table
from export.thumb1 import FRAME_WORDS, FrameTooSmall, _plan_row, network_asm
from tests.test_codegen import hand_tanh_actions, hand_tanh_net
from tests.test_export_c import random_net

needs_m0 = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                              reason="arm-none-eabi-gcc not installed (make system-deps)")


def _emulate(d, obs, act_dim):
    """Actions of the Cortex-M0+ build of the kernel in d on obs (emulated), and the median instructions."""
    pytest.importorskip("unicorn")
    from firmware_host.measure.bench import BENCH, emulate_build

    e = emulate_build("cortex-m0plus", [d / "policy.c", d / "policy_weights.c", BENCH / "bench_bpd.c"],
                      [d, BENCH], d / "m0", np.asarray(obs, np.float32), act_dim, set(),
                      ["policy", "policy_weights"])
    return e["outputs"], e["instructions_median"]


def _disassembly(d) -> str:
    from firmware_host.measure.build import OPT, TARGETS

    subprocess.run(["arm-none-eabi-gcc", *TARGETS["cortex-m0plus"]["flags"], *OPT, "-c", "policy.c", "-o", "m0.o"],
                   check=True, cwd=d)
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "m0.o"], capture_output=True, text=True, check=True,
                         cwd=d).stdout
    return dis.split("<bpd_t1_net>:")[1].split("\n\n")[0]


@needs_m0
def test_hand_computed_tanh_network_on_cortex_m0plus(tmp_path):
    """hand_tanh_net: each hidden tanh the table's entry at round(256 z), the output's index round(256 (0.5 h0
    + 0.25 h1 + 0.125)); the M0+ build (its layers in the Thumb-1 assembly) gives exactly the hand-computed
    actions, on observations that saturate too, and the safe action for NaN and infinities."""
    net, q = hand_tanh_net()
    info = generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    assert info["thumb1"] is not None
    x = np.array([[0.5, 0.25], [0.25, -0.75], [100.0, -100.0]], np.float32)
    bad = np.array([[np.nan, 0.5], [0.5, np.inf], [-np.inf, 0.5]], np.float32)
    got, _ = _emulate(tmp_path, np.concatenate([x, bad]), 1)
    np.testing.assert_array_equal(got, np.concatenate([hand_tanh_actions(x), np.zeros((3, 1), np.float32)]))


@needs_m0
def test_hand_computed_relu_network_on_cortex_m0plus(tmp_path):
    """A 3 -> 2 -> 1 ReLU/clip network with power-of-two weights: h0 = relu(0.25 - 0.0625 + 0.75 + 0.125) =
    1.0625, h1 = relu(0.5 - 0.75 - 0.5) = 0, y = 1.0625 + 0.25 = 1.3125."""
    net = CollapsedNet([np.array([[0.5, -0.25, 1.0], [0.0, 2.0, -1.0]], np.float32),
                        np.array([[1.0, -0.5]], np.float32)],
                       [np.array([0.125, -0.5], np.float32), np.array([0.25], np.float32)], "relu", "clip",
                       np.array([-4.0], np.float32), np.array([4.0], np.float32), [3, 2, 1])
    q = quantise(net, np.array([[1.0, 1.0, 1.0], [-1.0, 0.5, -1.0]], np.float32), "hand")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    got, _ = _emulate(tmp_path, np.array([[0.5, 0.25, 0.75]], np.float32), 1)
    assert got[0, 0] == np.float32(1.3125)


@needs_m0
@pytest.mark.parametrize("widths,activation,output,scale", [
    ([11, 62, 51, 3], "tanh", "tanh", 1.0),    # a Hopper-sized student
    ([6, 20, 9, 2], "tanh", "tanh", 1000.0),   # large weights on large inputs: negative shifts
    ([7, 30, 12, 2], "relu", "clip", 1.0)])
def test_thumb1_layers_are_bit_exact_with_the_numpy_model(tmp_path, widths, activation, output, scale):
    """Random sparse networks: the M0+ build's actions equal IntPolicy's and the host's scalar C bit for bit on
    observations from small to saturating; the assembly multiplies each nonzero weight of a read row once
    (one MULS each) and leaves out a hidden unit that no weight of the next layer reads."""
    rng = np.random.default_rng(3)
    net = random_net(rng, widths, 0.35, activation, output)
    net.weights[0] *= 3 * scale
    net.weights[-1][:, 1] = 0.0  # the last hidden layer's unit 1 is read by nobody
    calib = rng.normal(0, scale, (500, widths[0])).astype(np.float32)
    q = quantise(net, calib, "test")
    if scale > 1:
        assert (q.layers[0].shift < 0).any()
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    obs = np.concatenate([rng.normal(0, s * scale, (40, widths[0])) for s in (0.1, 1.0, 30.0)]).astype(np.float32)
    got, instr = _emulate(tmp_path, obs, widths[-1])
    want = IntPolicy(q).act(obs)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(CPolicy(tmp_path).act(obs).view(np.uint32), want.view(np.uint32))
    body = _disassembly(tmp_path)
    read = [np.ones(L.wq.shape[0], bool) for L in q.layers]
    for li in range(len(q.layers) - 1):
        read[li] = (q.layers[li + 1].wq != 0).any(0)
    assert not read[-2][1]
    muls = sum(int(np.count_nonzero(L.wq[r])) for L, rr in zip(q.layers, read) for r in np.flatnonzero(rr))
    assert body.count("\tmuls\t") == muls
    assert not any(f"\t{m}" in body for m in ("smlad", "ssat", "usat", "ldr.w", "str.w"))  # ARMv6-M only
    floor = sum(int(np.count_nonzero(L.wq)) + L.wq.shape[0] for L in q.layers) + sum(widths[1:-1])
    if widths[1] > 50:  # issue 33: the M0+ integer kernel within 5x the floor, on a student of this size
        assert instr < 5 * floor


def test_a_layer_too_wide_for_the_frame_is_refused_and_the_kernel_falls_back_to_c(tmp_path):
    """Two regions of the widest layer must fit the 256 words SP-relative loads reach: 129 units do not, and
    the kernel is then the scalar C on Thumb-1 (its numbers unchanged)."""
    rng = np.random.default_rng(0)
    net = random_net(rng, [4, FRAME_WORDS // 2 + 1, 2], 0.5)
    q = quantise(net, rng.normal(0, 1, (50, 4)).astype(np.float32), "test")
    with pytest.raises(FrameTooSmall, match="frame"):
        network_asm("f", q.layers, [int(f) for f in q.in_frac], 11)
    info = generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    assert info["thumb1"] is None and "bpd_t1_net" not in (tmp_path / "policy.c").read_text()
    x = rng.normal(0, 1, (20, 4)).astype(np.float32)
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x).view(np.uint32), IntPolicy(q).act(x).view(np.uint32))


def test_hand_tanh_network_table_holds_each_bias_with_its_offset_folded():
    """hand_tanh_net's rows shift by 19 and 18 to the tanh index: each bias word is bq + (1024 << s), so that the
    sum itself is the index plus 1024 (no add of its own), its words in the order the code takes them (the
    first row's first weight, its bias, the second row's weight and bias: the two rows share input 0), then the
    output row's; its bound (24576 x 32767 around bq, plus 2^29) stays below 2^31 but passes 2^30 and 0: one
    check, and the short clamp."""
    net, q = hand_tanh_net()
    L0, L1 = q.layers
    assert L0.shift.tolist() == [19, 18] and L0.bq.tolist() == [262144, 131072]
    asm, table, info = network_asm("f", q.layers, [13, 13], 11)
    m = 0xFFFFFFFF
    assert table == [16384, 262144 + (1024 << 19), -16384 & m, 131072 + (1024 << 18), 8192,
                     16384, 136314880, 8192]
    assert info["table_words"] == 8 and info["rows_per_group"] == [2, 1]
    assert asm.count("lsrs r4, r3, #30") == 1 and "movs r4, #1" not in asm  # N = 11 + 19: no wrap fix


@pytest.mark.parametrize("wq,bq,s,kind,act", [
    ([16384, 8192], 262144, 19, "tanh", ("fold", 19, 30, True, True, False, 1 << 29)),  # both clamps, short
    ([16384] * 3, 262144, 19, "tanh", ("fold", 19, 30, True, True, True, 1 << 29)),  # acc + H may pass 2^31
    ([1], 0, 19, "tanh", ("fold", 19, 30, False, False, False, 1 << 29)),  # always within: no check
    ([16384] * 3, 262144, 21, "tanh", ("fold", 21, 32, False, False, True, 1 << 31)),  # >> 21: always within
    ([20972, 6291], 1 << 27, 28, "tanh", ("add", 28, 1024)),  # H past 32 bits: added after the shift
    ([-3, 100], -5, 17, "relu", ("fold", 17, 32, True, False, False, 0)),  # can only fall below: the sign
    ([100], 0, -3, "relu", ("fold", -3, 12, True, True, False, 0)),  # negative shift: clamp to 32767 >> 3
    ([20972, -6291], 1 << 21, 22, "relu", ("fold", 22, 37, True, False, False, 0)),  # >> 22: below 32767 always
])
def test_each_rows_activation_form_follows_from_its_bound(wq, bq, s, kind, act):
    """The overflow proof per row on hand-made layers (inputs within +-32767): H = -lo << s folded into the bias
    where the index's range is within 32 bits, the sum's reach acc + H against 2^31 - 1 (wrap) and against the
    range's ends (which clamps it needs)."""
    L = IntLayer(np.array([wq], np.int64), np.array([bq], np.int64), np.array([0]), np.array([s]), 15, kind)
    row = _plan_row(L, 0, -32767, 32767, 11)
    assert row.act == act
    assert row.bias == (bq if act[0] == "add" else bq + act[-1])


@needs_m0
def test_a_sum_that_passes_2_31_with_its_offset_clamps_by_the_true_sums_sign(tmp_path):
    """3 -> 1 -> 1, every weight 1: the hidden row's sum reaches 3 x 16384 x 32767 + bq, and with its offset
    2^29 folded in passes 2^31 - 1 (wraps): saturated high it must still give tanh's top, not its bottom (the sign
    of the wrapped sum). The out-of-range path takes the offset back off first; on the M0+ every saturating and
    ordinary input gives the numpy model's bits."""
    net = CollapsedNet([np.ones((1, 3), np.float32), np.array([[1.0]], np.float32)],
                       [np.zeros(1, np.float32), np.zeros(1, np.float32)], "tanh", "tanh",
                       np.array([-1.0], np.float32), np.array([1.0], np.float32), [3, 1, 1])
    q = quantise(net, np.array([[1.0] * 3, [-1.0] * 3], np.float32), "hand")
    row = _plan_row(q.layers[0], 0, -32767, 32767, 11)
    assert row.act[0] == "fold" and row.act[5]  # it wraps
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    x = np.array([[100, 100, 100], [-100, -100, -100], [4, 4, -1], [-4, -1, -1], [0.3, 0.2, -0.1],
                  [3.99, 3.99, 3.99], [1e30, -1e30, 1e30], [0, 0, 0]], np.float32)
    got, _ = _emulate(tmp_path, x, 1)
    np.testing.assert_array_equal(got.view(np.uint32), IntPolicy(q).act(x).view(np.uint32))
    assert got[0, 0] > 0.5 and got[1, 0] < -0.5


@needs_m0
def test_rows_without_a_check_and_rows_adding_the_offset_after_the_shift(tmp_path):
    """2 -> 2 -> 2 -> 1 tanh: the second layer's first row (one weight 2.0: |z| <= 2, always within the table)
    needs no check, its second (small weights, shifted by 24 or more) adds 1024 after the shift; bit for bit
    the numpy model on the M0+."""
    net = CollapsedNet([np.array([[1.0, 0.5], [0.5, -1.0]], np.float32), np.array([[2.0, 0.0], [0.01, 0.003]],
                                                                                  np.float32),
                        np.array([[1.0, 1.0]], np.float32)],
                       [np.zeros(2, np.float32), np.array([0.1, 0.0], np.float32), np.zeros(1, np.float32)],
                       "tanh", "tanh", np.array([-1.0], np.float32), np.array([1.0], np.float32), [2, 2, 2, 1])
    q = quantise(net, np.array([[1.0] * 2, [-1.0] * 2], np.float32), "hand")
    t = tanh_table()
    acts = [_plan_row(q.layers[1], r, int(t.min()), int(t.max()), 11).act for r in range(2)]
    assert acts[0][0] == "fold" and not acts[0][3] and not acts[0][4] and acts[1][0] == "add"
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    x = np.random.default_rng(7).normal(0, 2, (60, 2)).astype(np.float32)
    got, _ = _emulate(tmp_path, x, 1)
    np.testing.assert_array_equal(got.view(np.uint32), IntPolicy(q).act(x).view(np.uint32))


def _identity_net(fracs: list[int], skip: int):
    """One layer, output j = observation j (clip, bounds just past 32767 in input j's format), but for input
    skip, which no weight reads; calibrated so that input j is in Q(fracs[j])."""
    n = len(fracs)
    w = np.eye(n, dtype=np.float32)
    w[skip, skip] = 0.0
    top = np.array([1.01 * 32767 * 2.0 ** -f for f in fracs], np.float32)
    net = CollapsedNet([w], [np.zeros(n, np.float32)], "tanh", "clip", -top, top, [n, n])
    calib = np.array([[0.99 * 32767 / 2 * 2.0 ** -f for f in fracs]], np.float32)
    q = quantise(net, np.concatenate([calib, -calib]), "hand")
    assert q.in_frac.tolist() == fracs
    return net, q


@needs_m0
def test_inputs_convert_as_to_fixed_at_every_edge_of_the_range(tmp_path):
    """A one-layer identity network (outputs the inputs' fixed-point values exactly) in formats Q-3 to Q30: zero
    and -0, subnormals, values just below and at one step, at 2^14 and 2^15 steps (the last converted and the first
    saturated), the largest floats, and random ones over every exponent; each output trunc(x 2^f) 2^-f saturated
    to +-32767, as to_fixed and IntPolicy; an input no weight reads is only checked, and a NaN or infinity
    anywhere gives the safe action."""
    fracs = [-3, 0, 7, 13, 16, 22, 30]
    net, q = _identity_net(fracs, skip=2)
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    rng = np.random.default_rng(11)
    rows = []
    for f in fracs:  # edges in each input's own format, the others random
        step = 2.0 ** -f
        for v in (0.0, -0.0, 1e-45, -3e-39, 0.49 * step, step, -step, 1.5 * step, (2**14 - 0.5) * step,
                  2**14 * step, -(2**15 - 1) * step, 2**15 * step, -(2**15 + 0.5) * step, 3.4e38, -3.4e38):
            r = rng.normal(0, 1, len(fracs)) * 2.0 ** -np.array(fracs, np.float64) * 1000
            r[fracs.index(f)] = v
            rows.append(r)
    exps = rng.integers(-150, 128, (200, len(fracs)))
    rows += list(rng.choice([-1.0, 1.0], (200, len(fracs))) * rng.random((200, len(fracs))) * 2.0 ** exps)
    x = np.array(rows, np.float64).astype(np.float32)
    bad = x[:12].copy()
    for i in range(12):
        bad[i, i % len(fracs)] = (np.nan, np.inf, -np.inf)[i % 3]  # the skipped input (2) too
    x = np.concatenate([x, bad])
    got, _ = _emulate(tmp_path, x, len(fracs))
    want = IntPolicy(q).act(x)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    fixed = to_fixed(x[:-12], q.in_frac) * 2.0 ** -np.array(fracs, np.float64)
    fixed[:, 2] = 0.0
    np.testing.assert_array_equal(got[:-12], fixed.astype(np.float32))
    np.testing.assert_array_equal(got[-12:], np.zeros((12, len(fracs)), np.float32))


@needs_m0
def test_a_nonfinite_input_far_down_a_long_input_stage_leaves_through_a_near_exit(tmp_path):
    """90 inputs: the stage is longer than one branch reaches, so the nonfinite exit is repeated along it; a NaN or
    infinity in the first, a middle or the last input gives the safe action; otherwise the numpy model's bits."""
    rng = np.random.default_rng(5)
    net = random_net(rng, [90, 6, 2], 0.1)
    q = quantise(net, rng.normal(0, 1, (300, 90)).astype(np.float32), "test")
    asm, _, _ = network_asm("f", q.layers, [int(f) for f in q.in_frac], 11)
    assert ".Lf_bad1:" in asm
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    x = rng.normal(0, 1, (10, 90)).astype(np.float32)
    for i, j in enumerate((0, 44, 89, 89, 60)):
        x[i, j] = (np.nan, np.inf, -np.inf, np.nan, np.inf)[i]
    got, _ = _emulate(tmp_path, x, 2)
    want = IntPolicy(q).act(x)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(got[:5].view(np.uint32), np.tile(q.safe_bits, (5, 1)))


@needs_m0
def test_a_small_double_pendulum_sized_student_is_within_4x_the_floor_on_cortex_m0plus(tmp_path):
    """Issue 33 on the students where the floor is smallest (9-17-11-1 tanh, about 150 weights): every
    instruction of bpd_policy_run (the C around the assembly, the inputs' conversion, the output's) within 4x the
    floor on the emulated M0+, the numpy model's bits on 200 observations."""
    rng = np.random.default_rng(9)
    net = random_net(rng, [9, 17, 11, 1], 0.45)
    q = quantise(net, rng.normal(0, 0.5, (500, 9)).astype(np.float32), "test")
    generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    x = rng.normal(0, 0.3, (200, 9)).astype(np.float32)
    got, instr = _emulate(tmp_path, x, 1)
    np.testing.assert_array_equal(got.view(np.uint32), IntPolicy(q).act(x).view(np.uint32))
    floor = sum(int(np.count_nonzero(L.wq)) + L.wq.shape[0] for L in q.layers) + 17 + 11 + 1 + 2
    assert instr < 4 * floor, (instr, floor)


@needs_m0
def test_a_relu_row_shifted_past_32_bits_of_range_checks_only_its_sign(tmp_path):
    """2 -> 2 -> 2 -> 1 ReLU/clip: the second layer's second row (weights 0.01 and -0.003) shifts by 22, where
    its range's 15 bits and the shift pass 32 (a tanh row there adds its offset after the shift; a ReLU row has
    none): the sum shifted cannot pass 32767, so only a negative sum is clamped, to 0. The kernel is built (the
    default export of a ReLU student stopped on an assertion here) and the M0+ gives the numpy model's bits."""
    net = CollapsedNet([np.array([[1.0, 0.5], [0.5, -1.0]], np.float32),
                        np.array([[2.0, 0.0], [0.01, -0.003]], np.float32), np.array([[1.0, 1.0]], np.float32)],
                       [np.zeros(2, np.float32), np.array([0.1, 0.0], np.float32), np.zeros(1, np.float32)],
                       "relu", "clip", np.array([-4.0], np.float32), np.array([4.0], np.float32), [2, 2, 2, 1])
    q = quantise(net, np.array([[1.0] * 2, [-1.0] * 2], np.float32), "hand")
    assert q.layers[1].shift.tolist() == [14, 22]
    assert _plan_row(q.layers[1], 1, 0, 32767, 11).act == ("fold", 22, 37, True, False, False, 0)
    info = generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    assert info["thumb1"] is not None
    x = np.random.default_rng(7).normal(0, 2, (60, 2)).astype(np.float32)
    got, _ = _emulate(tmp_path, x, 1)
    np.testing.assert_array_equal(got.view(np.uint32), IntPolicy(q).act(x).view(np.uint32))
