"""Environment construction and the pure evaluation function every model type shares."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import gymnasium as gym
import numpy as np

from bpd.errors import BpdError
from training.seed_blocks import SEED_BLOCK, SELECT_EVAL_BASE, TRAIN_EVAL_BASE, VISIT_BASE  # noqa: F401 (read here too)

Policy = Callable[[np.ndarray], np.ndarray]

if TYPE_CHECKING:
    class BoxEnv(gym.Env[np.ndarray, np.ndarray]):
        """What make_env returns: an env whose observation and action spaces are flat Boxes."""

        observation_space: gym.spaces.Box
        action_space: gym.spaces.Box


RIG_ENV = ("rig:", "rig-dr:")  # a rig of one's own by its YAML path (firmware_host/rig/yaml_env.py)
RIG_ENTRY = "firmware_host.rig.yaml_env:bpd/rig-yaml-v0"  # the Gymnasium id yaml_env.py registers


def env_key(env_id: str) -> str:
    """What names one environment: `module:ID` and `ID` alike, and a rig of one's own by its YAML's resolved path
    (`rig:a.yaml`, `rig:./a.yaml` and `rig-dr:a.yaml` are one plant), as a shipped rig's nominal and randomised ids
    are (`bpd/rotary-pendulum-v0` and `bpd/rotary-pendulum-dr-v0`: firmware_host/rig registers both)."""
    if env_id.startswith(RIG_ENV):
        return f"rig:{Path(env_id.partition(':')[2]).resolve()}"
    return re.sub(r"^(bpd/.+)-dr(-v\d+)$", r"\1\2", env_id.rpartition(":")[2])


@functools.cache
def _mujoco_warnings_to_python() -> None:
    """MuJoCo's own warnings as Python warnings: its default printed them to stderr and appended them to
    MUJOCO_LOG.TXT in the working directory (HalfCheetah-v5's XML warns that 'settotalmass' is deprecated at every
    build: an error then took three lines, and every command left the file behind). Building an env ignores them,
    as it ignores the Python warnings of gym.make; one while simulating (an unstable step) is still said."""
    try:
        import mujoco
    except ImportError:
        return
    mujoco.set_mju_user_warning(lambda msg: warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2))


def make_env(env_id: str, seed: int | None = None, **kwargs) -> BoxEnv:
    """Build a Gymnasium env with a continuous (Box) action space, or fail with one clear line. `rig:PATH` and
    `rig-dr:PATH` are the rig whose YAML is at PATH, nominal and randomised (firmware_host/rig/yaml_env.py)."""
    make_id = env_id
    if env_id.startswith(RIG_ENV):  # by name, not import: this room does not import the rig's
        kind, _, path = env_id.partition(":")
        make_id, kwargs = RIG_ENTRY, {"rig": path, "randomize": kind == "rig-dr"} | kwargs
    _mujoco_warnings_to_python()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(make_id, **kwargs)
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
    return cast("BoxEnv", env)


def env_dims(env_id: str) -> tuple[int, int]:
    """Observation and action sizes of an environment (built and closed again)."""
    env = make_env(env_id)
    try:
        return env.observation_space.shape[0], env.action_space.shape[0]
    finally:
        env.close()


class ActionRepeat(gym.Wrapper):
    """Hold each action for k ticks of the wrapped env and return the summed reward; a step ends early
    with the episode. (Gymnasium's and stable-baselines3's frame-skip wrappers max-pool Atari frames,
    which a state observation must not be.)"""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        self.k = int(k)

    def step(self, action):
        total = 0.0
        for _ in range(self.k):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


RANDOMIZATION_KEYS = ("mass_scale", "length_scale", "friction_scale", "motor_gain")


def check_randomization(ranges: object, where: str) -> dict[str, tuple[float, float]]:
    """A `randomization` block checked: a mapping of known keys to [low, high] with 0 < low <= high."""
    if not isinstance(ranges, dict) or not ranges:
        raise BpdError(f"{where}: randomization must be a mapping of {', '.join(RANDOMIZATION_KEYS)} to [low, high]")
    out = {}
    for k, v in ranges.items():
        if k not in RANDOMIZATION_KEYS:
            raise BpdError(f"{where}: unknown randomization key {k!r} (known: {', '.join(RANDOMIZATION_KEYS)})")
        try:
            lo, hi = (float(x) for x in v)
        except (TypeError, ValueError):
            raise BpdError(f"{where}: randomization {k} must be [low, high], got {v!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
            raise BpdError(f"{where}: randomization {k} must satisfy 0 < low <= high, got [{lo}, {hi}]")
        out[str(k)] = (lo, hi)
    return out


class Randomize(gym.Wrapper):
    """Domain randomisation of a MuJoCo environment's model, the way a rig's YAML `randomization`
    block describes it. A seeded reset draws the plant from that seed alone (so episode i of an
    evaluation meets the same plant for every policy); an unseeded one continues the sequence of the
    last seeded one.
      mass_scale       every body's mass and inertia by one factor (the same shapes, denser)
      friction_scale   sliding friction of every geom and damping of every joint by one factor
      motor_gain       every actuator's gear by one factor
    A key the block does not give stays nominal; length_scale has no counterpart in a fixed MuJoCo
    model and is ignored. The constants MuJoCo derives from the masses (subtree masses, the inverse
    weights that set contact softness) are recomputed after each draw. Note that with gravity acting,
    all masses heavier by s is close to the motor gain divided by s: the two ranges overlap."""

    KEYS = ("mass_scale", "friction_scale", "motor_gain")

    def __init__(self, env: gym.Env, ranges: dict) -> None:
        super().__init__(env)
        name = env.spec.id if env.spec else type(env.unwrapped).__name__
        model = getattr(env.unwrapped, "model", None)
        if model is None or not hasattr(model, "body_mass") or not hasattr(env.unwrapped, "data"):
            raise BpdError(f"{name}: domain randomisation needs a MuJoCo environment")
        self.ranges = {k: r for k, r in check_randomization(ranges, name).items() if k in self.KEYS}
        self.model, self.data = model, env.unwrapped.data
        self.nominal = {k: getattr(model, k).copy() for k in
                        ("body_mass", "body_inertia", "geom_friction", "dof_damping", "actuator_gear")}
        self.scale: dict[str, float] = {}
        self.rng = np.random.default_rng()

    def draw(self, seed: int | None) -> dict[str, float]:
        """Set the model's parameters for one episode; returns the factors drawn."""
        import mujoco

        if seed is not None:
            self.rng = np.random.default_rng([seed, 0x0D0E])
        s = {k: float(self.rng.uniform(*self.ranges[k])) if k in self.ranges else 1.0 for k in self.KEYS}
        m, n = self.model, self.nominal
        m.body_mass[:] = n["body_mass"] * s["mass_scale"]
        m.body_inertia[:] = n["body_inertia"] * s["mass_scale"]
        m.geom_friction[:, 0] = n["geom_friction"][:, 0] * s["friction_scale"]
        m.dof_damping[:] = n["dof_damping"] * s["friction_scale"]
        m.actuator_gear[:, 0] = n["actuator_gear"][:, 0] * s["motor_gain"]
        mujoco.mj_setConst(m, self.data)  # the reset that follows sets the state again
        self.scale = s
        return s

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.draw(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, info | {"randomization": dict(self.scale)}


def make_eval_env(env_id: str, randomization: dict | None = None, rig: str | None = None) -> BoxEnv:
    """The environment an evaluation runs in: nominal, or under domain randomisation with the ranges
    of a rig's `randomization` block (`rig` names it). A rig's own environment randomises itself with
    its own block (made with randomize=True), so another rig's name is refused there; any other
    MuJoCo environment gets the ranges given through Randomize."""
    if not randomization:
        return make_env(env_id)
    env = make_env(env_id)
    rig_spec = getattr(env.unwrapped, "spec_rig", None)
    if rig_spec is not None:
        env.close()
        if not rig_spec.raw.get("randomization"):
            raise BpdError(f"{env_id}: its rig {rig_spec.name!r} has no randomization block")
        if rig is not None and rig != rig_spec.name:
            raise BpdError(f"{env_id} is the {rig_spec.name} rig's own environment and randomises with that rig's "
                           f"block: give --randomize {rig_spec.name}")
        return make_env(env_id, randomize=True)
    try:
        return cast("BoxEnv", Randomize(env, randomization))
    except BpdError:
        env.close()
        raise


# Evaluation seeds. Episode i of an evaluation starting at seed s resets the env with s + i. The
# ranges are disjoint so that no episode used to choose a model is used to report it:
#   reporting (`bpd evaluate`, tables)          0 ..   99_999, bar a teacher's training evaluations
#                                               (training/teacher.py: 10_000 + 100 * seed + i), which
#                                               `bpd evaluate` refuses to report on as it refuses the others
#   periodic evaluations during distillation    TRAIN_EVAL_BASE + 1000 * run seed + i
#   choosing among a run's evaluated students   SELECT_EVAL_BASE + 1000 * run seed + i
#   the fine-tune's visits (training/visits.py)  VISIT_BASE + 1000 * run seed + i, i < 1000; past the block
#                                                VISIT_MORE_BASE + 20_000_000 * run seed + i - 1000
#   the online baselines' own episodes           COLLECT_BASE + 1_300_000 * run seed + i, i < 1_300_000
#                                                (training/baseline_trainer.py)
# (300_000 + i: the export's kernel choice and the double pendulum's probe episodes; a dataset's episodes continue
# from one seeded reset at `bpd collect --seed`, DATASET_SEED (900_000) by default and in the plans (some benchmarks
# give their run seeds, as their committed results were collected); online SAC, `bpd teacher train`,
# resets its training env once at its --seed, the run seed, so its first, random-action episode starts where
# reporting episode `seed` does)
# Each range holds a block of SEED_BLOCK (1000) seeds per run seed (the visits past their first block and the online
# baselines' episodes: larger blocks of their own), run seeds 0 .. MAX_RUN_SEED (99), which a run's options are
# checked to stay inside (training/seed_blocks.py, where the bases are set)


def train_eval_seed(run_seed: int) -> int:
    return TRAIN_EVAL_BASE + SEED_BLOCK * run_seed


def select_eval_seed(run_seed: int) -> int:
    return SELECT_EVAL_BASE + SEED_BLOCK * run_seed


@dataclass
class Episodes:
    """Outcome of an evaluation: per-episode return, length, whether the env terminated it and, where the env
    judges its task (`info["success"]` at the last step: a swing-up rig's), whether the episode met it."""

    returns: list[float]
    lengths: list[int]
    terminated: list[bool]
    seed: int
    success: list[bool] | None = None  # None where the env gives no verdict of its own

    @property
    def early_terminations(self) -> int:
        return int(sum(self.terminated))

    def summary(self) -> dict:
        """Return distribution, early ends and, where the env judges its task, the episodes that met its success
        rule of how many (nothing of success where it does not)."""
        r = np.asarray(self.returns, dtype=np.float64)
        q1, med, q3 = (float(x) for x in np.percentile(r, [25, 50, 75]))
        judged = self.success is not None
        ok = int(sum(self.success or []))
        return {"episodes": len(r), "seeds": [self.seed, self.seed + len(r) - 1],
                "return_mean": float(r.mean()), "return_std": float(r.std()), "return_min": float(r.min()),
                "return_q1": q1, "return_median": med, "return_q3": q3, "return_max": float(r.max()),
                "early_terminations": self.early_terminations,
                **({"successes": ok, "success_rate": ok / len(r)} if judged else {}),
                "length_min": int(min(self.lengths)), "returns": [float(x) for x in r], "lengths": list(self.lengths),
                "terminated": [bool(t) for t in self.terminated],
                **({"success": [bool(s) for s in self.success or []]} if judged else {})}


def early_where_teacher_finished(terminated: list[bool], teacher_terminated: list[bool]) -> int:
    """Episodes (same seeds, same order) that ended early where the teacher's did not: issue 34's falls."""
    return sum(1 for s, t in zip(terminated, teacher_terminated) if s and not t)


LOW_SHARE = 0.5  # a fall where no episode ends early: a return under half the teacher's on the same seed


def low_where_teacher_finished(ep: Episodes, teacher: Episodes, low_share: float) -> int:
    """Issue 34's falls that end no episode early, on episodes of the same seeds in the same order: those both
    finished whose return fell short of the teacher's on that seed by more than (1 - low_share) of its magnitude (a
    task without termination: a HalfCheetah flipped onto its back runs on to the end at a fraction of the return).
    With early_where_teacher_finished, the falls a selection sets aside; 0 when low_share is 0."""
    return sum(1 for i in fall_episodes(ep, teacher, low_share) if not ep.terminated[i])


def return_floor(teacher_return: float, keep: float) -> float:
    """The least return that keeps `keep` of the teacher's: keep x the teacher's where it is positive; where it is
    negative (a cost, as on Pendulum-v1), the teacher's less (1 - keep) of its magnitude, the rule the export's return
    check and the falls' low share use (keep x a negative return lies above it: 99 % would ask a student to beat the
    teacher by 1 % and refuse one better by less)."""
    return keep * teacher_return if teacher_return >= 0 else (2.0 - keep) * teacher_return


def share_of_teacher(ret: float, teacher_return: float) -> float | None:
    """A return as the share of the teacher's that return_floor reads: ret / teacher where the teacher's is
    positive, else 1 plus its gain over the teacher's in units of the teacher's magnitude (-90 against -100: 1.1);
    None against a teacher's return of 0."""
    if teacher_return > 0:
        return ret / teacher_return
    return 2.0 - ret / teacher_return if teacher_return < 0 else None


def fall_episodes(ep: Episodes, teacher: Episodes, low_share: float) -> list[int]:
    """The indices of issue 34's falls on episodes of the same seeds in the same order, where the teacher finished:
    an early end, or (low_share above 0) a return short of the teacher's there by more than (1 - low_share) of its
    magnitude (early_where_teacher_finished and low_where_teacher_finished count the two kinds)."""
    return [i for i, (r, s, tr, t) in enumerate(zip(ep.returns, ep.terminated, teacher.returns, teacher.terminated))
            if not t and (s or (low_share > 0 and r < tr - (1.0 - low_share) * abs(tr)))]


def rollouts(env_id: str, policy: Policy, episodes: int, seed: int = 0,
             randomization: dict | None = None, rig: str | None = None) -> Episodes:
    """Run `episodes` deterministic episodes; episode i uses seed + i. With `randomization` (the ranges
    of the rig named `rig`) each episode's plant is drawn afresh, seeded by the episode's seed. Where the env
    judges every episode's end (`info["success"]`, a swing-up rig's rule), its verdicts are kept too."""
    env = make_eval_env(env_id, randomization, rig)
    returns, lengths, terminated, success = [], [], [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done, ret, n, term = False, 0.0, 0, False
            info: dict = {}
            while not done:
                obs, r, term, trunc, info = env.step(np.asarray(policy(obs), dtype=np.float32))
                ret += float(r)
                n += 1
                done = term or trunc
            returns.append(ret)
            lengths.append(n)
            terminated.append(bool(term))
            success.append(info.get("success"))
    finally:
        env.close()
    # the env's own verdict where it gives one at every episode's end (a swing-up rig's), else none
    own = None if not success or any(s is None for s in success) else [bool(s) for s in success]
    return Episodes(returns, lengths, terminated, seed, own)


def evaluate(env_id: str, policy: Policy, episodes: int, seed: int = 0) -> tuple[list[float], list[int]]:
    """Run `episodes` deterministic episodes; returns (returns, lengths). Episode i uses seed + i."""
    ep = rollouts(env_id, policy, episodes, seed)
    return ep.returns, ep.lengths
