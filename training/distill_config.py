"""`bpd distill`'s options (DistillConfig) and their one-line checks, made before anything is read or
written (_check_config) and once the dataset gives the student's shape (check_ablation_options)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bpd.config import check_ranges, field
from bpd.errors import BpdError
from training.seed_blocks import VISIT_MORE_BLOCK, check_block, check_training_run

# The choices the options name, here so that the configuration (read by `bpd experiment` to check and build its
# cells' commands) is read without torch; the modules that implement them import them from here.
PLAIN_STUDENTS = ("dense", "magnitude", "l1")  # training/ablations.py's students without a Bayesian layer
PRIORS = ("log-uniform", "gaussian", "laplace", "uniform")  # training/priors.py's priors of the KL term
UNIT_SHARES = (1.0, 0.85, 0.7, 0.55, 0.4)  # hidden units tried, shares of the live ones, where a cost cut picks them

WARMUP_CAP = 4  # --kl-warmup gate: the warm-up's most steps, a multiple of --steps
SCHEDULES = ("linear", "constant", "exponential", "gated")
RULES = ("sparsest-within", "best", "last")  # which evaluated student a run hands over (training/selection.py)


SELECT_EPISODES = 10  # a run's selection episodes by default (compress's confirmation starts after them)


@dataclass
class DistillConfig:
    teacher: str = field(help="teacher file (bpd teacher format)")
    dataset: str = field(help="dataset file written by `bpd collect`")
    out: str = field("runs/student", help="run directory (config, metrics, checkpoints, student)")
    hidden: list[int] = field([64, 64], help="student hidden widths")
    activation: str = field("tanh", help="student hidden activation", choices=("tanh", "relu"))
    alpha: float = field(2.5, help="value-term weight: lambda = alpha / mean|Q|")
    bc_weight: float = field(1.0, help="behaviour-cloning weight")
    eta_max: float = field(1.0, help="maximum KL weight")
    eta_schedule: str = field("linear", help="KL weight schedule", choices=SCHEDULES)
    eta_ramp: float = field(0.5, help="fraction of training over which eta reaches eta_max")
    eta_gate: float = field(0.05, help="the fraction of the teacher's return (on the periodic evaluations' seeds) "
                            "within which the collapsed student counts as imitating it: --kl-warmup gate ends its "
                            "warm-up at the first evaluation that finds it there; the gated schedule's linear ramp "
                            "advances a step per step while the last evaluation does, and goes back as much while it "
                            "does not: the KL waits for the student to imitate and prunes what the return can afford")
    kl_warmup: str = field("gate", help="gate: the schedule (KL weight, fine-tune) waits while the collapsed "
                           "student's return at the periodic evaluations is not yet within --eta-gate of the "
                           f"teacher's, at most {WARMUP_CAP} x --steps: behaviour cloning and the value term alone "
                           "until the student imitates, then --steps of the schedule; none: the schedule from the "
                           "first step (the Bayesian student's: the others have no KL)", choices=("none", "gate"))
    kl_scale: float | None = field(None, help="KL multiplier per sample (default: 1 / dataset size)")
    threshold: float = field(3.0, help="prune weights whose log alpha reaches this")
    log_alpha_clip: float = field(10.0, help="log alpha is clipped to [-clip, clip]")
    init_log_sigma2: float = field(-10.0, help="initial log sigma^2 of every weight")
    steps: int = field(20_000, help="gradient steps (critic updates) of the schedule; the warm-up's (--kl-warmup) "
                       "come before them")
    batch: int = field(256, help="batch size")
    actor_lr: float = field(1e-3, help="student learning rate")
    critic_lr: float = field(3e-4, help="critic learning rate")
    critic_hidden: list[int] = field([256, 256], help="critic hidden widths")
    gamma: float | None = field(None, help="discount per dataset tick (default: the teacher's own horizon: its "
                                "training discount per decision made per tick, gamma^(1/action_repeat), where its "
                                "file records them (bpd teacher train), else 0.99)")
    tau: float = field(0.005, help="target network update rate")
    policy_noise: float = field(0.2, help="target policy smoothing noise (normalised action units)")
    noise_clip: float = field(0.5, help="clip of the target smoothing noise")
    policy_freq: int = field(2, help="critic updates per actor update")
    eval_every: int = field(2000, help="steps between evaluations of the collapsed student (during the KL "
                         "warm-up, every --steps where that is fewer: its end waits for an evaluation)")
    eval_episodes: int = field(5, help="episodes per periodic evaluation")
    checkpoint_every: int = field(1000, help="steps between checkpoints")
    env: str | None = field(None, help="evaluation environment (default: the dataset's)")
    select: str = field("sparsest-within", help="which evaluated student the run hands over (rule stated in "
                        "summary.json)", choices=RULES)
    select_tol: float = field(0.02, help="sparsest-within: tolerance, as a fraction of the best selection return")
    select_episodes: int = field(SELECT_EPISODES, help="episodes per candidate on the selection seeds (disjoint "
                                 "from the periodic evaluations and from reporting seeds)")
    select_shortlist: int = field(8, help="candidates with the best periodic returns evaluated on the "
                                  "selection seeds (the fine-tune's are, whatever their periodic return)")
    select_no_falls: bool = field(False, help="the run's selection sets aside candidates that end early on a "
                                  "selection episode the teacher finishes (the teacher run on the same seeds; "
                                  "where every candidate does, those with the fewest such ends)")
    select_low_share: float = field(0.0, help="with --select-no-falls: also a fall, a selection episode the teacher "
                                    "finishes whose return falls short of the teacher's on that seed by more than "
                                    "(1 - this) of its magnitude (a task without termination, e.g. a HalfCheetah "
                                    "flipped onto its back); 0: early ends alone")
    keep_return: float | None = field(None, help="hand over the sparsest evaluated student that keeps this fraction "
                                      "of the teacher's return on the selection seeds (e.g. 0.95); a negative "
                                      "return (a cost): at most (1 - this) of its magnitude below it")
    prior: str = field("log-uniform", help="prior of the Bayesian student's weights (the KL term)", choices=PRIORS)
    prior_scale: float = field(1.0, help="prior scale: Gaussian std, Laplace b, uniform half-width")
    value_term: bool = field(True, help="train twin critics and include the value term (off: behaviour cloning "
                             "plus the sparsity term, no critics)")
    student: str = field("bayesian", help="bayesian (BPD), or a deterministic student trained without the KL: "
                         "dense, magnitude (pruned to --prune-to) or l1 (penalty, then --l1-threshold)",
                         choices=("bayesian", *PLAIN_STUDENTS))
    l1_weight: float = field(1e-4, help="l1 student: weight of sum |theta| at the end of the eta schedule's ramp")
    l1_threshold: float = field(1e-2, help="l1 student: weights with |theta| below this are removed")
    unit_gates: bool = field(True, help="Bayesian student: a gate per hidden unit under the same prior, so whole "
                             "units are pruned (a unit costs its activation as well as its weights)")
    unit_kl: float = field(16.0, help="unit gates: weight of each gate's KL against one weight's (16: about the "
                           "Cortex-M4F cycles of a hidden tanh over those of one multiply-add)")
    pair_partners: bool = field(True, help="Bayesian student with --finetune above 0 and without --prune-to: at the "
                                "fine-tune's start keep also the partner of every "
                                "kept weight in the integer kernel's column pairs (training/pairs.py), trained from "
                                "zero: weights one SMLAD multiplies anyway on Cortex-M4/M7, capacity at no cycle; "
                                "the run's selection then counts SMLADs, not nonzero parameters")
    finetune: float = field(0.2, help="Bayesian student: fraction of training at the end in which the mask is "
                            "frozen and the collapsed deterministic student is trained on (behaviour cloning and "
                            "the value term; no KL, no weight noise); 0: none, the paper's BPD")
    prune_to: int | None = field(None, help="nonzero parameters of the collapsed student (weights and biases of the "
                                 "units on a path from input to output) to keep: magnitude student; "
                                 "Bayesian with --finetune, at the fine-tune's start, those of lowest log alpha "
                                 "(no pair partners then: they would add weights back)")
    prune_to_pairs: int | None = field(None, help="Bayesian with --finetune, in place of --prune-to: at the "
                                       "fine-tune's start, cut the mask (lowest log alpha first) to at most this "
                                       "many multiply-adds of the integer kernel on Cortex-M4/M7, where one SMLAD "
                                       "multiplies a pair of columns (training/pairs.py); with --pair-partners "
                                       "the partners then fill every pair at no cycle")
    prune_to_cycles: float | None = field(None, help="Bayesian with --finetune, in place of --prune-to(-pairs) and "
                                          "--prune-fraction: at the fine-tune's start, cut the mask (lowest log alpha "
                                          "first) to at most this many estimated Cortex-M4F cycles of the DSP integer "
                                          "kernel's layers, read off their code for the mask (firmware_host/measure/"
                                          "dsp_meter.py; the C around the layers, fixed by the task's dimensions, "
                                          "not counted; the handed-over student's figure is in summary.json, "
                                          "layer_cycles); "
                                          "without --max-units the hidden units are chosen too (of "
                                          + ", ".join(f"{100 * x:g}" for x in UNIT_SHARES) + " %% of the live "
                                          "ones, least signal out first, the cut keeping the most signal, 1/alpha "
                                          "summed over its weights; where none fits, the most units below them that "
                                          "fit, down to one a hidden layer)")
    prune_fraction: float | None = field(None, help="Bayesian with --finetune, in place of --prune-to(-pairs): at "
                                         "the fine-tune's start keep this fraction of the mask's cost, the collapsed "
                                         "student's nonzero parameters or, with --pair-partners, its SMLADs (lowest "
                                         "log alpha first)")
    cut_dense: bool = field(False, help="with --prune-to-cycles: cut whole hidden units only and train every "
                            "weight between the units left (a dense network, the weights the threshold had cut back "
                            "from zero): the least signal goes first until the dense network fits the budget, "
                            "where a dense layer costs fewer cycles a weight than a sparse one")
    max_units: int | None = field(None, help="with --prune-to, --prune-to-pairs, --prune-to-cycles or --prune-fraction "
                                  "on the Bayesian student: hidden units kept at most (the least signal, summed "
                                  "1/alpha over a unit's weights, goes first)")
    finetune_visits: int = field(0, help="Bayesian student with --finetune: environment steps over the fine-tune in "
                                 "which the collapsed student drives the task and the teacher labels every state it "
                                 "meets; those transitions join the data the fine-tune's batches are drawn from "
                                 "(DAgger's aggregation, training/visits.py: a budget on top of the dataset's, in "
                                 "turns spread evenly through the fine-tune, as many as it has periodic "
                                 "evaluations); 0: the offline data alone")
    finetune_visit_noise: float = field(0.0, help="with --finetune-visits: Gaussian noise on the student's actions "
                                        "while it drives the task, its standard deviation this share of half the "
                                        "action range (clipped to the bounds; training/visits.py): the states next to "
                                        "the student's own path labelled by the teacher too; 0: the student's actions")
    finetune_anneal: bool = field(False, help="Bayesian student with --finetune: the actor's learning rate falls "
                                  "from --actor-lr to zero over the fine-tune on a half cosine (the critic's is "
                                  "kept), so that its last students settle instead of wandering between periodic "
                                  "evaluations")
    finetune_ema: float = field(0.0, help="Bayesian student with --finetune: the fine-tune's students (evaluated, "
                                "kept as candidates, driving --finetune-visits) are an exponential moving average "
                                "of the actor's weights on the cut mask, moved this share of the way to the actor "
                                "at each actor update (Polyak averaging: 0.0005, about the last 4,000 steps at "
                                "--policy-freq 2); 0: the actor itself")
    prune_start: float = field(0.2, help="magnitude student: fraction of training where pruning starts")
    prune_end: float = field(0.6, help="magnitude student: fraction where the final count is reached "
                             "(fine-tuning after it)")
    seed: int = field(0, help="random seed")
    threads: int = field(1, help="torch CPU threads")
    device: str = field("auto", help="torch device: auto (CUDA where torch sees a GPU, else the CPU), cpu, or cuda[:N]")
    resume: bool = field(False, help="continue the run in --out from its last checkpoint")
    progress: bool = field(True, help="show a progress bar")


# The paper's BPD (no unit gates, no fine-tune, no pair partners, the schedule from the first step): the options
# that were the defaults before the pair-partner fine-tune and the gated warm-up became them (issue 34), which
# the experiment runner's methods pin so that their cells keep their meaning, and which a run begun before an
# option existed is read as having had
PAPER = {"unit_gates": False, "finetune": 0.0, "pair_partners": False, "kl_warmup": "none"}


def warmup_applies(cfg: DistillConfig) -> bool:
    """Whether the schedule waits for the student to imitate: --kl-warmup gate on the Bayesian student (the
    deterministic students have no KL to hold back)."""
    return cfg.kl_warmup == "gate" and cfg.student == "bayesian"


def budget_cut(cfg: DistillConfig) -> bool:
    """Whether the fine-tune starts from the mask cut to an absolute budget (--prune-to, --prune-to-pairs,
    --prune-to-cycles on the Bayesian student): a constraint the user asked for, so that only the fine-tune's
    students, which keep it, may be handed over (a share, --prune-fraction, is a search instead: where the
    cut student loses the return, the run hands over the best it has)."""
    return (cfg.student == "bayesian" and cfg.finetune > 0
            and any(x is not None for x in (cfg.prune_to, cfg.prune_to_pairs, cfg.prune_to_cycles)))


def pair_partners_apply(cfg: DistillConfig) -> bool:
    """Whether the run fills the pair partners: the Bayesian student, a fine-tune, and no --prune-to."""
    return cfg.pair_partners and cfg.student == "bayesian" and cfg.finetune > 0 and cfg.prune_to is None


def visit_schedule(cfg: DistillConfig) -> tuple[int, int, int]:
    """The fine-tune's visits (training/visits.py): the turns asked, as many as the fine-tune's periodic evaluations,
    and the fine-tune's first and last schedule step."""
    return round(cfg.finetune * cfg.steps / cfg.eval_every), math.ceil((1 - cfg.finetune) * cfg.steps), cfg.steps


