"""Multi-task policy distillation (Rusu et al. 2016, section 4.3, for continuous control).

One student for several tasks: per task an input layer (its observation size to the trunk width) and
an output layer (trunk to its action size), and between them hidden trunk layers all tasks share,
as the paper shared a trunk between games with per-game output layers. Each task's teacher labels
that task's dataset; a gradient step sums the tasks' losses (Rusu's tempered KL by default) on one
batch per task. Sparsity as BPD's students have it: `--nonzero N` magnitude-prunes the whole
network (shared weights counted once) to N nonzero weights plus biases.

The file (`multitask.npz`, read without unpickling) holds per task W_in, b_in, W_out, b_out,
obs_mean, obs_std, action_low, action_high and the shared trunk W, b; `bpd multitask export` turns
it into C with one entry point per task (export/multitask.py), and `task_policy` gives each task's
network in the teacher format for `bpd evaluate`.
"""

from __future__ import annotations

import csv
import functools
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import bpd
from bpd.config import check_ranges, to_dict
from bpd.errors import BpdError
from bpd.io import atomic_write, check_output_dir, load_arrays, read_json, save_arrays, sha256_file, write_json
from training import gaussian as G
from training.baseline_nets import TeacherModel, prune_target
from training.checkpoint import read_checkpoint, restoring
from training.collect import check_task, dataset_hash, load_dataset
from training.envs import evaluate, train_eval_seed
from training.minari_io import was_minari
from training.multitask_config import MultiTaskConfig
from training.seed_blocks import check_training_run
from training.teacher import Teacher, load_teacher

FORMAT = "bpd-multitask"


@dataclass
class TaskWeights:
    env_id: str
    w_in: np.ndarray
    b_in: np.ndarray
    w_out: np.ndarray
    b_out: np.ndarray
    obs_mean: np.ndarray
    obs_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray


@dataclass
class MultiTask:
    """A multi-task student in numpy: per-task heads around a shared trunk."""

    tasks: list[TaskWeights]
    trunk_w: list[np.ndarray]
    trunk_b: list[np.ndarray]
    activation: str
    meta: dict = dc_field(default_factory=dict)

    @property
    def params_nonzero(self) -> int:
        arrays = [*self.trunk_w, *self.trunk_b]
        for t in self.tasks:
            arrays += [t.w_in, t.b_in, t.w_out, t.b_out]
        return int(sum(np.count_nonzero(a) for a in arrays))

    def task_policy(self, i: int) -> Teacher:
        t = self.tasks[i]
        return Teacher(weights=[t.w_in, *self.trunk_w, t.w_out], biases=[t.b_in, *self.trunk_b, t.b_out],
                       activation=self.activation, output="tanh", obs_mean=t.obs_mean, obs_std=t.obs_std,
                       action_low=t.action_low, action_high=t.action_high, env_id=t.env_id,
                       algo="distilled multi-task", source="multi-task student")

    def save(self, path: str | Path) -> None:
        arrays = {}
        for j, (w, b) in enumerate(zip(self.trunk_w, self.trunk_b)):
            arrays[f"trunk{j}_W"], arrays[f"trunk{j}_b"] = w, b
        for i, t in enumerate(self.tasks):
            for k in ("w_in", "b_in", "w_out", "b_out", "obs_mean", "obs_std", "action_low", "action_high"):
                arrays[f"task{i}_{k}"] = getattr(t, k)
        meta = {"format": FORMAT, "format_version": 1, "tasks": [t.env_id for t in self.tasks],
                "trunk_layers": len(self.trunk_w), "activation": self.activation,
                "bpd_version": bpd.__version__} | self.meta
        save_arrays(path, meta, {k: np.asarray(v, np.float32) for k, v in arrays.items()})


def load_multitask(path: str | Path) -> MultiTask:
    meta, a = load_arrays(path, FORMAT)
    try:
        trunk_w = [a[f"trunk{j}_W"] for j in range(int(meta["trunk_layers"]))]
        trunk_b = [a[f"trunk{j}_b"] for j in range(int(meta["trunk_layers"]))]
        tasks = [TaskWeights(env, *(a[f"task{i}_{k}"] for k in ("w_in", "b_in", "w_out", "b_out", "obs_mean",
                                                                   "obs_std", "action_low", "action_high")))
                 for i, env in enumerate(meta["tasks"])]
    except KeyError as e:
        raise BpdError(f"{path}: multi-task file is missing {e}") from None
    mt = MultiTask(tasks, trunk_w, trunk_b, meta["activation"], {k: v for k, v in meta.items() if k in ("train",)})
    for i in range(len(tasks)):
        p = mt.task_policy(i)
        for j in range(1, len(p.weights)):
            if p.weights[j].shape[1] != p.weights[j - 1].shape[0]:
                raise BpdError(f"{path}: task {i} layer {j} does not fit layer {j - 1}")
    return mt


