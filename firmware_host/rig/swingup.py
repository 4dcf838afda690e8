"""Swing-up rigs as Gymnasium environments: the pendulum starts hanging, the controller swings it up
and holds it upright.

    gym.make("firmware_host.rig:bpd/rotary-pendulum-v0")        # nominal plant
    gym.make("firmware_host.rig:bpd/rotary-pendulum-dr-v0")     # domain randomisation per episode

Observation and sensing are the rig's (RigEnv): encoder counts converted by the firmware's filter,
positions then velocities, the pendulum angle unwrapped (0 upright, +-pi hanging). Reward per tick

    r = (1 + cos alpha) / 2 + energy_bonus (1 - min(1, |E| / 2mgl))
        - arm_cost (x / x_limit)^2 - action_cost (u / u_limit)^2

and -limit_penalty when the arm (or cart) limit or the spin limit ends the episode. E is the
pendulum's energy about its pivot, zero upright at rest and -2mgl hanging at rest: the bonus grows
as the swing approaches the energy of upright, which is what a swing-up has to pump towards, so a
learner gets a signal long before the pendulum first reaches the top. Every term is at least zero
or small, so ending an episode early never pays. An episode is a
success when it runs to the end with the pendulum within upright_band of upright for each of the
last hold_s seconds; `info` carries "success" and "time_to_upright" (start of that final upright
run, seconds) at the last step.

Perturbations for robustness trials are constructor arguments: fixed parameter scales, extra
sensor noise, extra ticks of actuation latency and an action quantisation step.
"""

from __future__ import annotations

import math
from collections import deque

import gymnasium as gym
import numpy as np

from firmware_host.rig import Plant, RigEnv
from firmware_host.rig.task import EPISODE_STEPS

SCALE_KEYS = {"mass": "mass_scale", "length": "length_scale", "friction": "friction_scale", "gain": "motor_gain"}


def wrap_angle(a: float | np.ndarray) -> float | np.ndarray:
    """Angle into [-pi, pi)."""
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


class SwingUpEnv(RigEnv):
    """A swing-up rig (task: swingup in its YAML) with reward, success and optional perturbations."""

    def __init__(self, rig: str = "rotary-pendulum", randomize: bool = False, period_us: int | None = None,
                 scale: dict | None = None, sensor_noise: float = 0.0, extra_latency: int = 0,
                 action_step: float = 0.0) -> None:
        super().__init__(rig, randomize, period_us)
        raw = self.spec_rig.raw
        if raw.get("task") != "swingup":
            raise ValueError(f"rig {rig!r} is not a swing-up rig (task: swingup)")
        self.task = raw["task_spec"]
        self.scale = {k: float(v) for k, v in (scale or {}).items()}
        unknown = set(self.scale) - set(SCALE_KEYS)
        if unknown:
            raise ValueError(f"unknown parameter scale(s) {sorted(unknown)}; known: {sorted(SCALE_KEYS)}")
        if self.scale:
            self.plant = Plant(self.spec_rig, self.scale)
        self.sensor_noise = float(sensor_noise)
        self.extra_latency = int(extra_latency)
        self.action_step = float(action_step)
        self.dt = self.spec_rig.period_us * 1e-6
        self.hold_ticks = max(1, round(float(self.task["hold_s"]) / self.dt))
        self.max_steps = int(raw.get("max_episode_steps", EPISODE_STEPS))
        self.pending: deque = deque()
        self.upright_run = 0
        self._pendulum_constants()

    def _pendulum_constants(self) -> None:
        """m g l and the inertia about the pivot of the pendulum (the last body), from the MuJoCo model."""
        import mujoco

        m = self.plant.model
        b = m.nbody - 1
        mass, c = float(m.body_mass[b]), np.asarray(m.body_ipos[b], float)
        flat = np.zeros(9)
        mujoco.mju_quat2Mat(flat, m.body_iquat[b])
        rot = flat.reshape(3, 3)
        inertia = rot @ np.diag(m.body_inertia[b]) @ rot.T + mass * (c @ c * np.eye(3) - np.outer(c, c))
        axis = np.asarray(m.jnt_axis[-1], float)
        self.j_pivot = float(axis @ inertia @ axis)
        self.mgl = mass * float(-m.opt.gravity[2]) * float(np.linalg.norm(c))

    def pendulum_energy(self, angle: float, rate: float) -> float:
        """J_p rate^2 / 2 + m g l (cos angle - 1): zero upright at rest."""
        return 0.5 * self.j_pivot * rate * rate + self.mgl * (math.cos(angle) - 1.0)

    def _observe(self) -> np.ndarray:
        raw = self.plant.sensors()
        if self.sensor_noise > 0:  # extra noise on the angles, quantised by the encoders like the rest
            n = self.spec_rig.n_pos
            cpu = np.asarray(self.spec_rig.sensors["counts_per_unit"], float)
            raw[:n] = np.round(raw[:n] + self.np_random.normal(0, self.sensor_noise, n) * cpu)
        return self.filter(raw)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        gym.Env.reset(self, seed=seed)
        if self.randomize:
            r = self.spec_rig.raw["randomization"]
            scale = {k: self.np_random.uniform(*r[key]) * self.scale.get(k, 1.0) for k, key in SCALE_KEYS.items()}
            self.plant = Plant(self.spec_rig, scale)
            self._pendulum_constants()
        self.plant.reset(int(self.np_random.integers(2**31)))
        self.filter.reset()
        self.t = 0
        self.upright_run = 0
        self.pending = deque([np.zeros(self.spec_rig.act_dim)] * self.extra_latency)
        return self._observe(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        lim = self.spec_rig.limits
        u = np.clip(np.asarray(action, np.float64).reshape(-1), self.action_space.low, self.action_space.high)
        if self.action_step > 0:
            u = np.clip(np.round(u / self.action_step) * self.action_step, self.action_space.low,
                        self.action_space.high)
        if self.extra_latency:
            self.pending.append(u)
            u = self.pending.popleft()
        for _ in range(self.plant.substeps):
            self.plant.substep(u)
        self.t += 1
        obs = self._observe()
        x = self.plant.state()
        pos, ang = float(x[0]), float(x[1])
        terminated = bool(not np.isfinite(x).all() or abs(pos) > lim["position"] or abs(ang) > lim["angle"])
        energy = self.pendulum_energy(ang, float(x[3]))
        bonus = float(self.task.get("energy_bonus", 0.0)) * (1.0 - min(1.0, abs(energy) / (2 * self.mgl)))
        reward = (0.5 * (1.0 + math.cos(ang)) + bonus - self.task["arm_cost"] * (pos / lim["position"]) ** 2
                  - self.task["action_cost"] * float(np.sum((u / lim["action"]) ** 2)))
        if terminated:
            reward -= float(self.task["limit_penalty"])
        upright = not terminated and abs(float(wrap_angle(ang))) < self.task["upright_band"]
        self.upright_run = self.upright_run + 1 if upright else 0
        truncated = self.t >= self.max_steps
        info: dict = {"upright": upright}
        if terminated or truncated:
            success = bool(truncated and not terminated and self.upright_run >= self.hold_ticks)
            info["success"] = success
            info["time_to_upright"] = (self.t - self.upright_run) * self.dt if success else None
        return obs, float(reward), terminated, truncated, info