def visit_turns(total: int, chunks: int, start: int, end: int) -> int:
    """The turns the visits take: those asked, no more than their steps or the fine-tune's steps, at least one."""
    return max(1, min(int(chunks), int(total), int(end) - int(start)))


def _check_config(cfg: DistillConfig) -> None:
    """Every numeric option within its range, before anything is read or written."""
    check_ranges(cfg, {
        "hidden": (1, 4096), "critic_hidden": (1, 4096), "alpha": (0, 1e6), "bc_weight": (0, 1e6),
        "eta_max": (0, 1e6), "eta_ramp": (0, 1), "eta_gate": (0, 1), "kl_scale": (0, 1e6, "open"),
        "threshold": (-50, 50),
        "log_alpha_clip": (0, 100, "open"), "init_log_sigma2": (-50, 10), "steps": (1, 100_000_000),
        "batch": (1, 1_000_000), "actor_lr": (0, 1, "open"), "critic_lr": (0, 1, "open"), "gamma": (0, 1),
        "tau": (0, 1, "open"), "policy_noise": (0, 10), "noise_clip": (0, 10), "policy_freq": (1, 1_000_000),
        "eval_every": (1, None), "eval_episodes": (1, 10_000), "checkpoint_every": (1, None),
        "threads": (1, 1024), "select_tol": (0, 1), "select_episodes": (1, 10_000),
        "select_shortlist": (1, 10_000), "keep_return": (0, 1, "open"), "finetune": (0, 1),
        "unit_kl": (0, 1e6), "finetune_visits": (0, VISIT_MORE_BLOCK),
        "finetune_ema": (0, 1), "select_low_share": (0, 1),
        "finetune_visit_noise": (0, 10)})
    check_training_run(cfg.seed, cfg.eval_episodes)
    check_block(cfg.select_episodes, "--select-episodes", "the selection")
    if cfg.student == "bayesian" and cfg.finetune >= 1:
        raise BpdError("--finetune must be below 1: at 1 the mask is frozen at the schedule's first step, before the "
                       "KL has pruned anything")
    if cfg.student == "bayesian" and cfg.prune_to is not None and cfg.finetune == 0:
        raise BpdError("--prune-to on the Bayesian student cuts the mask at the fine-tune's start: it needs "
                       "--finetune above 0")
    if cfg.eta_schedule == "gated" and cfg.student != "bayesian":
        raise BpdError("--eta-schedule gated gates the Bayesian student's KL weight; --student "
                       f"{cfg.student} has none")
    if cfg.prune_to_pairs is not None and (cfg.finetune == 0 or cfg.student != "bayesian" or cfg.prune_to_pairs < 1
                                           or cfg.prune_to is not None):
        raise BpdError("--prune-to-pairs (at least 1) cuts the Bayesian student's mask at the fine-tune's start: it "
                       "needs --finetune above 0, and not --prune-to as well")
    if cfg.prune_to_cycles is not None and not cfg.prune_to_cycles > 0:
        raise BpdError(f"--prune-to-cycles must be above 0 (got {cfg.prune_to_cycles:g}): a budget of estimated "
                       "Cortex-M4F cycles of the DSP integer kernel's layers")
    if cfg.prune_to_cycles is not None and (cfg.finetune == 0 or cfg.student != "bayesian"
                                            or not cfg.prune_to_cycles > 0
                                            or cfg.prune_to is not None or cfg.prune_to_pairs is not None):
        raise BpdError("--prune-to-cycles (above 0) cuts the Bayesian student's mask at the fine-tune's start: it "
                       "needs --finetune above 0, and neither --prune-to nor --prune-to-pairs")
    if cfg.prune_fraction is not None and (cfg.finetune == 0 or cfg.student != "bayesian"
                                           or not 0 < cfg.prune_fraction <= 1
                                           or cfg.prune_to is not None or cfg.prune_to_pairs is not None
                                           or cfg.prune_to_cycles is not None):
        raise BpdError("--prune-fraction (above 0, at most 1) cuts the Bayesian student's mask at the fine-tune's "
                       "start: it needs --finetune above 0, and none of --prune-to, --prune-to-pairs, "
                       "--prune-to-cycles")
    if cfg.finetune_anneal and (cfg.finetune == 0 or cfg.student != "bayesian"):
        raise BpdError("--finetune-anneal anneals the Bayesian student's fine-tune: it needs --student bayesian and "
                       "--finetune above 0")
    if cfg.finetune_visits and (cfg.finetune == 0 or cfg.student != "bayesian"):
        raise BpdError("--finetune-visits drives the task with the Bayesian student during its fine-tune: it needs "
                       "--student bayesian and --finetune above 0")
    if cfg.finetune_visit_noise and not cfg.finetune_visits:
        raise BpdError("--finetune-visit-noise perturbs the student's actions on its visits: it needs "
                       "--finetune-visits")
    if cfg.select_low_share and not cfg.select_no_falls:
        raise BpdError("--select-low-share widens the falls the run's selection sets aside: it needs --select-no-falls")
    if cfg.finetune_ema and (cfg.finetune == 0 or cfg.student != "bayesian"):
        raise BpdError("--finetune-ema averages the Bayesian student's fine-tune: it needs --student bayesian and "
                       "--finetune above 0")
    if cfg.cut_dense and (cfg.prune_to_cycles is None or cfg.max_units is not None):
        raise BpdError("--cut-dense chooses the units of a --prune-to-cycles cut itself: it needs --prune-to-cycles, "
                       "and not --max-units")
    cut = (cfg.prune_to is not None or cfg.prune_to_pairs is not None or cfg.prune_fraction is not None
           or cfg.prune_to_cycles is not None)
    if cfg.max_units is not None and (not cut or cfg.student != "bayesian" or cfg.max_units < 1):
        raise BpdError("--max-units (at least 1) caps the units where --prune-to, --prune-to-pairs, "
                       "--prune-to-cycles or --prune-fraction cuts the Bayesian student's mask")



