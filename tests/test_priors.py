"""Each prior's KL against a Monte Carlo estimate of E_q[log q(w) - log p(w)], and the pruning rules.

Tolerance: 4 Monte Carlo standard errors (fixed seeds, 200 000 draws), plus, for the log-uniform
prior, the stated error bound of the published fit it uses.
"""

import math

import pytest
import torch

from training.priors import LOG_UNIFORM_FIT_ERROR, PRIORS, kl, log_prior, pruning_rule, pruning_threshold, student_kl
from training.student import BayesianStudent

N_DRAWS = 200_000
EULER_GAMMA = 0.5772156649015329
# log-uniform: log p(w) = -log|w| + C, C fixed so that the KL vanishes as alpha -> infinity
LOG_UNIFORM_C = -0.5 * math.log(2 * math.pi) - 0.5 - (EULER_GAMMA + math.log(2)) / 2


def monte_carlo_kl(prior: str, theta: float, log_alpha: float, scale: float, seed: int) -> tuple[float, float]:
    """Mean and standard error of log q(w) - log p(w) over draws w ~ N(theta, alpha theta^2)."""
    g = torch.Generator().manual_seed(seed)
    sigma = math.sqrt(math.exp(log_alpha)) * abs(theta)
    z = torch.randn(N_DRAWS, generator=g, dtype=torch.float64)
    w = theta + sigma * z
    log_q = -0.5 * math.log(2 * math.pi * sigma * sigma) - 0.5 * z * z
    log_p = log_prior(prior, w, scale)
    if prior == "log-uniform":
        log_p = log_p + LOG_UNIFORM_C
    d = log_q - log_p
    assert torch.isfinite(d).all(), "draws outside the prior's support"
    return d.mean().item(), d.std().item() / math.sqrt(N_DRAWS)


CASES = [  # (theta, log alpha, prior scale)
    (0.5, -4.0, 1.0), (-0.3, -1.0, 1.0), (0.2, 0.0, 0.5), (0.05, 2.0, 1.0), (1.5, 1.0, 2.0), (0.1, 3.0, 1.0),
]


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_kl_matches_monte_carlo(prior, case):
    theta, la, scale = CASES[case]
    if prior == "uniform":  # keep the posterior well inside [-a, a], where the stated KL is exact
        scale = abs(theta) * (1 + 8 * math.exp(la / 2)) + 1.0
    mc, se = monte_carlo_kl(prior, theta, la, scale, seed=1000 + case)
    got = kl(prior, torch.tensor(theta, dtype=torch.float64), torch.tensor(la, dtype=torch.float64), scale).item()
    tol = 4 * se + (LOG_UNIFORM_FIT_ERROR if prior == "log-uniform" else 0.0)
    assert abs(got - mc) <= tol, f"{prior}: closed form {got:.5f}, Monte Carlo {mc:.5f} +- {se:.5f}"


def test_gaussian_kl_known_value_and_minimum():
    # theta = 0 is not reachable with sigma^2 = alpha theta^2; at theta = 1, alpha = 1, s = 1:
    # KL = log 1 - 0.5 log 1 + (1 + 1) / 2 - 0.5 = 0.5
    one = torch.tensor(1.0, dtype=torch.float64)
    assert kl("gaussian", one, torch.tensor(0.0, dtype=torch.float64), 1.0).item() == pytest.approx(0.5, abs=1e-7)
    # at fixed alpha the KL is smallest at theta^2 = s^2 / (1 + alpha)
    la, s = 2.0, 0.7
    theta = torch.tensor(s / math.sqrt(1 + math.exp(la)), dtype=torch.float64, requires_grad=True)
    kl("gaussian", theta, torch.tensor(la, dtype=torch.float64), s).backward()
    assert abs(theta.grad.item()) < 1e-6


def test_uniform_kl_does_not_pull_weights_to_zero():
    # the flat prior's KL depends on sigma alone: at fixed log sigma^2 it is the same for every theta
    f64 = torch.float64
    vals = [kl("uniform", torch.tensor(t, dtype=f64), torch.tensor(-2 * math.log(t), dtype=f64), 3.0)
            for t in (0.1, 0.5, 2.0)]
    assert max(vals).item() - min(vals).item() < 1e-6


def test_pruning_rules():
    assert pruning_threshold("log-uniform", 3.0, 10.0) == 3.0
    assert pruning_threshold("gaussian", 3.0, 10.0) == 3.0 and pruning_threshold("laplace", 2.0, 8.0) == 2.0
    assert pruning_threshold("uniform", 3.0, 10.0) > 10.0
    assert "no sparsity by construction" in pruning_rule("uniform", 3.0)
    # a uniform-prior student keeps every weight, even those with log alpha at the clip
    st = BayesianStudent(2, 1, [3], threshold=pruning_threshold("uniform", 3.0, 10.0), log_alpha_clip=10.0)
    with torch.no_grad():
        for layer in st.layers:
            layer.log_sigma2.fill_(20.0)
    assert st.sparsity() == 0.0
    with pytest.raises(ValueError):
        pruning_threshold("cauchy", 3.0, 10.0)


@pytest.mark.parametrize("prior", PRIORS)
def test_student_kl_sums_layers_and_has_gradients(prior):
    torch.manual_seed(0)
    st = BayesianStudent(3, 2, [4], init_log_sigma2=-4.0)
    total = student_kl(st, prior, 2.0)
    by_hand = sum(kl(prior, layer.theta, layer.log_alpha, 2.0).sum() for layer in st.layers)
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-6)
    total.backward()
    for layer in st.layers:
        assert layer.log_sigma2.grad is not None and layer.log_sigma2.grad.abs().sum() > 0
