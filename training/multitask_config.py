"""The options of `bpd multitask train`: read by the command line without torch (training/multitask.py trains)."""

from __future__ import annotations

from dataclasses import dataclass

from bpd.config import field


@dataclass
class MultiTaskConfig:
    teachers: list[str] = field(help="one teacher file per task")
    datasets: list[str] = field(help="one dataset per task (same order), from `bpd collect`")
    out: str = field("runs/multitask", help="run directory")
    trunk: list[int] = field([64, 64], help="trunk widths: the task input layers map to the first, the task "
                             "output layers read the last")
    activation: str = field("tanh", help="hidden activation", choices=("tanh", "relu"))
    loss: str = field("kl", help="Rusu's loss per task", choices=("kl", "mse", "nll"))
    temperature: float = field(0.01, help="kl: teacher temperature")
    teacher_std: float = field(0.2, help="teacher spread in pre-tanh units (deterministic teachers)")
    nonzero: int | None = field(None, help="magnitude-prune the whole network to this many nonzero parameters")
    prune_start: float = field(0.2, help="fraction of training where pruning begins")
    prune_end: float = field(0.6, help="fraction of training where the nonzero count is reached")
    steps: int = field(20_000, help="gradient steps (one batch of every task per step)")
    batch: int = field(256, help="batch size per task")
    lr: float = field(1e-3, help="learning rate")
    eval_every: int = field(2000, help="steps between evaluations of every task")
    eval_episodes: int = field(5, help="episodes per task per evaluation")
    seed: int = field(0, help="random seed")
    threads: int = field(1, help="torch CPU threads")
    resume: bool = field(False, help="continue the run in --out from its last checkpoint")
    progress: bool = field(True, help="show a progress bar")