def check_ablation_options(cfg: DistillConfig, obs_dim: int, act_dim: int) -> None:
    """One-line errors for option sets the ablations cannot train."""
    if cfg.prior_scale <= 0:
        raise BpdError("--prior-scale must be positive")
    if cfg.student != "bayesian" and (cfg.prior != "log-uniform" or cfg.prior_scale != 1.0):
        raise BpdError(f"--prior applies to the Bayesian student, not --student {cfg.student}")
    if cfg.l1_weight < 0 or cfg.l1_threshold < 0:
        raise BpdError("--l1-weight and --l1-threshold must be non-negative")
    if not 0 <= cfg.prune_start <= cfg.prune_end < 1:
        raise BpdError("--prune-start and --prune-end need 0 <= start <= end < 1 (fine-tuning follows the end)")
    if cfg.student == "magnitude" and cfg.prune_to is None:
        raise BpdError("--student magnitude needs --prune-to (nonzero parameters to keep)")
    if cfg.student not in ("magnitude", "bayesian") and cfg.prune_to is not None:
        raise BpdError("--prune-to applies to --student magnitude, or bayesian with --finetune")
    from training.live import least_collapsed

    widths = [obs_dim, *cfg.hidden, act_dim]
    n_bias = sum(widths[1:])
    n_weights = sum(i * o for i, o in zip(widths, widths[1:]))
    if cfg.prune_to is not None and not least_collapsed(widths) <= cfg.prune_to <= n_bias + n_weights:
        raise BpdError(f"--prune-to must lie in [{least_collapsed(widths)}, {n_bias + n_weights}]: nonzero parameters "
                       f"of the collapsed student, of {n_bias} biases and {n_weights} weights, with one path from "
                       "input to output at the least")
