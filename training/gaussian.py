"""Diagonal Gaussian policies in pre-squash units: closed-form cross-entropy, entropy and KL.

Policies here act through a tanh: u ~ N(mu, sigma^2) per action dimension, normalised action
tanh(u) in [-1, 1]. Distillation losses compare teacher and student in u, where both are Gaussian,
so every cross-entropy and KL has a closed form:
    H(p)       = sum_d 0.5 * log(2 pi e sigma_p^2)
    Hx(p || q) = E_p[-log q] = sum_d log sigma_q + 0.5 log(2 pi) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2)
    KL(p || q) = Hx(p || q) - H(p)
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def log_prob(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(u; mu, exp(log_std)^2), summed over the last (action) dimension."""
    z = (u - mu) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1)


def entropy(log_std: torch.Tensor) -> torch.Tensor:
    return (log_std + 0.5 * (LOG_2PI + 1.0)).sum(-1)


def cross_entropy(mu_p: torch.Tensor, log_std_p: torch.Tensor, mu_q: torch.Tensor,
                  log_std_q: torch.Tensor) -> torch.Tensor:
    """Hx(p || q) = E_{u~p}[-log q(u)], summed over the action dimension."""
    var_p, var_q = torch.exp(2.0 * log_std_p), torch.exp(2.0 * log_std_q)
    return (log_std_q + 0.5 * LOG_2PI + (var_p + (mu_p - mu_q) ** 2) / (2.0 * var_q)).sum(-1)


def kl(mu_p: torch.Tensor, log_std_p: torch.Tensor, mu_q: torch.Tensor, log_std_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians, summed over the action dimension."""
    return cross_entropy(mu_p, log_std_p, mu_q, log_std_q) - entropy(log_std_p.expand_as(mu_p))


def temper(log_std: torch.Tensor, temperature: float) -> torch.Tensor:
    """log std of p^(1/T), renormalised: a Gaussian tempered by T has variance T * sigma^2 (the continuous
    counterpart of softmax(q / T); T < 1 sharpens)."""
    return log_std + 0.5 * math.log(temperature)