# --------------------------------------------------------------------------- training


class MultiTaskStudent(nn.Module):
    """Task input layers -> shared trunk -> task output layers; masks on every weight for pruning."""

    def __init__(self, obs_dims: list[int], act_dims: list[int], trunk: list[int], activation: str = "tanh") -> None:
        super().__init__()
        # nn.ModuleLists of nn.Linear (ModuleList is not generic: the annotations say what they hold)
        self.ins: Sequence[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(o, trunk[0]) for o in obs_dims)
        self.trunk: Sequence[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(a, b) for a, b in zip(trunk[:-1], trunk[1:]))
        self.outs: Sequence[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(trunk[-1], a) for a in act_dims)
        self.log_std = nn.ParameterList(nn.Parameter(torch.full((a,), -1.0)) for a in act_dims)
        for i, l in enumerate(self.linears()):
            self.register_buffer(f"mask{i}", torch.ones_like(l.weight))
        self.activation = activation

    def linears(self) -> list[nn.Linear]:
        return [*self.ins, *self.trunk, *self.outs]

    def mask_of(self, layer: nn.Linear) -> torch.Tensor:
        return getattr(self, f"mask{next(i for i, l in enumerate(self.linears()) if l is layer)}")

    def _lin(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, layer.weight * self.mask_of(layer), layer.bias)

    def forward(self, task: int, obs_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act = torch.tanh if self.activation == "tanh" else torch.relu
        h = act(self._lin(self.ins[task], obs_norm))
        for l in self.trunk:
            h = act(self._lin(l, h))
        mu = self._lin(self.outs[task], h)
        return mu, self.log_std[task].clamp(-5.0, 2.0).expand_as(mu)

    def params_total(self) -> int:
        return sum(l.weight.numel() + l.bias.numel() for l in self.linears())

    def params_nonzero(self) -> int:
        return int(sum(torch.count_nonzero(l.weight * self.mask_of(l)).item() + torch.count_nonzero(l.bias).item()
                       for l in self.linears()))

    @torch.no_grad()
    def prune_to(self, nonzero: int) -> None:
        """Global magnitude pruning over every weight (shared ones counted once); biases kept."""
        lins = self.linears()
        keep = nonzero - sum(l.bias.numel() for l in lins)
        if keep < 1:
            raise BpdError(f"a budget of {nonzero} nonzero parameters leaves no weights beside the biases")
        mags = torch.cat([(l.weight * self.mask_of(l)).abs().flatten() for l in lins])
        if keep >= mags.numel():
            return
        flat = torch.zeros_like(mags)
        flat[torch.argsort(mags, descending=True, stable=True)[:keep]] = 1.0
        i = 0
        for l in lins:
            m = self.mask_of(l)
            m.copy_(flat[i:i + m.numel()].view_as(m))
            l.weight.mul_(m)
            i += m.numel()

    def to_numpy(self, env_ids: list[str], stats: list[dict]) -> MultiTask:
        def w(l: nn.Linear) -> np.ndarray:
            return (l.weight * self.mask_of(l)).detach().numpy().astype(np.float32)

        def b(l: nn.Linear) -> np.ndarray:
            return l.bias.detach().numpy().astype(np.float32)

        tasks = [TaskWeights(e, w(li), b(li), w(lo), b(lo), *(np.asarray(s[k], np.float32) for k in
                                                               ("obs_mean", "obs_std", "low", "high")))
                 for e, li, lo, s in zip(env_ids, self.ins, self.outs, stats)]
        return MultiTask(tasks, [w(l) for l in self.trunk], [b(l) for l in self.trunk], self.activation)


def _task_loss(loss: str, mu_t, ls_t, mu, ls, temperature: float) -> torch.Tensor:
    if loss == "mse":
        return F.mse_loss(mu, mu_t)
    if loss == "nll":
        return -G.log_prob(mu_t, mu, ls).mean()
    return G.kl(mu_t, G.temper(ls_t, temperature), mu, ls).mean()


def _differing(old: object, new: dict, out: Path) -> list[str]:
    """The options a resumption changes: --out is the run itself (a moved run resumes), and the teachers and
    datasets are compared as the files they name (./t.npz is t.npz) and by their content."""
    if not isinstance(old, dict):
        raise BpdError(f"{out / 'config.json'}: corrupt run configuration")

    def norm(k: str, v: object) -> object:
        if k == "datasets" and isinstance(v, list):  # a bare Minari id, recorded before as a path relative to the run
            v = [was_minari(p, out) or p if isinstance(p, str) and not p.startswith("minari:") else p for p in v]
        if k in ("teachers", "datasets") and isinstance(v, list):
            return [str(Path(p).resolve()) if isinstance(p, str) and not p.startswith("minari:") else p for p in v]
        return v
    # the content a run began on (a teacher or dataset replaced under its path differs); a run made before it was
    # recorded compares paths alone
    hashes = {k for k in ("teacher_sha256", "dataset_sha256") if k not in old}
    return sorted(k for k in set(old) | set(new) if k != "out" and k not in hashes
                  and norm(k, old.get(k)) != norm(k, new.get(k)))


def train_multitask(cfg: MultiTaskConfig, log: Callable[[str], None] | None = None) -> dict:
    """Train one multi-task student; resumable; writes multitask.npz, metrics.csv and summary.json. log, if given,
    takes a line at the start and, without a progress bar (--no-progress, or not a terminal), one at each
    evaluation."""
    check_ranges(cfg, {"trunk": (1, 4096), "temperature": (0, 1e6, "open"), "teacher_std": (0, 1e3, "open"),
                       "nonzero": (1, None), "prune_start": (0, 1), "prune_end": (0, 1), "steps": (1, 100_000_000),
                       "batch": (1, 1_000_000), "lr": (0, 1, "open"), "eval_every": (1, None),
                       "eval_episodes": (1, 10_000), "threads": (1, 1024)})
    check_training_run(cfg.seed, cfg.eval_episodes)
    if len(cfg.teachers) != len(cfg.datasets) or len(cfg.teachers) < 2:
        raise BpdError("give one --datasets entry per --teachers entry, for at least two tasks")
    if cfg.prune_start > cfg.prune_end:
        raise BpdError("need --prune-start <= --prune-end")
    out = Path(cfg.out)
    check_output_dir(out)
    teachers = [load_teacher(t) for t in cfg.teachers]
    dss = [load_dataset(d, t.obs_dim, t.act_dim) for d, t in zip(cfg.datasets, teachers)]
    for i, (d, ds, t) in enumerate(zip(cfg.datasets, dss, teachers)):
        check_task(ds, t, f"task {i + 1}: {d}", "give --datasets in the order of --teachers")
    envs = [d.meta["env_id"] for d in dss]
    if len(set(envs)) != len(envs):
        raise BpdError(f"two tasks share an environment ({', '.join(envs)}); give one dataset per task")
    conf = {k: v for k, v in to_dict(cfg).items() if k not in ("resume", "progress", "threads")} | {
        "teacher_sha256": [sha256_file(t) for t in cfg.teachers],
        "dataset_sha256": [dataset_hash(d) for d in cfg.datasets]}
    created = not out.exists()
    if (out / "config.json").exists():
        if not cfg.resume:
            raise BpdError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        diff = _differing(read_json(out / "config.json", "run configuration"), conf, out)
        if diff:
            raise BpdError(f"{out} was started with a different configuration ({', '.join(diff)}); "
                           "resume with the same options or choose another --out")
    elif cfg.resume:
        raise BpdError(f"--resume: {out} holds no run to resume; leave out --resume to start one")
    elif out.exists() and any(out.iterdir()):
        raise BpdError(f"{out} exists and is not a multi-task run directory; choose another --out")
    else:
        write_json(out / "config.json", conf)
    try:
        return _train(cfg, out, teachers, dss, envs, log)
    except BaseException:
        if created and not (out / "checkpoint.pt").exists():  # nothing to resume: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(cfg: MultiTaskConfig, out: Path, teachers: list, dss: list, envs: list[str],
           log: Callable[[str], None] | None) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    student = MultiTaskStudent([t.obs_dim for t in teachers], [t.act_dim for t in teachers], cfg.trunk, cfg.activation)
    dense = student.params_total()
    if cfg.nonzero is not None and not 0 < cfg.nonzero <= dense:
        raise BpdError(f"--nonzero must be in 1..{dense} for this trunk")
    n_bias = sum(lin.bias.numel() for lin in student.linears())  # kept by the pruning: checked before the first step
    if cfg.nonzero is not None and cfg.nonzero <= n_bias:  # (the pruning's first cut named its own target, mid-run)
        raise BpdError(f"--nonzero {cfg.nonzero} leaves no weights beside the {n_bias} biases of this trunk and these "
                       "tasks")
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    tms = [TeacherModel(t, cfg.teacher_std) for t in teachers]
    obs = [torch.as_tensor(d.observations) for d in dss]
    means = [torch.as_tensor(d.obs_mean) for d in dss]
    stds = [torch.as_tensor(d.obs_std) for d in dss]
    stats = [{"obs_mean": d.obs_mean, "obs_std": d.obs_std, "low": d.action_low, "high": d.action_high} for d in dss]
    gen = torch.Generator().manual_seed(cfg.seed)
    step, elapsed, nz = 0, 0.0, None
    ck = out / "checkpoint.pt"
    if cfg.resume and ck.exists():
        blob = read_checkpoint(ck)
        with restoring(ck):
            student.load_state_dict(blob["student"])
            opt.load_state_dict(blob["opt"])
            gen.set_state(blob["generator"])
            step, elapsed = int(blob["step"]), float(blob["elapsed"])
    fields = ["step", "time_s", "params_nonzero", *[f"loss/{e}" for e in envs], *[f"eval/{e}" for e in envs]]
    metrics = out / "metrics.csv"
    if metrics.exists():
        try:
            with open(metrics, newline="") as f:
                keep = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        except (KeyError, TypeError, ValueError, csv.Error):  # UnicodeDecodeError is a ValueError
            raise BpdError(f"{metrics}: corrupt metrics (a row without a step); remove the run to start over") \
                from None
    else:
        keep = []
    mf = open(metrics, "w", newline="")
    wr = csv.DictWriter(mf, fieldnames=fields)
    wr.writeheader()
    wr.writerows(keep)
    t0 = time.time() - elapsed
    acc: dict[str, list[float]] = {e: [] for e in envs}
    # the last evaluation so far: a resumed run that had finished reports its returns again
    last: dict = {k: float(v) if v else None for k, v in keep[-1].items() if k.startswith("eval/")} if keep else {}
    bar = tqdm(total=cfg.steps, initial=step, desc="multitask", mininterval=0.5,
               disable=None if cfg.progress else True)  # None: shown on a terminal only
    say = log if log is not None and bar.disable else (lambda _: None)
    if log is not None:
        log(f"multitask: {len(envs)} tasks ({', '.join(envs)}), {cfg.steps} steps"
            + (f", resumed at step {step}" if step else "") + f", evaluated every {cfg.eval_every}, to {out}")
    try:
        while step < cfg.steps:
            if cfg.nonzero is not None:
                target = prune_target(step, cfg.steps, dense, cfg.nonzero, cfg.prune_start, cfg.prune_end)
                nz = student.params_nonzero() if nz is None else nz
                if target < nz:
                    student.prune_to(target)
                    nz = target
            total = torch.zeros(())
            for i, tm in enumerate(tms):
                x = obs[i][torch.randint(0, len(obs[i]), (cfg.batch,), generator=gen)]
                mu_t, ls_t = tm(x)
                mu, ls = student(i, (x - means[i]) / stds[i])
                li = _task_loss(cfg.loss, mu_t, ls_t, mu, ls, cfg.temperature)
                acc[envs[i]].append(li.item())
                total = total + li
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                mt = student.to_numpy(envs, stats)
                row: dict[str, float | None] = {"step": step, "time_s": round(time.time() - t0, 2),
                                                "params_nonzero": mt.params_nonzero}
                for i, e in enumerate(envs):
                    rets, _ = evaluate(e, mt.task_policy(i).act, cfg.eval_episodes, seed=train_eval_seed(cfg.seed))
                    row[f"eval/{e}"] = float(np.mean(rets))
                    row[f"loss/{e}"] = float(np.mean(acc[e])) if acc[e] else None
                    acc[e] = []
                wr.writerow(row)
                mf.flush()
                last = row
                say(f"step {step}: returns " + ", ".join(f"{e} {row[f'eval/{e}']:.1f}" for e in envs)
                    + f", {mt.params_nonzero} nonzero, {row['time_s']:.0f} s")
                blob = {"student": student.state_dict(), "opt": opt.state_dict(), "generator": gen.get_state(),
                        "step": step, "elapsed": time.time() - t0}
                atomic_write(ck, functools.partial(torch.save, blob))
    finally:
        bar.close()
        mf.close()
    if cfg.nonzero is not None:
        student.prune_to(cfg.nonzero)
    mt = student.to_numpy(envs, stats)
    summary = {"tasks": envs, "steps": step, "grad_steps": step, "env_steps": int(sum(len(d) for d in dss)),
               "seconds": round(time.time() - t0, 2), "params_nonzero": mt.params_nonzero, "params_total": dense,
               "trunk": list(cfg.trunk), "loss": cfg.loss, "nonzero_budget": cfg.nonzero,
               "final_eval": {e: last.get(f"eval/{e}") for e in envs},
               "teacher_distribution": [tm.distribution for tm in tms]}
    mt.meta = {"train": {"loss": cfg.loss, "steps": step, "seed": cfg.seed}}
    mt.save(out / "multitask.npz")
    for i, _e in enumerate(envs):
        mt.task_policy(i).save(out / f"task{i}.npz")
    write_json(out / "summary.json", summary)
    return summary
