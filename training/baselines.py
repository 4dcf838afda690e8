"""Distillation baselines from the policy-distillation literature, for continuous actions.

Rusu et al. (2016), Policy Distillation: a student trained by supervised learning on the teacher's
outputs at the states of the teacher's data.
  nll   -log pi_theta(mu_T | s): the likelihood of the teacher's most likely action
  mse   ||mu_theta(s) - mu_T(s)||^2 on the teacher's pre-squash outputs
  kl    KL(pi_T^(1/T) || pi_theta), the teacher tempered by T (variance T sigma_T^2; T = 0.01 as the paper)

Czarnecki et al. (2019), Distilling Policy Distillation: a control policy drives the data and an
update rule turns it into a gradient, loss term l and reward term r_hat (their Table 1):
  teacher-distill               l = Hx(pi_T || pi_theta)               control teacher
  on-policy-distill             l = Hx(pi_T || pi_theta)               control student
  entropy-regularised           r_hat_i = log pi_T(a_i | s_i)          control student
  n-distill                     l = Hx(pi_T || pi_theta), r_hat_i = -Hx(pi_T || pi_theta)(s_i+1)
  expected-entropy-regularised  l = Hx(pi_theta || pi_T), r_hat_i = log pi_T(a_i+1 | s_i+1)
  teacher-v-reward              r_hat_i = r_i + gamma V_T(s_i+1) - V_theta(s_i)
Loss terms are closed-form Gaussian cross-entropies (training/gaussian.py) averaged over the
aggregated buffer of every state the control policy visited (DAgger: whoever acts, the teacher
labels). Reward terms are a policy gradient over the latest collected segment (discounted
reward-to-go standardised per segment; teacher-v-reward uses a one-step advantage with a student
value V_theta fitted by TD(0)). A segment serves every gradient step until the next collection, so
after its first step the student is no longer the policy that acted: the gradient is the clipped
importance-weighted surrogate of PPO (Schulman et al. 2017), min(rho A, clip(rho, 1 - eps, 1 + eps) A)
with rho = pi_theta(u | s) / pi_collect(u | s) and eps = --clip, which is REINFORCE's gradient while
rho = 1. Plain REINFORCE on a reused segment rewards fitting the positive-advantage actions of that
one sample ever more tightly: the student's spread collapses to its floor and every rule fails.

Control policies: teacher (the plan's offline dataset: the teacher with its collection noise; the
environment steps charged are the dataset's), student (the student samples, online), mixed (per
step the teacher acts with probability beta, falling linearly from 1 to 0 over the first half of
the environment budget, as DAgger's beta_i), uniform (uniform random actions, online). An online run
whose teacher value is fitted on the offline dataset (teacher-v-reward without --teacher-sb3) is charged
the dataset's environment steps too: it learns from both.

Teacher distribution in u (pre-tanh) units: mean from the teacher file; log std from the SAC
actor's log-std head when --teacher-sb3 gives the stable-baselines3 zip, else a fixed spread
--teacher-std (deterministic TD3 teachers). Teacher value: Q(s, mu_T(s)) from the zip's first
critic when given, else V_T fitted by TD(0) on the offline dataset. The summary records which.

Size: --hidden widths, optionally magnitude-pruned (global, gradual cubic schedule of Zhu and Gupta
2017) to --nonzero nonzero parameters of the collapsed student (weights plus biases of the units on a path
from input to output, as BPD's count and the ablations' budgets are: training/live.py; multitask.py keeps
its own count of every bias and kept weight).
The run leaves policy.npz in the teacher format (the deterministic student tanh(mu_theta)), which
`bpd evaluate`, `bpd export` and `bpd bench` take.

This module runs one baseline (the loop, checkpoints, metrics, the run directory). The options and
the rules' names are in baseline_rules.py (no torch), the networks in baseline_nets.py, the rules'
gradient step and the online control in baseline_trainer.py.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import bpd
from bpd.config import to_dict
from bpd.errors import BpdError
from bpd.io import atomic_write, inputs_for_record, path_from_record, sha256_file, write_json
from training.baseline_nets import TeacherModel, check_sb3_matches, read_sb3
from training.baseline_rules import REWARD_RULES, BaselineConfig, control_in_force, validate
from training.baseline_trainer import BaselineTrainer, Collector, segment_tensors
from training.checkpoint import read_checkpoint, restored_acc, restoring
from training.collect import check_task, dataset_hash, load_dataset
from training.device import resolve_device
from training.envs import evaluate, train_eval_seed
from training.live import least_collapsed
from training.minari_io import was_minari
from training.seed_blocks import COLLECT_BASE
from training.teacher import load_teacher

_RESUME_FREE = {"resume", "progress", "threads", "device"}


METRIC_FIELDS = ["step", "env_steps", "time_s", "losses/total", "losses/term", "losses/reward_term", "losses/value",
                 "reward/mean", "action_mse", "log_std", "params_nonzero", "eval/return_mean", "eval/return_std"]


def _fingerprint(cfg: BaselineConfig) -> dict:
    """The options a run's result depends on: what a resumed run must share with the run it continues."""
    fp = {k: v for k, v in to_dict(cfg).items() if k not in _RESUME_FREE}
    if cfg.method not in REWARD_RULES:  # no policy-gradient term: its clip range does not enter
        fp.pop("clip")
    if control_in_force(cfg.method, cfg.control) != "teacher":  # where online episodes take their seeds: a run
        fp["collect_seed_base"] = COLLECT_BASE  # begun on the earlier seeds (the reporting ones) does not resume here
    return fp


