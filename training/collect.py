"""Roll a teacher out into an offline dataset for distillation.

Dataset format (`.npz`, read without unpickling):
  meta  JSON: format="bpd-dataset", format_version, env_id, obs_dim, act_dim, steps, episodes,
        teacher_sha256, seed, noise, bpd_version
  observations [N, obs_dim], actions [N, act_dim] (executed, noise included),
  teacher_actions [N, act_dim] (the teacher's deterministic action at each observation),
  rewards [N], next_observations [N, obs_dim], terminals [N], truncations [N],
  obs_mean [obs_dim], obs_std [obs_dim] (statistics of `observations`),
  action_low [act_dim], action_high [act_dim]
Noise is Gaussian with standard deviation `noise` times half the action range, added to the
executed action and clipped to the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import bpd
from bpd.config import check_ranges, field
from bpd.errors import BpdError
from bpd.io import NoRecord, check_output_path, load_arrays, save_arrays
from training.seed_blocks import DATASET_SEED

FORMAT = "bpd-dataset"
FORMAT_VERSION = 1


@dataclass
class CollectConfig:
    teacher: str = field(help="teacher file (bpd teacher format)")
    out: str = field("dataset.npz", help="where to write the dataset: a .npz file, or with --format minari a Minari "
                     "dataset id (NAMESPACE/NAME-vN) in Minari's local store; a .npz there is replaced once the "
                     "new one is whole, a Minari id in use is refused")
    format: str = field("npz", help="npz (bpd's own file) or minari (a Minari dataset other libraries read)",
                        choices=("npz", "minari"))
    steps: int = field(50_000, help="environment steps to record")
    noise: float = field(0.3, help="exploration noise std, as a fraction of half the action range; the labels stay "
                         "the teacher's noise-free actions, so more noise shows the student more of the states a "
                         "slightly wrong action leads to (0.3 removed the double pendulum's early ends that 0.1 "
                         "left: benchmarks/results/idp-data)")
    episode_steps: int | None = field(None, help="end each episode (as a truncation) after this many steps, so "
                                      "the dataset holds more starts (default: the environment's limit)")
    env: str | None = field(None, help="environment id (default: the teacher's)")
    seed: int = field(DATASET_SEED, help="seed of the first episode's reset and of the exploration noise (by default "
                      "one no evaluation reports on: with 0 the first episode started where reporting episode 0 does)")
    progress: bool = field(True, help="show a progress bar")


@dataclass
class Dataset:
    meta: dict
    observations: np.ndarray
    actions: np.ndarray
    teacher_actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    truncations: np.ndarray
    obs_mean: np.ndarray
    obs_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray

    def __len__(self) -> int:
        return len(self.observations)

    ARRAYS = ("observations", "actions", "teacher_actions", "rewards", "next_observations", "terminals",
              "truncations", "obs_mean", "obs_std", "action_low", "action_high")


def norm_obs(obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Observations as the student and critics see them: standardised by the dataset's statistics, in float32."""
    return (np.asarray(obs, np.float32) - mean) / std


