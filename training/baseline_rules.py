"""The distillation baselines' options, and the names of their update rules and control policies
(training/baselines.py runs them).

Kept apart from the modules that need torch, so that the experiment runner's method registry
(bpd_app/methods.py) and `bpd baseline train --help` read them without importing it.
"""

from dataclasses import dataclass

from bpd.config import check_ranges, field
from bpd.errors import BpdError
from training.seed_blocks import COLLECT_MAX_STEPS, check_training_run

RUSU_RULES = ("nll", "mse", "kl")
CZARNECKI_RULES = ("teacher-distill", "on-policy-distill", "entropy-regularised", "n-distill",
                   "expected-entropy-regularised", "teacher-v-reward")
RULES = RUSU_RULES + CZARNECKI_RULES
# the rules with a reward (policy-gradient) term
REWARD_RULES = ("entropy-regularised", "n-distill", "expected-entropy-regularised", "teacher-v-reward")
CONTROLS = ("teacher", "student", "mixed", "uniform")
DEFAULT_CONTROL = {r: "teacher" for r in RUSU_RULES + ("teacher-distill",)} | {
    r: "student" for r in CZARNECKI_RULES if r != "teacher-distill"}


@dataclass
class BaselineConfig:
    method: str = field(help="update rule", choices=RULES)
    teacher: str = field(help="teacher file (bpd teacher format)")
    dataset: str = field(help="dataset from `bpd collect`: the teacher-driven data and the observation statistics")
    out: str = field("runs/baseline", help="run directory")
    control: str | None = field(None, help="which policy drives the data (default: the rule's, teacher for nll, mse, "
                                "kl and teacher-distill, else student)", choices=CONTROLS)
    hidden: list[int] = field([64, 64], help="student hidden widths")
    activation: str = field("tanh", help="student hidden activation", choices=("tanh", "relu"))
    nonzero: int | None = field(None, help="magnitude-prune to this many nonzero parameters of the collapsed student "
                                "(weights plus biases of its live units)")
    prune_start: float = field(0.2, help="fraction of training where pruning begins")
    prune_end: float = field(0.6, help="fraction of training where the nonzero count is reached (mask fixed after)")
    temperature: float = field(0.01, help="kl: teacher temperature T (variance T sigma_T^2)")
    teacher_std: float = field(0.2, help="teacher spread in pre-tanh units where the teacher has no log-std head")
    teacher_sb3: str | None = field(None, help="the teacher's stable-baselines3 zip: its SAC log-std head and critic")
    steps: int = field(20_000, help="gradient steps")
    env_steps: int = field(50_000, help="environment steps of online control (student, mixed, uniform)")
    collect_every: int = field(1000, help="environment steps per collection round of online control")
    batch: int = field(256, help="batch size")
    lr: float = field(1e-3, help="student learning rate")
    reward_weight: float = field(1.0, help="weight of the reward (policy-gradient) term")
    clip: float = field(0.2, help="reward rules: clip range eps of the importance ratio pi_theta / pi_collect in "
                        "the policy-gradient surrogate (a segment is reused until the next collection)")
    gamma: float = field(0.99, help="discount of the reward terms and value functions")
    init_log_std: float = field(-1.0, help="initial student log std (state-independent, pre-tanh units)")
    min_log_std: float = field(-5.0, help="student log std is clamped to [min, 2]")
    value_steps: int = field(5000, help="teacher-v-reward without a critic: TD(0) steps fitting V_T on the dataset")
    eval_every: int = field(2000, help="gradient steps between evaluations of the deterministic student")
    eval_episodes: int = field(5, help="episodes per periodic evaluation")
    checkpoint_every: int = field(1000, help="gradient steps between checkpoints")
    env: str | None = field(None, help="environment (default: the dataset's)")
    seed: int = field(0, help="random seed")
    threads: int = field(1, help="torch CPU threads")
    device: str = field("auto", help="torch device: auto (CUDA where torch sees a GPU, else the CPU), cpu, or cuda[:N]")
    resume: bool = field(False, help="continue the run in --out from its last checkpoint")
    progress: bool = field(True, help="show a progress bar")


def control_in_force(method: str, control: str | None) -> str:
    """The policy that drives a run's data: the one given, else the rule's own."""
    return control or DEFAULT_CONTROL[method]


def validate(cfg: BaselineConfig) -> str:
    """Check the options; returns the control policy in force."""
    control = control_in_force(cfg.method, cfg.control)
    check_ranges(cfg, {"steps": (1, 100_000_000), "env_steps": (1, 100_000_000), "collect_every": (1, 100_000_000),
                       "batch": (1, 1_000_000), "hidden": (1, 4096), "lr": (0, 1, "open"),
                       "min_log_std": (-20, 2, "open"), "init_log_std": (cfg.min_log_std, 2),
                       "value_steps": (1, 100_000_000), "eval_every": (1, None), "eval_episodes": (1, 10_000),
                       "checkpoint_every": (1, None), "threads": (1, 1024),
                       "reward_weight": (0, 1e6), "temperature": (0, 1e6, "open"), "teacher_std": (0, 1e3, "open")})
    check_training_run(cfg.seed, cfg.eval_episodes)
    if cfg.min_log_std >= 2:
        raise BpdError(f"--min-log-std must be below 2, the upper clamp (got {cfg.min_log_std:g})")
    checks = [(cfg.steps >= 1 and cfg.batch >= 1 and cfg.eval_every >= 1 and cfg.checkpoint_every >= 1,
               "--steps, --batch, --eval-every and --checkpoint-every must be positive"),
              (cfg.collect_every >= 1 and cfg.env_steps >= 1, "--env-steps and --collect-every must be positive"),
              (control == "teacher" or cfg.env_steps <= COLLECT_MAX_STEPS,
               f"--env-steps must be at most {COLLECT_MAX_STEPS} (got {cfg.env_steps}): online control's episodes "
               "take their seeds from a block of the run seed's own (training/seed_blocks.py)"),
              (bool(cfg.hidden) and min(cfg.hidden) >= 1, "--hidden needs at least one positive width"),
              (cfg.nonzero is None or cfg.nonzero >= 1, "--nonzero must be positive"),
              (0 <= cfg.prune_start <= cfg.prune_end <= 1, "need 0 <= --prune-start <= --prune-end <= 1"),
              (cfg.temperature > 0 and cfg.teacher_std > 0, "--temperature and --teacher-std must be positive"),
              (0 < cfg.clip < 1, "--clip must be in (0, 1)"),
              (0 <= cfg.gamma < 1, "--gamma must be in [0, 1)"),
              (cfg.eval_episodes >= 1, "--eval-episodes must be at least 1"),
              (not (cfg.method in REWARD_RULES and control != "student"),
               f"{cfg.method} has a reward term, a policy gradient that needs the student's own data: "
               "--control student")]
    for ok, msg in checks:
        if not ok:
            raise BpdError(msg)
    return control