def check_nonzero(cfg: BaselineConfig, obs_dim: int, act_dim: int) -> None:
    """--nonzero within the student's size: at most its weights and biases, at least what the fewest weights on one
    path from input to output leave after the collapse (training/live.py)."""
    if cfg.nonzero is None:
        return
    widths = [obs_dim, *cfg.hidden, act_dim]
    dense = sum(widths[1:]) + sum(a * b for a, b in zip(widths, widths[1:]))
    hidden = " ".join(map(str, cfg.hidden))
    if cfg.nonzero > dense:
        raise BpdError(f"--nonzero {cfg.nonzero} exceeds the {dense} parameters of --hidden {hidden}")
    if cfg.nonzero < (least := least_collapsed(widths)):
        raise BpdError(f"--nonzero {cfg.nonzero} is below {least}, the fewest parameters a collapsed student of "
                       f"--hidden {hidden} keeps with its output still depending on its input")


def _prepare(out: Path, cfg: BaselineConfig) -> None:
    conf = out / "config.json"
    fp = _fingerprint(cfg)
    hashes = {"teacher_sha256": sha256_file(cfg.teacher), "dataset_sha256": dataset_hash(cfg.dataset),
              "teacher_sb3_sha256": sha256_file(cfg.teacher_sb3) if cfg.teacher_sb3 else None}
    if cfg.resume and not conf.exists():
        raise BpdError(f"--resume: {out} holds no run to resume; leave out --resume to start one")
    if conf.exists():
        if not cfg.resume:
            raise BpdError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        try:
            old = json.loads(conf.read_text())
        except json.JSONDecodeError:
            raise BpdError(f"{conf}: corrupt run configuration") from None
        diff = sorted(k for k in fp if k != "out"  # the run itself: a moved run, or ./runs/b for runs/b, resumes
                      and not (_same_file(old.get(k), fp[k], out) if k in _PATHS else old.get(k) == fp[k]))
        # and the content it began on (an input replaced under its path differs); a run made before it was recorded
        # compares paths alone
        diff += sorted(k for k, v in hashes.items() if k in old and old[k] != v)
        if diff:
            raise BpdError(f"{out} was started with a different configuration ({', '.join(diff)})")
    else:
        if cfg.resume and out.exists() and any(out.iterdir()):
            raise BpdError(f"{out} is not a bpd baseline run directory (no config.json)")
        write_json(conf, fp | inputs_for_record(fp, _PATHS, out) | hashes | {"bpd_version": bpd.__version__})


_PATHS = ("teacher", "dataset", "teacher_sb3")  # the inputs a run records by path


def _same_file(recorded, given, out: Path) -> bool:
    """A recorded input path (relative to the run, or as an earlier run recorded it) names the file given now."""
    if not isinstance(recorded, str) or not isinstance(given, str) or recorded.startswith("minari:"):
        return recorded == given
    if given.startswith("minari:"):  # a run begun on a bare Minari id recorded it as a path relative to the run
        return was_minari(recorded, out) == given
    return path_from_record(recorded, out).resolve() == Path(given).resolve()