def norm_act(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actions in the environment's units as the student outputs them: [low, high] mapped to [-1, 1], clipped."""
    return np.clip(2.0 * (a - low) / (high - low) - 1.0, -1.0, 1.0)


def collect(cfg: CollectConfig) -> Dataset:
    from tqdm import tqdm

    check_ranges(cfg, {"steps": (1, 100_000_000), "noise": (0, 10), "seed": (0, 2**31 - 1),
                       "episode_steps": (1, 100_000_000)})
    if cfg.format == "minari":  # the id checked and free before the rollout, not after
        from training.minari_io import _minari, dataset_id, local_path

        _minari()
        if local_path(dataset_id(cfg.out)).exists():
            raise BpdError(f"Minari dataset {dataset_id(cfg.out)} exists ({local_path(dataset_id(cfg.out))}); "
                           "choose another id or remove it")
    else:
        from training.minari_io import ID_RE

        if cfg.out.startswith("minari:") or ID_RE.match(cfg.out):  # a file of that name, where Minari's store was meant
            raise BpdError(f"--out {cfg.out}: a Minari dataset id; add --format minari to write one, or name a "
                           ".npz file")
        check_output_path(cfg.out)
    from training.envs import make_env  # here: `bpd experiment` reads the config without importing torch
    from training.teacher import load_teacher, teacher_hash

    teacher = load_teacher(cfg.teacher)
    env_id = cfg.env or teacher.env_id
    env = make_env(env_id, seed=cfg.seed)
    if env.observation_space.shape[0] != teacher.obs_dim or env.action_space.shape[0] != teacher.act_dim:
        raise BpdError(f"teacher dims {teacher.obs_dim}->{teacher.act_dim} do not match {env_id} "
                       f"{env.observation_space.shape[0]}->{env.action_space.shape[0]}")
    rng = np.random.default_rng(cfg.seed)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    from training.envs import env_key

    if env_key(env_id) == env_key(teacher.env_id) and not (np.allclose(low, teacher.action_low)
                                                           and np.allclose(high, teacher.action_high)):
        from training.teacher import bounds_text  # a teacher imported before `teacher import` compared them

        env.close()
        raise BpdError(f"{cfg.teacher} acts within {bounds_text(teacher.action_low, teacher.action_high)}, {env_id} "
                       f"takes actions within {bounds_text(low, high)}: the rollout would drive it at other "
                       "strengths (a model trained through RescaleAction?); import the model again (bpd teacher import "
                       "--env ID --rescaled), or train one on the environment as it is")
    half = (high - low) / 2
    n, od, ad = cfg.steps, teacher.obs_dim, teacher.act_dim
    buf = {k: np.zeros(s, np.float32) for k, s in [("observations", (n, od)), ("actions", (n, ad)),
                                                   ("teacher_actions", (n, ad)), ("rewards", (n,)),
                                                   ("next_observations", (n, od)), ("terminals", (n,)),
                                                   ("truncations", (n,))]}
    obs, _ = env.reset(seed=cfg.seed)
    episodes, ret, returns, ep_len = 0, 0.0, [], 0
    for t in tqdm(range(n), desc="collect", disable=None if cfg.progress else True, mininterval=0.5):
        a_teacher = teacher.act(obs).astype(np.float32)
        a = np.clip(a_teacher + rng.normal(0.0, cfg.noise, ad).astype(np.float32) * half, low, high)
        nobs, r, term, trunc, _ = env.step(a)
        ep_len += 1
        trunc = trunc or (cfg.episode_steps is not None and ep_len >= cfg.episode_steps and not term)
        buf["observations"][t], buf["actions"][t], buf["teacher_actions"][t] = obs, a, a_teacher
        buf["rewards"][t], buf["next_observations"][t] = r, nobs
        buf["terminals"][t], buf["truncations"][t] = float(term), float(trunc)
        ret += float(r)
        if term or trunc:
            episodes += 1
            returns.append(ret)
            ret, ep_len = 0.0, 0
            obs, _ = env.reset()
        else:
            obs = nobs
    buf["truncations"][-1] = max(buf["truncations"][-1], 1.0 - buf["terminals"][-1])
    env.close()
    obs_mean = buf["observations"].mean(0)
    obs_std = buf["observations"].std(0) + 1e-3
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "env_id": env_id, "obs_dim": od, "act_dim": ad,
            "steps": n, "episodes": episodes, "episode_return_mean": float(np.mean(returns)) if returns else None,
            "teacher_sha256": teacher_hash(cfg.teacher), "seed": cfg.seed, "noise": cfg.noise,
            "episode_steps": cfg.episode_steps,
            "bpd_version": bpd.__version__}
    ds = Dataset(meta=meta, obs_mean=obs_mean, obs_std=obs_std, action_low=low, action_high=high, **buf)
    check_dataset(ds, f"the dataset for {cfg.out}")  # nothing unreadable is ever written
    if cfg.format == "minari":
        from training.minari_io import write_minari

        write_minari(ds, cfg.out)
    else:
        save_dataset(ds, cfg.out)
    return ds


def save_dataset(ds: Dataset, path: str | Path) -> None:
    save_arrays(path, ds.meta, {k: getattr(ds, k) for k in Dataset.ARRAYS})


