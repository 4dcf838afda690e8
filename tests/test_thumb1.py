"""The integer kernel's Thumb-1 assembly (export/thumb1.py) on the emulated Cortex-M0+, against known answers:
hand-computed networks, and the numpy model (IntPolicy) bit for bit on wider ones whose rows take every path
(shifts of either sign, both clamps, dead units, rows of more weights than one load takes)."""

import shutil
import subprocess

import numpy as np
import pytest

from export.c_export import CPolicy
from export.collapse import CollapsedNet
from export.fixed_point import IntPolicy, generate_int_kernel, quantise
from export.thumb1 import FRAME_WORDS, FrameTooSmall, network_asm
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
        network_asm("f", q.layers, 4, 11)
    info = generate_int_kernel(net, q, tmp_path, "0" * 64, "t")
    assert info["thumb1"] is None and "bpd_t1_net" not in (tmp_path / "policy.c").read_text()
    x = rng.normal(0, 1, (20, 4)).astype(np.float32)
    np.testing.assert_array_equal(CPolicy(tmp_path).act(x).view(np.uint32), IntPolicy(q).act(x).view(np.uint32))