def train_baseline(cfg: BaselineConfig) -> dict:
    """Train one baseline student; resumable; returns the run summary (also summary.json)."""
    from tqdm import tqdm

    control = validate(cfg)
    device = resolve_device(cfg.device)  # CUDA asked for where there is none: one line, before anything
    teacher = load_teacher(cfg.teacher)
    ds = load_dataset(cfg.dataset, teacher.obs_dim, teacher.act_dim)
    check_task(ds, teacher, str(cfg.dataset))
    env_id = cfg.env or ds.meta["env_id"]
    sb3 = None
    if cfg.teacher_sb3:
        sb3 = read_sb3(cfg.teacher_sb3)
        check_sb3_matches(sb3, teacher, cfg.teacher_sb3)
    out = Path(cfg.out)
    check_nonzero(cfg, teacher.obs_dim, teacher.act_dim)  # before the run directory is written
    _prepare(out, cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tm = TeacherModel(teacher, cfg.teacher_std, sb3, device)
    trainer = BaselineTrainer(cfg, teacher.obs_dim, teacher.act_dim, tm, ds.obs_mean, ds.obs_std, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    ds_t = {k: torch.as_tensor(v) for k, v in {"obs": ds.observations, "next_obs": ds.next_observations,
                                              "rew": ds.rewards, "term": ds.terminals}.items()}
    online = control != "teacher"
    collector = Collector(env_id, control, cfg.seed) if online else None
    buffer = np.zeros((0, teacher.obs_dim), np.float32)
    segment: dict[str, np.ndarray] | None = None
    elapsed, value_fit = 0.0, None
    last: dict = {}  # the last evaluation's row
    acc: dict[str, list[float]] = {}  # the metrics since the last evaluation (checkpointed)
    ck_path, metrics_path = out / "checkpoint.pt", out / "metrics.csv"
    if cfg.resume and ck_path.exists():
        ck = read_checkpoint(ck_path)
        with restoring(ck_path):
            trainer.load_state_dict(ck["trainer"])
            gen.set_state(ck["generator"])
            torch.set_rng_state(ck["torch_rng"])
            elapsed, value_fit = float(ck["elapsed"]), ck.get("value_fit")
            acc = restored_acc(ck, ck_path)
            buffer = ck["buffer"].numpy()
            segment = {k: v.numpy() for k, v in ck["segment"].items()} if ck.get("segment") else None
            if collector is not None:
                collector.env_steps, collector.episodes = int(ck["env_steps"]), int(ck["episodes"]) + 1
                collector.rng = np.random.default_rng([cfg.seed, collector.env_steps])
        last = _truncate(metrics_path, trainer.step)
    if cfg.method == "teacher-v-reward" and tm.critic is None and trainer.teacher_value is None:
        value_fit = trainer.fit_teacher_value(ds_t, cfg.value_steps, gen)
    stats = {"obs_mean": ds.obs_mean, "obs_std": ds.obs_std, "low": ds.action_low, "high": ds.action_high}
    budget = cfg.env_steps if online else 0
    rounds = math.ceil(budget / cfg.collect_every) if online else 0
    new = not metrics_path.exists()
    mf = open(metrics_path, "a", newline="")
    writer = csv.DictWriter(mf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    if new:
        writer.writeheader()
    seg_all = None
    t0 = time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=cfg.method, disable=None if cfg.progress else True)

    offline = len(ds) if not online or value_fit is not None else 0  # the dataset's steps, where the run learns on it

    def env_steps() -> int:
        return (collector.env_steps if collector is not None else 0) + offline

    try:
        while trainer.step < cfg.steps:
            if collector is not None and collector.env_steps < budget:
                # collection round k happens at gradient step k * steps / rounds
                due = collector.env_steps // cfg.collect_every
                if trainer.step >= due * cfg.steps / rounds:
                    n = min(cfg.collect_every, budget - collector.env_steps)
                    segment = collector.collect(n, trainer, budget)
                    buffer = np.concatenate([buffer, segment["obs"]])
            data = ds_t["obs"] if collector is None else torch.as_tensor(buffer)
            idx = torch.randint(0, len(data), (cfg.batch,), generator=gen)
            seg_t = None
            if segment is not None and cfg.method in REWARD_RULES:
                if seg_all is None or seg_all[0] is not segment:  # rewards of a new segment, once
                    seg_all = (segment, segment_tensors(segment, trainer))
                j = torch.randint(0, len(segment["obs"]), (min(cfg.batch, len(segment["obs"])),), generator=gen)
                seg_t = {k: v[j.to(device)] for k, v in seg_all[1].items()}
            info = trainer.update({"obs": data[idx].to(device)}, seg_t)
            for k, v in info.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            step = trainer.step
            if step % cfg.eval_every == 0 or step == cfg.steps:
                pol = trainer.student.to_policy(**stats)
                rets, _ = evaluate(env_id, pol.act, cfg.eval_episodes, seed=train_eval_seed(cfg.seed))
                row = {k: float(np.mean(v)) for k, v in acc.items()}
                row |= {"step": step, "env_steps": env_steps(), "time_s": round(time.time() - t0, 2),
                        "params_nonzero": trainer.student.params_nonzero(), "eval/return_mean": float(np.mean(rets)),
                        "eval/return_std": float(np.std(rets))}
                writer.writerow(row)
                mf.flush()
                acc.clear()
                last = row
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                blob = {"format": "bpd-baseline-checkpoint", "trainer": trainer.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "elapsed": time.time() - t0, "value_fit": value_fit, "buffer": torch.as_tensor(buffer),
                        "segment": {k: torch.as_tensor(v) for k, v in segment.items()} if segment else None,
                        "env_steps": collector.env_steps if collector else 0,
                        "episodes": collector.episodes if collector else 0,
                        "acc": {k: [float(x) for x in v] for k, v in acc.items()}}  # metrics since the last row
                atomic_write(ck_path, functools.partial(torch.save, blob))
    finally:
        bar.close()
        mf.close()
        if collector is not None:
            collector.close()
    if cfg.nonzero is not None:  # the schedule ends at the budget; a run ending early is cut to it here
        trainer.student.prune_to(cfg.nonzero)
    seconds = time.time() - t0
    summary = {
        "method": cfg.method, "control": control, "steps": trainer.step, "grad_steps": trainer.step,
        "env_steps": env_steps(), "env_steps_online": collector.env_steps if collector else 0,
        "dataset_steps": offline, "seconds": round(seconds, 2), "device": str(device),
        "hidden": list(cfg.hidden), "nonzero_budget": cfg.nonzero,
        "params_nonzero": trainer.student.params_nonzero(), "params_total": trainer.dense,
        "teacher_params_total": teacher.params_total, "teacher_distribution": tm.distribution,
        "teacher_value": (tm.value_source or (f"fitted: V_T by TD(0) on the offline dataset, {cfg.value_steps} steps, "
                                               f"final loss {value_fit:.4g}" if value_fit is not None else None))
        if cfg.method == "teacher-v-reward" else None,
        "visited_spread": visited_spread(buffer if online else ds.observations, ds.obs_mean, ds.obs_std),
        "final_eval_return_mean": last.get("eval/return_mean"), "product": "policy.npz",
        "selection": {"rule": "the final student", "chosen": {"step": trainer.step}},
    }
    pol = trainer.student.to_policy(**stats, env_id=env_id, algo=f"distilled {cfg.method}",
                                    source=f"bpd baseline train --method {cfg.method} --control {control}",
                                    train={"config": _fingerprint(cfg), "summary": {k: summary[k] for k in (
                                        "control", "env_steps", "grad_steps", "params_nonzero")}})
    pol.save(out / "policy.npz")
    write_json(out / "summary.json", summary)
    return summary


def visited_spread(obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float | None:
    """Spread of the states the control policy visited: per-dimension standard deviation in units of the
    teacher-driven dataset's, averaged over dimensions (1.0: as spread as the teacher's data)."""
    if len(obs) < 2:
        return None
    return float(np.mean(np.std((obs - mean) / std, axis=0)))


def _truncate(path: Path, step: int) -> dict:
    """Drop the metric rows after the checkpoint; the last evaluation kept (its return), so that a resumed run
    that had finished reports it again."""
    if not path.exists():
        return {}
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
    except (KeyError, TypeError, ValueError, csv.Error):  # UnicodeDecodeError is a ValueError
        raise BpdError(f"{path}: corrupt metrics (a row without a step); remove the run to start over") from None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue()), mode="w")
    ret = rows[-1].get("eval/return_mean") if rows else None
    return {"eval/return_mean": float(ret)} if ret else {}