def load_dataset(path: str | Path, obs_dim: int | None = None, act_dim: int | None = None) -> Dataset:
    """Load and validate a dataset (a .npz, or a Minari dataset named `minari:ID`: training/minari_io.py);
    wrong dimensions or NaNs are one-line BpdErrors."""
    from training.minari_io import is_minari, read_minari

    if is_minari(path):  # the arrays and record from Minari's reader, checked like a .npz's
        meta, arrays = read_minari(str(path))
        ds = Dataset(meta={"format": FORMAT, "format_version": FORMAT_VERSION} | meta, **arrays)
        check_dataset(ds, f"Minari dataset {meta['source'].removeprefix('minari:')}")
    else:
        try:
            meta, a = load_arrays(path, FORMAT)
        except NoRecord as e:  # another tool's arrays (a D4RL-style .npz): the way bpd reads other tools' data
            raise BpdError(f"{e}: bpd reads the datasets of `bpd collect`, and other tools' data as a Minari dataset "
                           "(--dataset minari:ID; write yours with minari.create_dataset_from_buffers)") from None
        missing = [k for k in Dataset.ARRAYS if k not in a]
        if missing:
            raise BpdError(f"{path}: dataset is missing {', '.join(missing)}")
        try:
            ds = Dataset(meta=meta, **{k: a[k].astype(np.float32) for k in Dataset.ARRAYS})
        except (TypeError, ValueError) as e:
            raise BpdError(f"{path}: malformed dataset arrays ({e.__class__.__name__})") from None
        check_dataset(ds, str(path))
    od, ad = ds.meta.get("obs_dim"), ds.meta.get("act_dim")
    other = f" (a dataset of {ds.meta['env_id']}: give one of the teacher's environment)" if ds.meta.get("env_id") \
        else ""
    if obs_dim is not None and od != obs_dim:
        raise BpdError(f"{path}: observations have {od} dimensions, the teacher expects {obs_dim}{other}")
    if act_dim is not None and ad != act_dim:
        raise BpdError(f"{path}: actions have {ad} dimensions, the teacher produces {act_dim}{other}")
    return ds


LABEL_TOL = 1e-3  # of the action range: how far a dataset's labels may sit from the teacher's own actions
UNLABELLED = "the teacher's actions at the dataset's states (the dataset records none)"


def teacher_labels(ds: Dataset, teacher: Any, where: str) -> Dataset:
    """The labels a distillation clones are the given teacher's actions. A dataset that records none (another
    tool's Minari dataset, whose actions are whatever drove it) is labelled by the teacher here, if it is of the
    teacher's environment (check_task); one whose labels are not the teacher's (collected with another teacher) is a
    one-line error, checked on up to 2,000 states spread through it (the teacher acts on every one of them alike)."""
    if not _labelled(ds):
        check_task(ds, teacher, where)
        ds.teacher_actions = teacher.act(ds.observations).astype(np.float32)
        ds.meta["labels"] = UNLABELLED
        return ds
    gap, step = _label_gap(ds, teacher)
    if gap > LABEL_TOL:
        by = str(ds.meta.get("teacher_sha256") or "")[:16]
        raise BpdError(f"{where}: its labels are not this teacher's actions ({gap:.3g} of the action range "
                       f"apart at step {step}); it was collected with another teacher"
                       + (f" (sha256 {by})" if by else "")
                       + ": collect it again with this teacher, or give the one it was collected with")
    _check_bounds(ds, teacher, where)
    return ds


def _labelled(ds: Dataset) -> bool:
    return str(ds.meta.get("labels", "teacher actions")).startswith("teacher actions")


def _label_gap(ds: Dataset, teacher: Any) -> tuple[float, int]:
    """The largest distance, as a fraction of the action range, between the dataset's labels and the teacher's
    actions on up to 2,000 states spread through it, and the step where it is."""
    idx = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), 2000)).astype(int))
    gap = np.abs(teacher.act(ds.observations[idx]) - ds.teacher_actions[idx]) / (ds.action_high - ds.action_low)
    return float(gap.max()), int(idx[int(np.argmax(gap.max(axis=1)))])


def check_task(ds: Dataset, teacher: Any, where: str, hint: str = "give a dataset of the teacher's environment") \
        -> None:
    """A teacher is asked for actions only at states of its own environment: a dataset of another one (Walker2d's
    and HalfCheetah's have the same sizes) is a one-line error, unless this teacher collected it there (`bpd collect
    --env`, its labels the teacher's). `module:ID` and `ID` name one environment (envs.env_key)."""
    env, own = str(ds.meta.get("env_id") or ""), str(getattr(teacher, "env_id", "") or "")
    from training.envs import env_key

    if not env or not own or env_key(env) == env_key(own):
        _check_bounds(ds, teacher, where)
        return
    if _labelled(ds) and _label_gap(ds, teacher)[0] <= LABEL_TOL:
        return
    raise BpdError(f"{where}: a dataset of {env}, but the teacher is of {own} and did not collect it; {hint}")


