"""Priors for the student's weights and the KL term each one puts in the distillation loss.

Every Bayesian student weight has the posterior q(w) = N(theta, sigma^2) with sigma^2 = alpha theta^2,
alpha = exp(log alpha) clipped to [e^-c, e^c] (c = --log-alpha-clip), exactly the noise the local
reparameterisation samples in training (training/svdo.py). Per weight, with log sigma^2 = log alpha +
log theta^2 and Phi, erf the normal CDF and error function:

log-uniform, p(|w|) proportional to 1/|w| (sparse variational dropout; improper, so the KL is defined
    up to a constant, fixed so that KL -> 0 as alpha -> infinity):
        KL = -0.5 log alpha + E_{z ~ N(0,1)} log|1 + sqrt(alpha) z| + (gamma + log 2) / 2,
    which has no closed form; we use the published fit (Molchanov et al. 2017, eq. 14)
        KL ~= k1 - k1 sigmoid(k2 + k3 log alpha) + 0.5 log(1 + 1/alpha),
    k1 = 0.63576, k2 = 1.87320, k3 = 1.48695. Its error against the expectation above is below
    0.01 nats per weight for log alpha in [-8, 8] (measured by Monte Carlo in tests/test_priors.py).
    Pruning rule: log alpha >= threshold (3: alpha >= 20, a dropout rate of about 0.95).

Gaussian N(0, s^2) (closed form):
        KL = log s - 0.5 log sigma^2 + (sigma^2 + theta^2) / (2 s^2) - 0.5.
    At fixed alpha it is smallest at theta^2 = s^2 / (1 + alpha), so a weight the data does not hold
    drifts to small theta with alpha at the clip. Pruning rule: the signal-to-noise rule,
    theta^2 / sigma^2 <= 1/20, i.e. the same log alpha >= threshold.

Laplace(0, b) (closed form, E|w| is the mean of a folded normal):
        KL = log(2 b) - 0.5 log(2 pi e sigma^2) + E|w| / b,
        E|w| = sigma sqrt(2 / pi) exp(-theta^2 / (2 sigma^2)) + theta erf(theta / (sigma sqrt 2)).
    Pruning rule: the signal-to-noise rule, log alpha >= threshold.

Uniform on [-a, a]: a Gaussian posterior puts mass outside the prior's support, so the exact KL is
    infinite. We use the KL of q restricted to [-a, a], which is exact up to the posterior mass
    outside (negligible while |theta| + 5 sigma < a):
        KL = log(2 a) + E_q log q = log(2 a) - 0.5 log(2 pi e sigma^2).
    The prior is flat: nothing in it prefers w = 0, so it gives no sparsity by construction. Pruning
    rule: none; the collapsed student keeps every weight (its threshold is set above the clip).

Each KL is summed over the student's weights (biases carry no posterior) and enters the loss as
eta_t * kl_scale * KL, as the log-uniform one always has.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from training.distill_config import PRIORS
from training.svdo import kl_approx

if TYPE_CHECKING:
    from training.student import BayesianStudent

SPARSE_PRIORS = ("log-uniform", "gaussian", "laplace")
# Published fit error bound of the log-uniform KL approximation on log alpha in [-8, 8].
LOG_UNIFORM_FIT_ERROR = 0.01
_LOG_2PIE = math.log(2 * math.pi * math.e)


def kl(prior: str, theta: torch.Tensor, log_alpha: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Per-weight KL(N(theta, alpha theta^2) || prior); `scale` is s (Gaussian), b (Laplace) or a (uniform)."""
    if prior == "log-uniform":
        return kl_approx(log_alpha)
    log_var = log_alpha + torch.log(theta * theta + 1e-8)
    if prior == "gaussian":
        var = torch.exp(log_var)
        return math.log(scale) - 0.5 * log_var + (var + theta * theta) / (2 * scale * scale) - 0.5
    if prior == "laplace":
        sigma = torch.exp(0.5 * log_var)
        mean_abs = (sigma * math.sqrt(2 / math.pi) * torch.exp(-theta * theta / (2 * sigma * sigma))
                    + theta * torch.erf(theta / (sigma * math.sqrt(2))))
        return math.log(2 * scale) - 0.5 * (_LOG_2PIE + log_var) + mean_abs / scale
    if prior == "uniform":
        return math.log(2 * scale) - 0.5 * (_LOG_2PIE + log_var)
    raise ValueError(f"unknown prior {prior!r}")


def log_prior(prior: str, w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """log p(w) of each prior (the log-uniform one up to its additive constant), for Monte Carlo checks."""
    if prior == "log-uniform":
        return -torch.log(w.abs())
    if prior == "gaussian":
        return -0.5 * math.log(2 * math.pi * scale * scale) - w * w / (2 * scale * scale)
    if prior == "laplace":
        return -math.log(2 * scale) - w.abs() / scale
    if prior == "uniform":
        inside = w.abs() <= scale
        return torch.where(inside, torch.full_like(w, -math.log(2 * scale)), torch.full_like(w, -math.inf))
    raise ValueError(f"unknown prior {prior!r}")


def student_kl(student: BayesianStudent, prior: str, scale: float = 1.0) -> torch.Tensor:
    """KL of every weight of a Bayesian student (its `layers` are LinearSVDO) to the prior, summed."""
    return sum((kl(prior, layer.theta, layer.log_alpha, scale).sum() for layer in student.layers), torch.zeros(()))


def unit_gate_kl(student: BayesianStudent) -> torch.Tensor:
    """KL of the student's unit gates to the log-uniform prior (0 for a student without gates)."""
    return sum((layer.gate_kl() for layer in student.layers), torch.zeros(()))


def pruning_threshold(prior: str, threshold: float, log_alpha_clip: float) -> float:
    """The log alpha at which a weight is pruned under `prior`: the given threshold for the sparse
    priors, one above the clip (never reached) for the flat prior."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}")
    return threshold if prior in SPARSE_PRIORS else log_alpha_clip + 1.0


def pruning_rule(prior: str, threshold: float) -> str:
    """The pruning rule in words, as recorded in a run's summary and shown in tables."""
    if prior == "log-uniform":
        return f"log alpha >= {threshold:g}"
    if prior in SPARSE_PRIORS:
        return f"signal-to-noise: log alpha >= {threshold:g}"
    return "none (flat prior: no sparsity by construction)"
