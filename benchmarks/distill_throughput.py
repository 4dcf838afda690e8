"""Distillation throughput: gradient steps per second of BPD for each benchmark environment.

    python benchmarks/distill_throughput.py [--updates 300] [--rounds 5]

Measured side by side, interleaved round by round so that load from other processes falls on
every variant alike (medians over rounds):
  - threads: torch with 1 and 2 CPU threads;
  - critics: the twin critics as two networks (what distillation uses) and as one batched network
    (stacked [2, in, out] weights, one batched matrix product per layer), defined below as the
    candidate it was measured as;
  - evaluation: the time of one periodic evaluation of the collapsed student against the time of
    the gradient steps between two evaluations at the defaults.
Each environment's observation and action sizes are used with a synthetic dataset (the cost of a
step does not depend on the data). Writes benchmarks/results/distill_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bpd.io import write_json, write_text
from training.distill import BPDTrainer, DistillConfig
from training.envs import evaluate, make_env

ROOT = Path(__file__).resolve().parent.parent
ENVS = ["InvertedDoublePendulum-v5", "Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"]


class BatchedCritic(nn.Module):
    """Twin Q networks held as one batched network (the candidate measured here)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], n: int = 2) -> None:
        super().__init__()
        widths = [obs_dim + act_dim, *hidden, 1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for i, o in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(i)
            self.weights.append(nn.Parameter(torch.empty(n, i, o).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, o).uniform_(-bound, bound)))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        h = x.unsqueeze(0).expand(self.weights[0].shape[0], *x.shape)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        q = h.squeeze(-1)
        return q[0], q[1]

    def q1(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.addmm(b[0], h, w[0])
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h


def make_trainer(obs_dim: int, act_dim: int, batched: bool, n: int = 100_000) -> BPDTrainer:
    import copy
    torch.manual_seed(0)
    cfg = DistillConfig(teacher="", dataset="")
    tr = BPDTrainer(cfg, obs_dim, act_dim, n)
    if batched:
        tr.critic = BatchedCritic(obs_dim, act_dim, cfg.critic_hidden)
        tr.critic_target = copy.deepcopy(tr.critic)
        tr.critic_opt = torch.optim.Adam(tr.critic.parameters(), lr=cfg.critic_lr)
    return tr


def batch(obs_dim: int, act_dim: int, size: int = 256) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"obs": torch.randn(size, obs_dim, generator=g), "next_obs": torch.randn(size, obs_dim, generator=g),
            "act": torch.rand(size, act_dim, generator=g) * 2 - 1,
            "teacher_act": torch.rand(size, act_dim, generator=g) * 2 - 1,
            "rew": torch.randn(size, generator=g), "term": torch.zeros(size)}


def steps_per_second(tr: BPDTrainer, b: dict, updates: int, threads: int) -> float:
    torch.set_num_threads(threads)
    for _ in range(10):
        tr.update(b)
    t0 = time.perf_counter()
    for _ in range(updates):
        tr.update(b)
    return updates / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=300, help="gradient steps per timed block")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    ap.add_argument("--envs", nargs="+", default=ENVS)
    ns = ap.parse_args()
    variants = [("separate critics, 1 thread", False, 1), ("batched critics, 1 thread", True, 1),
                ("separate critics, 2 threads", False, 2), ("batched critics, 2 threads", True, 2)]
    defaults = DistillConfig(teacher="", dataset="")
    results = {}
    for env_id in ns.envs:
        env = make_env(env_id)
        od, ad = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        b = batch(od, ad)
        trainers = {name: make_trainer(od, ad, batched) for name, batched, _ in variants}
        samples: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for _ in range(ns.rounds):
            for name, _, threads in variants:
                samples[name].append(steps_per_second(trainers[name], b, ns.updates, threads))
        torch.set_num_threads(1)
        student = trainers[variants[0][0]].actor.collapse(np.zeros(od), np.ones(od), -np.ones(ad), np.ones(ad))
        t0 = time.perf_counter()
        rets, lens = evaluate(env_id, student.act, defaults.eval_episodes, seed=0)
        eval_s = time.perf_counter() - t0
        base = statistics.median(samples[variants[0][0]])
        results[env_id] = {
            "obs_dim": od, "act_dim": ad,
            "steps_per_second": {k: {"median": statistics.median(v), "samples": v} for k, v in samples.items()},
            "ratio_to_separate_1_thread": {k: statistics.median(v) / base for k, v in samples.items()},
            "eval_seconds": eval_s, "eval_env_steps": int(sum(lens)),
            "eval_share_at_defaults": eval_s / (eval_s + defaults.eval_every / base),
        }
        print(env_id, {k: round(statistics.median(v), 1) for k, v in samples.items()}, f"eval {eval_s:.2f} s",
              flush=True)
    import os
    out = {"updates_per_block": ns.updates, "rounds": ns.rounds, "cpus": os.cpu_count(), "torch": torch.__version__,
           "student_hidden": defaults.hidden, "critic_hidden": defaults.critic_hidden, "batch": defaults.batch,
           "load_average_at_end": os.getloadavg(), "envs": results}
    res_dir = ROOT / "benchmarks" / "results"
    write_json(res_dir / "distill_throughput.json", out)
    lines = ["# Distillation throughput", "",
             f"`python benchmarks/distill_throughput.py` on {os.cpu_count()} cores; gradient steps per second "
             f"(median of {ns.rounds} interleaved rounds of {ns.updates} steps; one step = a critic update, the actor "
             f"every {defaults.policy_freq}), student {defaults.hidden}, critics {defaults.critic_hidden}, batch "
             f"{defaults.batch}. Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
             "| environment | " + " | ".join(n for n, _, _ in variants) + " | periodic evaluation share |",
             "|---|" + "---|" * (len(variants) + 1)]
    for env_id, r in results.items():
        cells = [f"{r['steps_per_second'][n]['median']:.0f} ({r['ratio_to_separate_1_thread'][n]:.2f}x)"
                 for n, _, _ in variants]
        lines.append(f"| {env_id} | " + " | ".join(cells) + f" | {100 * r['eval_share_at_defaults']:.1f} % |")
    wins = {(e, n): x for e, r in results.items() for n, x in r["ratio_to_separate_1_thread"].items() if x > 1.1}
    if wins:
        lines += ["", "Faster than separate critics on one thread by more than 10 %: " + ", ".join(
            f"{n} on {e} ({x:.2f}x)" for (e, n), x in wins.items()) + "."]
    else:
        lines += ["", "No variant beats separate critics on one thread by more than 10 % anywhere, so distillation "
                  "keeps them; two cores are better spent on two cells side by side (`bpd experiment run --workers "
                  "2`) than on two threads for one."]
    eval_share = max(r["eval_share_at_defaults"] for r in results.values())
    lines += ["", f"Periodic evaluation takes at most {100 * eval_share:.1f} % of the time at the defaults."]
    write_text(res_dir / "distill_throughput.md", "\n".join(lines) + "\n")
    print((res_dir / "distill_throughput.md").read_text())


if __name__ == "__main__":
    main()
