"""The fine-tune's visits (`bpd distill --finetune-visits N`): states the pruned student reaches itself,
labelled by the teacher, added to the data the fine-tune learns from (DAgger's aggregation, Ross et al.).

Offline data holds the states the teacher (with its collection noise) reaches. A student cut to a small budget
drifts from them, and where it drifts the data has no answer: the double pendulum's cut students keep the return
on most starts and fall on a few. With visits, the collapsed deterministic student drives the task for N
environment steps over the fine-tune, in `chunks` turns spread evenly through it (the first after the fine-tune's
first step, when the mask is frozen; no more turns than fine-tune steps or visit steps); at every state it meets
the teacher's deterministic action is the behaviour-cloning target, and the transition (the student's action, the
reward, the next state, the termination) feeds the critics like any other. Batches are then drawn uniformly from
the dataset and the visits together. A turn's last episode is cut at the turn's end (truncated, not terminated),
so the N steps are exact and a resumed run needs no environment state: every episode starts from a seed of its
own, VISIT_BASE + 1000 x run seed + the episode's index, disjoint from every evaluation's (training/envs.py). A
student that falls so often that its visits begin more than the run seed's block of 1000 takes the rest from a range
of its own (VISIT_MORE_BASE + 20,000,000 x run seed + the index past 1000), never the next run seed's, so the
seeds of the first 1000 are the same as they always were.

With a noise (`--finetune-visit-noise S`) the student's action is perturbed before it is applied: Gaussian noise of
standard deviation S times half the action range, clipped to the bounds, drawn from a generator seeded by the
episode's seed, so a turn taken again is the same turn. Gymnasium seeds the environment's own generator the same
way, so the noise reuses the bits its reset drew the start from: not an independent stream, kept so that the
committed -vnoise cells reproduce (a row that needs independence would seed it apart). The student then wanders off
its own path into the states next to it, where a rare failure (HalfCheetah's cut students flipping onto their
backs) begins, and the teacher's labels there say how to come back (noise injected into the learner's rollouts, as
in DART, Laskey et al.). The transition records the action applied.

The environment steps are a budget on top of the dataset's, stated in the run's summary (`visits`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from training.collect import norm_act, norm_obs
from training.distill_config import visit_turns
from training.envs import make_env
from training.seed_blocks import SEED_BLOCK, VISIT_BASE, VISIT_MORE_BASE, VISIT_MORE_BLOCK

KEYS = ("obs", "next_obs", "act", "teacher_act", "rew", "term")
Act = Callable[[np.ndarray], np.ndarray]  # raw observation -> action in the environment's units


def visit_seed(run_seed: int, episode: int) -> int:
    if episode < SEED_BLOCK:
        return VISIT_BASE + SEED_BLOCK * run_seed + episode
    return VISIT_MORE_BASE + VISIT_MORE_BLOCK * run_seed + episode - SEED_BLOCK


class Visits:
    """N environment steps of the student's own states, in `chunks` turns between fine-tune steps `start` and
    `end` (schedule steps); state_dict() carries what a resumption needs."""

    def __init__(self, env_id: str, total: int, chunks: int, start: int, end: int, run_seed: int,
                 stats: dict[str, np.ndarray], noise: float = 0.0) -> None:
        self.env_id, self.total, self.noise = env_id, int(total), float(noise)
        self.chunks = visit_turns(self.total, chunks, start, end)
        self.start, self.end, self.run_seed = int(start), int(end), int(run_seed)
        self.stats = stats
        self.done = 0  # turns taken
        self.episodes = 0  # episodes begun (each one's seed is its index)
        self.early_ends = 0  # episodes the environment terminated
        self.data: dict[str, torch.Tensor] = {}

    def due(self, t: int) -> bool:
        """Whether a turn is due at schedule step t (after that step's update)."""
        if self.done >= self.chunks or self.total <= 0 or t <= self.start:
            return False
        return t > self.start + self.done * (self.end - self.start) / self.chunks

    def turn_steps(self) -> int:
        """This turn's steps: the total spread over the turns, the remainder to the first ones."""
        base, extra = divmod(self.total, self.chunks)
        return base + (1 if self.done < extra else 0)

    def _norm_obs(self, o: np.ndarray) -> np.ndarray:  # as distill normalises the dataset's
        return norm_obs(o, self.stats["obs_mean"], self.stats["obs_std"])

    def _norm_act(self, a: np.ndarray) -> np.ndarray:
        return norm_act(a, self.stats["action_low"], self.stats["action_high"])

    def take_turn(self, student: Act, teacher: Act) -> int:
        """Drive the environment with the student for this turn's steps; returns the steps taken."""
        n = self.turn_steps()
        rows: dict[str, list] = {k: [] for k in KEYS}
        env = make_env(self.env_id)
        low, high = self.stats["action_low"], self.stats["action_high"]
        try:
            obs = None
            for _ in range(n):
                if obs is None:
                    seed = visit_seed(self.run_seed, self.episodes)
                    obs, _ = env.reset(seed=seed)
                    rng = np.random.default_rng(seed)
                    self.episodes += 1
                a = np.asarray(student(obs), np.float32)
                if self.noise:
                    a = np.clip(a + rng.normal(0.0, self.noise, a.shape) * (high - low) / 2, low, high
                                ).astype(np.float32)
                nobs, r, term, trunc, _ = env.step(a)
                for k, v in zip(KEYS, (self._norm_obs(obs), self._norm_obs(nobs), self._norm_act(a),
                                       self._norm_act(np.asarray(teacher(obs), np.float32)), r, float(term))):
                    rows[k].append(v)
                if term:
                    self.early_ends += 1
                obs = None if (term or trunc) else nobs
        finally:
            env.close()
        new = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in rows.items()}
        self.data = {k: torch.cat([self.data[k], new[k]]) if k in self.data else new[k] for k in KEYS}
        self.done += 1
        return n

    def joined(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The dataset's tensors with the visits after them (on the dataset's device)."""
        if not self.data:
            return data
        return {k: torch.cat([v, self.data[k].to(v.device)]) if k in self.data else v for k, v in data.items()}

    def summary(self) -> dict:
        return {"env_steps": int(len(self.data["obs"])) if self.data else 0, "budget": self.total,
                "turns": self.done, "episodes": self.episodes, "early_ends": self.early_ends, "noise": self.noise,
                "seeds": self.seed_ranges()}

    def seed_ranges(self) -> list[list[int]]:
        """The episodes' seeds as [first, last] ranges: the run seed's block, then the range past it if reached."""
        n = max(self.episodes, 1)
        out = [[visit_seed(self.run_seed, 0), visit_seed(self.run_seed, min(n, SEED_BLOCK) - 1)]]
        return out + ([[visit_seed(self.run_seed, SEED_BLOCK), visit_seed(self.run_seed, n - 1)]] if n > SEED_BLOCK
                      else [])

    def state_dict(self) -> dict:
        return {"done": self.done, "episodes": self.episodes, "early_ends": self.early_ends,
                "data": dict(self.data)}

    def load_state_dict(self, sd: dict) -> None:
        self.done, self.episodes = int(sd["done"]), int(sd["episodes"])
        self.early_ends = int(sd["early_ends"])
        self.data = {k: v.cpu() for k, v in sd["data"].items()}
