"""Teacher policies: train one with stable-baselines3, or import one, into bpd's teacher format.

Teacher format (`.npz`, read with numpy and never unpickled):
  meta      JSON: format="bpd-teacher", format_version, env_id, algo, obs_dim, act_dim,
            hidden (list of widths), activation ("relu"|"tanh"), output ("tanh"|"clip"), mean_clip
            (absent: none), source, bpd_version
  W0, b0, W1, b1, ...   float32 layer weights [out, in] and biases [out]
  obs_mean, obs_std     observation normalisation applied before the first layer
  action_low, action_high
The deterministic action is: h = (obs - obs_mean) / obs_std; h = act(W_i h + b_i) for hidden
layers; y = W_L h + b_L, clipped to [-mean_clip, mean_clip] where the file has one (SAC's actor trained with
gSDE: stable-baselines3's clip_mean); then output "tanh": low + (tanh(y) + 1) / 2 * (high - low), or output
"clip": clip(y, low, high). A file with mean_clip is format version 2, which a bpd that would act without the
clip refuses; any other, version 1.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bpd
from bpd.config import field, to_dict
from bpd.errors import BpdError
from bpd.io import (
    check_output_dir,
    check_output_path,
    load_arrays,
    save_arrays,
    sha256_file,
    write_json,
)
from training.envs import ActionRepeat, evaluate, make_env
from training.mlp import MLPPolicy
from training.teacher_config import (  # noqa: F401  (the CLI and callers name them here)
    _ADDED_OPTIONS,
    _TEACHER_RESUME_FREE,
    FINAL_EVAL_SEED,
    TEACHER_SEED_BLOCK,
    TRAIN_EVAL_SEED,
    TeacherTrainConfig,
    _validate_train_config,
)

FORMAT = "bpd-teacher"
FORMAT_VERSION = 2  # the version of a file with mean_clip; a file without one is written as version 1
SB3_CLIP_MEAN = 2.0  # stable-baselines3's SAC clip_mean where the model's record gives none (its Actor's default)


@dataclass
class Teacher(MLPPolicy):
    """A deterministic MLP actor with its spaces, normalisation and provenance."""

    env_id: str = ""
    algo: str = "unknown"
    source: str = ""
    train: dict | None = None  # how a trained teacher was made: configuration, seed, final check
    mean_clip: float | None = None  # y clipped to +-mean_clip before the output map (SAC's gSDE actor)

    def pre_output(self, obs: np.ndarray) -> np.ndarray:
        y = super().pre_output(obs)
        return y if self.mean_clip is None else np.clip(y, -self.mean_clip, self.mean_clip)

    def save(self, path: str | Path) -> None:
        """Write the teacher file atomically, once the teacher passes the checks every reader applies."""
        check_teacher(self, f"the teacher for {path}")
        meta: dict = {
            "format": FORMAT, "format_version": 1 if self.mean_clip is None else FORMAT_VERSION, "env_id": self.env_id,
            "algo": self.algo,
            "obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden,
            "activation": self.activation, "output": self.output, "layers": len(self.weights),
            "source": self.source, "bpd_version": bpd.__version__,
        }
        if self.train is not None:
            meta["train"] = self.train
        if self.mean_clip is not None:
            meta["mean_clip"] = self.mean_clip
        arrays = {"obs_mean": self.obs_mean, "obs_std": self.obs_std,
                  "action_low": self.action_low, "action_high": self.action_high}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        save_arrays(path, meta, {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})


DEFAULT_GAMMA = 0.99


def teacher_gamma(teacher: Teacher) -> tuple[float, str]:
    """The discount per dataset tick that keeps the teacher's own horizon, and the rule that gave it: a teacher
    trained here records its discount per decision and how many ticks each decision held (action_repeat), so
    per tick gamma^(1/action_repeat) (the rotary pendulum's SAC teacher: 0.99 per 5 ticks, 0.998 per tick);
    a teacher without that record (an import), DEFAULT_GAMMA."""
    conf = (teacher.train.get("config") or {}) if isinstance(teacher.train, dict) else {}
    g, rep = conf.get("gamma"), conf.get("action_repeat") or 1
    if isinstance(g, (int, float)) and 0 < g < 1 and isinstance(rep, int) and rep >= 1:
        return float(g) ** (1.0 / rep), f"the teacher's discount {g:g} per decision of {rep} tick(s)"
    return DEFAULT_GAMMA, f"{DEFAULT_GAMMA:g} (the teacher records no training discount)"


def is_sb3_zip(path: str | Path) -> bool:
    """Whether a file is a zip archive holding a stable-baselines3 model's record and weights (a bpd .npz or a
    student .pt, zips too, holds neither)."""
    try:
        with zipfile.ZipFile(path) as z:
            return {"data", "policy.pth"} <= set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_teacher(path: str | Path) -> Teacher:
    """Load and validate a teacher file; every problem is a one-line BpdError (a stable-baselines3 zip given
    for one: the import it needs first)."""
    if Path(path).is_dir():  # a run or export directory given for its teacher: the file it wants, not "no such file"
        raise BpdError(f"{path}: a directory, not a teacher file; give the teacher's .npz (the file `bpd teacher "
                       "train` or `bpd teacher import` writes)")
    try:
        meta, a = load_arrays(path, FORMAT)
    except BpdError:
        if is_sb3_zip(path):  # asked only of a file that is no teacher
            raise BpdError(f"{path}: a stable-baselines3 model, not a teacher file; import it first (bpd teacher "
                           f"import {path} --env ENV --out teacher.npz) and give the teacher file") from None
        raise
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise BpdError(f"{path}: teacher format version {str(version)[:20]}; this bpd reads up to "
                       f"{FORMAT_VERSION} (a newer bpd wrote it?)")
    try:
        n = int(meta["layers"])
        if n < 1:
            raise BpdError(f"{path}: teacher file holds no layers")
        weights = [a[f"W{i}"].astype(np.float32) for i in range(n)]
        biases = [a[f"b{i}"].astype(np.float32) for i in range(n)]
        t = Teacher(env_id=str(meta["env_id"]), weights=weights, biases=biases, activation=meta["activation"],
                    output=meta["output"], obs_mean=a["obs_mean"].astype(np.float32),
                    obs_std=a["obs_std"].astype(np.float32), action_low=a["action_low"].astype(np.float32),
                    action_high=a["action_high"].astype(np.float32),
                    algo=meta.get("algo", "unknown"), source=meta.get("source", ""), train=meta.get("train"),
                    mean_clip=meta.get("mean_clip"))
    except KeyError as e:
        raise BpdError(f"{path}: teacher file is missing {e}") from None
    except (TypeError, ValueError) as e:
        raise BpdError(f"{path}: malformed teacher file ({e.__class__.__name__})") from None
    check_teacher(t, str(path))
    for key in ("obs_dim", "act_dim"):  # the record every reader trusts for sizes must match the arrays
        if key in meta and meta[key] != getattr(t, key):
            raise BpdError(f"{path}: the teacher's metadata gives {key} {str(meta[key])[:20]}, its weights "
                           f"{getattr(t, key)}")
    return t


def check_teacher(t: Teacher, where: str) -> None:
    """Shapes chain, every number finite, normalisation positive, bounds ordered: or a one-line BpdError."""
    for i, (w, b) in enumerate(zip(t.weights, t.biases)):
        if w.ndim != 2 or min(w.shape) < 1 or b.shape != (w.shape[0],):
            raise BpdError(f"{where}: layer {i} has inconsistent shapes")
        if i and w.shape[1] != t.weights[i - 1].shape[0]:
            raise BpdError(f"{where}: layer {i} input width does not match layer {i - 1}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise BpdError(f"{where}: layer {i} holds NaN or Inf")
    if t.activation not in ("relu", "tanh") or t.output not in ("tanh", "clip"):
        raise BpdError(f"{where}: unsupported activation/output {t.activation}/{t.output}")
    if t.obs_mean.shape != (t.obs_dim,) or t.obs_std.shape != (t.obs_dim,):
        raise BpdError(f"{where}: observation normalisation does not match obs_dim={t.obs_dim}")
    if not (np.isfinite(t.obs_mean).all() and np.isfinite(t.obs_std).all()) or (t.obs_std <= 0).any():
        raise BpdError(f"{where}: observation normalisation must be finite with positive scales")
    if t.action_low.shape != (t.act_dim,) or t.action_high.shape != (t.act_dim,):
        raise BpdError(f"{where}: action bounds do not match act_dim={t.act_dim}")
    if not (np.isfinite(t.action_low).all() and np.isfinite(t.action_high).all()) \
            or not (t.action_high > t.action_low).all():
        raise BpdError(f"{where}: action bounds must be finite with low < high")
    c = t.mean_clip
    if c is not None and (not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 < c < np.inf):
        raise BpdError(f"{where}: mean_clip (SAC's gSDE clip_mean) {str(c)[:20]} is not a finite number above 0")


def teacher_hash(path: str | Path) -> str:
    return sha256_file(path)


# --------------------------------------------------------------------------- training


class _TeacherWork:
    """The work directory of one teacher training: config, checkpoint, and the replay buffer and best actor it
    names (training/teacher_checkpoint.py)."""

    def __init__(self, cfg: TeacherTrainConfig) -> None:
        self.dir = Path(cfg.work_dir or f"{cfg.out}.work")
        self.config = self.dir / "config.json"
        self.checkpoint = self.dir / "checkpoint.pt"

    def prepare(self, cfg: TeacherTrainConfig) -> bool:
        """Create or check the work directory; True when there is a checkpoint to resume."""
        fp = {k: v for k, v in to_dict(cfg).items() if k not in _TEACHER_RESUME_FREE}
        if cfg.resume and not self.config.exists():
            done = f" (the teacher {cfg.out} is there: its training finished)" if Path(cfg.out).is_file() else ""
            raise BpdError(f"--resume: {self.dir} holds no training to resume{done}; leave out --resume to start one")
        if self.config.exists():
            if not cfg.resume:
                raise BpdError(f"{self.dir} holds an interrupted training; pass --resume to continue it "
                               "or remove it to start over")
            try:
                old = json.loads(self.config.read_text())
            except (json.JSONDecodeError, OSError):
                raise BpdError(f"{self.config}: corrupt training configuration") from None
            old = _ADDED_OPTIONS | old  # a training started before an option existed ran with its default
            # the step budget may change: a training continues to a raised budget (the learning rate is
            # constant, so that is the training a larger budget would have run) or ends at a lowered one
            diff = sorted(k for k in set(fp) | set(old)
                          if k not in ("bpd_version", "steps") and old.get(k) != fp.get(k))
            if diff:
                raise BpdError(f"{self.dir} was started with a different configuration ({', '.join(diff)}); "
                               "resume with the same options or remove it")
            if old.get("steps") != fp["steps"]:
                write_json(self.config, old | {"steps": fp["steps"]})
            return self.checkpoint.exists()
        if self.dir.exists() and any(self.dir.iterdir()):
            raise BpdError(f"{self.dir} exists and is not a teacher work directory")
        write_json(self.config, fp | {"bpd_version": bpd.__version__})
        return False


def train_teacher(cfg: TeacherTrainConfig, log: Callable[[str], None] | None = None) -> dict:
    """Train with stable-baselines3, keep the best evaluated actor, check it on disjoint seeds and save it.

    The actor is evaluated every --eval-every steps, and at the last step where no evaluation fell before it
    (--steps below --eval-every), so the teacher kept always has a measured return. Checkpoints (model,
    optimisers, replay buffer) go to the work directory every --checkpoint-every steps, so an interrupted
    training (kill -9 included) continues with --resume. The teacher file records the training
    configuration, its seed and the final check. log, if given, takes one line at the start and, without a
    progress bar (--no-progress, or not a terminal), one at each evaluation."""
    from training.device import resolve_device  # here: reading a teacher file needs no torch (`bpd experiment`)

    _validate_train_config(cfg)
    check_output_path(cfg.out)
    if cfg.work_dir is not None:  # OUT.work, the default, lies beside OUT
        check_output_dir(cfg.work_dir)
    resolve_device(cfg.device)  # CUDA asked for where there is none: one line, before anything
    env = make_env(cfg.env, seed=cfg.seed)  # an unknown env fails before the work directory exists
    work = _TeacherWork(cfg)
    created = not work.dir.exists()
    try:
        resuming = work.prepare(cfg)
    except BaseException:
        env.close()
        raise
    try:
        return _train(cfg, env, work, resuming, log or (lambda _: None))
    except BaseException:
        if created and not work.checkpoint.exists():  # nothing to resume: leave nothing behind
            shutil.rmtree(work.dir, ignore_errors=True)
        raise


def _train(cfg: TeacherTrainConfig, env, work: _TeacherWork, resuming: bool, log: Callable[[str], None]) -> dict:
    from training.device import resolve_device
    from training.teacher_checkpoint import load_checkpoint, save_checkpoint

    device = resolve_device(cfg.device)
    import gymnasium
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(cfg.threads)
    spec = env.spec
    learn_env: gymnasium.Env = ActionRepeat(env, cfg.action_repeat) if cfg.action_repeat > 1 else env
    target = cfg.target_return
    if target is None and spec is not None and spec.reward_threshold is not None:
        target = float(spec.reward_threshold)
    algo_cls = {"sac": SAC, "td3": TD3}[cfg.algo]
    kwargs: dict = {}
    if cfg.algo == "td3" and cfg.action_noise > 0:
        n = env.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n), cfg.action_noise * np.ones(n))
    if cfg.learning_rate is not None:
        kwargs["learning_rate"] = cfg.learning_rate
    if cfg.gamma is not None:
        kwargs["gamma"] = cfg.gamma
    if cfg.train_freq != 1:
        kwargs["train_freq"] = cfg.train_freq
    model = algo_cls("MlpPolicy", learn_env, seed=cfg.seed, verbose=0, learning_starts=cfg.learning_starts,
                     policy_kwargs=dict(net_arch=list(cfg.hidden) if cfg.critic_hidden is None else
                                        dict(pi=list(cfg.hidden), qf=list(cfg.critic_hidden))),
                     device=str(device), **kwargs)
    best: dict = {"return": -np.inf, "teacher": None, "step": 0}
    history: list[dict] = []
    elapsed = 0.0
    if resuming:
        history, b, elapsed = load_checkpoint(work, model)
        teacher = load_teacher(b["file"]) if b["file"] is not None and b["file"].is_file() else None
        best = {"return": b["return"] if teacher is not None and b["return"] is not None else -np.inf,
                "step": b["step"], "teacher": teacher}
    t0 = time.time() - elapsed
    train_seed = TRAIN_EVAL_SEED + TEACHER_SEED_BLOCK * cfg.seed

    def reached() -> bool:
        return target is not None and bool(history) and history[-1]["return_mean"] >= target

    import sys
    show = cfg.progress and sys.stderr.isatty() and _has_progress()  # no bar in logs and CI

    def eval_and_keep_best(step: int) -> None:
        teacher = _teacher_from_model(model, cfg.env, cfg.algo, source=f"trained {cfg.algo}")
        rets, _ = evaluate(cfg.env, teacher.act, cfg.eval_episodes, seed=train_seed)
        mean = float(np.mean(rets))
        history.append({"step": step, "return_mean": mean, "return_std": float(np.std(rets)),
                        "return_min": float(np.min(rets)), "time_s": round(time.time() - t0, 1)})
        if mean >= best["return"]:
            best.update({"return": mean, "teacher": teacher, "step": step})
        if not show:
            log(f"step {step}: return {mean:.1f} +- {np.std(rets):.1f}, worst {np.min(rets):.1f} (best "
                f"{best['return']:.1f} at step {best['step']}), {time.time() - t0:.0f} s")

    class EvalAndKeepBest(BaseCallback):
        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % cfg.eval_every == 0:
                eval_and_keep_best(step)
            if step % cfg.checkpoint_every == 0 or reached():
                save_checkpoint(work, model, history, best, time.time() - t0)
            return not reached()

    remaining = cfg.steps - int(model.num_timesteps)
    log(f"teacher train: {cfg.algo} on {cfg.env}, "
        + (f"resumed at step {int(model.num_timesteps)} of {cfg.steps}" if resuming else f"{cfg.steps} steps")
        + f", evaluated every {cfg.eval_every} (at the last step if none falls before it), to {cfg.out}")
    if remaining > 0 and not reached():
        model.learn(remaining, callback=EvalAndKeepBest(), progress_bar=show, reset_num_timesteps=not resuming)
    env.close()
    if not history:  # a training shorter than --eval-every: its last step evaluated, so a teacher has a return
        eval_and_keep_best(int(model.num_timesteps))  # (only then: a longer one keeps the teacher it always kept)
    if best["teacher"] is None:
        raise BpdError(f"{cfg.env}: no evaluation gave a finite return (the environment's rewards are NaN?)")
    teacher = best["teacher"]
    final_seed = FINAL_EVAL_SEED + TEACHER_SEED_BLOCK * cfg.seed
    rets, lens = evaluate(cfg.env, teacher.act, cfg.final_episodes, seed=final_seed)
    final = {"episodes": cfg.final_episodes, "seeds": [final_seed, final_seed + cfg.final_episodes - 1],
             "return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)),
             "return_min": float(np.min(rets)), "length_min": int(np.min(lens)), "returns": [float(r) for r in rets]}
    seconds = time.time() - t0
    teacher.source = f"trained {cfg.algo}, seed {cfg.seed}, best evaluation at step {best['step']}"
    teacher.train = {"config": {k: v for k, v in to_dict(cfg).items() if k not in _TEACHER_RESUME_FREE},
                     "seed": cfg.seed, "steps": int(model.num_timesteps), "best_step": best["step"],
                     "train_eval_seeds": [train_seed, train_seed + cfg.eval_episodes - 1],
                     "best_train_return": best["return"], "final": final, "seconds": round(seconds, 1),
                     "device": str(device), "history": history}
    teacher.save(cfg.out)
    shutil.rmtree(work.dir, ignore_errors=True)  # the teacher file now holds all that is kept
    return {"out": cfg.out, "best_return": best["return"], "best_step": best["step"], "final": final,
            "steps": int(model.num_timesteps), "seconds": seconds, "history": history, "resumed": resuming}


def _has_progress() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
        return True
    except ImportError:
        return False


def _teacher_from_model(model, env_id: str, algo: str, source: str) -> Teacher:
    """Read the deterministic actor of a live stable-baselines3 model."""
    sd = {k: v.detach().cpu().numpy() for k, v in model.policy.state_dict().items()}
    space = model.action_space
    return _teacher_from_state_dict(sd, algo, env_id, space.low, space.high, model.observation_space.shape[0],
                                    activation=None, squash=False, source=source,
                                    clip_mean=getattr(model.actor, "clip_mean", SB3_CLIP_MEAN))


# --------------------------------------------------------------------------- import

_LAYER_PREFIX = {
    "sac": ("actor.latent_pi.", "actor.mu."),
    "td3": ("actor.mu.", None),
    "ppo": ("mlp_extractor.policy_net.", "action_net."),
}
_DEFAULT_ACT = {"sac": "relu", "td3": "relu", "ppo": "tanh"}


def _linears(sd: dict, prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", k))})
    return [(sd[f"{prefix}{i}.weight"], sd[f"{prefix}{i}.bias"]) for i in idx]


def _teacher_from_state_dict(sd: dict, algo: str, env_id: str, low, high, obs_dim: int, activation: str | None,
                             squash: bool, source: str, clip_mean: float = SB3_CLIP_MEAN) -> Teacher:
    """clip_mean: the model's record of SAC's clip_mean, the Hardtanh gSDE's actor puts after its mean (a Linear
    then Hardtanh(-clip_mean, clip_mean), its weights under mu.0.; with clip_mean 0 a plain Linear, no clip)."""
    body, head = _LAYER_PREFIX[algo]
    layers = _linears(sd, body)
    mean_clip: float | None = None
    if head is not None:
        if algo == "sac" and f"{head}0.weight" in sd:  # check_teacher checks the clip
            head, mean_clip = f"{head}0.", clip_mean
        if f"{head}weight" not in sd:
            raise BpdError(f"{algo} model has no {head}weight: not an MLP policy")
        layers.append((sd[f"{head}weight"], sd[f"{head}bias"]))
    if not layers:
        raise BpdError(f"{algo} model has no MLP actor layers under {body!r}")
    if layers[0][0].shape[1] != obs_dim:
        raise BpdError(f"actor input width {layers[0][0].shape[1]} does not match observation size {obs_dim} "
                       "(only flat observations with the default feature extractor are supported)")
    output = "tanh" if algo in ("sac", "td3") or squash else "clip"
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise BpdError("the action space must be bounded")
    return Teacher(env_id=env_id, weights=[np.asarray(w, np.float32) for w, _ in layers],
                   biases=[np.asarray(b, np.float32) for _, b in layers],
                   activation=activation or _DEFAULT_ACT[algo], output=output,
                   obs_mean=np.zeros(obs_dim, np.float32), obs_std=np.ones(obs_dim, np.float32),
                   action_low=low, action_high=high, algo=algo, source=source, mean_clip=mean_clip)


@dataclass
class TeacherImportConfig:
    sb3_zip: str = field(help="a stable-baselines3 SAC, TD3 or PPO model (.zip)", positional=True)
    out: str = field("teacher.npz", help="where to write the teacher file (a file there is replaced once the new "
                     "one is whole)")
    env: str | None = field(None, help="environment id to record (default: the id stored in the zip, if any)")
    activation: str | None = field(None, help="hidden activation when the model used a non-default one",
                                   choices=("relu", "tanh"))
    rescaled: bool = field(False, help="with --env: the model was trained through gymnasium's RescaleAction, so its "
                           "actions within the bounds it records map linearly onto --env's; the teacher takes that "
                           "map and --env's bounds")


def _parse_vector(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.strip("[]").split()], dtype=np.float32)


def sb3_weights(path: Path, raw: bytes) -> object:
    """A stable-baselines3 zip's policy.pth, read with torch's weights-only reader: pickled code is
    refused (never run), a corrupt archive is one line naming the zip."""
    import torch

    try:
        return torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as e:  # weights-only refusals (pickled code) and corrupt archives alike
        kind = "holds pickled objects beyond plain weights (refused)" if "Unsupported global" in str(e) \
            else f"has unreadable weights ({e.__class__.__name__})"
        raise BpdError(f"{path}: policy.pth {kind}") from None


def import_sb3(cfg: TeacherImportConfig) -> Teacher:
    """Import a stable-baselines3 zip without unpickling anything: the JSON record and the
    weights (loaded with torch's weights-only reader) hold all the teacher format needs."""
    import torch

    path = Path(cfg.sb3_zip)
    if not path.is_file():
        raise BpdError(f"{path}: " + ("a directory, not a stable-baselines3 model; give the .zip its model.save "
                                      "wrote" if path.is_dir() else "no such file"))
    check_output_path(cfg.out)
    if not is_sb3_zip(path):  # what else it is, and where such a network goes instead
        other = "not a zip archive (an ONNX or pickled torch file?)" if not zipfile.is_zipfile(path) else \
            "a zip without SB3's 'data' record and policy.pth (a torch .pt?)"
        try:
            load_teacher(path)
            other = "already a bpd teacher file: give it to collect and distill as it is"
        except BpdError:
            pass
        raise BpdError(f"{path}: not a readable stable-baselines3 model: {other}; `bpd teacher import` reads SB3 "
                       "SAC, TD3 and PPO zips, other MLPs can be written in the teacher format (training/teacher.py)")
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
            raw = z.read("policy.pth")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, EOFError, OSError) as e:
        raise BpdError(f"{path}: not a readable stable-baselines3 model ({e.__class__.__name__})") from None
    sd = sb3_weights(path, raw)
    if not isinstance(data, dict) or not isinstance(sd, dict) \
            or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BpdError(f"{path}: not a stable-baselines3 model (unexpected record or weights layout)")
    try:
        t = _teacher_from_sb3(path, cfg, data, sd)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise BpdError(f"{path}: malformed stable-baselines3 record ({e.__class__.__name__}: "
                       f"{(str(e).splitlines() or [''])[0][:80]})") from None
    check_teacher(t, str(path))
    if cfg.env:
        _check_env(t, cfg.env, path, cfg.rescaled)
    elif cfg.rescaled:
        raise BpdError("--rescaled maps the model's actions onto an environment's bounds: give --env ID too")
    return t


