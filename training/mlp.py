"""A plain numpy MLP policy: the common deterministic form of teachers and collapsed students."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """The hidden activation by name: tanh or relu."""
    return np.tanh(x) if name == "tanh" else np.maximum(x, 0.0)


def hidden_chain(h: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray], act: str) -> np.ndarray:
    """The affine layers with the hidden activation between them (none after the last), in h's dtype."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T.astype(h.dtype) + b
        if i < len(weights) - 1:
            h = activation(act, h)
    return h


class LayerSizes:
    """Sizes of a network held as `weights` [out, in] and `biases` lists."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @property
    def obs_dim(self) -> int:
        return self.weights[0].shape[1]

    @property
    def act_dim(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def hidden(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    @property
    def params_total(self) -> int:
        """Every weight and bias."""
        return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases)))

    @property
    def params_nonzero(self) -> int:
        return int(sum(np.count_nonzero(w) + np.count_nonzero(b) for w, b in zip(self.weights, self.biases)))


@dataclass
class MLPPolicy(LayerSizes):
    """Maps raw observations to actions in the environment's units.

    h = (obs - obs_mean) / obs_std; hidden layers h = act(W h + b); y = W_L h + b_L;
    output "tanh": low + (tanh(y) + 1) / 2 * (high - low); output "clip": clip(y, low, high).
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str
    output: str
    obs_mean: np.ndarray
    obs_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray

    def pre_output(self, obs: np.ndarray) -> np.ndarray:
        """y, what the output map takes: the last layer's output (a teacher may clip it, training/teacher.py)."""
        return hidden_chain((np.asarray(obs, dtype=np.float32) - self.obs_mean) / self.obs_std, self.weights,
                            self.biases, self.activation)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action(s) for one observation [obs_dim] or a batch [n, obs_dim]."""
        h = self.pre_output(obs)
        if self.output == "tanh":
            return self.action_low + (np.tanh(h) + 1.0) * 0.5 * (self.action_high - self.action_low)
        return np.clip(h, self.action_low, self.action_high)
