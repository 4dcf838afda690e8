"""A teacher training's checkpoint: the stable-baselines3 model's weights, optimisers, counters and replay buffer,
and the best actor kept so far, so that `bpd teacher train --resume` continues an interrupted training."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from bpd.errors import BpdError
from bpd.io import atomic_write, sha256_bytes

Work = Any  # training.teacher's work directory (dir, checkpoint), which imports this module


def _replay_arrays(buf) -> dict[str, np.ndarray]:
    n = buf.buffer_size if buf.full else buf.pos
    names = ["observations", "actions", "rewards", "dones", "timeouts"]
    if not buf.optimize_memory_usage:
        names.append("next_observations")
    arrays = {k: getattr(buf, k)[:n] for k in names}
    arrays["state"] = np.array([buf.pos, int(buf.full)], dtype=np.int64)
    return arrays


def _restore_replay(buf, arrays: dict[str, np.ndarray]) -> None:
    pos, full = (int(x) for x in arrays.pop("state"))
    for k, v in arrays.items():
        getattr(buf, k)[: len(v)] = v
    buf.pos, buf.full = pos, bool(full)


def _optimizers(model) -> dict:
    opts = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
    if getattr(model, "ent_coef_optimizer", None) is not None:
        opts["ent_coef"] = model.ent_coef_optimizer
    return opts


def save_checkpoint(work: Work, model, history: list[dict], best: dict, elapsed: float) -> None:
    """Model, optimisers, counters and replay buffer. The replay buffer and the best actor go to files named by
    their step and the checkpoint, written last, names the ones it goes with: stopped at any point, the work
    directory holds the previous checkpoint and the files it names (a single replay.npz and best.npz, replaced ahead
    of the checkpoint, made it refuse its replay buffer). Files the checkpoint does not name are removed after it."""
    import torch

    n = int(model.num_timesteps)
    buf = io.BytesIO()
    np.savez(buf, **_replay_arrays(model.replay_buffer))  # type: ignore[arg-type]  # numpy stub: **dict vs allow_pickle
    replay = f"replay-{n}.npz"
    atomic_write(work.dir / replay, lambda f: f.write(buf.getvalue()))
    best_file = None
    if best["teacher"] is not None:
        best_file = f"best-{best['step']}.npz"  # written each time: one a stopped save left may be another's
        best["teacher"].save(work.dir / best_file)
    blob = {"format": "bpd-teacher-checkpoint", "policy": model.policy.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in _optimizers(model).items()},
            "log_ent_coef": getattr(model, "log_ent_coef", None),
            "num_timesteps": n, "n_updates": int(model._n_updates),
            "episode_num": int(model._episode_num), "elapsed": float(elapsed),
            "history": json.dumps(history),
            "best": json.dumps({"return": best["return"] if best["teacher"] is not None else None,  # no -Infinity
                                "step": best["step"], "file": best_file}),
            "replay_file": replay, "replay_sha256": sha256_bytes(buf.getvalue()), "torch_rng": torch.get_rng_state()}
    atomic_write(work.checkpoint, lambda f: torch.save(blob, f))
    for f in [*work.dir.glob("replay*.npz"), *work.dir.glob("best*.npz")]:
        if f.name not in (replay, best_file):
            f.unlink(missing_ok=True)


def load_checkpoint(work: Work, model) -> tuple[list[dict], dict, float]:
    """The state save_checkpoint wrote, restored into model: (history, the best's {return, step, file}, elapsed
    seconds); file: where the best actor is, if it was kept."""
    import torch

    try:
        ck = torch.load(work.checkpoint, weights_only=True, map_location="cpu")
    except Exception as e:
        raise BpdError(f"{work.dir}: unreadable checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != "bpd-teacher-checkpoint":
        raise BpdError(f"{work.checkpoint}: not a teacher checkpoint")
    replay = work.dir / ck.get("replay_file", "replay.npz")  # replay.npz: a checkpoint written before the names
    try:
        raw = replay.read_bytes()
    except OSError as e:
        raise BpdError(f"{replay}: unreadable replay buffer of the checkpoint ({e.strerror or e.__class__.__name__})"
                       "; remove the work directory to start over") from None
    if sha256_bytes(raw) != ck["replay_sha256"]:
        raise BpdError(f"{replay}: does not belong to the checkpoint (interrupted while saving?)")
    try:
        model.policy.load_state_dict(ck["policy"])
        for k, o in _optimizers(model).items():
            o.load_state_dict(ck["optimizers"][k])
        if ck.get("log_ent_coef") is not None:
            with torch.no_grad():
                model.log_ent_coef.copy_(ck["log_ent_coef"])
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            _restore_replay(model.replay_buffer, {k: z[k] for k in z.files})
    except (KeyError, RuntimeError, ValueError) as e:
        raise BpdError(f"{work.checkpoint}: does not match this configuration ({e.__class__.__name__})") from None
    model.num_timesteps = ck["num_timesteps"]
    model._n_updates = ck["n_updates"]
    model._episode_num = ck["episode_num"]
    torch.set_rng_state(ck["torch_rng"])
    best = json.loads(ck["best"])
    name = best.get("file", "best.npz")  # best.npz: a checkpoint written before the names; None: none kept yet
    best["file"] = None if name is None else work.dir / name
    return json.loads(ck["history"]), best, float(ck["elapsed"])
