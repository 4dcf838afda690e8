"""Deterministic students for the ablations that remove the Bayesian part of BPD.

The student has BPD's shape and is trained with BPD's loss minus the KL term (value term and
behaviour cloning), made sparse the way a practitioner would:

dense      no sparsity: a network of given widths (the ablation sizes it to BPD's collapsed widths).
magnitude  global magnitude pruning to a fixed count of nonzero parameters of the collapsed student
           (training/live.py; BPD's count for the same environment and seed), pruned gradually on the
           cubic schedule of Zhu and Gupta (2017) between two fractions of training, then fine-tuned
           with the mask fixed.
l1         an L1 penalty on the weights (its weight follows the KL schedule's shape), then a
           magnitude threshold: weights with |theta| below it are removed when the student is
           evaluated and saved.

The student is stored in the Bayesian student format so evaluation, export and benchmarking read
it unchanged: log sigma^2 is a fixed buffer, -30 for a kept weight (alpha <= e^-10 after the clip,
below any pruning threshold) and +30 for a removed one (alpha at the clip, above it); removed
weights are also zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.distill_config import PLAIN_STUDENTS
from training.live import collapsed_nonzero, cut_in_order, least_collapsed
from training.student import BayesianStudent

KEPT, REMOVED = -30.0, 30.0


def cubic_keep(step: int, total: int, n_weights: int, keep: int, start: float, end: float) -> int:
    """What is kept at `step` of `total` on the cubic schedule (of n_weights, to keep; magnitude pruning counts
    the collapsed student's parameters): all before start*total, `keep` from end*total, and in between sparsity
    s_f (1 - (1 - q)^3), q the progress from start to end."""
    p = step / total
    if p < start:
        return n_weights
    q = 1.0 if end <= start else min(1.0, (p - start) / (end - start))
    final_sparsity = 1.0 - keep / n_weights
    return n_weights - round(final_sparsity * (1.0 - (1.0 - q) ** 3) * n_weights)


class PlainStudent(BayesianStudent):
    """BPD's student without a posterior: deterministic weights with an explicit mask."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str = "tanh",
                 mode: str = "dense", l1_threshold: float = 1e-2, keep: int | None = None,
                 prune_start: float = 0.2, prune_end: float = 0.6, prune_every: int = 100) -> None:
        super().__init__(obs_dim, act_dim, hidden, activation, threshold=3.0, log_alpha_clip=10.0)
        if mode not in PLAIN_STUDENTS:
            raise ValueError(f"unknown plain student {mode!r}")
        least = least_collapsed([obs_dim, *hidden, act_dim])
        if mode == "magnitude" and (keep is None or not least <= keep <= self.params_total()):
            raise ValueError(f"magnitude pruning keeps between {least} and {self.params_total()} parameters, "
                             f"not {keep}")
        self.mode, self.l1_threshold, self.keep = mode, l1_threshold, keep
        self.prune_start, self.prune_end, self.prune_every = prune_start, prune_end, prune_every
        self._within: int | None = None  # a count the mask's collapsed student is known to be within
        for layer in self.layers:
            shape = layer.log_sigma2.shape
            del layer.log_sigma2
            layer.register_buffer("log_sigma2", torch.full(shape, KEPT))

    def bias_count(self) -> int:
        return sum(layer.bias.numel() for layer in self.layers)

    def params_total(self) -> int:
        return self.weight_count() + self.bias_count()

    def collapsed_nonzero(self) -> int:
        """Nonzero parameters of the collapsed student the mask leaves (training/live.py)."""
        return collapsed_nonzero([layer.mask() for layer in self.layers])

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        h = obs_norm
        dense = self.training and self.mode == "l1"  # L1 trains the whole network, thresholds at evaluation
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.theta if dense else layer.deterministic_weight(), layer.bias)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return torch.tanh(h)

    def kl(self) -> torch.Tensor:
        return torch.zeros(())

    def l1(self) -> torch.Tensor:
        return sum((layer.theta.abs().sum() for layer in self.layers), torch.zeros(()))

    @torch.no_grad()
    def set_mask(self, keep_masks: list[torch.Tensor]) -> None:
        for layer, m in zip(self.layers, keep_masks):
            layer.log_sigma2.copy_(torch.where(m, torch.tensor(KEPT), torch.tensor(REMOVED)))
            if self.mode == "magnitude":
                layer.theta.mul_(m.to(layer.theta.dtype))

    @torch.no_grad()
    def after_step(self, step: int, total: int) -> None:
        """Apply the sparsifier after an optimiser step at `step` of `total`."""
        if self.mode == "l1":
            self.set_mask([layer.theta.abs() >= self.l1_threshold for layer in self.layers])
        elif self.mode == "magnitude":
            assert self.keep is not None  # __init__ requires it for magnitude pruning
            k = cubic_keep(step, total, self.params_total(), self.keep, self.prune_start, self.prune_end)
            due = step % self.prune_every == 0 or step >= self.prune_end * total
            if due and (self._within is None or k < self._within):  # the mask is not yet known to be within k
                if k < self.collapsed_nonzero():
                    mags = torch.cat([(layer.theta * layer.mask()).abs().flatten() for layer in self.layers])
                    order = torch.argsort(mags, descending=True, stable=True)
                    self.set_mask([m.to(mags.device) for m in cut_in_order(
                        order, [layer.theta.shape for layer in self.layers], int(torch.count_nonzero(mags).item()), k)])
                self._within = k
            else:
                self.set_mask([layer.mask().bool() for layer in self.layers])  # keep removed weights at zero

    def pruning_done(self) -> bool:
        """Whether the student has reached its final sparsity (only such students may be handed over)."""
        if self.mode != "magnitude":
            return True
        assert self.keep is not None  # __init__ requires it for magnitude pruning
        return self.collapsed_nonzero() <= self.keep
