"""The distillation baselines' update rules as a trainer object (one gradient step per `update`),
and the online control that feeds the rules driven by the student (training/baselines.py describes
both and runs them).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import gaussian as G
from training.baseline_nets import U_CLIP, GaussianStudent, TeacherModel, prune_target, relu_mlp
from training.baseline_rules import REWARD_RULES, BaselineConfig
from training.envs import make_env
from training.seed_blocks import collect_seed


def reward_to_go(r: torch.Tensor, done: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted sum of r from each step to its episode's end (or the segment's end)."""
    out = torch.zeros_like(r)
    acc: torch.Tensor | float = 0.0
    for i in range(len(r) - 1, -1, -1):
        acc = r[i] + gamma * acc * (1.0 - done[i])
        out[i] = acc
    return out


class BaselineTrainer:
    """One gradient step of a rule per `update(batch, segment)`; state_dict() resumes it exactly. Its
    networks live on `device` (the teacher's must be there too); batches come to it there."""

    def __init__(self, cfg: BaselineConfig, obs_dim: int, act_dim: int, teacher: TeacherModel,
                 obs_mean: np.ndarray, obs_std: np.ndarray, device: torch.device | None = None) -> None:
        self.cfg, self.teacher = cfg, teacher
        self.device = device or torch.device("cpu")
        self.student = GaussianStudent(obs_dim, act_dim, cfg.hidden, cfg.activation, cfg.init_log_std,
                                       cfg.min_log_std).to(self.device)
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr)
        self.obs_mean = torch.as_tensor(np.asarray(obs_mean, np.float32), device=self.device)
        self.obs_std = torch.as_tensor(np.asarray(obs_std, np.float32), device=self.device)
        self.value = relu_mlp([obs_dim, 64, 64, 1]).to(self.device) if cfg.method == "teacher-v-reward" else None
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
            loss = torch.zeros((), device=self.device)
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
                self._nonzero = self.student.params_nonzero()
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
        """V_T by TD(0) on the teacher-driven dataset: V(s) <- r + gamma (1 - term) V'(s'), target net 0.005.
        The dataset may stay on the CPU: each batch goes to the trainer's device."""
        import copy
        net = relu_mlp([ds_t["obs"].shape[1], 256, 256, 1]).to(self.device)
        tgt = copy.deepcopy(net)
        opt = torch.optim.Adam(net.parameters(), lr=3e-4)
        n, loss = len(ds_t["obs"]), torch.zeros(())
        for _ in range(steps):
            idx = torch.randint(0, n, (self.cfg.batch,), generator=gen)
            b = {k: ds_t[k][idx].to(self.device) for k in ("obs", "next_obs", "rew", "term")}
            s, s2 = self.norm(b["obs"]), self.norm(b["next_obs"])
            with torch.no_grad():
                y = b["rew"] + self.cfg.gamma * (1.0 - b["term"]) * tgt(s2).squeeze(-1)
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
            self.teacher_value = relu_mlp([self.obs_mean.numel(), 256, 256, 1]).to(self.device)
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
                self.obs, _ = self.env.reset(seed=collect_seed(self.seed, self.episodes))
            o = torch.as_tensor(self.obs, dtype=torch.float32, device=trainer.device)[None]
            ctrl = self.control
            if ctrl == "mixed":
                ctrl = "teacher" if self.rng.random() < self.beta(budget) else "student"
            logp = 0.0
            if ctrl == "uniform":
                u = np.arctanh(np.clip(self.rng.uniform(-1, 1, low.shape), -U_CLIP, U_CLIP))
            else:
                with torch.no_grad():
                    mu, ls = trainer.teacher(o) if ctrl == "teacher" else trainer.student(trainer.norm(o))
                    noise = torch.as_tensor(self.rng.standard_normal(mu.shape), dtype=torch.float32,
                                            device=trainer.device)
                    ut = mu + torch.exp(ls) * noise
                    logp = float(G.log_prob(ut, mu, ls)[0])
                u = ut[0].cpu().numpy()
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


def segment_tensors(seg: dict[str, np.ndarray], trainer: BaselineTrainer) -> dict[str, torch.Tensor]:
    t = {k: torch.as_tensor(v, device=trainer.device) for k, v in seg.items()}
    if trainer.cfg.method in ("entropy-regularised", "n-distill", "expected-entropy-regularised"):
        t["rhat"] = trainer.rewards(t)
        t["rtg"] = reward_to_go(t["rhat"], t["done"], trainer.cfg.gamma)
    return t
