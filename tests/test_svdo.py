"""Sparse variational dropout, the loss weights and the eta schedules, against hand-computed numbers."""

import math

import numpy as np
import pytest
import torch

from training.distill import eta_at, lambda_weight
from training.svdo import K1, K2, K3, LinearSVDO, kl_approx


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("la", [-8.0, -3.0, 0.0, 1.0, 3.0, 8.0])
def test_kl_matches_molchanov_formula(la):
    # -KL = k1 sigmoid(k2 + k3 la) - 0.5 log(1 + 1/alpha) - k1
    expected = -(K1 * sigmoid(K2 + K3 * la) - 0.5 * math.log1p(math.exp(-la)) - K1)
    assert kl_approx(torch.tensor(la, dtype=torch.float64)).item() == pytest.approx(expected, rel=1e-12)


def test_kl_known_values():
    # hand-computed: la = 0 -> 0.63576 * (1 - 0.86682) + 0.5 * 0.69315 = 0.08467 + 0.34657
    assert kl_approx(torch.tensor(0.0, dtype=torch.float64)).item() == pytest.approx(0.43124, abs=1e-5)
    # large alpha: KL -> 0 from above; small alpha: KL grows like -0.5 la
    assert 0 < kl_approx(torch.tensor(10.0, dtype=torch.float64)).item() < 1e-4
    big = kl_approx(torch.tensor(-20.0, dtype=torch.float64)).item()
    assert big == pytest.approx(K1 - K1 * sigmoid(K2 - 20 * K3) + 10.0, rel=1e-9)
    # monotone decreasing in log alpha
    la = torch.linspace(-10, 10, 101, dtype=torch.float64)
    assert (kl_approx(la).diff() < 0).all()


def test_log_alpha_is_clipped_and_masks_at_threshold():
    layer = LinearSVDO(3, 2, threshold=3.0, log_alpha_clip=8.0)
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([[1.0, 1e-6, 0.5], [2.0, -1.0, 1e-2]]))
        # log sigma^2 chosen so log alpha = [[-5, clipped to 8, 3], [0, 2.999, 2.9]] before clipping
        la_target = torch.tensor([[-5.0, 30.0, 3.0], [0.0, 2.999, 2.9]])
        layer.log_sigma2.copy_(la_target + torch.log(layer.theta ** 2 + 1e-8))
    la = layer.log_alpha
    assert la[0, 1].item() == pytest.approx(8.0)  # clipped
    assert la[0, 0].item() == pytest.approx(-5.0, abs=1e-4)
    assert torch.equal(layer.mask(), torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    w = layer.deterministic_weight()
    assert w[0, 1] == 0 and w[0, 2] == 0 and w[0, 0] == 1.0 and w[1, 1] == -1.0
    # eval mode uses exactly the masked weights
    layer.eval()
    x = torch.tensor([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(layer(x).detach().numpy(), (x @ w.T + layer.bias).detach().numpy(), rtol=1e-6)


def test_local_reparameterisation_moments():
    torch.manual_seed(0)
    layer = LinearSVDO(2, 1)
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.zero_()
        layer.log_sigma2.copy_(torch.log(torch.tensor([[0.25, 1.0]])))  # sigma^2 = alpha theta^2
    x = torch.tensor([[2.0, 1.0]]).repeat(200_000, 1)
    y = layer.train()(x).detach()
    # mean = 2*1 + 1*(-2) = 0, var = 4*0.25 + 1*1 = 2
    assert y.mean().item() == pytest.approx(0.0, abs=0.02)
    assert y.var().item() == pytest.approx(2.0, rel=0.02)


def test_layer_kl_sums_weights():
    layer = LinearSVDO(4, 3)
    assert layer.kl().item() == pytest.approx(kl_approx(layer.log_alpha).sum().item())


def test_lambda_normalisation():
    q = torch.tensor([-2.0, 4.0, 6.0])  # mean |Q| = 4
    lam = lambda_weight(q, alpha=2.5)
    assert lam.item() == pytest.approx(0.625)
    assert not lam.requires_grad
    qg = q.clone().requires_grad_(True)
    assert not lambda_weight(qg, 2.5).requires_grad


@pytest.mark.parametrize("schedule,step,expected", [
    ("constant", 0, 0.8), ("constant", 500, 0.8),
    ("linear", 0, 0.0), ("linear", 250, 0.4), ("linear", 500, 0.8), ("linear", 900, 0.8),
    ("exponential", 0, 0.0),
    ("exponential", 250, 0.8 * (1 - math.exp(-2.5)) / (1 - math.exp(-5))),
    ("exponential", 500, 0.8), ("exponential", 1000, 0.8),
])
def test_eta_schedules(schedule, step, expected):
    # total 1000 steps, ramp over the first half, eta_max 0.8
    assert eta_at(step, 1000, 0.8, schedule, 0.5) == pytest.approx(expected, rel=1e-12)


def test_eta_unknown_schedule():
    with pytest.raises(ValueError):
        eta_at(1, 10, 1.0, "cosine", 0.5)
