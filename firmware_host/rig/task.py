"""A swing-up rig's task in its YAML (`task: swingup`, `task_spec`: the reward and success swingup.py computes), checked
when the rig is read."""

from __future__ import annotations

# task_spec of a swing-up rig's YAML: key, whether it must be above 0 (else at least 0); energy_bonus may be left out
TASK_KEYS = {"upright_band": True, "hold_s": True, "energy_bonus": False, "arm_cost": False, "action_cost": False,
             "limit_penalty": False}


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
