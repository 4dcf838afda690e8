"""Teacher policies: train one with stable-baselines3, or import one, into bpd's teacher format.

Teacher format (`.npz`, read with numpy and never unpickled):
  meta      JSON: format="bpd-teacher", format_version, env_id, algo, obs_dim, act_dim,
            hidden (list of widths), activation ("relu"|"tanh"), output ("tanh"|"clip"),
            source, bpd_version
  W0, b0, W1, b1, ...   float32 layer weights [out, in] and biases [out]
  obs_mean, obs_std     observation normalisation applied before the first layer
  action_low, action_high
The deterministic action is: h = (obs - obs_mean) / obs_std; h = act(W_i h + b_i) for hidden
layers; y = W_L h + b_L; then output "tanh": low + (tanh(y) + 1) / 2 * (high - low), or
output "clip": clip(y, low, high).
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bpd
from bpd.config import field
from bpd.errors import BpdError
from bpd.io import load_arrays, save_arrays, sha256_file
from training.envs import evaluate, make_env
from training.mlp import MLPPolicy

FORMAT = "bpd-teacher"
FORMAT_VERSION = 1


@dataclass
class Teacher(MLPPolicy):
    """A deterministic MLP actor with its spaces, normalisation and provenance."""

    env_id: str = ""
    algo: str = "unknown"
    source: str = ""

    def save(self, path: str | Path) -> None:
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "env_id": self.env_id, "algo": self.algo,
            "obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden,
            "activation": self.activation, "output": self.output, "layers": len(self.weights),
            "source": self.source, "bpd_version": bpd.__version__,
        }
        arrays = {"obs_mean": self.obs_mean, "obs_std": self.obs_std,
                  "action_low": self.action_low, "action_high": self.action_high}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        save_arrays(path, meta, {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})


def load_teacher(path: str | Path) -> Teacher:
    """Load and validate a teacher file; every problem is a one-line BpdError."""
    meta, a = load_arrays(path, FORMAT)
    try:
        n = int(meta["layers"])
        weights = [a[f"W{i}"].astype(np.float32) for i in range(n)]
        biases = [a[f"b{i}"].astype(np.float32) for i in range(n)]
        t = Teacher(env_id=meta["env_id"], weights=weights, biases=biases, activation=meta["activation"],
                    output=meta["output"], obs_mean=a["obs_mean"], obs_std=a["obs_std"],
                    action_low=a["action_low"], action_high=a["action_high"],
                    algo=meta.get("algo", "unknown"), source=meta.get("source", ""))
    except KeyError as e:
        raise BpdError(f"{path}: teacher file is missing {e}") from None
    for i in range(n):
        if weights[i].ndim != 2 or biases[i].shape != (weights[i].shape[0],):
            raise BpdError(f"{path}: layer {i} has inconsistent shapes")
        if i and weights[i].shape[1] != weights[i - 1].shape[0]:
            raise BpdError(f"{path}: layer {i} input width does not match layer {i - 1}")
        if not (np.isfinite(weights[i]).all() and np.isfinite(biases[i]).all()):
            raise BpdError(f"{path}: layer {i} holds NaN or Inf")
    if t.activation not in ("relu", "tanh") or t.output not in ("tanh", "clip"):
        raise BpdError(f"{path}: unsupported activation/output {t.activation}/{t.output}")
    if t.obs_mean.shape != (t.obs_dim,) or t.obs_std.shape != (t.obs_dim,) or (t.obs_std <= 0).any():
        raise BpdError(f"{path}: observation normalisation does not match obs_dim={t.obs_dim}")
    if t.action_low.shape != (t.act_dim,) or not (t.action_high > t.action_low).all():
        raise BpdError(f"{path}: action bounds do not match act_dim={t.act_dim}")
    return t


def teacher_hash(path: str | Path) -> str:
    return sha256_file(path)


# --------------------------------------------------------------------------- training


@dataclass
class TeacherTrainConfig:
    env: str = field("InvertedPendulum-v5", help="Gymnasium environment id")
    out: str = field("teacher.npz", help="where to write the teacher file")
    algo: str = field("sac", help="stable-baselines3 algorithm", choices=("sac", "td3"))
    hidden: list[int] = field([256, 256], help="actor (and critic) hidden widths")
    steps: int = field(50_000, help="maximum environment steps")
    target_return: float | None = field(None, help="stop once the evaluation mean reaches this "
                                        "(default: the env's reward threshold, if any)")
    eval_every: int = field(2500, help="environment steps between evaluations")
    eval_episodes: int = field(5, help="episodes per evaluation")
    learning_starts: int = field(1000, help="random steps before learning starts")
    seed: int = field(0, help="random seed")
    threads: int = field(1, help="torch CPU threads")
    progress: bool = field(True, help="show a progress bar")


def train_teacher(cfg: TeacherTrainConfig) -> dict:
    """Train with stable-baselines3, keep the best evaluated actor, save it; returns a summary."""
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(cfg.threads)
    env = make_env(cfg.env, seed=cfg.seed)
    spec = env.spec
    target = cfg.target_return
    if target is None and spec is not None and spec.reward_threshold is not None:
        target = float(spec.reward_threshold)
    algo_cls = {"sac": SAC, "td3": TD3}[cfg.algo]
    model = algo_cls("MlpPolicy", env, seed=cfg.seed, verbose=0, learning_starts=cfg.learning_starts,
                     policy_kwargs=dict(net_arch=list(cfg.hidden)), device="cpu")
    best = {"return": -np.inf, "teacher": None, "step": 0}
    history: list[dict] = []

    class EvalAndKeepBest(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % cfg.eval_every:
                return True
            teacher = _teacher_from_model(model, cfg.env, cfg.algo, source=f"trained {cfg.algo}")
            rets, _ = evaluate(cfg.env, teacher.act, cfg.eval_episodes, seed=10_000 + cfg.seed)
            mean = float(np.mean(rets))
            history.append({"step": self.num_timesteps, "return_mean": mean})
            if mean >= best["return"]:
                best.update({"return": mean, "teacher": teacher, "step": self.num_timesteps})
            return not (target is not None and mean >= target)

    t0 = time.time()
    import sys
    show = cfg.progress and sys.stderr.isatty() and _has_progress()  # no bar in logs and CI
    model.learn(cfg.steps, callback=EvalAndKeepBest(), progress_bar=show)
    env.close()
    if best["teacher"] is None:
        best.update({"teacher": _teacher_from_model(model, cfg.env, cfg.algo, f"trained {cfg.algo}"),
                     "step": model.num_timesteps})
    best["teacher"].save(cfg.out)
    return {"out": cfg.out, "best_return": best["return"], "best_step": best["step"],
            "steps": int(model.num_timesteps), "seconds": time.time() - t0, "history": history}


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
                                    activation=None, squash=False, source=source)


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


def _teacher_from_state_dict(sd: dict, algo: str, env_id: str, low, high, obs_dim: int,
                             activation: str | None, squash: bool, source: str) -> Teacher:
    body, head = _LAYER_PREFIX[algo]
    layers = _linears(sd, body)
    if head is not None:
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
                   action_low=low, action_high=high, algo=algo, source=source)


@dataclass
class TeacherImportConfig:
    sb3_zip: str = field(help="a stable-baselines3 SAC, TD3 or PPO model (.zip)", positional=True)
    out: str = field("teacher.npz", help="where to write the teacher file")
    env: str | None = field(None, help="environment id to record (default: the id stored in the zip, if any)")
    activation: str | None = field(None, help="hidden activation when the model used a non-default one",
                                   choices=("relu", "tanh"))


def _parse_vector(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.strip("[]").split()], dtype=np.float32)


def import_sb3(cfg: TeacherImportConfig) -> Teacher:
    """Import a stable-baselines3 zip without unpickling anything: the JSON record and the
    weights (loaded with torch's weights-only reader) hold all the teacher format needs."""
    import torch

    path = Path(cfg.sb3_zip)
    if not path.is_file():
        raise BpdError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
            sd = torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True, map_location="cpu")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, RuntimeError, EOFError) as e:
        raise BpdError(f"{path}: not a readable stable-baselines3 model ({e.__class__.__name__})") from None
    module = str(data.get("policy_class", {}).get("__module__", ""))
    algo = next((a for a in ("sac", "td3") if f".{a}." in module), None)
    if algo is None and "mlp_extractor.policy_net.0.weight" in sd:
        algo = "ppo"
    if algo is None:
        raise BpdError(f"{path}: unsupported policy class {module!r} (SAC, TD3 and PPO MLP policies are)")
    act_space = data.get("action_space", {})
    if "gymnasium.spaces.box.Box" not in str(act_space.get(":type:", "")):
        raise BpdError(f"{path}: the action space is not a Box")
    obs_shape = data.get("observation_space", {}).get("_shape", [])
    if len(obs_shape) != 1:
        raise BpdError(f"{path}: observations must be flat, got shape {obs_shape}")
    kwargs = data.get("policy_kwargs", {})
    activation = cfg.activation
    if activation is None and "activation_fn" in json.dumps(kwargs):
        text = json.dumps(kwargs).lower()
        activation = "tanh" if "tanh" in text else "relu" if "relu" in text else None
        if activation is None:
            raise BpdError(f"{path}: unknown activation in policy_kwargs; pass --activation")
    env_id = cfg.env or data.get("env_id") or ""
    if not env_id:
        raise BpdError(f"{path}: no environment id stored; pass --env")
    sd_np = {k: v.numpy() for k, v in sd.items()}
    return _teacher_from_state_dict(sd_np, algo, env_id, _parse_vector(act_space["low"]),
                                    _parse_vector(act_space["high"]), int(obs_shape[0]), activation,
                                    squash=bool(kwargs.get("squash_output", False)),
                                    source=f"imported {algo} from {path.name} sha256={sha256_file(path)[:16]}")


def teacher_summary(t: Teacher) -> dict:
    return {"env_id": t.env_id, "algo": t.algo, "source": t.source, "activation": t.activation,
            "output": t.output, "hidden": t.hidden, "obs_dim": t.obs_dim, "act_dim": t.act_dim,
            "params_total": t.params_total}
