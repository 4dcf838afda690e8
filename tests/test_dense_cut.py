"""--cut-dense: the cost cut that keeps whole units and trains every weight between them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bpd.errors import BpdError
from firmware_host.measure.dsp_meter import mask_cycles
from tests.conftest import run_bpd
from training.student import BayesianStudent, dense_fill, dense_unit_cut, live_units


def _student() -> BayesianStudent:
    """3-4-1, log sigma^2 -2 everywhere: a theta of 0.01 has log alpha 7.2 (cut at the threshold 3), one of 3 or
    more about -4 (kept). Unit 3 keeps no input (it passes on a constant, tanh of its bias, through its 5.5);
    unit 1 keeps two of its three. Signal (1/alpha = theta^2 e^2, summed over the kept weights in and out; the
    factor e^2 left out): unit 0 100, unit 1 48, unit 3 30.25, unit 2 18."""
    s = BayesianStudent(3, 1, [4])
    with torch.no_grad():
        s.layers[0].theta.copy_(torch.tensor([[5.0, 5, 5], [4, 4, 0.01], [3, 0.01, 0.01], [0.01, 0.01, 0.01]]))
        s.layers[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.6]))
        s.layers[1].theta.copy_(torch.tensor([[5.0, 4, 3, 5.5]]))
        for layer in s.layers:
            layer.log_sigma2.fill_(-2.0)
    return s


def _cost(ms) -> float:  # 10 a live hidden unit, 1 a weight
    return 10.0 * live_units([torch.as_tensor(m) for m in ms]) + sum(int(m.sum()) for m in ms)


def test_the_dense_cut_drops_the_least_signal_until_the_dense_network_fits():
    """A dense 3-u-1 network costs 14u. Budget 30 keeps two units: unit 2 goes, then unit 3; unit 1's cut input
    is among the weights trained (from zero). Budget 42: only unit 2 goes, unit 3 stays with its inputs filled.
    Budget 13, below one unit: an error."""
    keep, fill = dense_unit_cut(_student(), _cost, 30)
    assert [m.int().tolist() for m in keep] == [[[1, 1, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]], [[1, 1, 0, 0]]]
    assert [m.int().tolist() for m in fill] == [[[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], [[1, 1, 0, 0]]]
    assert _cost([m.numpy() for m in fill]) == 28
    keep3, fill3 = dense_unit_cut(_student(), _cost, 42)
    assert fill3[1].int().tolist() == [[1, 1, 0, 1]] and keep3[0][3].int().tolist() == [0, 0, 0]
    assert fill3[0][3].int().tolist() == [1, 1, 1]
    with pytest.raises(BpdError, match="no dense network of the student's units costs at most 13"):
        dense_unit_cut(_student(), _cost, 13)


def test_the_dense_cut_never_empties_a_layer():
    """3-2-2-1, every weight kept; the first hidden layer's units carry the least signal (2.75 and 3.08 against
    18 and 27, the factor e^2 left out). Cost 10 a unit and 1 a weight: 1-1 units cost 25, 1-2 37. Budget 30:
    the weaker first-layer unit goes (37), its partner would leave the layer empty and is passed over, and the
    weaker second-layer unit goes (25)."""
    s = BayesianStudent(3, 1, [2, 2])
    with torch.no_grad():
        s.layers[0].theta.copy_(torch.tensor([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6]]))
        s.layers[1].theta.fill_(1.0)
        s.layers[2].theta.copy_(torch.tensor([[5.0, 4.0]]))
        for layer in s.layers:
            layer.log_sigma2.fill_(-2.0)
    keep, fill = dense_unit_cut(s, _cost, 30)
    assert [m.int().tolist() for m in fill] == [[[0, 0, 0], [1, 1, 1]], [[0, 1], [0, 0]], [[1, 0]]]
    assert all(torch.equal(k, f) for k, f in zip(keep, fill))


def test_a_unit_whose_gate_is_off_goes_and_one_without_inputs_stays():
    """Unit gates: unit 0's gate cut (log alpha at the clip) takes it out whatever its weights; unit 3, with no
    kept input, stays (its constant reaches the output). A budget above the whole network's cost cuts nothing
    else."""
    s = BayesianStudent(3, 1, [4], unit_gates=True)
    with torch.no_grad():
        s.layers[0].theta.copy_(_student().layers[0].theta)
        s.layers[1].theta.copy_(_student().layers[1].theta)
        for layer in s.layers:
            layer.log_sigma2.fill_(-2.0)
        s.layers[0].gate_log_sigma2.fill_(-10.0)
        s.layers[0].gate_mu[0] = 0.001  # log alpha 3.8: at the threshold 3, off
    keep, fill = dense_unit_cut(s, _cost, 1000)
    assert fill[1].int().tolist() == [[0, 1, 1, 1]] and not keep[0][0].any()


def test_dense_fill_is_every_weight_between_live_units():
    m0 = torch.tensor([[1, 0], [0, 0], [0, 0]], dtype=torch.bool)  # unit 0 keeps an input; unit 2 an output only
    m1 = torch.tensor([[1, 0, 1]], dtype=torch.bool)
    assert [f.int().tolist() for f in dense_fill([m0, m1])] == [[[1, 1], [0, 0], [1, 1]], [[1, 0, 1]]]


@pytest.mark.parametrize("budget", [56, 30])
def test_freezing_on_a_fill_keeps_the_function_and_trains_the_weights_back_from_zero(budget):
    """At budget 56 (every unit fits) the frozen network computes what the threshold's did, unit 3's constant
    included; at 30 what the threshold's weights on units 0 and 1 compute. A step of gradient moves the weight
    filled from zero, not one of a unit cut."""
    s = _student()
    x = torch.tensor([[0.03, -0.02, 0.05], [-0.1, 0.04, 0.02]])  # small: the tanh not saturated
    s.eval()
    before = s(x)
    keep, fill = dense_unit_cut(s, _cost, budget)
    w0, w1 = s.layers[0].theta * keep[0], s.layers[1].theta * keep[1]
    want = torch.tanh(torch.tanh(x @ w0.T + s.layers[0].bias) @ w1.T + s.layers[1].bias)
    for i, layer in enumerate(s.layers):
        layer.freeze(True, None, keep[i], fill[i])
    assert all(torch.equal(layer.mask().bool(), f) for layer, f in zip(s.layers, fill))
    assert s.layers[0].theta[1, 2] == 0
    assert torch.allclose(s(x), want, atol=1e-6)
    if budget == 56:
        assert torch.allclose(s(x), before, atol=1e-6)
    s.train()
    s(x).sum().backward()
    grad = s.layers[0].theta.grad
    assert abs(grad[1, 2]) > 1e-4 and (grad[2, 0] == 0) == (budget == 30)


def test_distill_cut_dense_hands_over_a_dense_network_within_the_cycles(tiny_pipeline, tmp_path):
    """On the tiny pipeline, cut to 500 estimated cycles of the DSP kernel's layers with --cut-dense: the collapsed
    student's weights between its live units are all trained (none exactly zero) and cost at most 500; the flag
    without --prune-to-cycles is refused in one line."""
    from training.student import load_student

    out = tmp_path / "run"
    run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset", str(tiny_pipeline / "dataset.npz"),
            "--out", str(out), "--steps", "200", "--eval-every", "50", "--eval-episodes", "1", "--select-episodes",
            "1", "--hidden", "16", "16", "--critic-hidden", "32", "32", "--no-progress", "--kl-warmup", "none",
            "--finetune", "0.5", "--prune-to-cycles", "500", "--cut-dense")
    s, meta, stats = load_student(out / "student.pt")
    assert meta["step"] > 100
    ws = s.collapse(**stats).weights
    live = [np.ones(ws[0].shape[1], bool)] + [w.any(1) for w in ws[:-1]] + [np.ones(ws[-1].shape[0], bool)]
    for w, i, o in zip(ws, live[:-1], live[1:]):
        assert (w[np.ix_(o, i)] != 0).all()
    assert 0 < mask_cycles([w != 0 for w in ws]) <= 500
    r = run_bpd("distill", "--teacher", "t.npz", "--dataset", "d.npz", "--out", str(tmp_path / "x"), "--finetune",
                "0.5", "--cut-dense", check=False)
    assert r.returncode != 0 and "--cut-dense chooses the units" in r.stderr
