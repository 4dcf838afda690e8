"""Bayesian Policy Distillation: offline training of a sparse variational-dropout student.

Actor loss, in TD3+BC form:
    L = -lambda * mean Q1(s, pi(s)) + bc_weight * mean ||pi(s) - a_teacher(s)||^2 + eta_t * kl_scale * KL
    lambda = alpha / mean |Q1(s, pi(s))|   (detached)
Twin critics with target networks learn from the dataset with TD3 target smoothing. eta_t follows
a schedule towards eta_max; weights with log alpha >= threshold are pruned when the student
collapses to its deterministic form.

Options for the ablations: --prior picks the prior the KL is taken to (training/priors.py states
each KL and pruning rule); --no-value-term drops the critics and the value term (behaviour cloning
plus KL); --student dense/magnitude/l1 trains a deterministic student of the same shape with the
loss minus the KL, sparsified as training/ablations.py describes.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import bpd
from bpd.config import to_dict
from bpd.errors import BpdError
from bpd.io import check_output_dir, inputs_for_record, read_json, sha256_file, write_json
from training.ablations import PlainStudent
from training.checkpoint import load_checkpoint, restore, restored_acc, save_checkpoint
from training.collect import UNLABELLED, Dataset, dataset_hash, load_dataset, norm_act, norm_obs, teacher_labels
from training.device import resolve_device
from training.distill_config import (  # noqa: F401
    PAPER,
    SCHEDULES,
    UNIT_SHARES,
    WARMUP_CAP,
    DistillConfig,
    _check_config,
    budget_cut,
    check_ablation_options,
    pair_partners_apply,
    visit_schedule,
    warmup_applies,
)
from training.envs import env_dims, evaluate, train_eval_seed
from training.live import collapsed_nonzero, least_collapsed
from training.mlp import MLPPolicy
from training.pairs import network_slots, network_with_partners
from training.priors import pruning_rule, pruning_threshold, student_kl, unit_gate_kl
from training.run_metrics import METRIC_FIELDS, plot_metrics, truncate_metrics
from training.selection import (
    Candidate,
    finetuned,
    load_candidates,
    save_candidates,
    select,
    smlad_cost,
)
from training.student import BayesianStudent, Critic, budget_masks, dense_unit_cut, save_student
from training.teacher import DEFAULT_GAMMA, load_teacher, teacher_gamma
from training.visits import Visits

Meter = Callable[[list[np.ndarray], str], float]  # masks (rows = outputs), activation -> cost

# Fields that may differ between a run and its resumption: the teacher and dataset are compared by
# content (their sha256), not by path, and the run directory may have moved.
_RESUME_FREE = {"resume", "progress", "threads", "device", "bpd_version", "out", "teacher", "dataset"}


def eta_at(step: float, total: int, eta_max: float, schedule: str, ramp: float) -> float:
    """KL weight at `step` of `total`. linear: eta_max * p; exponential: eta_max * (1 - e^{-5p}) / (1 - e^{-5});
    constant: eta_max; p = min(1, step / (ramp * total))."""
    if schedule == "constant":
        return eta_max
    p = 1.0 if ramp <= 0 else min(1.0, step / (ramp * total))
    if schedule == "linear":
        return eta_max * p
    if schedule == "exponential":
        return eta_max * (1.0 - math.exp(-5.0 * p)) / (1.0 - math.exp(-5.0))
    raise ValueError(f"unknown eta schedule {schedule!r}")


def lambda_weight(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """TD3+BC normalisation of the value term: alpha / mean |Q|, detached."""
    return alpha / q.abs().mean().detach().clamp_min(1e-6)


class BPDTrainer:
    """One BPD gradient step per `update(batch)`; state_dict() captures everything needed to resume."""

    def __init__(self, cfg: DistillConfig, obs_dim: int, act_dim: int, n_data: int,
                 device: torch.device | None = None, meter: Meter | None = None) -> None:
        self.cfg = cfg
        self.meter = meter  # --prune-to-cycles: what a mask costs (the layer that runs distill lends it)
        device = device or torch.device("cpu")
        check_ablation_options(cfg, obs_dim, act_dim)
        if cfg.prune_to_cycles is not None:  # refused now, not at the fine-tune's start
            if meter is None:
                raise BpdError("--prune-to-cycles needs the Cortex-M4F meter: run it as `bpd distill`")
            widths = [obs_dim, *([1] * len(cfg.hidden)), act_dim]  # one unit a layer: the least any cut keeps
            least = meter([np.ones((o, i), bool) for i, o in zip(widths[:-1], widths[1:])], cfg.activation)
            if least > cfg.prune_to_cycles:
                raise BpdError(f"--prune-to-cycles {cfg.prune_to_cycles:g}: even one unit a hidden layer costs "
                               f"{least:g} cycles on this task")
        if cfg.student == "bayesian":
            self.actor = BayesianStudent(obs_dim, act_dim, cfg.hidden, cfg.activation,
                                         pruning_threshold(cfg.prior, cfg.threshold, cfg.log_alpha_clip),
                                         cfg.log_alpha_clip, cfg.init_log_sigma2, unit_gates=cfg.unit_gates)
        else:
            self.actor = PlainStudent(obs_dim, act_dim, cfg.hidden, cfg.activation, cfg.student, cfg.l1_threshold,
                                      cfg.prune_to, cfg.prune_start, cfg.prune_end)
        self.actor.to(device)
        self.actor_target = copy.deepcopy(self.actor).eval()
        # --finetune-ema: the fine-tune's student, an average of the actor's weights (set from it at the cut)
        self.actor_avg = copy.deepcopy(self.actor).eval() if cfg.finetune_ema else None
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic: Critic | None = None
        self.critic_target: Critic | None = None
        self.critic_opt: torch.optim.Adam | None = None
        if cfg.value_term:
            self.critic = Critic(obs_dim, act_dim, cfg.critic_hidden).to(device)
            self.critic_target = copy.deepcopy(self.critic)
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.kl_scale = cfg.kl_scale if cfg.kl_scale is not None else 1.0 / n_data
        self.step = 0
        self.last_actor: dict[str, float] = {}
        # the gated schedule: steps of ramp made so far, and whether the last evaluation lets it advance
        self.kl_progress = 0.0
        self.gate_open = False
        # --kl-warmup gate: whether the schedule still waits for the student to imitate, and the steps it waited
        # (the schedule runs on step - offset; the run lasts --steps beyond the warm-up)
        self.warming = warmup_applies(cfg)
        self.offset = 0

    @property
    def t(self) -> int:
        """The schedule's step: the step less the warm-up's."""
        return self.step - self.offset

    def eta(self) -> float:
        c = self.cfg
        if self.warming:  # no KL before the schedule begins, whatever its weight at its step 0
            return 0.0
        if c.eta_schedule == "gated":
            return eta_at(self.kl_progress, c.steps, c.eta_max, "linear", c.eta_ramp)
        return eta_at(self.t, c.steps, c.eta_max, c.eta_schedule, c.eta_ramp)

    def finetuning(self) -> bool:
        """Whether this step is in the fine-tune phase (the last `finetune` fraction of training)."""
        c = self.cfg
        return (isinstance(self.actor, BayesianStudent) and c.finetune > 0 and not self.warming
                and self.t >= (1 - c.finetune) * c.steps)

    def actor_lr(self) -> float:
        """The actor's learning rate at this step: --actor-lr, falling to zero over the fine-tune on a half cosine
        with --finetune-anneal (1 at its first step, 0 at the run's end)."""
        c = self.cfg
        if not (c.finetune_anneal and self.finetuning()):
            return c.actor_lr
        start = math.ceil((1 - c.finetune) * c.steps)
        return c.actor_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (self.t - start) / max(1, c.steps - start))))

    def freeze(self) -> None:
        """Enter the fine-tune phase: the student and its target become their deterministic masked forms
        (with --prune-to, both on the actor's budgeted mask)."""
        assert isinstance(self.actor, BayesianStudent) and isinstance(self.actor_target, BayesianStudent)
        c = self.cfg
        prune_to, pairs = c.prune_to, c.prune_to_pairs
        if c.prune_fraction is not None:  # a share of what the mask costs now: its SMLADs, else its collapsed count
            masks = [layer.mask().bool().cpu().numpy() for layer in self.actor.layers]
            if pair_partners_apply(c):
                pairs = max(1, int(c.prune_fraction * network_slots(masks)))
            else:  # of the collapsed student's parameters (training/live.py)
                widths = [self.actor.layers[0].in_features, *(layer.out_features for layer in self.actor.layers)]
                prune_to = max(least_collapsed(widths),
                               int(c.prune_fraction * collapsed_nonzero([torch.as_tensor(m) for m in masks])))
        keep: list[torch.Tensor] | None = None
        dense: list[torch.Tensor] | None = None  # --cut-dense: every weight between the units the cut leaves
        if c.cut_dense:
            assert self.meter is not None and c.prune_to_cycles is not None  # checked at construction
            meter, act = self.meter, c.activation
            keep, dense = dense_unit_cut(self.actor, lambda ms: meter(ms, act), c.prune_to_cycles)
        elif c.prune_to_cycles is not None:
            assert self.meter is not None  # checked at construction
            meter, act, fill = self.meter, c.activation, pair_partners_apply(c)
            # the cost of the masks handed over: with their pair partners, which take table words (export/dsp.py
            # pack_words: a pair with one weight takes half a word)
            keep = budget_masks(self.actor, None, c.max_units,
                                cost=lambda ms: meter(network_with_partners(ms) if fill else ms, act),
                                budget=c.prune_to_cycles, unit_shares=UNIT_SHARES)  # units chosen without max_units
        elif prune_to is not None or pairs is not None:
            keep = budget_masks(self.actor, prune_to, c.max_units, pairs)
        for net in (self.actor, self.actor_target):
            live = None
            for i, layer in enumerate(net.layers):
                layer.freeze(pair_partners_apply(self.cfg), live, None if keep is None else keep[i],
                             None if dense is None else dense[i])
                live = layer.unit_mask().bool()
        if self.actor_avg is not None:  # the average starts at the cut student
            self.actor_avg.load_state_dict(self.actor.state_dict())
            for layer in self.actor_avg.layers:
                layer.mark_frozen()

    def student(self) -> BayesianStudent | PlainStudent:
        """The student the run evaluates and keeps: the actor, or in the fine-tune its average (--finetune-ema)."""
        return self.actor_avg if self.actor_avg is not None and self.actor_avg.layers[0].deterministic else self.actor

    def sparsity_term(self, eta: float) -> tuple[torch.Tensor, float, dict[str, float]]:
        """The loss's sparsity penalty and its weight at KL weight eta: the KL to the prior weighted
        eta * kl_scale (Bayesian student), the L1 norm on the schedule's shape (l1 student) or nothing."""
        c = self.cfg
        if self.finetuning():
            return torch.zeros(()), 0.0, {}
        if isinstance(self.actor, PlainStudent):
            if self.actor.mode != "l1":
                return torch.zeros(()), 0.0, {}
            l1 = self.actor.l1()
            weight = eta_at(self.step, c.steps, 1.0, c.eta_schedule, c.eta_ramp) * c.l1_weight
            return l1, weight, {"losses/l1": l1.item()}
        kl = student_kl(self.actor, c.prior, c.prior_scale)
        if c.unit_gates:
            kl = kl + c.unit_kl * unit_gate_kl(self.actor)
        return kl, eta * self.kl_scale, {"losses/kl": kl.item()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.cfg
        s, a, r, s2 = batch["obs"], batch["act"], batch["rew"], batch["next_obs"]
        out: dict[str, float] = {}
        if self.critic is not None:
            assert self.critic_target is not None and self.critic_opt is not None  # built with the critic
            not_done = 1.0 - batch["term"]
            with torch.no_grad():
                noise = (torch.randn_like(a) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
                a2 = (self.actor_target(s2) + noise).clamp(-1.0, 1.0)
                tq1, tq2 = self.critic_target(s2, a2)
                target = r + not_done * (DEFAULT_GAMMA if c.gamma is None else c.gamma) * torch.min(tq1, tq2)
            q1, q2 = self.critic(s, a)
            critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_opt.step()
            out = {"losses/critic": critic_loss.item()}

        if self.finetuning() and not self.actor.layers[0].deterministic:
            self.freeze()
        if self.step % c.policy_freq == 0:
            self.actor.train()
            pi = self.actor(s)
            if self.critic is not None:
                q = self.critic.q1(torch.cat([s, pi], dim=-1)).squeeze(-1)
                lam = lambda_weight(q, c.alpha)
            bc = F.mse_loss(pi, batch["teacher_act"])
            eta = self.eta()
            penalty, weight, logs = self.sparsity_term(eta)
            value: torch.Tensor | float = 0.0 if self.critic is None else -lam * q.mean()
            actor_loss = value + c.bc_weight * bc + weight * penalty
            for g in self.actor_opt.param_groups:
                g["lr"] = self.actor_lr()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            if self.finetuning():  # Adam's momentum would move pruned weights the mask already hides: zero them
                with torch.no_grad():
                    for layer in self.actor.layers:
                        layer.theta.mul_(layer.mask())
            if self.critic is not None:
                logs |= {"losses/q": q.mean().item(), "lambda": lam.item()}
            self.actor.eval()
            if isinstance(self.actor, PlainStudent):
                self.actor.after_step(self.step, c.steps)
            with torch.no_grad():
                avg = self.actor_avg if self.finetuning() else None
                for net, tgt, w in ((self.actor, self.actor_target, c.tau), (self.critic, self.critic_target, c.tau),
                                    (self.actor, avg, c.finetune_ema)):
                    if net is not None and tgt is not None:
                        for p, tp in zip(net.parameters(), tgt.parameters()):
                            tp.lerp_(p, w)
                        for b, tb in zip(net.buffers(), tgt.buffers()):
                            tb.copy_(b)
            self.last_actor = {"losses/actor": actor_loss.item(), "losses/bc": bc.item(), "eta": eta} | logs
        self.step += 1
        if self.warming:
            self.offset = self.step
        elif c.eta_schedule == "gated":
            top = c.eta_ramp * c.steps
            self.kl_progress = min(max(self.kl_progress + (1.0 if self.gate_open else -1.0), 0.0), top)
        return out | self.last_actor

    def selectable(self) -> bool:
        """Whether the current student may be handed over (a magnitude student only once fully pruned, a
        warming one not before its schedule has run a step: the student at the warm-up's end had no KL)."""
        return ((not isinstance(self.actor, PlainStudent) or self.actor.pruning_done()) and not self.warming
                and self.t > 0)

    def end(self) -> int:
        """The step the run ends at: --steps beyond the warm-up (while warming, at least one step more)."""
        return self.cfg.steps + self.offset + (1 if self.warming else 0)

    def _parts(self) -> tuple[str, ...]:
        parts = ("actor", "actor_target", "actor_opt") + (("actor_avg",) if self.actor_avg is not None else ())
        return parts + (("critic", "critic_target", "critic_opt") if self.critic is not None else ())

    def state_dict(self) -> dict:
        return ({"step": self.step, "kl_progress": self.kl_progress, "gate_open": self.gate_open,
                 "warming": self.warming, "offset": self.offset}
                | {name: getattr(self, name).state_dict() for name in self._parts()})

    def load_state_dict(self, sd: dict) -> None:
        self.step = int(sd["step"])
        self.kl_progress, self.gate_open = float(sd.get("kl_progress", 0.0)), bool(sd.get("gate_open", False))
        self.warming, self.offset = bool(sd.get("warming", self.warming)), int(sd.get("offset", 0))
        for name in self._parts():
            getattr(self, name).load_state_dict(sd[name])
        # frozen once a fine-tune step has run: the update at schedule step t0 >= (1 - finetune) * steps froze it
        if self.finetuning() and self.t - 1 >= (1 - self.cfg.finetune) * self.cfg.steps:
            for net in (self.actor, self.actor_target, self.actor_avg):  # the saved parameters are already frozen
                for layer in (net.layers if net is not None else ()):  # (the target's mid-way to the actor's): set
                    layer.mark_frozen()  # the flags, which are not state
        self.actor.eval()


# --------------------------------------------------------------------------- the run


def _tensors(ds: Dataset) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in {
        "obs": norm_obs(ds.observations, ds.obs_mean, ds.obs_std),
        "next_obs": norm_obs(ds.next_observations, ds.obs_mean, ds.obs_std),
        "act": norm_act(ds.actions, ds.action_low, ds.action_high),
        "teacher_act": norm_act(ds.teacher_actions, ds.action_low, ds.action_high),
        "rew": ds.rewards, "term": ds.terminals}.items()}


def _config_fingerprint(cfg: DistillConfig) -> dict:
    """What must not change across a resumption: every option that shapes the result, plus the content
    hashes of the teacher and the dataset."""
    return {k: v for k, v in to_dict(cfg).items() if k not in _RESUME_FREE} | {
        "teacher_sha256": sha256_file(cfg.teacher), "dataset_sha256": dataset_hash(cfg.dataset)}



class Run:
    """Files of one distillation run directory."""

    def __init__(self, out: str | Path) -> None:
        self.dir = Path(out)
        self.config = self.dir / "config.json"
        self.checkpoint = self.dir / "checkpoint.pt"
        self.metrics = self.dir / "metrics.csv"
        self.student = self.dir / "student.pt"
        self.plot = self.dir / "training.png"
        self.summary = self.dir / "summary.json"
        self.candidates = self.dir / "candidates.pt"


def _size_note(cfg: DistillConfig, teacher) -> str:
    """A note for the first line where the student starts with more weights than the teacher has (a small teacher
    and the default widths): pruning may still bring it below, and --hidden sets its widths."""
    widths = [teacher.obs_dim, *cfg.hidden, teacher.act_dim]
    student = sum(a * b for a, b in zip(widths, widths[1:]))
    own = sum(int(w.size) for w in teacher.weights)
    if student <= own:
        return ""
    return (f"; the student ({'x'.join(map(str, cfg.hidden))}: {student:,} weights before pruning) is larger than "
            f"the teacher ({'x'.join(str(w.shape[0]) for w in teacher.weights[:-1]) or 'no hidden layer'}: "
            f"{own:,}): --hidden sets its widths")


def distill(cfg: DistillConfig, meter: Meter | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train a BPD student; resumable; returns the run summary. meter: what a list of masks (numpy, rows =
    outputs) costs with the given activation, for --prune-to-cycles (the firmware room's
    firmware_host/measure/dsp_meter.py mask_cycles, which `bpd distill` passes). log, if given, takes a line
    at the start and, without a progress bar (--no-progress, or not a terminal), one at each evaluation."""
    from tqdm import tqdm

    _check_config(cfg)
    device = resolve_device(cfg.device)  # CUDA asked for where there is none: one line, before anything
    check_output_dir(cfg.out)
    teacher = load_teacher(cfg.teacher)
    if cfg.gamma is None:  # recorded resolved in config.json, so a resumption compares the value
        cfg = dataclasses.replace(cfg, gamma=round(teacher_gamma(teacher)[0], 6))
    ds = teacher_labels(load_dataset(cfg.dataset, teacher.obs_dim, teacher.act_dim), teacher, str(cfg.dataset))
    check_ablation_options(cfg, ds.meta["obs_dim"], ds.meta["act_dim"])
    env_id = cfg.env or ds.meta["env_id"]
    dims = env_dims(env_id)
    if dims != (teacher.obs_dim, teacher.act_dim):
        raise BpdError(f"{env_id} maps {dims[0]} observations to {dims[1]} actions, the teacher "
                       f"{teacher.obs_dim} to {teacher.act_dim}")
    run = Run(cfg.out)
    _prepare_run_dir(run, cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    base = {k: v.to(device) for k, v in _tensors(ds).items()}
    data, n = base, len(ds)
    trainer = BPDTrainer(cfg, ds.meta["obs_dim"], ds.meta["act_dim"], n, device, meter)
    stats = {"obs_mean": ds.obs_mean, "obs_std": ds.obs_std, "action_low": ds.action_low,
             "action_high": ds.action_high}
    visits = None
    if cfg.finetune_visits:  # as many turns as the fine-tune has periodic evaluations (at least one)
        visits = Visits(env_id, cfg.finetune_visits, *visit_schedule(cfg), cfg.seed, stats, cfg.finetune_visit_noise)
    gen = torch.Generator().manual_seed(cfg.seed)
    elapsed = 0.0
    candidates: list[Candidate] = []
    acc: dict[str, list[float]] = {}  # the metrics since the last evaluation (checkpointed)
    restored = cfg.resume and run.checkpoint.exists()
    if restored:
        ck = load_checkpoint(run.checkpoint)
        restore(trainer, ck, run.checkpoint)
        acc = restored_acc(ck, run.checkpoint)
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        elapsed = float(ck["elapsed"])
        truncate_metrics(run.metrics, trainer.step)
        candidates = [c for c in load_candidates(run.candidates) if c.step <= trainer.step]
        if visits is not None and "visits" in ck:
            visits.load_state_dict(ck["visits"])
            data = visits.joined(base)
            n = len(data["obs"])
    meta = {"env_id": env_id, "obs_dim": ds.meta["obs_dim"], "act_dim": ds.meta["act_dim"],
            "hidden": list(cfg.hidden), "activation": cfg.activation, "threshold": trainer.actor.layers[0].threshold,
            "log_alpha_clip": cfg.log_alpha_clip, "teacher_sha256": sha256_file(cfg.teacher),
            "dataset_sha256": dataset_hash(cfg.dataset), "teacher_params_total": teacher.params_total,
            "teacher_hidden": teacher.hidden, "bpd_version": bpd.__version__}

    def collapsed() -> MLPPolicy:
        return trainer.student().collapse(**stats)

    # resumed from a checkpoint: its rows (truncate_metrics rewrote them under the header); else from step 0, afresh
    # (a run stopped before its first checkpoint may leave rows, or an empty file: its header still in the buffer)
    metrics_f = open(run.metrics, "a" if restored else "w", newline="")
    writer = csv.DictWriter(metrics_f, fieldnames=METRIC_FIELDS)
    if not restored:
        writer.writeheader()
        metrics_f.flush()
    last_eval = {"eval/return_mean": float("nan")}
    gate_ref = None  # gated schedule, gated warm-up: the teacher's return on the periodic evaluations' seeds
    if cfg.eta_schedule == "gated" or warmup_applies(cfg):
        gate_ref = float(np.mean(evaluate(env_id, teacher.act, cfg.eval_episodes, seed=train_eval_seed(cfg.seed))[0]))
    # the warm-up ends at an evaluation: under an --eval-every past --steps (a short try at the default 2,000) it
    # is evaluated every --steps, where it would otherwise never be before its cap of WARMUP_CAP x --steps
    warm_every = min(cfg.eval_every, cfg.steps)
    t_start = time.time() - elapsed
    bar = tqdm(total=trainer.end(), initial=trainer.step, desc="distill", mininterval=0.5,
               disable=None if cfg.progress else True)  # None: shown on a terminal only
    say = log if log is not None and bar.disable else (lambda _: None)
    if log is not None:
        log(f"distill: {env_id}, {cfg.steps} steps" + (" after the KL warm-up" if warmup_applies(cfg) else "")
            + (f", resumed at step {trainer.step}" if restored else "")
            + f", evaluated every {cfg.eval_every}, to {cfg.out}"
            + (f"; labels: {UNLABELLED}" if ds.meta.get("labels") == UNLABELLED else "") + _size_note(cfg, teacher))

    def begin_schedule() -> None:
        """The warm-up ends: the schedule begins, --steps from here."""
        trainer.warming = False
        bar.total = trainer.end()

    try:
        while trainer.step < trainer.end():
            idx = torch.randint(0, n, (cfg.batch,), generator=gen).to(device)
            info = trainer.update({k: v[idx] for k, v in data.items()})
            for k, v in info.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            step = trainer.step
            if visits is not None and visits.due(trainer.t):  # the student's own states, labelled by the teacher
                visits.take_turn(collapsed().act, teacher.act)
                data = visits.joined(base)
                n = len(data["obs"])
            if trainer.warming and step >= WARMUP_CAP * cfg.steps:
                begin_schedule()  # the warm-up's cap
            last = step >= trainer.end()
            if step % (warm_every if trainer.warming else cfg.eval_every) == 0 or last:
                policy = collapsed()
                rets, _ = evaluate(env_id, policy.act, cfg.eval_episodes, seed=train_eval_seed(cfg.seed))
                row = {k: float(np.mean(v)) for k, v in acc.items() if k in METRIC_FIELDS}
                row.update({"step": step, "time_s": round(time.time() - t_start, 2),
                            "sparsity/weights": trainer.actor.sparsity(), "params_nonzero": policy.params_nonzero,
                            "eval/return_mean": float(np.mean(rets)), "eval/return_std": float(np.std(rets))})
                writer.writerow(row)
                metrics_f.flush()
                say(f"step {step}: return {row['eval/return_mean']:.1f}, {policy.params_nonzero} nonzero, "
                    f"{row['time_s']:.0f} s")
                if gate_ref is not None:
                    trainer.gate_open = row["eval/return_mean"] >= gate_ref - cfg.eta_gate * abs(gate_ref)
                    if trainer.warming and trainer.gate_open:
                        begin_schedule()  # the student imitates
                if trainer.selectable():
                    candidates.append(Candidate(step, float(np.mean(rets)), policy.params_nonzero,
                                                {k: v.detach().cpu().clone()
                                                 for k, v in trainer.student().state_dict().items()}))
                    save_candidates(run.candidates, candidates)
                acc.clear()
                last_eval = row
            if step % 50 == 0:
                bar.set_postfix({"ret": f"{last_eval['eval/return_mean']:.0f}",
                                 "sparsity": f"{trainer.actor.sparsity():.3f}",
                                 "bc": f"{info.get('losses/bc', float('nan')):.4f}",
                                 "kl": f"{info.get('losses/kl', float('nan')):.0f}"}, refresh=False)
            if step % cfg.checkpoint_every == 0 or last:
                save_checkpoint(run.checkpoint, trainer, gen, time.time() - t_start, visits, acc)
    finally:
        bar.close()
        metrics_f.close()
    seconds = time.time() - t_start
    t_select = time.time()
    # with the pair partners, size is what the DSP kernel pays: a partner adds a weight and no SMLAD
    pool = candidates  # a budget is kept: only the students of the cut mask then
    if budget_cut(cfg):
        pool = [c for c in candidates if finetuned(c.state_dict)] or candidates
    chosen = select(pool, meta, stats, env_id, cfg.seed, cfg.select, cfg.select_tol, cfg.select_episodes,
                    cfg.select_shortlist, cfg.keep_return, teacher.act, None,
                    smlad_cost if pair_partners_apply(cfg) else None,
                    "smlad" if pair_partners_apply(cfg) else "nonzero", no_falls=cfg.select_no_falls,
                    low_share=cfg.select_low_share)
    step_chosen = chosen["chosen"]["step"]
    state = next(c.state_dict for c in candidates if c.step == step_chosen)
    trainer.actor.cpu()  # the student is saved and measured from the CPU, whatever trained it
    trainer.actor.load_state_dict(state)
    trainer.actor.eval()
    meta["step"] = step_chosen
    save_student(run.student, trainer.actor, meta, stats)
    plot_metrics(run.metrics, run.plot)
    policy = collapsed()
    summary = {"student": run.student.name, "steps": trainer.step, "seconds": round(seconds, 2),
               "select_seconds": round(time.time() - t_select, 2),
               "sparsity_weights": trainer.actor.sparsity(), "params_total": policy.params_total,
               "params_nonzero": policy.params_nonzero, "hidden": policy.hidden,
               "teacher_params_total": teacher.params_total, "pruning_rule": _pruning_rule(cfg),
               "device": str(device),
               "final_eval_return_mean": last_eval.get("eval/return_mean"),
               "train_eval_seeds": [train_eval_seed(cfg.seed), train_eval_seed(cfg.seed) + cfg.eval_episodes - 1],
               "eta_gate_teacher_return": gate_ref, "kl_warmup_steps": trainer.offset,
               "selection": chosen}
    if visits is not None:
        summary["visits"] = visits.summary()
    if cfg.prune_to_cycles is not None and meter is not None:  # what the handed-over student's layers cost
        summary["layer_cycles"] = meter([w != 0 for w in policy.weights], cfg.activation)
    write_json(run.summary, summary)
    return summary


def _pruning_rule(cfg: DistillConfig) -> str:
    if cfg.student == "bayesian":
        return pruning_rule(cfg.prior, cfg.threshold)
    return {"dense": "none (dense network)", "magnitude": f"global magnitude to {cfg.prune_to} nonzero parameters",
            "l1": f"|theta| < {cfg.l1_threshold:g} after an L1 penalty"}[cfg.student]


def _prepare_run_dir(run: Run, cfg: DistillConfig) -> None:
    """Check the run directory against this configuration, then record the configuration in it.

    Called once every input has been checked, so a run that fails on bad input leaves nothing behind.
    config.json holds the resolved options the run began with (paths included, for the commands that
    read them) and the content hashes; a resumption compares only the fingerprint and writes nothing,
    so a moved run directory or a teacher and dataset under other paths resume, while different
    content under the same path does not."""
    fp = _config_fingerprint(cfg)
    if cfg.resume and not run.config.exists():
        raise BpdError(f"--resume: {run.dir} holds no run to resume; leave out --resume to start one")
    if run.config.exists():
        if not cfg.resume:
            raise BpdError(f"{run.dir} already holds a run; pass --resume to continue it or choose another --out")
        old = read_json(run.config, "run configuration")
        if not isinstance(old, dict):
            raise BpdError(f"{run.config}: corrupt run configuration")
        # an option newer than the run is recorded as absent: it matches when it keeps its default
        defaults = to_dict(DistillConfig(teacher="", dataset="")) | PAPER  # PAPER: the defaults they replaced
        diff = sorted(k for k in set(fp) | set(old) if k not in _RESUME_FREE
                      and old.get(k, defaults.get(k)) != fp.get(k))
        if diff:
            raise BpdError(f"{run.dir} was started with a different configuration ({', '.join(diff)}); "
                           "resume with the same options or choose another --out")
        return  # config.json keeps recording how the run began
    if run.dir.exists() and any(run.dir.iterdir()):
        raise BpdError(f"{run.dir} exists and is not a bpd run directory (no config.json); choose another --out")
    given = to_dict(cfg)
    write_json(run.config, given | inputs_for_record(given, ("teacher", "dataset"), run.dir) | fp
               | {"bpd_version": bpd.__version__})