def _check_bounds(ds: Dataset, teacher: Any, where: str) -> None:
    """A dataset of the teacher's environment declares the teacher's action bounds, the environment's: the student
    acts within the dataset's, so one recorded in other units (another tool's Minari dataset given action_space=Box(-1,
    1)) would run the environment at a fraction of its range, the teacher's labels clipped to it."""
    low, high = getattr(teacher, "action_low", None), getattr(teacher, "action_high", None)
    env, own = str(ds.meta.get("env_id") or ""), str(getattr(teacher, "env_id", "") or "")
    if low is None or high is None or np.shape(low) != ds.action_low.shape:
        return
    from training.envs import env_key

    if (env and own and env_key(env) != env_key(own)) or (np.allclose(low, ds.action_low)
                                                          and np.allclose(high, ds.action_high)):
        return
    from training.teacher import bounds_text

    raise BpdError(f"{where}: its actions are declared within {bounds_text(ds.action_low, ds.action_high)}, the "
                   f"teacher's ({own or env}'s) within {bounds_text(low, high)}: the student would act within the "
                   "dataset's; record it in the environment's own action space")


def dataset_hash(path: str | Path) -> str:
    """sha256 of a dataset's content: the .npz file's, or a Minari dataset's data files'."""
    from bpd.io import sha256_file
    from training.minari_io import content_hash, is_minari

    return content_hash(str(path)) if is_minari(path) else sha256_file(path)


def dataset_exists(path: str | Path | None) -> bool:
    """Whether a --dataset value names a dataset that is there (a file, or a Minari dataset in the local
    store)."""
    from training.minari_io import in_store, is_minari

    return path is not None and (Path(path).is_file() or (is_minari(path) and in_store(str(path))))


def require_dataset(spec: str, flag: str = "--dataset") -> None:
    """A --dataset value that names no dataset here, refused in one line: a Minari id with why it cannot be read
    (not in the store, no 'minari' extra), a directory as one, else no such file."""
    from training.minari_io import is_minari

    if dataset_exists(spec):
        return
    if is_minari(spec):
        load_dataset(spec)  # says in one line why it cannot be read
    raise BpdError(f"{spec}: " + (f"a directory, not a dataset file ({flag}): give the .npz `bpd collect` writes, or "
                                  "minari:ID" if Path(spec).is_dir() else f"no such file ({flag})"))


def check_dataset(ds: Dataset, where: str) -> None:
    """Shapes agree with the recorded dimensions, it is not empty, every number is finite."""
    n = len(ds.observations)
    od, ad = ds.meta.get("obs_dim"), ds.meta.get("act_dim")
    if not isinstance(od, int) or not isinstance(ad, int) or od < 1 or ad < 1:
        raise BpdError(f"{where}: obs_dim and act_dim must be positive integers")
    shapes = {"observations": (n, od), "next_observations": (n, od), "actions": (n, ad),
              "teacher_actions": (n, ad), "rewards": (n,), "terminals": (n,), "truncations": (n,),
              "obs_mean": (od,), "obs_std": (od,), "action_low": (ad,), "action_high": (ad,)}
    for k, shape in shapes.items():
        if getattr(ds, k).shape != shape:
            raise BpdError(f"{where}: {k} has shape {getattr(ds, k).shape}, expected {shape}")
    if n == 0:
        raise BpdError(f"{where}: dataset is empty")
    for k in Dataset.ARRAYS:
        bad = ~np.isfinite(getattr(ds, k))
        if bad.any():  # where, so that the step can be found (another tool's data, a sensor's dropout)
            i = int(np.argwhere(bad)[0][0])
            at = (f" (first at step {i}, episode {int(((ds.terminals[:i] > 0) | (ds.truncations[:i] > 0)).sum())})"
                  if k not in ("obs_mean", "obs_std", "action_low", "action_high") else "")
            raise BpdError(f"{where}: {k} contains NaN or Inf{at}")
    if (ds.obs_std <= 0).any() or not (ds.action_high > ds.action_low).all():
        raise BpdError(f"{where}: obs_std must be positive and action_low below action_high")
