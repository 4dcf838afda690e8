"""`bpd teacher train`'s options (TeacherTrainConfig), the seeds its evaluations use, and its one-line checks, made
before anything is read or written (training/teacher.py trains)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpd.config import field
from bpd.errors import BpdError


@dataclass
class TeacherTrainConfig:
    env: str = field("InvertedPendulum-v5", help="Gymnasium environment id")
    out: str = field("teacher.npz", help="where to write the teacher file (a file there is replaced once the new "
                     "one is whole)")
    algo: str = field("sac", help="stable-baselines3 algorithm", choices=("sac", "td3"))
    hidden: list[int] = field([256, 256], help="actor hidden widths (and the critics', unless --critic-hidden)")
    critic_hidden: list[int] | None = field(None, help="critic hidden widths (default: as --hidden)")
    steps: int = field(50_000, help="maximum environment steps")
    target_return: float | None = field(None, help="stop once the evaluation mean reaches this "
                                        "(default: the env's reward threshold, if any)")
    eval_every: int = field(2500, help="environment steps between evaluations")
    eval_episodes: int = field(5, help="episodes per evaluation")
    final_episodes: int = field(10, help="episodes of the final check of the kept actor, on seeds disjoint "
                                "from the training evaluations")
    learning_starts: int = field(1000, help="random steps before learning starts")
    action_noise: float = field(0.1, help="TD3 Gaussian exploration noise (std, in units of half the action range)")
    learning_rate: float | None = field(None, help="Adam learning rate (default: the algorithm's, 3e-4 SAC, 1e-3 TD3)")
    train_freq: int = field(1, help="environment steps per gradient step; a fast control loop gives highly "
                            "correlated samples, so fewer updates per step cost less for the same learning")
    gamma: float | None = field(None, help="discount factor (default: the algorithm's, 0.99); fast control loops "
                                "need one closer to 1 to see as far ahead in seconds")
    action_repeat: int = field(1, help="ticks each action chosen while learning is held for, its rewards summed; "
                               "--steps, --eval-every and --learning-starts then count decisions. Evaluations "
                               "and the teacher act every tick: a 500 Hz loop learns at 100 decisions a second "
                               "with 5, and its discount reaches 5x further in seconds")
    checkpoint_every: int = field(10_000, help="environment steps between checkpoints (model and replay buffer)")
    work_dir: str | None = field(None, help="checkpoint directory (default: OUT.work beside the teacher file)")
    resume: bool = field(False, help="continue an interrupted training from its work directory")
    seed: int = field(0, help="random seed")
    threads: int = field(1, help="torch CPU threads")
    device: str = field("auto", help="torch device: auto (CUDA where torch sees a GPU, else the CPU), cpu, or cuda[:N]")
    progress: bool = field(True, help="show a progress bar")


# Options added after trainings were started, with the value those trainings ran with.
_ADDED_OPTIONS = {"gamma": None, "train_freq": 1, "action_repeat": 1}
# Fields that may differ between a training and its resumption.
_TEACHER_RESUME_FREE = {"resume", "progress", "threads", "device", "out", "work_dir"}
TRAIN_EVAL_SEED = 10_000   # training evaluations use seeds TRAIN_EVAL_SEED + 100 * seed + i
FINAL_EVAL_SEED = 50_000   # the final check uses FINAL_EVAL_SEED + 100 * seed + i: disjoint from the above
TEACHER_SEED_BLOCK = 100   # the seeds of one teacher seed in each of the two ranges
# the last teacher seed whose training evaluations stay below the final checks' range (and whose final checks then
# stay below 100000, where the students' training evaluations begin)
MAX_TEACHER_SEED = (FINAL_EVAL_SEED - TRAIN_EVAL_SEED) // TEACHER_SEED_BLOCK - 1


def _validate_train_config(cfg: TeacherTrainConfig) -> None:
    checks = [(cfg.steps >= 1, "--steps must be at least 1"),
              (cfg.steps <= 100_000_000, "--steps must be at most 1e8"),
              (cfg.eval_every >= 1, "--eval-every must be at least 1"),
              (cfg.eval_episodes >= 1, "--eval-episodes must be at least 1"),
              (cfg.final_episodes >= 1, "--final-episodes must be at least 1"),
              # a teacher seed's evaluations stay in its block: past it they are the next seed's
              (cfg.eval_episodes <= TEACHER_SEED_BLOCK,
               f"--eval-episodes must be at most {TEACHER_SEED_BLOCK} (got {cfg.eval_episodes}): a teacher seed has "
               f"{TEACHER_SEED_BLOCK} training-evaluation seeds, and more would be the next teacher seed's"),
              (cfg.final_episodes <= TEACHER_SEED_BLOCK,
               f"--final-episodes must be at most {TEACHER_SEED_BLOCK} (got {cfg.final_episodes}): a teacher seed "
               f"has {TEACHER_SEED_BLOCK} final-check seeds, and more would be the next teacher seed's"),
              (cfg.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
              (cfg.learning_starts >= 0, "--learning-starts must be non-negative"),
              (cfg.learning_starts < cfg.steps, "--learning-starts must be below --steps (nothing would be learned)"),
              (bool(cfg.hidden) and min(cfg.hidden) >= 1, "--hidden needs positive widths"),
              (max(cfg.hidden or [1]) <= 4096 and len(cfg.hidden) <= 16,
               "--hidden: at most 16 layers of at most 4096 units"),
              (cfg.critic_hidden is None or (bool(cfg.critic_hidden) and min(cfg.critic_hidden) >= 1),
               "--critic-hidden needs positive widths"),
              (cfg.critic_hidden is None or (max(cfg.critic_hidden) <= 4096 and len(cfg.critic_hidden) <= 16),
               "--critic-hidden: at most 16 layers of at most 4096 units"),
              (np.isfinite(cfg.action_noise) and cfg.action_noise >= 0, "--action-noise must be a finite value >= 0"),
              (cfg.learning_rate is None or (np.isfinite(cfg.learning_rate) and cfg.learning_rate > 0),
               "--learning-rate must be positive"),
              (cfg.train_freq >= 1, "--train-freq must be at least 1"),
              (1 <= cfg.action_repeat <= 1000, "--action-repeat must be between 1 and 1000"),
              (cfg.gamma is None or (np.isfinite(cfg.gamma) and 0 < cfg.gamma < 1), "--gamma must be in (0, 1)"),
              (cfg.threads >= 1, "--threads must be at least 1"),
              (0 <= cfg.seed <= MAX_TEACHER_SEED,
               f"--seed must be between 0 and {MAX_TEACHER_SEED} (got {cfg.seed}): a higher seed's training "
               f"evaluations would be another's final checks ({FINAL_EVAL_SEED} on)"),
              (cfg.target_return is None or np.isfinite(cfg.target_return), "--target-return must be finite")]
    for ok, msg in checks:
        if not ok:
            raise BpdError(msg)