def _check_env(t: Teacher, env_id: str, path: Path, rescaled: bool = False) -> None:
    """The model fits --env: its sizes, and its action bounds (a model trained through RescaleAction, or on another
    environment, acts within bounds that are not the environment's: its actions would drive the bare environment,
    where bpd rolls it out and runs the student, at other strengths). rescaled (--rescaled): RescaleAction's linear
    map from the model's bounds onto the environment's is folded into the teacher, which then acts as it trained."""
    from training.envs import make_env

    env = make_env(env_id)
    try:
        dims = env.observation_space.shape[0], env.action_space.shape[0]
        low, high = (np.asarray(b, np.float32) for b in (env.action_space.low, env.action_space.high))
    finally:
        env.close()
    if dims != (t.obs_dim, t.act_dim):
        raise BpdError(f"--env {env_id} has {dims[0]} observations and {dims[1]} actions, the model in "
                       f"{path} {t.obs_dim} and {t.act_dim}")
    if np.allclose(low, t.action_low) and np.allclose(high, t.action_high):
        return
    if not rescaled:
        raise BpdError(f"--env {env_id} takes actions within {bounds_text(low, high)}, the model in {path} gives them "
                       f"within {bounds_text(t.action_low, t.action_high)}: trained through RescaleAction, import it "
                       f"with --rescaled; trained on another environment, train one on gym.make({env_id!r}) as it is")
    t.source += f", RescaleAction {bounds_text(t.action_low, t.action_high)} -> {bounds_text(low, high)}"
    if t.output == "clip":  # clip(y, lo, hi) mapped linearly: the last layer's output mapped, then clipped
        scale = (high - low) / (t.action_high - t.action_low)
        t.weights[-1] = (t.weights[-1] * scale[:, None]).astype(np.float32)
        t.biases[-1] = (low + (t.biases[-1] - t.action_low) * scale).astype(np.float32)
    t.action_low, t.action_high = low, high  # a tanh output maps onto the bounds it is given


