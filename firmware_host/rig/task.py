"""A swing-up rig's task in its YAML (`task: swingup`, `task_spec`: the reward and success swingup.py computes), checked
when the rig is read."""

from __future__ import annotations

import math

# task_spec of a swing-up rig's YAML: key, whether it must be above 0 (else at least 0); energy_bonus may be left out
TASK_KEYS = {"upright_band": True, "hold_s": True, "energy_bonus": False, "arm_cost": False, "action_cost": False,
             "limit_penalty": False}
EPISODE_STEPS = 2500  # a swing-up episode's ticks where the rig gives no max_episode_steps


def check_task(raw: dict, bad, number, unknown_key) -> None:
    """A rig's task (swingup, the only one; a balance rig has none) and its task_spec, each key present and in
    range, or one line (bad, number and unknown_key are the rig loader's)."""
    if raw.get("task") is None:
        raise bad("task_spec is a swing-up rig's reward and success: add task: swingup, or remove it")
    if raw.get("task") != "swingup":
        raise bad(f"task must be swingup, or no task key for a balance rig (got {str(raw['task'])[:40]!r})")
    ts = raw.get("task_spec")
    if not isinstance(ts, dict):
        raise bad(f"task_spec must be a mapping of {', '.join(TASK_KEYS)} (a swing-up rig's reward and success)")
    if why := unknown_key(ts, frozenset(TASK_KEYS), "task_spec."):
        raise bad(why)
    for key, strict in TASK_KEYS.items():
        if key not in ts and key != "energy_bonus":
            raise bad(f"missing key task_spec.{key}")
        number(ts.get(key, 0.0), f"task_spec.{key}", 0, strict=strict)
    # success is upright (within upright_band) for the last hold_s: a band past horizontal counts a pendulum that
    # never rose, a hold as long as the episode (which starts hanging) counts none
    if ts["upright_band"] >= math.pi / 2:
        raise bad(f"task_spec.upright_band {ts['upright_band']:g} rad reaches below horizontal (pi/2): a pendulum that "
                  "never swung up would count as upright")
    episode = int(raw.get("max_episode_steps", EPISODE_STEPS)) * float(raw["period_us"]) * 1e-6
    if ts["hold_s"] >= episode:
        raise bad(f"task_spec.hold_s {ts['hold_s']:g} s is not shorter than an episode ({episode:g} s: "
                  "max_episode_steps x period_us): no episode could succeed")
