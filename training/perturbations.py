"""The MuJoCo model behind an env, and the wrappers that put an imperfection between a controller and
its plant: noise on the velocities a controller reads, noise on its action, a slow or overshooting
actuator, a late action, pushes. Each wrapper keeps its own random stream, drawn again from each seeded
reset, so every variation and every controller meets the same noise from the same start. The
robustness score (training/robustness.py) sweeps them."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from bpd.errors import BpdError


def _env_name(env: gym.Env) -> str:
    return env.spec.id if env.spec else type(env.unwrapped).__name__


def mujoco_of(env: gym.Env) -> tuple[Any, Any]:
    """(model, data) of a MuJoCo-based env: a gymnasium MuJoCo task's, or a rig's plant."""
    u = env.unwrapped
    holder = u if hasattr(u, "model") and hasattr(u, "data") else getattr(u, "plant", None)
    model, data = getattr(holder, "model", None), getattr(holder, "data", None)
    if model is None or data is None or not hasattr(model, "body_mass"):
        raise BpdError(f"{_env_name(env)}: a robustness grid needs a MuJoCo environment (a gymnasium MuJoCo "
                       "task or a rig)")
    return model, data


def action_box(env: gym.Env) -> gym.spaces.Box:
    """The env's action space, which must be a Box (the variations act on a continuous action)."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise BpdError(f"{_env_name(env)}: robustness variations need a continuous (Box) action space")
    return space


def period_of(env: gym.Env) -> float:
    """The control period, s: a rig's period_us, else a MuJoCo task's dt (timestep x frame skip)."""
    rig = getattr(env.unwrapped, "spec_rig", None)
    if rig is not None:
        return rig.period_us * 1e-6
    dt = getattr(env.unwrapped, "dt", None)
    if dt is None:
        raise BpdError(f"{_env_name(env)}: no control period known (not a rig and no dt)")
    return float(dt)


def floating_base_joints(model) -> set[int]:
    """Joints that move the whole system rather than a part of it: free and ball joints, and the joints
    of a body right below the world that carries more than one (a planar base such as Hopper's rootx,
    rootz, rooty). A cart's single slide joint or a rotary arm's hinge is no floating base."""
    import mujoco

    out = set()
    for j in range(model.njnt):
        b = int(model.jnt_bodyid[j])
        if model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_BALL):
            out.add(j)
        elif model.body_parentid[b] == 0 and model.body_jntnum[b] > 1:
            out.add(j)
    return out


def joint_dofs(model, names: list[str] | None) -> list[list[int]]:
    """Per joint its degrees of freedom: of the named joints, or of every joint but a floating base."""
    import mujoco

    if names is None:
        base = floating_base_joints(model)
        joints = [j for j in range(model.njnt) if j not in base]
    else:
        joints = []
        for nm in names:
            j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, nm)
            if j < 0:
                known = ", ".join(model.joint(i).name for i in range(model.njnt))
                raise BpdError(f"robustness: no joint {nm!r} in the model (joints: {known})")
            joints.append(j)
    width = {int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 3}  # else one
    dofs = []
    for j in joints:
        n = width.get(int(model.jnt_type[j]), 1)
        dofs.append(list(range(int(model.jnt_dofadr[j]), int(model.jnt_dofadr[j]) + n)))
    return dofs


def velocity_entries(env: gym.Env) -> list[int]:
    """Which observation entries are velocities: a rig's layout (positions, then their velocities), else
    the contiguous entries that equal the MuJoCo state's qvel after a reset (gymnasium's tasks put qvel,
    clipped at +-10, after the positions or their sines and cosines)."""
    rig = getattr(env.unwrapped, "spec_rig", None)
    if rig is not None:
        return list(range(rig.n_pos, 2 * rig.n_pos))
    model, data = mujoco_of(env)
    obs, _ = env.reset(seed=0)
    obs = np.asarray(obs, np.float64)
    qvel = np.clip(np.asarray(data.qvel, np.float64), -10, 10)
    nv = len(qvel)
    hits = [k for k in range(len(obs) - nv + 1) if np.allclose(obs[k:k + nv], qvel, rtol=1e-6, atol=1e-9)]
    if len(hits) != 1:
        raise BpdError(f"{_env_name(env)}: which observation entries are velocities is unknown; give "
                       "velocity_entries in the robustness grid")
    return list(range(hits[0], hits[0] + nv))