def bounds_text(low: np.ndarray, high: np.ndarray) -> str:
    """Action bounds as a message writes them: [low, high] per action."""
    return ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(low.tolist(), high.tolist()))


def _teacher_from_sb3(path: Path, cfg: TeacherImportConfig, data: dict, sd: dict) -> Teacher:
    module = str(data.get("policy_class", {}).get("__module__", ""))
    algo = next((a for a in ("sac", "td3") if f".{a}." in module), None)
    if algo is None and "mlp_extractor.policy_net.0.weight" in sd:
        algo = "ppo"
    if algo is None:
        raise BpdError(f"{path}: unsupported policy class {module!r} (SAC, TD3 and PPO MLP policies are)")
    act_space = data.get("action_space", {})
    # gymnasium's Box, or gym's in the zips of stable-baselines3 1.x (RL Baselines3 Zoo's older models): the bounds
    # are read from the record's text either way
    if not re.search(r"\bgym(nasium)?\.spaces\.box\.Box\b", str(act_space.get(":type:", ""))):
        raise BpdError(f"{path}: the action space is not a Box")
    obs_shape = data.get("observation_space", {}).get("_shape", [])
    if not isinstance(obs_shape, list) or len(obs_shape) != 1:
        raise BpdError(f"{path}: observations must be flat, got shape {obs_shape}")
    kwargs = data.get("policy_kwargs", {})
    activation = _recorded_activation(path, kwargs, cfg.activation)
    sd_np = {k: v.numpy() for k, v in sd.items()}
    low, high = _parse_vector(act_space["low"]), _parse_vector(act_space["high"])
    if low.shape != high.shape or low.size < 1:
        raise BpdError(f"{path}: action bounds low {low.shape} and high {high.shape} differ in size")
    env_id = cfg.env or data.get("env_id") or ""
    if not env_id:  # stable-baselines3 records the spaces, not the environment's id
        raise BpdError(f"{path}: its record names no environment; pass --env ID, the one it was trained on (its "
                       f"{obs_shape[0]} observations, {low.size} action{'s' * (low.size != 1)} within "
                       f"{bounds_text(low, high)})")
    return _teacher_from_state_dict(sd_np, algo, str(env_id), low, high, int(obs_shape[0]), activation,
                                    squash=bool(kwargs.get("squash_output", False)),
                                    clip_mean=kwargs.get("clip_mean", SB3_CLIP_MEAN),
                                    source=f"imported {algo} from {path.name} sha256={sha256_file(path)[:16]}")


