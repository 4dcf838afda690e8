"""A rig of one's own as a Gymnasium environment, and which rig a policy is for (`rig_of`).

`rig:PATH` (the nominal plant of the rig YAML at PATH) and `rig-dr:PATH` (its `randomization` block drawn every
episode) are taken by every command that takes an environment id (`teacher train --env`, `collect`, `evaluate`,
`distill`; not a plan, whose environments name its directories), so that a teacher trains on one's own plant without
editing a shipped rig. A swing-up rig (`task: swingup`) is
swingup.py's environment, a balance rig the rig's own (RigEnv). PATH is as given: relative to the working directory,
as a file argument is, and recorded so."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

from bpd.errors import BpdError
from training.envs import RIG_ENTRY as ENTRY  # the id make_env asks Gymnasium for
from training.envs import RIG_ENV


def rig_env_path(env_id: str | None) -> tuple[Path, bool] | None:
    """The YAML path and whether randomised of a `rig:PATH` or `rig-dr:PATH` id; None for any other id."""
    if not env_id or not env_id.startswith(RIG_ENV):
        return None
    kind, _, path = env_id.partition(":")
    return Path(path), kind == "rig-dr"


def make_rig_env(rig: str, randomize: bool = False, **kwargs) -> gym.Env:
    """The environment of the rig at the YAML path rig (checked by the rig loader: one line where it is not a rig)."""
    from firmware_host.rig import RigEnv, load_rig

    p = Path(rig)
    if not p.is_file():
        raise BpdError(f"rig:{rig}: no such rig YAML (the path is relative to the working directory)")
    spec = load_rig(p)
    if randomize and spec.raw.get("randomization") is None:
        raise BpdError(f"rig-dr:{rig}: the rig has no randomization block to draw from (rig:{rig} is its nominal "
                       "plant)")
    if spec.raw.get("task") == "swingup":
        from firmware_host.rig.swingup import SwingUpEnv

        return SwingUpEnv(str(p), randomize, **kwargs)
    if randomize and spec.plant != "cartpole":
        raise BpdError(f"rig-dr:{rig}: a balance rig's randomisation is the cart-pole plant's; rig {spec.name} is a "
                       f"{spec.plant} plant")
    return RigEnv(str(p), randomize, **kwargs)


def rig_of(env_id: str | None, obs_dim: int, act_dim: int) -> str | None:
    """The rig a policy trained on env_id is for (its plant, its sizes), or None: a shipped rig's name, or the
    YAML path of `rig:PATH`."""
    from firmware_host.rig import RIGS, load_rig

    if not env_id:
        return None
    if (own := rig_env_path(env_id)) is not None:
        spec = load_rig(own[0]) if own[0].is_file() else None
        return str(own[0]) if spec is not None and (spec.obs_dim, spec.act_dim) == (obs_dim, act_dim) else None
    for p in sorted(RIGS.glob("*.yaml")):
        spec = load_rig(p)
        if spec.policy_envs and spec.trained_here(env_id) and (spec.obs_dim, spec.act_dim) == (obs_dim, act_dim):
            return spec.name
    return None


if ENTRY.partition(":")[2] not in gym.registry:
    # by name, not the function: a spec whose entry point is a callable does not serialise (a Minari dataset's)
    gym.register(ENTRY.partition(":")[2], entry_point=f"{__name__}:make_rig_env")
