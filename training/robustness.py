"""One robustness score per controller, after the RealAIGym double-pendulum benchmark: six categories
of imperfection, each swept over a grid of variations, scored by the share of episodes that succeed.

    model            every body's mass (m r at fixed centres of mass) and inertia scaled by 1 +- `mass`,
                     1 +- `inertia`; `damping` and `coulomb` added to the joints' viscous damping and
                     Coulomb friction (dof_damping, dof_frictionloss; a total below zero is zero). Each of
                     the four is swept alone over `variations` values, so this category holds four sweeps.
    velocity_noise   Gaussian noise of sigma 0 .. `velocity_noise` on the observation entries that are
                     velocities (the env's units: rad/s, m/s)
    torque_noise     Gaussian noise of sigma 0 .. `torque_noise` added to the action, absolute in the
                     action's units (V, N, or a gymnasium task's normalised action)
    torque_response  tau = tau_prev + k (tau_des - tau_prev), k from response[0] to response[1] (1: ideal)
    delay            the action applied 0 .. `delay_s` late, in whole control ticks (round(s / period))
    perturbation     pushes: a generalised force 0 .. `push` on `push_joint` (N m on a hinge, N on a
                     slide) for `push_duration_s` at each of `push_times_s`, alternating in sign

The double pendulum's own sizes (torque limit 6 N m, control at 500 Hz): masses and inertias +-25 %,
damping +-0.1 N m s/rad, Coulomb friction +-0.2 N m, velocity noise up to 0.5 rad/s, torque noise up to
1.1 N m, k from 0.1 to 2.0, delay up to 40 ms. A rig states its own in the `robustness` block of its
YAML; a gymnasium MuJoCo task gets them scaled from its actuators (`default_grid`).

A variation's success is the share of its episodes that succeed (episode i of every variation resets
with seed + i, so every variation and every controller meets the same starts); a category's score is
the mean over its variations; the overall score is the mean of the six categories. An episode
succeeds by the env's own rule where it has one (`info["success"]` at the last step: the swing-up
rigs), else when it is not terminated early and its return keeps `return_share` of the same
controller's return from the same start on the nominal plant (R >= R_nom - (1 - share) |R_nom|).

A model variation is applied to a freshly built env (nothing is restored); the others are wrappers
around it, seeded from each reset's seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields

import gymnasium as gym
import numpy as np

from bpd.config import field
from bpd.errors import BpdError
from training.perturbations import (
    ActionDelay,
    Push,
    TorqueNoise,
    TorqueResponse,
    VelocityNoise,
    _env_name,
    action_box,
    floating_base_joints,
    joint_dofs,
    mujoco_of,
    period_of,
    velocity_entries,
)

Policy = Callable[[np.ndarray], np.ndarray]
EnvFactory = Callable[[], gym.Env]

CATEGORIES = ("model", "velocity_noise", "torque_noise", "torque_response", "delay", "perturbation")
MODEL_PARAMS = ("mass", "inertia", "damping", "coulomb")

# The double pendulum benchmark's sizes, as shares of its 6 N m torque limit where they are forces.
DP_TORQUE_LIMIT = 6.0
DP_DAMPING, DP_COULOMB, DP_TORQUE_NOISE = 0.1, 0.2, 1.1
DEFAULT_PUSH_RATE, DEFAULT_PUSH_S = 1.0, 0.1  # a gymnasium task's largest push: 1 rad/s (or m/s) over 0.1 s


@dataclass
class RobustnessGrid:
    """The variations of the six categories, in the task's own units (a rig's `robustness` block)."""

    period_s: float = field(help="control period, s (delays are whole ticks of it)")
    damping: list[float] = field(help="largest viscous damping added to or taken from each of `joints` (N m s/rad, "
                                 "N s/m; one value: every joint)")
    coulomb: list[float] = field(help="largest Coulomb friction added to or taken from each of `joints` (N m, N; "
                                 "one value: every joint)")
    velocity_noise: list[float] = field(help="largest noise sigma on each velocity entry (one value: all)")
    torque_noise: list[float] = field(help="largest noise sigma on each action entry, in the action's units")
    push: float = field(help="largest push, a generalised force on push_joint (N m on a hinge, N on a slide)")
    push_joint: str = field(help="the joint the pushes act on")
    push_times_s: list[float] = field(help="when each push starts, s after the reset")
    push_duration_s: float = field(help="how long each push lasts, s")
    variations: int = field(21, help="variations per sweep (the model category holds four sweeps)")
    mass: float = field(0.25, help="largest change of every body's mass, as a share (m r at fixed centres)")
    inertia: float = field(0.25, help="largest change of every body's inertia about its centre, as a share")
    joints: list[str] | None = field(None, help="joints damping and friction change on (default: all but a "
                                     "floating base)")
    velocity_entries: list[int] | None = field(None, help="observation entries that are velocities (default: "
                                               "the rig's layout, or found from the MuJoCo state)")
    response: list[float] = field([0.1, 2.0], help="smallest and largest k of the torque response")
    delay_s: float = field(0.04, help="largest delay of the action, s")
    return_share: float = field(0.8, help="where the env has no success rule: the share of the nominal "
                                "return an episode must keep")

    @classmethod
    def from_dict(cls, block: object, defaults: dict | None = None, where: str = "robustness") -> RobustnessGrid:
        """A grid from a mapping (a rig's YAML block) over `defaults`; a bad key or value is one line."""
        if not isinstance(block, dict):
            raise BpdError(f"{where}: must be a mapping of {', '.join(f.name for f in fields(cls))}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in block if k not in names)
        if unknown:
            raise BpdError(f"{where}: unknown key {unknown[0][:40]!r} (known: {', '.join(sorted(names))})")
        merged = dict(defaults or {}) | dict(block)
        missing = [f.name for f in fields(cls) if f.name not in merged and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise BpdError(f"{where}: missing key {missing[0]!r} (no default for this task)")
        for k in ("damping", "coulomb", "velocity_noise", "torque_noise", "push_times_s"):
            if k in merged and not isinstance(merged[k], (list, tuple)):
                merged[k] = [merged[k]]
        grid = cls(**merged)
        grid.check(where)
        return grid

    def check(self, where: str) -> None:
        def num(x: object, key: str, low: float = 0.0, strict: bool = False) -> float:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise BpdError(f"{where}: {key} must be a finite number (got {str(x)[:40]!r})")
            if x < low or (strict and x == low):
                raise BpdError(f"{where}: {key} must be {'above' if strict else 'at least'} {low:g} (got {x!r})")
            return float(x)

        num(self.period_s, "period_s", strict=True)
        for k in ("push", "push_duration_s", "delay_s", "mass", "inertia"):
            num(getattr(self, k), k)
        if self.mass >= 1 or self.inertia >= 1:
            raise BpdError(f"{where}: mass and inertia are shares below 1 (a body keeps some mass)")
        for k in ("damping", "coulomb", "velocity_noise", "torque_noise", "push_times_s"):
            v = getattr(self, k)
            if not v:
                raise BpdError(f"{where}: {k} needs at least one value")
            for i, x in enumerate(v):
                num(x, f"{k}[{i}]")
        if isinstance(self.variations, bool) or not isinstance(self.variations, int) or self.variations < 2:
            raise BpdError(f"{where}: variations must be a whole number of at least 2 (got {self.variations!r})")
        r = self.response
        if not isinstance(r, (list, tuple)) or len(r) != 2 or num(r[0], "response[0]", strict=True) > num(
                r[1], "response[1]"):
            raise BpdError(f"{where}: response must be [smallest k, largest k] with 0 < smallest <= largest")
        if not 0 < num(self.return_share, "return_share") <= 1:
            raise BpdError(f"{where}: return_share must be in (0, 1] (got {self.return_share!r})")
        if not isinstance(self.push_joint, str):
            raise BpdError(f"{where}: push_joint must name a joint (got {str(self.push_joint)[:40]!r})")
        for k in ("joints", "velocity_entries"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, list) or not v):
                raise BpdError(f"{where}: {k} must be a non-empty list")
        for k in ("damping", "coulomb"):
            if len(getattr(self, k)) > 1 and len(getattr(self, k)) != len(self.joints or []):
                raise BpdError(f"{where}: {k} gives {len(getattr(self, k))} values: give one, or one per joint "
                               "named in joints")
        if self.velocity_entries is not None and any(
                isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.velocity_entries):
            raise BpdError(f"{where}: velocity_entries must be observation indices (whole numbers from 0)")

    def to_dict(self) -> dict:
        return asdict(self)

    def variations_of(self, category: str) -> list[Variation]:
        """The variations of one category, in sweep order."""
        n = self.variations
        up = np.linspace(0.0, 1.0, n)  # a share of the largest value
        both = np.linspace(-1.0, 1.0, n)  # a signed share of the largest change
        if category == "model":
            out = []
            for p in MODEL_PARAMS:
                size = getattr(self, p)
                out += [Variation("model", p, float(s), float(1 + s * size if p in ("mass", "inertia")
                                                              else s * size[0])) for s in both]
            return out
        if category == "velocity_noise":
            return [Variation(category, "sigma", float(s), float(s * self.velocity_noise[0])) for s in up]
        if category == "torque_noise":
            return [Variation(category, "sigma", float(s), float(s * self.torque_noise[0])) for s in up]
        if category == "torque_response":
            k0, k1 = self.response
            return [Variation(category, "k", float(s), float(k0 + s * (k1 - k0))) for s in up]
        if category == "delay":
            return [Variation(category, "delay_s", float(s), float(s * self.delay_s)) for s in up]
        if category == "perturbation":
            return [Variation(category, "push", float(s), float(s * self.push)) for s in up]
        raise BpdError(f"unknown robustness category {category!r} (known: {', '.join(CATEGORIES)})")

    def delay_ticks(self, seconds: float) -> int:
        return int(round(seconds / self.period_s))


@dataclass
class Variation:
    """One point of a sweep: `level` is its share of the grid's largest value (-1..1 for a model
    parameter's change, 0..1 for the others); `value` is what is applied, in the task's units (a factor
    for mass and inertia, the first entry's sigma for the noises)."""

    category: str
    param: str
    level: float
    value: float


def default_grid(env: gym.Env) -> dict:
    """The double pendulum's sizes in a gymnasium MuJoCo task's units: forces as the same shares of the
    task's largest actuator force (gear x action limit), velocity noise 0.5 per velocity entry, torque
    noise 1.1/6 of each action limit, a push on the last joint that changes its velocity by up to
    DEFAULT_PUSH_RATE (rad/s or m/s; at its inertia in the initial pose, the other joints held) over
    DEFAULT_PUSH_S, at a third and two thirds of the episode."""
    model, _ = mujoco_of(env)
    high = np.abs(np.asarray(action_box(env).high, np.float64))
    force = float(np.max(np.abs(model.actuator_gear[:, 0]) * high)) if model.nu else 1.0
    period = period_of(env)
    steps = (env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000)
    joints = [j for j in range(model.njnt) if j not in floating_base_joints(model)]
    if not joints:
        raise BpdError(f"{_env_name(env)}: no joint to push (give push_joint in the robustness grid)")
    last = joints[-1]
    push = float(model.dof_M0[model.jnt_dofadr[last]]) * DEFAULT_PUSH_RATE / DEFAULT_PUSH_S
    return {"period_s": period, "damping": [DP_DAMPING / DP_TORQUE_LIMIT * force],
            "coulomb": [DP_COULOMB / DP_TORQUE_LIMIT * force], "velocity_noise": [0.5],
            "torque_noise": [float(x) for x in DP_TORQUE_NOISE / DP_TORQUE_LIMIT * high],
            "push": push, "push_joint": model.joint(last).name, "push_duration_s": DEFAULT_PUSH_S,
            "push_times_s": [round(steps * period / 3, 3), round(2 * steps * period / 3, 3)]}


def grid_for(env: gym.Env) -> RobustnessGrid:
    """A rig's grid from the `robustness` block of its YAML (refused where there is none: its units are
    the rig's to state); a gymnasium MuJoCo task's from `default_grid`."""
    rig = getattr(env.unwrapped, "spec_rig", None)
    if rig is not None:  # a rig's RigSpec reads its block (firmware_host/rig)
        grid = rig.robustness
        if grid is None:
            raise BpdError(f"rig {rig.name!r} has no robustness block in its YAML")
        return grid
    return RobustnessGrid.from_dict({}, default_grid(env), f"{_env_name(env)}: robustness")


# ------------------------------------------------------------------ applying a variation


def apply_model_error(env: gym.Env, param: str, value: float | list[float] | np.ndarray,
                      joints: list[str] | None = None) -> None:
    """Change a freshly built env's MuJoCo model for good: mass or inertia by the factor `value`, damping
    or coulomb by adding `value` (one per joint, or one for all; a total below zero is zero) on the
    joints' degrees of freedom."""
    import mujoco

    model, data = mujoco_of(env)
    if param in ("mass", "inertia"):
        (model.body_mass if param == "mass" else model.body_inertia)[1:] *= float(np.asarray(value).item())
    elif param in ("damping", "coulomb"):
        arr = model.dof_damping if param == "damping" else model.dof_frictionloss
        groups = joint_dofs(model, joints)
        add = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (len(groups),))
        for dofs, a in zip(groups, add):
            arr[dofs] = np.maximum(arr[dofs] + a, 0.0)
    else:
        raise BpdError(f"unknown model parameter {param!r} (known: {', '.join(MODEL_PARAMS)})")
    mujoco.mj_setConst(model, data)  # subtree masses, inverse weights: from the new masses


def varied_env(make_env: EnvFactory, grid: RobustnessGrid, v: Variation) -> gym.Env:
    """A fresh env under one variation."""
    env = make_env()
    if v.category == "model":
        amount = v.level * np.asarray(getattr(grid, v.param)) if v.param in ("damping", "coulomb") else v.value
        apply_model_error(env, v.param, amount, grid.joints)
        return env
    if v.category == "velocity_noise":
        entries = grid.velocity_entries if grid.velocity_entries is not None else velocity_entries(env)
        n_obs = int(np.prod(env.observation_space.shape or (0,)))
        if max(entries) >= n_obs:
            raise BpdError(f"robustness: velocity_entries name entry {max(entries)} of a {n_obs}-entry observation")
        if len(grid.velocity_noise) not in (1, len(entries)):
            raise BpdError(f"robustness: velocity_noise gives {len(grid.velocity_noise)} sigmas for "
                           f"{len(entries)} velocity entries (give one, or one per entry)")
        return VelocityNoise(env, entries, v.level * np.asarray(grid.velocity_noise, np.float64))
    if v.category == "torque_noise":
        n = action_box(env).shape[0]
        if len(grid.torque_noise) not in (1, n):
            raise BpdError(f"robustness: torque_noise gives {len(grid.torque_noise)} sigmas for {n} actions "
                           "(give one, or one per action)")
        return TorqueNoise(env, v.level * np.asarray(grid.torque_noise, np.float64))
    if v.category == "torque_response":
        return TorqueResponse(env, v.value)
    if v.category == "delay":
        return ActionDelay(env, grid.delay_ticks(v.value))
    if v.category == "perturbation":
        return Push(env, grid.push_joint, v.value, grid.push_times_s, grid.push_duration_s, grid.period_s)
    raise BpdError(f"unknown robustness category {v.category!r}")


# ------------------------------------------------------------------ episodes, success and the score


@dataclass
class Episode:
    ret: float
    length: int
    terminated: bool
    own_success: bool | None  # the env's own verdict at the last step, where it gives one


def run_episodes(env: gym.Env, policy: Policy, episodes: int, seed: int) -> list[Episode]:
    """Episode i resets with seed + i and runs until the env ends it."""
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        ret, n, done, term = 0.0, 0, False, False
        info: dict = {}
        while not done:
            obs, r, term, trunc, info = env.step(np.asarray(policy(obs), np.float32))
            ret += float(r)
            n += 1
            done = term or trunc
        s = info.get("success")
        out.append(Episode(ret, n, bool(term), None if s is None else bool(s)))
    return out


def succeeded(ep: Episode, nominal_return: float | None, share: float) -> bool:
    """The env's own verdict where it gives one; else not terminated early and R >= R_nom - (1-share)|R_nom|,
    R_nom the return of the nominal episode of the same seed."""
    if ep.own_success is not None:
        return ep.own_success
    if nominal_return is None:
        raise BpdError("an env without its own success rule needs the nominal return")
    return not ep.terminated and ep.ret >= nominal_return - (1.0 - share) * abs(nominal_return)


def scores(successes: dict[str, list[float]]) -> dict:
    """Per category the mean of its variations' success shares; overall the mean of the categories."""
    missing = [c for c in CATEGORIES if not successes.get(c)]
    if missing:
        raise BpdError(f"no variations scored in the categories {', '.join(missing)}")
    per = {c: float(np.mean(successes[c])) for c in CATEGORIES}
    return {"categories": per, "overall": float(np.mean([per[c] for c in CATEGORIES]))}


def success_rule(grid: RobustnessGrid, own: bool) -> str:
    if own:
        return "the env's own success at the last step of the episode"
    return (f"not terminated early and return >= R_nom - {1 - grid.return_share:g} |R_nom|, R_nom the same "
            "controller's return from the same start (seed) on the nominal plant")


def robustness(make_env: EnvFactory, policy: Policy, grid: RobustnessGrid, episodes: int = 3, seed: int = 0,
               categories: tuple[str, ...] = CATEGORIES, progress: Callable[[str], None] | None = None) -> dict:
    """Score a controller (any callable obs -> action) on every variation of the grid: `episodes` per
    variation, episode i with seed + i. Returns the grid, the nominal episodes, per category its score
    and each variation's success share and mean return, and the overall score."""
    if episodes < 1:
        raise BpdError("robustness needs at least one episode per variation")
    nominal_env = make_env()
    try:
        nominal_eps = run_episodes(nominal_env, policy, episodes, seed)
    finally:
        nominal_env.close()
    own = all(e.own_success is not None for e in nominal_eps)

    def share(eps: list[Episode]) -> float:
        return float(np.mean([succeeded(e, None if own else n.ret, grid.return_share)
                              for e, n in zip(eps, nominal_eps)]))

    res: dict = {"grid": grid.to_dict(), "episodes_per_variation": episodes, "seeds": [seed, seed + episodes - 1],
                 "success_rule": success_rule(grid, own),
                 "nominal": {"success": share(nominal_eps), "return_mean": float(np.mean([e.ret for e in nominal_eps])),
                             "returns": [round(e.ret, 3) for e in nominal_eps]},
                 "categories": {}}
    successes: dict[str, list[float]] = {}
    for cat in categories:
        rows = []
        for v in grid.variations_of(cat):
            env = varied_env(make_env, grid, v)
            try:
                eps = run_episodes(env, policy, episodes, seed)
            finally:
                env.close()
            row = asdict(v) | {"success": share(eps), "return_mean": float(np.mean([e.ret for e in eps])),
                               "terminated": sum(e.terminated for e in eps)}
            del row["category"]
            if cat == "delay":
                row["ticks"] = grid.delay_ticks(v.value)
            rows.append(row)
        successes[cat] = [r["success"] for r in rows]
        res["categories"][cat] = {"score": float(np.mean(successes[cat])), "variations": rows}
        if progress:
            progress(f"{cat}: {res['categories'][cat]['score']:.3f}")
    if set(categories) == set(CATEGORIES):
        res["overall"] = scores(successes)["overall"]
    return res


# ------------------------------------------------------------------ the figure


PANELS = [("model", p) for p in MODEL_PARAMS] + [(c, None) for c in CATEGORIES[1:]]
AXIS = {"mass": "mass factor (m r)", "inertia": "inertia factor", "damping": "damping added (first joint)",
        "coulomb": "Coulomb friction added (first joint)", "velocity_noise": "velocity noise sigma (first entry)",
        "torque_noise": "torque noise sigma (first action)", "torque_response": "k",
        "delay": "delay (ms)", "perturbation": "push (generalised force)"}


def plot(results: dict[str, dict], path, title: str) -> None:
    """Success against each variation, one line per controller: the model category's four sweeps and
    the other five categories, a panel each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bpd.io import save_png

    fig, axes = plt.subplots(3, 3, figsize=(13, 10), sharey=True)
    for ax, (cat, param) in zip(axes.flat, PANELS):
        for name, r in results.items():
            c = r["categories"].get(cat)
            if c is None:
                continue
            rows = [v for v in c["variations"] if param is None or v["param"] == param]
            x = [v["value"] * (1000 if cat == "delay" else 1) for v in rows]
            overall = r.get("overall")
            ax.plot(x, [v["success"] * 100 for v in rows], marker=".", lw=1,
                    label=name if overall is None else f"{name} (overall {overall:.2f})")
        ax.set_title(f"model: {param}" if param else cat.replace("_", " "), fontsize=10)
        ax.set_xlabel(AXIS[param or cat], fontsize=8)
        ax.locator_params(axis="x", nbins=6)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("success (%)")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    save_png(fig, path, dpi=100)
