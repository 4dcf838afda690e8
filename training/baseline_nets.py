"""The networks of the distillation baselines (training/baselines.py): the student, a Gaussian in
pre-tanh units with weight masks for magnitude pruning and its pruning schedule; the teacher as a
Gaussian with its value; the small ReLU MLPs of the value functions; and the reader of a
stable-baselines3 zip that gives the teacher its log-std head and critic.
"""

from __future__ import annotations

import functools
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bpd.errors import BpdError
from training.live import collapsed_nonzero, cut_in_order, least_collapsed
from training.teacher import Teacher, sb3_weights

U_CLIP = 0.999  # atanh of normalised actions is taken after clipping to +-U_CLIP


class GaussianStudent(nn.Module):
    """MLP mean in pre-tanh units with a state-independent log std; weight masks for pruning."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str = "tanh",
                 init_log_std: float = -1.0, min_log_std: float = -5.0) -> None:
        super().__init__()
        widths = [obs_dim, *hidden, act_dim]
        # an nn.ModuleList of nn.Linear (ModuleList is not generic: the annotation says what it holds)
        self.layers: Sequence[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:]))
        for i, layer in enumerate(self.layers):
            self.register_buffer(f"mask{i}", torch.ones_like(layer.weight))
        self.log_std_param = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self.activation, self.min_log_std = activation, min_log_std

    def masks(self) -> list[torch.Tensor]:
        return [getattr(self, f"mask{i}") for i in range(len(self.layers))]

    def forward(self, obs_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = obs_norm
        for i, (layer, m) in enumerate(zip(self.layers, self.masks())):
            h = F.linear(h, layer.weight * m, layer.bias)
            if i < len(self.layers) - 1:
                h = torch.tanh(h) if self.activation == "tanh" else torch.relu(h)
        return h, self.log_std_param.clamp(self.min_log_std, 2.0).expand_as(h)

    def params_nonzero(self) -> int:
        """Nonzero parameters of the collapsed student (training/live.py): what its export ships."""
        return collapsed_nonzero(self.masks())

    @torch.no_grad()
    def prune_to(self, nonzero: int) -> None:
        """Global magnitude pruning of weights, largest first, to at most `nonzero` nonzero parameters of the
        collapsed student, weights plus biases (training/live.py cut_in_order)."""
        widths = [self.layers[0].in_features, *(l.out_features for l in self.layers)]
        if nonzero < (least := least_collapsed(widths)):
            raise BpdError(f"a budget of {nonzero} nonzero parameters is below {least}, the fewest a collapsed "
                           "student of these widths keeps with its output still depending on its input")
        mags = torch.cat([(l.weight * m).abs().flatten() for l, m in zip(self.layers, self.masks())])
        order = torch.argsort(mags, descending=True, stable=True)
        keep = cut_in_order(order, [m.shape for m in self.masks()], int(torch.count_nonzero(mags).item()), nonzero)
        for layer, m, new in zip(self.layers, self.masks(), keep):
            m.copy_(new.to(m.device, m.dtype))
            layer.weight.mul_(m)

    def to_policy(self, obs_mean: np.ndarray, obs_std: np.ndarray, low: np.ndarray, high: np.ndarray, **kw) -> Teacher:
        """The deterministic student tanh(mu_theta(s)) in the teacher format."""
        return Teacher(weights=[(l.weight * m).detach().cpu().numpy().astype(np.float32)
                                for l, m in zip(self.layers, self.masks())],
                       biases=[l.bias.detach().cpu().numpy().astype(np.float32) for l in self.layers],
                       activation=self.activation, output="tanh", obs_mean=np.asarray(obs_mean, np.float32),
                       obs_std=np.asarray(obs_std, np.float32), action_low=np.asarray(low, np.float32),
                       action_high=np.asarray(high, np.float32), **kw)


def prune_target(step: int, total_steps: int, dense: int, nonzero: int, start: float, end: float) -> int:
    """Gradual magnitude pruning (Zhu and Gupta 2017): dense until start, cubic down to nonzero at end."""
    s0, s1 = start * total_steps, end * total_steps
    if step < s0:
        return dense
    p = 1.0 if s1 <= s0 else min(1.0, (step - s0) / (s1 - s0))
    return int(round(nonzero + (dense - nonzero) * (1.0 - p) ** 3))


def relu_mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers of these widths with ReLU between them (the value functions, the sb3 critic)."""
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class TeacherModel(nn.Module):
    """The teacher as a Gaussian in pre-tanh units, and its value, from raw observations (on `device`)."""

    def __init__(self, t: Teacher, teacher_std: float, sb3: dict[str, np.ndarray] | None = None,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.t = t
        tensor = functools.partial(torch.as_tensor, device=device)
        self.ws = [tensor(w) for w in t.weights]
        self.bs = [tensor(b) for b in t.biases]
        self.mean_, self.std_ = tensor(t.obs_mean), tensor(t.obs_std)
        self.low_, self.high_ = tensor(t.action_low), tensor(t.action_high)
        self.log_std_head = None
        self.critic: nn.Sequential | None = None
        self.distribution = (f"fixed spread: sigma_T = {teacher_std:g} in pre-tanh units "
                             f"({t.algo} teacher is deterministic)")
        self.value_source = None
        self.fixed_log_std = math.log(teacher_std)
        if sb3 is not None:
            if "actor.log_std" in sb3:  # gSDE's: a noise whose spread depends on the state, not read here
                self.distribution += "; the zip's gSDE noise is not read"
            if "actor.log_std.weight" in sb3:
                self.log_std_head = (tensor(sb3["actor.log_std.weight"]), tensor(sb3["actor.log_std.bias"]))
                self.distribution = "the SAC actor's log-std head, clamped to [-20, 2] as SAC does"
            critic = _sb3_critic(sb3)
            if critic is not None:
                self.critic = critic.to(device)
                self.value_source = "the teacher's first critic: V_T(s) = Q(s, tanh(mu_T(s)))"

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_T, log sigma_T) in pre-tanh units of the normalised action."""
        h = (obs - self.mean_) / self.std_
        last = h
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            y = h @ w.T + b
            if i < len(self.ws) - 1:
                h = torch.tanh(y) if self.t.activation == "tanh" else torch.relu(y)
                last = h
        if self.t.mean_clip is not None:  # SAC's gSDE actor: the Gaussian's mean is the clipped one
            y = y.clamp(-self.t.mean_clip, self.t.mean_clip)
        if self.t.output == "tanh":
            mu = y
        else:  # a clipped teacher: its action, normalised, taken back through the tanh
            a = (2.0 * (y - self.low_) / (self.high_ - self.low_) - 1.0).clamp(-U_CLIP, U_CLIP)
            mu = torch.atanh(a)
        if self.log_std_head is not None:
            log_std = (last @ self.log_std_head[0].T + self.log_std_head[1]).clamp(-20.0, 2.0)
        else:
            log_std = torch.full_like(mu, self.fixed_log_std)
        return mu, log_std

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        mu, _ = self(obs)
        assert self.critic is not None
        return self.critic(torch.cat([obs, torch.tanh(mu)], -1)).squeeze(-1)


def _sb3_critic(sd: dict[str, np.ndarray]) -> nn.Sequential | None:
    keys = sorted({int(k.split(".")[2]) for k in sd if k.startswith("critic.qf0.") and k.endswith(".weight")})
    if not keys:
        return None
    ws = [sd[f"critic.qf0.{i}.weight"] for i in keys]
    net = relu_mlp([ws[0].shape[1], *[w.shape[0] for w in ws]])
    lin = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for m, i in zip(lin, keys):
            m.weight.copy_(torch.as_tensor(sd[f"critic.qf0.{i}.weight"]))
            m.bias.copy_(torch.as_tensor(sd[f"critic.qf0.{i}.bias"]))
    return net.eval()


def read_sb3(path: str | Path) -> dict[str, np.ndarray]:
    """The weights of a stable-baselines3 zip, read with torch's weights-only reader."""
    p = Path(path)
    if not p.is_file():
        raise BpdError(f"{p}: no such file")
    try:
        with zipfile.ZipFile(p) as z:
            raw = z.read("policy.pth")
    except (zipfile.BadZipFile, KeyError, EOFError, OSError) as e:
        raise BpdError(f"{p}: not a readable stable-baselines3 model ({e.__class__.__name__})") from None
    sd = sb3_weights(p, raw)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BpdError(f"{p}: not a stable-baselines3 model (unexpected weights layout)")
    return {k: v.numpy() for k, v in sd.items()}


