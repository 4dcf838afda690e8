"""Networks of the distillation: the Bayesian student actor and the twin critics.

Both work in normalised units: observations standardised with the dataset statistics, actions
scaled to [-1, 1]. The student file carries the statistics and bounds needed to undo that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from bpd.errors import BpdError
from training.mlp import MLPPolicy
from training.svdo import LinearSVDO

STUDENT_FORMAT = "bpd-student"
STUDENT_FORMAT_VERSION = 1
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class BayesianStudent(nn.Module):
    """MLP of sparse variational dropout layers, tanh-squashed output in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str = "tanh",
                 threshold: float = 3.0, log_alpha_clip: float = 10.0, init_log_sigma2: float = -10.0) -> None:
        super().__init__()
        widths = [obs_dim, *hidden, act_dim]
        self.layers = nn.ModuleList(
            LinearSVDO(i, o, threshold, log_alpha_clip, init_log_sigma2) for i, o in zip(widths[:-1], widths[1:]))
        self.act = ACTIVATIONS[activation]()
        self.activation = activation

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        h = obs_norm
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return torch.tanh(h)

    def kl(self) -> torch.Tensor:
        return sum(layer.kl() for layer in self.layers)

    def weight_count(self) -> int:
        return sum(layer.theta.numel() for layer in self.layers)

    @torch.no_grad()
    def sparsity(self) -> float:
        """Fraction of weights pruned by the threshold."""
        kept = sum(layer.mask().sum().item() for layer in self.layers)
        return 1.0 - kept / self.weight_count()

    @torch.no_grad()
    def collapse(self, obs_mean: np.ndarray, obs_std: np.ndarray, action_low: np.ndarray,
                 action_high: np.ndarray) -> MLPPolicy:
        """The deterministic masked network, mapping raw observations to env actions."""
        return MLPPolicy(weights=[l.deterministic_weight().numpy().astype(np.float32) for l in self.layers],
                         biases=[l.bias.detach().numpy().astype(np.float32) for l in self.layers],
                         activation=self.activation, output="tanh", obs_mean=np.asarray(obs_mean, np.float32),
                         obs_std=np.asarray(obs_std, np.float32), action_low=np.asarray(action_low, np.float32),
                         action_high=np.asarray(action_high, np.float32))


class Critic(nn.Module):
    """Twin Q networks on (normalised observation, normalised action)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()

        def mlp() -> nn.Sequential:
            widths, mods = [obs_dim + act_dim, *hidden], []
            for i, o in zip(widths[:-1], widths[1:]):
                mods += [nn.Linear(i, o), nn.ReLU()]
            return nn.Sequential(*mods, nn.Linear(widths[-1], 1))

        self.q1, self.q2 = mlp(), mlp()

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def save_student(path: str | Path, student: BayesianStudent, meta: dict, stats: dict[str, np.ndarray]) -> None:
    """Write the student file: weights, log sigma^2, threshold, normalisation, bounds and provenance."""
    from bpd.io import atomic_write

    blob = {"format": STUDENT_FORMAT, "format_version": STUDENT_FORMAT_VERSION, "meta": meta,
            "stats": {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in stats.items()},
            "state_dict": {k: v.detach().clone() for k, v in student.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_student(path: str | Path) -> tuple[BayesianStudent, dict, dict[str, np.ndarray]]:
    """Load a student file with torch's weights-only reader (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise BpdError(f"{path}: no such file")
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many types for corrupt archives
        raise BpdError(f"{path}: not a readable student file ({e.__class__.__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") not in (STUDENT_FORMAT, "bpd-checkpoint"):
        raise BpdError(f"{path}: not a bpd student file")
    meta = blob["meta"]
    student = BayesianStudent(meta["obs_dim"], meta["act_dim"], meta["hidden"], meta["activation"],
                              meta["threshold"], meta["log_alpha_clip"])
    try:
        student.load_state_dict(blob["state_dict"] if "state_dict" in blob else blob["student"])
    except RuntimeError as e:
        raise BpdError(f"{path}: student weights do not match its description ({str(e).splitlines()[0]})") from None
    student.eval()
    return student, meta, {k: v.numpy() for k, v in blob["stats"].items()}
