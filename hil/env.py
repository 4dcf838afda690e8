"""The rig as a gymnasium.Env backed by the serial device: any policy (a stable-baselines3 model,
for instance) runs on the rig unchanged. reset() and step() go through the protocol in host mode.

    env = SerialRigEnv("/dev/ttyACM0", "desktop-cartpole")
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)

An episode the emergency stop ended (the device's flag) is followed by no START of reset()'s own: its release must
restart nothing (ISO 13850), and a loop that resets after every episode would drive the rig again on it. reset() then
refuses until it is told, reset(options={"estop_released": True}), that the stop was released on purpose.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from bpd.errors import BpdError
from firmware_host.rig import load_rig
from firmware_host.wire.codec import Frame
from firmware_host.wire.spec import FLAGS, STOPPED
from hil.link import DeviceLink, check_rig_device


class SerialRigEnv(gym.Env):
    metadata = {"render_modes": []}
    action_space: gym.spaces.Box
    observation_space: gym.spaces.Box

    def __init__(self, port: str, rig: str, period_us: int | None = None, stall_timeout: float = 1.0) -> None:
        self.spec_rig = load_rig(rig)
        self.period = int(period_us or self.spec_rig.period_us)
        lim = self.spec_rig.limits
        self.lim = lim
        self.action_space = gym.spaces.Box(-lim["action"], lim["action"], (self.spec_rig.act_dim,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.spec_rig.obs_dim,), np.float32)
        self.max_steps = int(self.spec_rig.raw.get("max_episode_steps", 1000))
        self.stall_timeout = stall_timeout
        self.link = DeviceLink(port, self.spec_rig.baud)
        try:  # the device's sizes and period checked here: a CONFIG it then rejects is past the rig's bounds
            check_rig_device(self.link.handshake(), self.spec_rig, self.period)
        except BaseException:  # a device that does not answer, or another rig's, leaves no port open behind
            self.link.close()
            raise
        self._last: Frame | None = None  # the latest state frame (from reset on)
        self.t = 0
        self.estopped = False  # the emergency stop ended the last run: reset() waits to be told it was released

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self.estopped and not (options or {}).get("estop_released"):
            raise BpdError("the emergency stop ended the last episode: its release restarts nothing (ISO 13850); once "
                           "it is released and the rig clear, reset(options={'estop_released': True}) starts again")
        self.link.stop_and_zero()
        self.link.frames.clear()
        self.link.command("reset", seed=int(self.np_random.integers(2**31)))
        self.link.configure(self.period, self.spec_rig.watchdog_ticks, "host", self.lim["action"],
                            self.lim["position"], self.lim["angle"], spec=self.spec_rig)
        self.link.command("start")
        self._last = self.link.next_states(self.stall_timeout)[-1]
        self.t = 0
        self.estopped = bool(self._last.fields["flags"] & FLAGS["estop"])
        if self.estopped:  # held: the run ended at its first tick
            self._last = None
            raise BpdError("the emergency stop is pressed (the run ended at its first tick): release it, then "
                           "reset(options={'estop_released': True})")
        return np.asarray(self._last.fields["obs"], np.float32), {"seq": self._last.seq}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._last is None:
            raise gym.error.ResetNeeded("step() before reset()")
        a = np.asarray(action, np.float64).reshape(-1)
        if not np.all(np.isfinite(a)):  # a policy's bug: the rig stopped, not the action sent on
            self.link.stop_and_zero()
            self._last = None
            raise ValueError(f"non-finite action {a.tolist()}: the rig was stopped (reset() to run again)")
        a = np.clip(a, self.action_space.low, self.action_space.high)
        self.link.send("action", echo_seq=self._last.seq, n_act=len(a), action=[float(x) for x in a])
        self._last = self.link.next_states(self.stall_timeout)[-1]
        self.t += 1
        f = self._last.fields
        obs = np.asarray(f["obs"], np.float32)
        r = self.spec_rig
        terminated = bool(f["flags"] & STOPPED or abs(obs[r.pos_index]) > self.lim["position"]
                          or abs(obs[r.angle_index]) > self.lim["angle"])
        if terminated:
            self.link.stop_and_zero()
            self.estopped = bool(f["flags"] & FLAGS["estop"])
        return obs, 0.0 if terminated else 1.0, terminated, self.t >= self.max_steps, {"flags": f["flags"]}

    def close(self) -> None:
        self.link.close()