def check_sb3_matches(sd: dict[str, np.ndarray], t: Teacher, path: str | Path) -> None:
    """The zip given as the teacher's must hold the teacher's actor: its output layer (and the hidden
    layers it shares with the teacher) equal to the teacher file's, its critic reading the teacher's
    observations and actions."""
    def numbered(prefix: str) -> list[np.ndarray]:
        return [v for _, v in sorted((int(k.split(".")[2]), v) for k, v in sd.items()
                                     if k.startswith(prefix) and k.endswith(".weight") and k.count(".") == 3)]

    if "actor.mu.weight" in sd or "actor.log_std" in sd:  # SAC: latent_pi hidden layers, then mu (gSDE's: mu.0)
        mu = sd.get("actor.mu.weight", sd.get("actor.mu.0.weight", np.zeros(0)))
        layers = numbered("actor.latent_pi.") + [mu]
    else:  # TD3: mu is the whole actor
        layers = numbered("actor.mu.")
    same = len(layers) == len(t.weights) and all(
        a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(layers, t.weights))
    if not same:
        raise BpdError(f"{path}: its actor is not the teacher's (another model's zip?); give the zip the teacher "
                       "was imported from or trained as")
    q0 = sd.get("critic.qf0.0.weight")
    if q0 is not None and q0.shape[1] != t.obs_dim + t.act_dim:
        raise BpdError(f"{path}: its critic reads {q0.shape[1]} inputs, the teacher's observations and actions "
                       f"are {t.obs_dim + t.act_dim}")
