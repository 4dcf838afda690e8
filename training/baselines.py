"""Distillation baselines from the policy-distillation literature, for continuous actions.

Rusu et al. (2016), Policy Distillation: a student trained by supervised learning on the teacher's
outputs at the states of the teacher's data.
  nll   -log pi_theta(mu_T | s): the likelihood of the teacher's most likely action
  mse   ||mu_theta(s) - mu_T(s)||^2 on the teacher's pre-squash outputs
  kl    KL(pi_T^(1/T) || pi_theta), the teacher tempered by T (variance T sigma_T^2; T = 0.01 as the paper)

Czarnecki et al. (2019), Distilling Policy Distillation: a control policy drives the data and an
update rule turns it into a gradient, loss term l and reward term r_hat (their Table 1):
  teacher-distill               l = Hx(pi_T || pi_theta)               control teacher
  on-policy-distill             l = Hx(pi_T || pi_theta)               control student
  entropy-regularised           r_hat_i = log pi_T(a_i | s_i)          control student
  n-distill                     l = Hx(pi_T || pi_theta), r_hat_i = -Hx(pi_T || pi_theta)(s_i+1)
  expected-entropy-regularised  l = Hx(pi_theta || pi_T), r_hat_i = log pi_T(a_i+1 | s_i+1)
  teacher-v-reward              r_hat_i = r_i + gamma V_T(s_i+1) - V_theta(s_i)
Loss terms are closed-form Gaussian cross-entropies (training/gaussian.py) averaged over the
aggregated buffer of every state the control policy visited (DAgger: whoever acts, the teacher
labels). Reward terms are a policy gradient over the latest collected segment (discounted
reward-to-go standardised per segment; teacher-v-reward uses a one-step advantage with a student
value V_theta fitted by TD(0)). A segment serves every gradient step until the next collection, so
after its first step the student is no longer the policy that acted: the gradient is the clipped
importance-weighted surrogate of PPO (Schulman et al. 2017), min(rho A, clip(rho, 1 - eps, 1 + eps) A)
with rho = pi_theta(u | s) / pi_collect(u | s) and eps = --clip, which is REINFORCE's gradient while
rho = 1. Plain REINFORCE on a reused segment rewards fitting the positive-advantage actions of that
one sample ever more tightly: the student's spread collapses to its floor and every rule fails.

Control policies: teacher (the plan's offline dataset: the teacher with its collection noise; the
environment steps charged are the dataset's), student (the student samples, online), mixed (per
step the teacher acts with probability beta, falling linearly from 1 to 0 over the first half of
the environment budget, as DAgger's beta_i), uniform (uniform random actions, online).

Teacher distribution in u (pre-tanh) units: mean from the teacher file; log std from the SAC
actor's log-std head when --teacher-sb3 gives the stable-baselines3 zip, else a fixed spread
--teacher-std (deterministic TD3 teachers). Teacher value: Q(s, mu_T(s)) from the zip's first
critic when given, else V_T fitted by TD(0) on the offline dataset. The summary records which.

Size: --hidden widths, optionally magnitude-pruned (global, gradual cubic schedule of Zhu and Gupta
2017, biases kept) to --nonzero nonzero parameters (weights plus biases, as everywhere in bpd).
The run leaves policy.npz in the teacher format (the deterministic student tanh(mu_theta)), which
`bpd evaluate`, `bpd export` and `bpd bench` take.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import bpd
from bpd.config import check_ranges, field, to_dict
from bpd.errors import BpdError
from bpd.io import atomic_write, write_json
from training import gaussian as G
from training.baseline_rules import CONTROLS, DEFAULT_CONTROL, REWARD_RULES, RULES
from training.collect import load_dataset
from training.envs import evaluate, make_env, train_eval_seed
from training.teacher import Teacher, load_teacher, sb3_weights

U_CLIP = 0.999  # atanh of normalised actions is taken after clipping to +-U_CLIP
_RESUME_FREE = {"resume", "progress", "threads"}


@dataclass
class BaselineConfig:
    method: str = field(help="update rule", choices=RULES)
    teacher: str = field(help="teacher file (bpd teacher format)")
    dataset: str = field(help="dataset from `bpd collect`: the teacher-driven data and the observation statistics")
    out: str = field("runs/baseline", help="run directory")
    control: str | None = field(None, help="which policy drives the data (default: the rule's, teacher for nll, mse, "
                                "kl and teacher-distill, else student)", choices=CONTROLS)
    hidden: list[int] = field([64, 64], help="student hidden widths")
    activation: str = field("tanh", help="student hidden activation", choices=("tanh", "relu"))
    nonzero: int | None = field(None, help="magnitude-prune to this many nonzero parameters (weights plus biases)")
    prune_start: float = field(0.2, help="fraction of training where pruning begins")
    prune_end: float = field(0.6, help="fraction of training where the nonzero count is reached (mask fixed after)")
    temperature: float = field(0.01, help="kl: teacher temperature T (variance T sigma_T^2)")
    teacher_std: float = field(0.2, help="teacher spread in pre-tanh units where the teacher has no log-std head")
    teacher_sb3: str | None = field(None, help="the teacher's stable-baselines3 zip: its SAC log-std head and critic")
    steps: int = field(20_000, help="gradient steps")
    env_steps: int = field(50_000, help="environment steps of online control (student, mixed, uniform)")
    collect_every: int = field(1000, help="environment steps per collection round of online control")
    batch: int = field(256, help="batch size")
    lr: float = field(1e-3, help="student learning rate")
    reward_weight: float = field(1.0, help="weight of the reward (policy-gradient) term")
    clip: float = field(0.2, help="reward rules: clip range eps of the importance ratio pi_theta / pi_collect in "
                        "the policy-gradient surrogate (a segment is reused until the next collection)")
    gamma: float = field(0.99, help="discount of the reward terms and value functions")
    init_log_std: float = field(-1.0, help="initial student log std (state-independent, pre-tanh units)")
    min_log_std: float = field(-5.0, help="student log std is clamped to [min, 2]")
    value_steps: int = field(5000, help="teacher-v-reward without a critic: TD(0) steps fitting V_T on the dataset")
    eval_every: int = field(2000, help="gradient steps between evaluations of the deterministic student")
    eval_episodes: int = field(5, help="episodes per periodic evaluation")
    checkpoint_every: int = field(1000, help="gradient steps between checkpoints")
    env: str | None = field(None, help="environment (default: the dataset's)")
    seed: int = field(0, help="random seed")
    threads: int = field(1, help="torch CPU threads")
    resume: bool = field(False, help="continue the run in --out from its last checkpoint")
    progress: bool = field(True, help="show a progress bar")


def validate(cfg: BaselineConfig) -> str:
    """Check the options; returns the control policy in force."""
    control = cfg.control or DEFAULT_CONTROL[cfg.method]
    check_ranges(cfg, {"steps": (1, 100_000_000), "env_steps": (1, 100_000_000), "collect_every": (1, 100_000_000),
                       "batch": (1, 1_000_000), "hidden": (1, 4096), "lr": (0, 1, "open"),
                       "min_log_std": (-20, 2, "open"), "init_log_std": (cfg.min_log_std, 2),
                       "value_steps": (1, 100_000_000), "eval_every": (1, None), "eval_episodes": (1, 10_000),
                       "checkpoint_every": (1, None), "seed": (0, 2**31 - 1), "threads": (1, 1024),
                       "reward_weight": (0, 1e6), "temperature": (0, 1e6, "open"), "teacher_std": (0, 1e3, "open")})
    if cfg.min_log_std >= 2:
        raise BpdError(f"--min-log-std must be below 2, the upper clamp (got {cfg.min_log_std:g})")
    checks = [(cfg.steps >= 1 and cfg.batch >= 1 and cfg.eval_every >= 1 and cfg.checkpoint_every >= 1,
               "--steps, --batch, --eval-every and --checkpoint-every must be positive"),
              (cfg.collect_every >= 1 and cfg.env_steps >= 1, "--env-steps and --collect-every must be positive"),
              (bool(cfg.hidden) and min(cfg.hidden) >= 1, "--hidden needs at least one positive width"),
              (cfg.nonzero is None or cfg.nonzero >= 1, "--nonzero must be positive"),
              (0 <= cfg.prune_start <= cfg.prune_end <= 1, "need 0 <= --prune-start <= --prune-end <= 1"),
              (cfg.temperature > 0 and cfg.teacher_std > 0, "--temperature and --teacher-std must be positive"),
              (0 < cfg.clip < 1, "--clip must be in (0, 1)"),
              (0 <= cfg.gamma < 1, "--gamma must be in [0, 1)"),
              (cfg.eval_episodes >= 1, "--eval-episodes must be at least 1"),
              (not (cfg.method in REWARD_RULES and control != "student"),
               f"{cfg.method} has a reward term, a policy gradient that needs the student's own data: "
               "--control student")]
    for ok, msg in checks:
        if not ok:
            raise BpdError(msg)
    return control


# --------------------------------------------------------------------------- networks


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
        return int(sum(torch.count_nonzero(l.weight * m).item() + torch.count_nonzero(l.bias).item()
                       for l, m in zip(self.layers, self.masks())))

    @torch.no_grad()
    def prune_to(self, nonzero: int) -> None:
        """Global magnitude pruning of weights so that weights plus biases hold `nonzero` nonzero values."""
        n_bias = sum(l.bias.numel() for l in self.layers)
        keep = nonzero - n_bias
        if keep < 1:
            raise BpdError(f"a budget of {nonzero} nonzero parameters leaves no weights beside the {n_bias} biases")
        mags = torch.cat([(l.weight * m).abs().flatten() for l, m in zip(self.layers, self.masks())])
        if keep >= mags.numel():
            return
        order = torch.argsort(mags, descending=True, stable=True)
        flat = torch.zeros_like(mags)
        flat[order[:keep]] = 1.0
        i = 0
        for layer, m in zip(self.layers, self.masks()):
            n = m.numel()
            m.copy_(flat[i:i + n].view_as(m))
            layer.weight.mul_(m)
            i += n

    def to_policy(self, obs_mean: np.ndarray, obs_std: np.ndarray, low: np.ndarray, high: np.ndarray, **kw) -> Teacher:
        """The deterministic student tanh(mu_theta(s)) in the teacher format."""
        return Teacher(weights=[(l.weight * m).detach().numpy().astype(np.float32)
                                for l, m in zip(self.layers, self.masks())],
                       biases=[l.bias.detach().numpy().astype(np.float32) for l in self.layers],
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


def _mlp(widths: list[int]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class TeacherModel(nn.Module):
    """The teacher as a Gaussian in pre-tanh units, and its value, from raw observations."""

    def __init__(self, t: Teacher, teacher_std: float, sb3: dict[str, np.ndarray] | None = None) -> None:
        super().__init__()
        self.t = t
        self.ws = [torch.as_tensor(w) for w in t.weights]
        self.bs = [torch.as_tensor(b) for b in t.biases]
        self.mean_, self.std_ = torch.as_tensor(t.obs_mean), torch.as_tensor(t.obs_std)
        self.log_std_head = None
        self.critic: nn.Sequential | None = None
        self.distribution = (f"fixed spread: sigma_T = {teacher_std:g} in pre-tanh units "
                             f"({t.algo} teacher is deterministic)")
        self.value_source = None
        self.fixed_log_std = math.log(teacher_std)
        if sb3 is not None:
            if "actor.log_std.weight" in sb3:
                self.log_std_head = (torch.as_tensor(sb3["actor.log_std.weight"]),
                                     torch.as_tensor(sb3["actor.log_std.bias"]))
                self.distribution = "the SAC actor's log-std head, clamped to [-20, 2] as SAC does"
            critic = _sb3_critic(sb3)
            if critic is not None:
                self.critic = critic
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
        if self.t.output == "tanh":
            mu = y
        else:  # a clipped teacher: its action, normalised, taken back through the tanh
            low, high = torch.as_tensor(self.t.action_low), torch.as_tensor(self.t.action_high)
            a = (2.0 * (y - low) / (high - low) - 1.0).clamp(-U_CLIP, U_CLIP)
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
    net = _mlp([ws[0].shape[1], *[w.shape[0] for w in ws]])
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

    if "actor.mu.weight" in sd:  # SAC: latent_pi hidden layers, then mu
        layers = numbered("actor.latent_pi.") + [sd["actor.mu.weight"]]
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


# --------------------------------------------------------------------------- the update rules


def reward_to_go(r: torch.Tensor, done: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted sum of r from each step to its episode's end (or the segment's end)."""
    out = torch.zeros_like(r)
    acc: torch.Tensor | float = 0.0
    for i in range(len(r) - 1, -1, -1):
        acc = r[i] + gamma * acc * (1.0 - done[i])
        out[i] = acc
    return out


