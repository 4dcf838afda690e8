"""Environment construction and the pure evaluation function every model type shares."""

from __future__ import annotations

import warnings
from typing import Callable

import gymnasium as gym
import numpy as np

from bpd.errors import BpdError

Policy = Callable[[np.ndarray], np.ndarray]


def make_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """Build a Gymnasium env with a continuous (Box) action space, or fail with one clear line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise BpdError(f"unknown or unavailable environment {env_id!r}: {str(e).splitlines()[0]}") from None
    except ImportError as e:
        raise BpdError(f"environment {env_id!r} needs a missing package: {e}") from None
    if not isinstance(env.action_space, gym.spaces.Box) or not isinstance(env.observation_space, gym.spaces.Box):
        env.close()
        raise BpdError(f"environment {env_id!r} must have Box observation and action spaces")
    if len(env.observation_space.shape) != 1 or len(env.action_space.shape) != 1:
        env.close()
        raise BpdError(f"environment {env_id!r} must have flat (1-D) observations and actions")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def evaluate(env_id: str, policy: Policy, episodes: int, seed: int = 0) -> tuple[list[float], list[int]]:
    """Run `episodes` deterministic episodes; returns (returns, lengths). Episode i uses seed + i."""
    env = make_env(env_id)
    returns, lengths = [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done, ret, n = False, 0.0, 0
            while not done:
                obs, r, term, trunc, _ = env.step(np.asarray(policy(obs), dtype=np.float32))
                ret += float(r)
                n += 1
                done = term or trunc
            returns.append(ret)
            lengths.append(n)
    finally:
        env.close()
    return returns, lengths