# ------------------------------------------------------------------ the wrappers


class _Seeded(gym.Wrapper):
    """A wrapper with its own random stream, drawn again from each seeded reset."""

    stream = 0

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.rng = np.random.default_rng([0, self.stream])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng([seed, self.stream])
        return self.env.reset(seed=seed, options=options)


class VelocityNoise(_Seeded):
    """Gaussian noise of standard deviation sigma (one per entry) on the velocity entries of every
    observation, the one after a reset included."""

    stream = 1

    def __init__(self, env: gym.Env, entries: list[int], sigma: np.ndarray | float) -> None:
        super().__init__(env)
        self.entries = np.asarray(entries, int)
        self.sigma = np.broadcast_to(np.asarray(sigma, np.float64), self.entries.shape).copy()

    def _noisy(self, obs):
        obs = np.array(obs, copy=True)
        obs[self.entries] += (self.rng.standard_normal(len(self.entries)) * self.sigma).astype(obs.dtype)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return self._noisy(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return self._noisy(obs), r, term, trunc, info


class TorqueNoise(_Seeded):
    """Gaussian noise of standard deviation sigma (action units, one per entry) added to the action;
    the env clips the sum to its limits as it clips any action."""

    stream = 2

    def __init__(self, env: gym.Env, sigma: np.ndarray | float) -> None:
        super().__init__(env)
        self.sigma = np.broadcast_to(np.asarray(sigma, np.float64), action_box(env).shape).copy()

    def step(self, action):
        a = np.asarray(action, np.float64) + self.rng.standard_normal(self.sigma.shape) * self.sigma
        return self.env.step(a.astype(np.float32))


class TorqueResponse(gym.Wrapper):
    """A slow (k < 1) or overshooting (k > 1) actuator: tau = tau_prev + k (tau_des - tau_prev), within
    the action limits; tau starts at rest (0, or the nearest limit) after each reset."""

    def __init__(self, env: gym.Env, k: float) -> None:
        super().__init__(env)
        self.k = float(k)
        box = action_box(env)
        self.low = np.asarray(box.low, np.float64)
        self.high = np.asarray(box.high, np.float64)
        self.tau = np.clip(np.zeros(box.shape), self.low, self.high)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.tau = np.clip(np.zeros(self.tau.shape), self.low, self.high)
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.tau = np.clip(self.tau + self.k * (np.asarray(action, np.float64) - self.tau), self.low, self.high)
        return self.env.step(self.tau.astype(np.float32))


class ActionDelay(gym.Wrapper):
    """Each action applied `ticks` control ticks late; the first ticks after a reset apply rest (0, or
    the nearest limit)."""

    def __init__(self, env: gym.Env, ticks: int) -> None:
        super().__init__(env)
        self.ticks = int(ticks)
        box = action_box(env)
        self.rest = np.clip(np.zeros(box.shape), box.low, box.high).astype(np.float32)
        self.queue: deque = deque()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.queue = deque([self.rest.copy() for _ in range(self.ticks)])
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.queue.append(np.asarray(action, np.float32))
        return self.env.step(self.queue.popleft())


class Push(gym.Wrapper):
    """Pushes: a generalised force `force` on one joint (qfrc_applied on its first degree of freedom)
    during the ticks [round(t / period), round(t / period) + duration ticks) after each reset, for each
    start t; the sign alternates from push to push (+, -, +, ...)."""

    def __init__(self, env: gym.Env, joint: str, force: float, times_s: list[float], duration_s: float,
                 period_s: float) -> None:
        super().__init__(env)
        model, _ = mujoco_of(env)
        self.dof = joint_dofs(model, [joint])[0][0]
        self.force = float(force)
        n = max(1, int(round(duration_s / period_s)))
        self.schedule: dict[int, float] = {}
        for i, t in enumerate(times_s):
            start = int(round(t / period_s))
            for tick in range(start, start + n):
                self.schedule[tick] = self.force * (1 if i % 2 == 0 else -1)
        self.tick = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.tick = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        _, data = mujoco_of(self.env)  # a rig may build its plant afresh at a reset: look it up each tick
        data.qfrc_applied[self.dof] = self.schedule.get(self.tick, 0.0)
        self.tick += 1
        return self.env.step(action)
