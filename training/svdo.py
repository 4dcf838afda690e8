"""Sparse variational dropout (Molchanov, Ashukha and Vetrov, 2017) for linear layers.

Each weight has a Gaussian posterior N(theta, alpha * theta^2) under a log-uniform prior. We
optimise theta and log sigma^2 (additive reparameterisation); log alpha = log sigma^2 - log theta^2,
clipped. Training samples pre-activations with the local reparameterisation trick; inference uses
theta, zeroed where log alpha reaches the pruning threshold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Constants of the KL approximation (Molchanov et al. 2017, eq. 14).
K1, K2, K3 = 0.63576, 1.87320, 1.48695


def kl_approx(log_alpha: torch.Tensor) -> torch.Tensor:
    """Per-weight KL(q || log-uniform prior) ~= k1 - k1 * sigmoid(k2 + k3 log a) + 0.5 log(1 + 1/a)."""
    return K1 - K1 * torch.sigmoid(K2 + K3 * log_alpha) + 0.5 * F.softplus(-log_alpha)


class LinearSVDO(nn.Module):
    """A linear layer with a sparse variational dropout posterior over its weights."""

    def __init__(self, in_features: int, out_features: int, threshold: float = 3.0,
                 log_alpha_clip: float = 10.0, init_log_sigma2: float = -10.0, unit_gates: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.threshold, self.log_alpha_clip = threshold, log_alpha_clip
        self.theta = nn.Parameter(torch.empty(out_features, in_features))
        self.log_sigma2 = nn.Parameter(torch.full((out_features, in_features), init_log_sigma2))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.kaiming_uniform_(self.theta, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.bias, -bound, bound)
        self.deterministic = False  # set by freeze(): train the collapsed network, no weight noise
        # unit gates (group sparsity): each output unit's pre-activation is scaled by z ~ N(mu, sigma^2) under
        # the same log-uniform prior; a unit whose gate's log alpha reaches the threshold is pruned whole
        self.unit_gates = unit_gates
        if unit_gates:
            self.gate_mu = nn.Parameter(torch.ones(out_features))
            self.gate_log_sigma2 = nn.Parameter(torch.full((out_features,), init_log_sigma2))

    @torch.no_grad()
    def freeze(self, partners: bool = False, live: torch.Tensor | None = None,
               keep: torch.Tensor | None = None, fill: torch.Tensor | None = None) -> None:
        """Fix the current mask and train on as the deterministic masked layer: pruned weights are zeroed
        and their log sigma^2 set so that their log alpha stays at the clip whatever theta does (the mask
        is read from the parameters, so a saved student carries it), kept weights' log sigma^2 so far
        below that they stay kept; log sigma^2 takes no more gradient. partners: the pair partner of
        every kept weight (training/pairs.py) is kept too, from zero, among the live columns (live: the
        previous layer's surviving units; all by default). Idempotent: a layer already frozen keeps its mask
        (a resumed run sets the flags alone, with mark_frozen). keep: the mask to freeze on, in place of the
        threshold's (a budget's cut of it: training/student.py's budget_masks). fill (with keep, in place of the
        partners): the weights trained on, those outside keep from zero (training/student.py's dense_unit_cut)."""
        from training.pairs import with_partners_among

        keep = self.mask().bool() if keep is None else keep.bool() & self.mask().bool()
        self.theta.mul_(keep.to(self.theta.dtype))  # the partners below start from zero: the same function
        frozen = bool((self.log_sigma2.abs() == 40.0).all())
        if fill is not None and not frozen:
            keep = keep | fill.bool()
        elif partners and not frozen:
            k = with_partners_among(keep.cpu().numpy(), None if live is None else live.bool().cpu().numpy())
            keep = torch.as_tensor(k, device=keep.device)
        self.log_sigma2.copy_(torch.where(keep, torch.full_like(self.log_sigma2, -40.0),
                                          torch.full_like(self.log_sigma2, 40.0)))
        if self.unit_gates:
            units = self.unit_mask().bool()
            self.gate_mu.mul_(units.to(self.gate_mu.dtype))
            self.gate_log_sigma2.copy_(torch.where(units, torch.full_like(self.gate_log_sigma2, -40.0),
                                                   torch.full_like(self.gate_log_sigma2, 40.0)))
        self.mark_frozen()

    def mark_frozen(self) -> None:
        """The flags freeze() sets (not state: a resumed run's saved parameters are already frozen)."""
        self.log_sigma2.requires_grad_(False)
        if self.unit_gates:
            self.gate_log_sigma2.requires_grad_(False)
        self.deterministic = True

    @property
    def log_alpha(self) -> torch.Tensor:
        la = self.log_sigma2 - torch.log(self.theta * self.theta + 1e-8)
        return torch.clamp(la, -self.log_alpha_clip, self.log_alpha_clip)

    def mask(self) -> torch.Tensor:
        """1 where a weight survives pruning (log alpha below the threshold, and its unit's gate too), else 0."""
        keep = (self.log_alpha < self.threshold).to(self.theta.dtype)
        return keep * self.unit_mask()[:, None] if self.unit_gates else keep

    @property
    def gate_log_alpha(self) -> torch.Tensor:
        la = self.gate_log_sigma2 - torch.log(self.gate_mu * self.gate_mu + 1e-8)
        return torch.clamp(la, -self.log_alpha_clip, self.log_alpha_clip)

    def unit_mask(self) -> torch.Tensor:
        """1 for each output unit whose gate survives (every unit without gates)."""
        if not self.unit_gates:
            return torch.ones(self.out_features, dtype=self.theta.dtype, device=self.theta.device)
        return (self.gate_log_alpha < self.threshold).to(self.theta.dtype)

    def _scale(self) -> torch.Tensor:
        """Each unit's deterministic factor: its gate's mean where kept, 0 where pruned (1 without gates)."""
        return self.gate_mu * self.unit_mask() if self.unit_gates else torch.ones_like(self.bias)

    def deterministic_weight(self) -> torch.Tensor:
        return self.theta * self.mask() * self._scale()[:, None]

    def deterministic_bias(self) -> torch.Tensor:
        return self.bias * self._scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.deterministic:
            mean = F.linear(x, self.theta, self.bias)
            var = F.linear(x * x, torch.exp(self.log_alpha) * self.theta * self.theta)
            out = mean + torch.sqrt(var + 1e-8) * torch.randn_like(mean)
            if self.unit_gates:  # z ~ N(mu, sigma^2) per sample and unit
                z = self.gate_mu + torch.exp(0.5 * self.gate_log_sigma2) * torch.randn_like(out)
                out = out * z
            return out
        return F.linear(x, self.deterministic_weight(), self.deterministic_bias())

    def gate_kl(self) -> torch.Tensor:
        """KL of the unit gates to the log-uniform prior (0 without gates)."""
        return kl_approx(self.gate_log_alpha).sum() if self.unit_gates else torch.zeros(())

    def kl(self) -> torch.Tensor:
        return kl_approx(self.log_alpha).sum()

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, threshold={self.threshold}"
