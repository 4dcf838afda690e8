"""Collapse a policy to the deterministic network that ships: fold the observation scale into the
first layer, remove dead neurons, and express the output as tanh or clip plus an affine map to the
environment's action units.

The observation mean is not folded into the bias: it stays an input offset, subtracted before the
first layer. Folded, W (x - m) / s + b = (W / s) x + (b - W m / s), and on an observation that barely
varies (s small against |m|, such as the cosine of a balanced joint) the float32 sum cancels two large
terms; on the double pendulum that cost 3e-5 of the action. Subtracting x - m first is exact for
nearby floats, so the shipped float network tracks the student to float32 rounding of its own size.

Dead neurons: a hidden unit with no surviving outgoing weight is dropped; a unit with no surviving
incoming weight outputs the constant act(bias), which is added to the next layer's bias through its
outgoing weights, and the unit is dropped. Repeated until nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bpd.errors import BpdError
from training.mlp import LayerSizes, MLPPolicy, hidden_chain
from training.mlp import activation as hidden_activation


@dataclass
class CollapsedNet(LayerSizes):
    """y = W_L act(... act(W_0 (x - in_offset) + b_0) ...) + b_L on raw observations x, then
    output "tanh": action = out_offset + out_scale * tanh(y); output "clip": action = clip(y, low, high)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str
    output: str
    action_low: np.ndarray
    action_high: np.ndarray
    widths_before: list[int] = field(default_factory=list)
    in_offset: np.ndarray | None = None  # the first layer reads x - in_offset (None: x)

    @property
    def out_scale(self) -> np.ndarray:
        return ((self.action_high - self.action_low) / 2).astype(np.float32)

    @property
    def out_offset(self) -> np.ndarray:
        return ((self.action_high + self.action_low) / 2).astype(np.float32)

    @property
    def widths(self) -> list[int]:
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Reference forward pass in float64."""
        h = np.asarray(obs, dtype=np.float64)
        if self.in_offset is not None:
            h = h - self.in_offset.astype(np.float64)
        h = hidden_chain(h, self.weights, self.biases, self.activation)
        if self.output == "tanh":
            return self.out_offset + self.out_scale * np.tanh(h)
        return np.clip(h, self.action_low, self.action_high)


    def folded(self) -> CollapsedNet:
        """The same function with the input offset folded into the first bias (b - W m), for consumers
        that take a plain chain of affine layers (integer inference, third-party code generators)."""
        if self.in_offset is None:
            return self
        w0 = self.weights[0].astype(np.float64)
        b0 = (self.biases[0].astype(np.float64) - w0 @ self.in_offset.astype(np.float64)).astype(np.float32)
        return CollapsedNet([self.weights[0], *self.weights[1:]], [b0, *self.biases[1:]], self.activation,
                            self.output, self.action_low, self.action_high, list(self.widths_before))


def fold_normalisation(w0: np.ndarray, b0: np.ndarray, mean: np.ndarray,
                       std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (x - m) / s + b = (W / s) x + (b - W m / s). Zero weights stay zero."""
    w = w0 / std[None, :]
    return w.astype(np.float32), (b0 - w @ mean).astype(np.float32)


def fold_scale(w0: np.ndarray, std: np.ndarray) -> np.ndarray:
    """W (x - m) / s = (W / s) (x - m): the scale folded, the offset left to the input."""
    return (w0.astype(np.float64) / std[None, :]).astype(np.float32)


def remove_dead_neurons(weights: list[np.ndarray], biases: list[np.ndarray],
                        activation: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Drop hidden units that cannot affect the output, folding constant units forward.
    Returns new (weights, biases); raises BpdError if some hidden layer loses every unit."""
    ws = [w.astype(np.float64).copy() for w in weights]
    bs = [b.astype(np.float64).copy() for b in biases]
    changed = True
    while changed:
        changed = False
        for i in range(len(ws) - 1):  # hidden layer i = outputs of ws[i], inputs of ws[i+1]
            no_out = ~(ws[i + 1] != 0).any(axis=0)
            no_in = ~(ws[i] != 0).any(axis=1)
            const = no_in & ~no_out
            if const.any():
                bs[i + 1] = bs[i + 1] + ws[i + 1][:, const] @ hidden_activation(activation, bs[i][const])
            drop = no_out | no_in
            if drop.any():
                keep = ~drop
                ws[i], bs[i] = ws[i][keep], bs[i][keep]
                ws[i + 1] = ws[i + 1][:, keep]
                changed = True
    for i, w in enumerate(ws[:-1]):
        if w.shape[0] == 0:
            raise BpdError(f"every path through hidden layer {i + 1} is pruned: the policy is a constant; "
                           "a BPD student needs a lower KL weight or a higher threshold, a magnitude-pruned one "
                           "a larger nonzero budget")
    return [w.astype(np.float32) for w in ws], [b.astype(np.float32) for b in bs]


def collapse(policy: MLPPolicy, remove_dead: bool = True) -> CollapsedNet:
    """From a (masked) MLP policy to the shipped network (remove_dead=False keeps every unit,
    to show what a dense exporter would be handed without bpd's collapse)."""
    before = [policy.obs_dim] + [w.shape[0] for w in policy.weights]
    ws = [w.copy() for w in policy.weights]
    bs = [b.copy() for b in policy.biases]
    ws[0] = fold_scale(ws[0], policy.obs_std.astype(np.float64))
    offset = np.asarray(policy.obs_mean, np.float32)
    if remove_dead:
        ws, bs = remove_dead_neurons(ws, bs, policy.activation)
    return CollapsedNet(weights=ws, biases=bs, activation=policy.activation, output=policy.output,
                        action_low=policy.action_low.astype(np.float32),
                        action_high=policy.action_high.astype(np.float32), widths_before=before,
                        in_offset=offset if offset.any() else None)