_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh"}  # torch.nn's class name -> the teacher format's


def _recorded_activation(path: Path, kwargs: dict, given: str | None) -> str | None:
    """The hidden activation the zip's record names (SB3 writes the class, e.g. "<class
    'torch.nn.modules.activation.LeakyReLU'>", beside its pickle), by its exact class name: the teacher format holds
    ReLU and Tanh, and any other (LeakyReLU, ELU, SiLU, ...) is refused rather than read as one of them. --activation
    gives it where the record names none; where it names one, --activation must agree."""
    named = kwargs.get("activation_fn") if isinstance(kwargs, dict) else None
    if named is None:
        return given
    cls = re.sub(r"^<class '(.*)'>$", r"\1", str(named)).rpartition(".")[2]
    if cls not in _ACTIVATIONS:
        raise BpdError(f"{path}: the policy's hidden activation is {cls[:40]}; the teacher format holds ReLU and "
                       "Tanh (train the teacher with one of them)")
    if given is not None and given != _ACTIVATIONS[cls]:
        raise BpdError(f"{path}: --activation {given}, but the model records {cls}")
    return _ACTIVATIONS[cls]


def teacher_summary(t: Teacher) -> dict:
    return {"env_id": t.env_id, "algo": t.algo, "source": t.source, "activation": t.activation,
            "output": t.output, "mean_clip": t.mean_clip, "hidden": t.hidden, "obs_dim": t.obs_dim,
            "act_dim": t.act_dim, "params_total": t.params_total}