class BaselineTrainer:
    """One gradient step of a rule per `update(batch, segment)`; state_dict() resumes it exactly."""

    def __init__(self, cfg: BaselineConfig, obs_dim: int, act_dim: int, teacher: TeacherModel,
                 obs_mean: np.ndarray, obs_std: np.ndarray) -> None:
        self.cfg, self.teacher = cfg, teacher
        self.student = GaussianStudent(obs_dim, act_dim, cfg.hidden, cfg.activation, cfg.init_log_std,
                                       cfg.min_log_std)
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr)
        self.obs_mean = torch.as_tensor(np.asarray(obs_mean, np.float32))
        self.obs_std = torch.as_tensor(np.asarray(obs_std, np.float32))
        self.value = _mlp([obs_dim, 64, 64, 1]) if cfg.method == "teacher-v-reward" else None
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=3e-4) if self.value is not None else None
        self.teacher_value: nn.Sequential | None = None  # a fitted V_T when the teacher has no critic
        self.step = 0
        self._nonzero: int | None = None  # the pruning count reached so far
        self.dense = sum(l.weight.numel() + l.bias.numel() for l in self.student.layers)

    def norm(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def v_teacher(self, obs: torch.Tensor) -> torch.Tensor:
        if self.teacher.critic is not None:
            return self.teacher.value(obs)
        if self.teacher_value is None:
            raise RuntimeError("V_T is needed: the teacher has no critic and none was fitted (fit_teacher_value)")
        with torch.no_grad():
            return self.teacher_value(self.norm(obs)).squeeze(-1)

    def loss_term(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The rule's supervised term l on states `obs` (raw), averaged."""
        c, m = self.cfg, self.cfg.method
        mu_t, ls_t = self.teacher(obs)
        mu, ls = self.student(self.norm(obs))
        if m == "nll":
            loss = -G.log_prob(mu_t, mu, ls).mean()
        elif m == "mse":
            loss = F.mse_loss(mu, mu_t)
        elif m == "kl":
            loss = G.kl(mu_t, G.temper(ls_t, c.temperature), mu, ls).mean()
        elif m in ("teacher-distill", "on-policy-distill", "n-distill"):
            loss = G.cross_entropy(mu_t, ls_t, mu, ls).mean()
        elif m == "expected-entropy-regularised":
            loss = G.cross_entropy(mu, ls, mu_t, ls_t).mean()
        else:  # entropy-regularised, teacher-v-reward: no loss term
            loss = torch.zeros(())
        with torch.no_grad():
            gap = F.mse_loss(torch.tanh(mu), torch.tanh(mu_t)).item()
        return loss, {"losses/term": loss.item(), "action_mse": gap}

    def rewards(self, seg: dict[str, torch.Tensor]) -> torch.Tensor:
        """r_hat of each step of a student-driven segment (computed with the current student, detached)."""
        m = self.cfg.method
        with torch.no_grad():
            if m == "entropy-regularised":
                mu_t, ls_t = self.teacher(seg["obs"])
                return G.log_prob(seg["u"], mu_t, ls_t)
            nxt = seg["next_obs"]
            mu_t, ls_t = self.teacher(nxt)
            mu, ls = self.student(self.norm(nxt))
            live = 1.0 - seg["term"]
            if m == "n-distill":
                return -G.cross_entropy(mu_t, ls_t, mu, ls) * live
            if m == "expected-entropy-regularised":
                u2 = mu + torch.exp(ls) * torch.randn_like(mu)
                return G.log_prob(u2, mu_t, ls_t) * live
        raise ValueError(m)

    def reward_term(self, seg: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """The clipped policy-gradient surrogate on the rule's reward (see the module's docstring); for
        teacher-v-reward a one-step advantage and the V_theta fit."""
        c = self.cfg
        mu, ls = self.student(self.norm(seg["obs"]))
        rho = torch.exp(G.log_prob(seg["u"], mu, ls) - seg["logp"])

        def surrogate(adv: torch.Tensor) -> torch.Tensor:
            return -torch.min(rho * adv, rho.clamp(1.0 - c.clip, 1.0 + c.clip) * adv).mean()
        if c.method == "teacher-v-reward":
            assert self.value is not None and self.value_opt is not None  # built for this rule in __init__
            live = 1.0 - seg["term"]
            v = self.value(self.norm(seg["obs"])).squeeze(-1)
            with torch.no_grad():
                v_next = self.value(self.norm(seg["next_obs"])).squeeze(-1)
                adv = seg["rew"] + c.gamma * live * self.v_teacher(seg["next_obs"]) - v
                target = seg["rew"] + c.gamma * live * v_next
            v_loss = F.mse_loss(v, target)
            self.value_opt.zero_grad(set_to_none=True)
            v_loss.backward()
            self.value_opt.step()
            adv = (adv - adv.mean()) / (adv.std() + 1e-6) if len(adv) > 1 else adv
            return surrogate(adv), {"losses/value": v_loss.item(), "reward/mean": float(seg["rew"].mean())}
        ret = seg["rtg"]
        adv = (ret - ret.mean()) / (ret.std() + 1e-6) if len(ret) > 1 else ret - ret
        return surrogate(adv), {"reward/mean": float(seg["rhat"].mean())}

    def update(self, batch: dict[str, torch.Tensor], segment: dict[str, torch.Tensor] | None = None) -> dict:
        c = self.cfg
        if c.nonzero is not None:
            target = prune_target(self.step, c.steps, self.dense, c.nonzero, c.prune_start, c.prune_end)
            if self._nonzero is None:
                self._nonzero = self.student.params_nonzero()
            if target < self._nonzero:
                self.student.prune_to(target)
                self._nonzero = target
        loss, info = self.loss_term(batch["obs"])
        if c.method in REWARD_RULES and segment is not None and len(segment["obs"]):
            pg, pinfo = self.reward_term(segment)
            loss = loss + c.reward_weight * pg
            info |= pinfo | {"losses/reward_term": pg.item()}
        self.opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            self.opt.step()
        self.step += 1
        return info | {"losses/total": loss.item(), "log_std": float(self.student.log_std_param.detach().mean())}

    def fit_teacher_value(self, ds_t: dict[str, torch.Tensor], steps: int, gen: torch.Generator) -> float:
        """V_T by TD(0) on the teacher-driven dataset: V(s) <- r + gamma (1 - term) V'(s'), target net 0.005."""
        import copy
        net = _mlp([ds_t["obs"].shape[1], 256, 256, 1])
        tgt = copy.deepcopy(net)
        opt = torch.optim.Adam(net.parameters(), lr=3e-4)
        n, loss = len(ds_t["obs"]), torch.zeros(())
        for _ in range(steps):
            idx = torch.randint(0, n, (self.cfg.batch,), generator=gen)
            s, s2 = self.norm(ds_t["obs"][idx]), self.norm(ds_t["next_obs"][idx])
            with torch.no_grad():
                y = ds_t["rew"][idx] + self.cfg.gamma * (1.0 - ds_t["term"][idx]) * tgt(s2).squeeze(-1)
            loss = F.mse_loss(net(s).squeeze(-1), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.lerp_(p, 0.005)
        self.teacher_value = net.eval()
        return float(loss.item())

    def state_dict(self) -> dict:
        sd = {"step": self.step, "student": self.student.state_dict(), "opt": self.opt.state_dict()}
        if self.value is not None and self.value_opt is not None:
            sd |= {"value": self.value.state_dict(), "value_opt": self.value_opt.state_dict()}
        if self.teacher_value is not None:
            sd["teacher_value"] = self.teacher_value.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        self.step = int(sd["step"])
        self.student.load_state_dict(sd["student"])
        self.opt.load_state_dict(sd["opt"])
        if self.value is not None and self.value_opt is not None:
            self.value.load_state_dict(sd["value"])
            self.value_opt.load_state_dict(sd["value_opt"])
        if "teacher_value" in sd:
            self.teacher_value = _mlp([self.obs_mean.numel(), 256, 256, 1])
            self.teacher_value.load_state_dict(sd["teacher_value"])
            self.teacher_value.eval()


# --------------------------------------------------------------------------- online control (DAgger-style)


SEG_KEYS = ("obs", "u", "logp", "rew", "next_obs", "term", "done")


class Collector:
    """Drives the environment with the control policy; counts every environment step it takes."""

    def __init__(self, env_id: str, control: str, seed: int) -> None:
        self.env = make_env(env_id)
        self.control, self.seed = control, seed
        self.rng = np.random.default_rng(seed)
        self.env_steps, self.episodes = 0, 0
        self.obs: np.ndarray | None = None

    def beta(self, budget: int) -> float:
        """Probability that the teacher acts under mixed control: 1 -> 0 over the first half of the budget."""
        return max(0.0, 1.0 - self.env_steps / (0.5 * budget))

    def collect(self, n: int, trainer: BaselineTrainer, budget: int) -> dict[str, np.ndarray]:
        """n environment steps; returns the segment (raw obs, pre-tanh action u, its log-likelihood under the
        policy that acted (0 under uniform control), reward, next obs, flags)."""
        seg: dict[str, list] = {k: [] for k in SEG_KEYS}
        low, high = self.env.action_space.low, self.env.action_space.high
        for _ in range(n):
            if self.obs is None:
                self.obs, _ = self.env.reset(seed=int(self.seed * 1_000_003 + self.episodes) % (2 ** 31))
            o = torch.as_tensor(self.obs, dtype=torch.float32)[None]
            ctrl = self.control
            if ctrl == "mixed":
                ctrl = "teacher" if self.rng.random() < self.beta(budget) else "student"
            logp = 0.0
            if ctrl == "uniform":
                u = np.arctanh(np.clip(self.rng.uniform(-1, 1, low.shape), -U_CLIP, U_CLIP))
            else:
                with torch.no_grad():
                    mu, ls = trainer.teacher(o) if ctrl == "teacher" else trainer.student(trainer.norm(o))
                    noise = torch.as_tensor(self.rng.standard_normal(mu.shape), dtype=torch.float32)
                    ut = mu + torch.exp(ls) * noise
                    logp = float(G.log_prob(ut, mu, ls)[0])
                u = ut[0].numpy()
            a = low + (np.tanh(u) + 1.0) * 0.5 * (high - low)
            nobs, r, term, trunc, _ = self.env.step(a.astype(np.float32))
            self.env_steps += 1
            for k, v in zip(SEG_KEYS, (self.obs, u, logp, r, nobs, float(term), float(term or trunc))):
                seg[k].append(v)
            if term or trunc:
                self.episodes += 1
                self.obs = None
            else:
                self.obs = nobs
        out = {k: np.asarray(v, np.float32) for k, v in seg.items()}
        out["done"][-1] = 1.0  # the reward-to-go stops at the segment's end
        return out

    def close(self) -> None:
        self.env.close()


def _seg_tensors(seg: dict[str, np.ndarray], trainer: BaselineTrainer) -> dict[str, torch.Tensor]:
    t = {k: torch.as_tensor(v) for k, v in seg.items()}
    if trainer.cfg.method in ("entropy-regularised", "n-distill", "expected-entropy-regularised"):
        t["rhat"] = trainer.rewards(t)
        t["rtg"] = reward_to_go(t["rhat"], t["done"], trainer.cfg.gamma)
    return t


# --------------------------------------------------------------------------- the run


METRIC_FIELDS = ["step", "env_steps", "time_s", "losses/total", "losses/term", "losses/reward_term", "losses/value",
                 "reward/mean", "action_mse", "log_std", "params_nonzero", "eval/return_mean", "eval/return_std"]


def _fingerprint(cfg: BaselineConfig) -> dict:
    """The options a run's result depends on: what a resumed run must share with the run it continues."""
    fp = {k: v for k, v in to_dict(cfg).items() if k not in _RESUME_FREE}
    if cfg.method not in REWARD_RULES:  # no policy-gradient term: its clip range does not enter
        fp.pop("clip")
    return fp


def _prepare(out: Path, cfg: BaselineConfig) -> None:
    conf = out / "config.json"
    fp = _fingerprint(cfg)
    if cfg.resume and not conf.exists():
        raise BpdError(f"--resume: {out} holds no run to resume; leave out --resume to start one")
    if conf.exists():
        if not cfg.resume:
            raise BpdError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        try:
            old = json.loads(conf.read_text())
        except json.JSONDecodeError:
            raise BpdError(f"{conf}: corrupt run configuration") from None
        diff = sorted(k for k in fp if old.get(k) != fp[k])
        if diff:
            raise BpdError(f"{out} was started with a different configuration ({', '.join(diff)})")
    else:
        if cfg.resume and out.exists() and any(out.iterdir()):
            raise BpdError(f"{out} is not a bpd baseline run directory (no config.json)")
        write_json(conf, fp | {"bpd_version": bpd.__version__})


def train_baseline(cfg: BaselineConfig) -> dict:
    """Train one baseline student; resumable; returns the run summary (also summary.json)."""
    from tqdm import tqdm

    control = validate(cfg)
    teacher = load_teacher(cfg.teacher)
    ds = load_dataset(cfg.dataset, teacher.obs_dim, teacher.act_dim)
    env_id = cfg.env or ds.meta["env_id"]
    sb3 = None
    if cfg.teacher_sb3:
        sb3 = read_sb3(cfg.teacher_sb3)
        check_sb3_matches(sb3, teacher, cfg.teacher_sb3)
    out = Path(cfg.out)
    _prepare(out, cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tm = TeacherModel(teacher, cfg.teacher_std, sb3)
    trainer = BaselineTrainer(cfg, teacher.obs_dim, teacher.act_dim, tm, ds.obs_mean, ds.obs_std)
    if cfg.nonzero is not None and cfg.nonzero > trainer.dense:
        raise BpdError(f"--nonzero {cfg.nonzero} exceeds the {trainer.dense} parameters of --hidden "
                       f"{' '.join(map(str, cfg.hidden))}")
    gen = torch.Generator().manual_seed(cfg.seed)
    ds_t = {k: torch.as_tensor(v) for k, v in {"obs": ds.observations, "next_obs": ds.next_observations,
                                              "rew": ds.rewards, "term": ds.terminals}.items()}
    online = control != "teacher"
    collector = Collector(env_id, control, cfg.seed) if online else None
    buffer = np.zeros((0, teacher.obs_dim), np.float32)
    segment: dict[str, np.ndarray] | None = None
    elapsed, value_fit = 0.0, None
    ck_path, metrics_path = out / "checkpoint.pt", out / "metrics.csv"
    if cfg.resume and ck_path.exists():
        ck = torch.load(ck_path, weights_only=True, map_location="cpu")
        trainer.load_state_dict(ck["trainer"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        elapsed, value_fit = float(ck["elapsed"]), ck.get("value_fit")
        buffer = ck["buffer"].numpy()
        segment = {k: v.numpy() for k, v in ck["segment"].items()} if ck.get("segment") else None
        if collector is not None:
            collector.env_steps, collector.episodes = int(ck["env_steps"]), int(ck["episodes"]) + 1
            collector.rng = np.random.default_rng([cfg.seed, collector.env_steps])
        _truncate(metrics_path, trainer.step)
    if cfg.method == "teacher-v-reward" and tm.critic is None and trainer.teacher_value is None:
        value_fit = trainer.fit_teacher_value(ds_t, cfg.value_steps, gen)
    stats = {"obs_mean": ds.obs_mean, "obs_std": ds.obs_std, "low": ds.action_low, "high": ds.action_high}
    budget = cfg.env_steps if online else 0
    rounds = math.ceil(budget / cfg.collect_every) if online else 0
    new = not metrics_path.exists()
    mf = open(metrics_path, "a", newline="")
    writer = csv.DictWriter(mf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    if new:
        writer.writeheader()
    acc: dict[str, list[float]] = {}
    last: dict = {}
    seg_all = None
    t0 = time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=cfg.method, disable=None if cfg.progress else True)

    def env_steps() -> int:
        return collector.env_steps if collector is not None else len(ds)

    try:
        while trainer.step < cfg.steps:
            if collector is not None and collector.env_steps < budget:
                # collection round k happens at gradient step k * steps / rounds
                due = collector.env_steps // cfg.collect_every
                if trainer.step >= due * cfg.steps / rounds:
                    n = min(cfg.collect_every, budget - collector.env_steps)
                    segment = collector.collect(n, trainer, budget)
                    buffer = np.concatenate([buffer, segment["obs"]])
            data = ds_t["obs"] if collector is None else torch.as_tensor(buffer)
            idx = torch.randint(0, len(data), (cfg.batch,), generator=gen)
            seg_t = None
            if segment is not None and cfg.method in REWARD_RULES:
                if seg_all is None or seg_all[0] is not segment:  # rewards of a new segment, once
                    seg_all = (segment, _seg_tensors(segment, trainer))
                j = torch.randint(0, len(segment["obs"]), (min(cfg.batch, len(segment["obs"])),), generator=gen)
                seg_t = {k: v[j] for k, v in seg_all[1].items()}
            info = trainer.update({"obs": data[idx]}, seg_t)
            for k, v in info.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            step = trainer.step
            if step % cfg.eval_every == 0 or step == cfg.steps:
                pol = trainer.student.to_policy(**stats)
                rets, _ = evaluate(env_id, pol.act, cfg.eval_episodes, seed=train_eval_seed(cfg.seed))
                row = {k: float(np.mean(v)) for k, v in acc.items()}
                row |= {"step": step, "env_steps": env_steps(), "time_s": round(time.time() - t0, 2),
                        "params_nonzero": pol.params_nonzero, "eval/return_mean": float(np.mean(rets)),
                        "eval/return_std": float(np.std(rets))}
                writer.writerow(row)
                mf.flush()
                acc.clear()
                last = row
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                blob = {"format": "bpd-baseline-checkpoint", "trainer": trainer.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "elapsed": time.time() - t0, "value_fit": value_fit, "buffer": torch.as_tensor(buffer),
                        "segment": {k: torch.as_tensor(v) for k, v in segment.items()} if segment else None,
                        "env_steps": collector.env_steps if collector else 0,
                        "episodes": collector.episodes if collector else 0}
                atomic_write(ck_path, functools.partial(torch.save, blob))
    finally:
        bar.close()
        mf.close()
        if collector is not None:
            collector.close()
    if cfg.nonzero is not None:  # the schedule ends at the budget; a run ending early is cut to it here
        trainer.student.prune_to(cfg.nonzero)
    seconds = time.time() - t0
    summary = {
        "method": cfg.method, "control": control, "steps": trainer.step, "grad_steps": trainer.step,
        "env_steps": env_steps(), "env_steps_online": collector.env_steps if collector else 0,
        "dataset_steps": len(ds) if not online else 0, "seconds": round(seconds, 2),
        "hidden": list(cfg.hidden), "nonzero_budget": cfg.nonzero,
        "params_nonzero": trainer.student.params_nonzero(), "params_total": trainer.dense,
        "teacher_params_total": teacher.params_total, "teacher_distribution": tm.distribution,
        "teacher_value": (tm.value_source or (f"fitted: V_T by TD(0) on the offline dataset, {cfg.value_steps} steps, "
                                               f"final loss {value_fit:.4g}" if value_fit is not None else None))
        if cfg.method == "teacher-v-reward" else None,
        "visited_spread": visited_spread(buffer if online else ds.observations, ds.obs_mean, ds.obs_std),
        "final_eval_return_mean": last.get("eval/return_mean"), "product": "policy.npz",
        "selection": {"rule": "the final student", "chosen": {"step": trainer.step}},
    }
    pol = trainer.student.to_policy(**stats, env_id=env_id, algo=f"distilled {cfg.method}",
                                    source=f"bpd baseline train --method {cfg.method} --control {control}",
                                    train={"config": _fingerprint(cfg), "summary": {k: summary[k] for k in (
                                        "control", "env_steps", "grad_steps", "params_nonzero")}})
    pol.save(out / "policy.npz")
    write_json(out / "summary.json", summary)
    return summary


def visited_spread(obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float | None:
    """Spread of the states the control policy visited: per-dimension standard deviation in units of the
    teacher-driven dataset's, averaged over dimensions (1.0: as spread as the teacher's data)."""
    if len(obs) < 2:
        return None
    return float(np.mean(np.std((obs - mean) / std, axis=0)))


def _truncate(path: Path, step: int) -> None:
    if not path.exists():
        return
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
    except (KeyError, TypeError, ValueError, csv.Error):  # UnicodeDecodeError is a ValueError
        raise BpdError(f"{path}: corrupt metrics (a row without a step); remove the run to start over") from None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue()), mode="w")
