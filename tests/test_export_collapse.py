"""Collapse: normalisation folding and dead-neuron removal on hand-built networks."""

import json
from pathlib import Path

import numpy as np
import pytest

from bpd.errors import BpdError
from export.collapse import collapse, fold_normalisation, remove_dead_neurons
from training.mlp import MLPPolicy

GOLDEN = json.loads((Path(__file__).parent / "golden" / "hand_net.json").read_text())


def golden_policy() -> MLPPolicy:
    g = GOLDEN
    return MLPPolicy([np.array(w, np.float32) for w in g["weights"]], [np.array(b, np.float32) for b in g["biases"]],
                     g["activation"], g["output"], *(np.array(g[k], np.float32) for k in
                                                      ("obs_mean", "obs_std", "action_low", "action_high")))


def test_golden_collapse_widths_and_outputs():
    net = collapse(golden_policy())
    assert net.widths == GOLDEN["widths_after"]  # unit 1 folded (constant), unit 3 dropped (dead)
    assert net.widths_before == [3, 4, 2]
    np.testing.assert_allclose(net.act(np.array(GOLDEN["inputs"])), GOLDEN["outputs"], atol=1e-6)
    np.testing.assert_allclose(golden_policy().act(np.array(GOLDEN["inputs"])), GOLDEN["outputs"], atol=1e-6)


def test_fold_normalisation_known():
    w, b = fold_normalisation(np.array([[2.0, 0.0]]), np.array([1.0]), np.array([1.0, 5.0]), np.array([2.0, 3.0]))
    # 2 (x0 - 1) / 2 + 0 + 1 = x0 + 0
    np.testing.assert_allclose(w, [[1.0, 0.0]])
    np.testing.assert_allclose(b, [0.0])


def test_constant_unit_folds_into_next_bias():
    # hidden unit 0 has no inputs: outputs relu(2) = 2, reaches the output with weight 3 -> bias 1 + 6
    ws = [np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 1.0]])]
    bs = [np.array([2.0, 0.0]), np.array([1.0])]
    w2, b2 = remove_dead_neurons(ws, bs, "relu")
    assert [w.shape for w in w2] == [(1, 2), (1, 1)]
    np.testing.assert_allclose(b2[1], [7.0])


def test_chain_of_dead_units_cascades():
    # layer-2 unit 0 only listens to layer-1 unit 0, which has no inputs: both fold away in turn
    ws = [np.array([[0.0], [1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0]])]
    bs = [np.array([0.5, 0.0]), np.zeros(2), np.zeros(1)]
    w2, b2 = remove_dead_neurons(ws, bs, "tanh")
    assert [w.shape for w in w2] == [(1, 1), (1, 1), (1, 1)]
    assert b2[2][0] == pytest.approx(np.tanh(np.tanh(0.5)), rel=1e-6)


def test_all_pruned_is_an_error():
    ws = [np.zeros((3, 2)), np.ones((1, 3))]
    with pytest.raises(BpdError, match="every path"):
        remove_dead_neurons(ws, [np.zeros(3), np.zeros(1)], "tanh")


def test_random_sparse_collapse_preserves_function():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ws = [rng.normal(size=(8, 5)) * (rng.random((8, 5)) < 0.3),
              rng.normal(size=(6, 8)) * (rng.random((6, 8)) < 0.3),
              rng.normal(size=(2, 6)) * (rng.random((2, 6)) < 0.5)]
        pol = MLPPolicy([w.astype(np.float32) for w in ws],
                        [rng.normal(size=w.shape[0]).astype(np.float32) for w in ws],
                        "tanh", "tanh", rng.normal(size=5).astype(np.float32),
                        rng.uniform(0.5, 2, 5).astype(np.float32),
                        np.array([-1, -2], np.float32), np.array([1, 3], np.float32))
        try:
            net = collapse(pol)
        except BpdError:
            continue
        x = rng.normal(size=(100, 5)) * 3
        np.testing.assert_allclose(net.act(x), pol.act(x), atol=1e-5)


def _near_constant_policy() -> MLPPolicy:
    """Observation 0 sits at 0.9988 +- 0.004 (the cosine of a balanced joint): folding its mean into
    the bias makes the first layer cancel terms of size |w| 0.9988 / 0.004 in float32."""
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal((1, 16)).astype(np.float32) / 4]
    bs = [np.zeros(16, np.float32), np.zeros(1, np.float32)]
    return MLPPolicy(ws, bs, "tanh", "tanh", np.array([0.9988, 0.0, 5.0], np.float32),
                     np.array([0.004, 1.0, 0.01], np.float32), np.array([-1.0], np.float32),
                     np.array([1.0], np.float32))


def test_input_offset_keeps_float32_close_to_the_student(tmp_path):
    from export.c_export import CPolicy, generate_c
    from export.onnx_export import OnnxPolicy, build_onnx, save_onnx

    pol = _near_constant_policy()
    rng = np.random.default_rng(4)
    obs = (pol.obs_mean + pol.obs_std * rng.standard_normal((2000, 3))).astype(np.float32)
    x = (obs.astype(np.float64) - pol.obs_mean.astype(np.float64)) / pol.obs_std.astype(np.float64)
    h = np.tanh(x @ pol.weights[0].T.astype(np.float64) + pol.biases[0])
    truth = np.tanh(h @ pol.weights[1].T.astype(np.float64) + pol.biases[1])  # the student in float64
    net = collapse(pol)
    np.testing.assert_allclose(net.in_offset, pol.obs_mean)
    np.testing.assert_allclose(net.act(obs), truth, atol=1e-6)
    save_onnx(build_onnx(net, {}), tmp_path / "p.onnx")
    generate_c(net, tmp_path, "auto", False, "0" * 64, "test")
    for form in (OnnxPolicy(tmp_path / "p.onnx").act(obs), CPolicy(tmp_path).act(obs)):
        assert np.abs(form - truth).max() < 2e-6
    # the folded form computes the same function in float64, and in float32 loses what the offset saves
    folded = net.folded()
    assert folded.in_offset is None
    np.testing.assert_allclose(folded.act(obs), truth, atol=1e-4)
    h = obs @ folded.weights[0].T + folded.biases[0]  # float32, as a device would
    h32 = np.tanh(h.astype(np.float32)) @ folded.weights[1].T + folded.biases[1]
    assert np.abs(np.tanh(h32) - truth).max() > 1e-5


def test_zero_mean_has_no_offset():
    pol = _near_constant_policy()
    pol.obs_mean = np.zeros(3, np.float32)
    assert collapse(pol).in_offset is None
