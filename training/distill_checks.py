"""The one-line checks of `bpd distill`'s options, made before anything is read or written (_check_config)
and once the dataset gives the student's shape (check_ablation_options)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bpd.config import check_ranges
from bpd.errors import BpdError

if TYPE_CHECKING:
    from training.distill import DistillConfig


def _check_config(cfg: DistillConfig) -> None:
    """Every numeric option within its range, before anything is read or written."""
    check_ranges(cfg, {
        "hidden": (1, 4096), "critic_hidden": (1, 4096), "alpha": (0, 1e6), "bc_weight": (0, 1e6),
        "eta_max": (0, 1e6), "eta_ramp": (0, 1), "kl_scale": (0, 1e6, "open"), "threshold": (-50, 50),
        "log_alpha_clip": (0, 100, "open"), "init_log_sigma2": (-50, 10), "steps": (1, 100_000_000),
        "batch": (1, 1_000_000), "actor_lr": (0, 1, "open"), "critic_lr": (0, 1, "open"), "gamma": (0, 1),
        "tau": (0, 1, "open"), "policy_noise": (0, 10), "noise_clip": (0, 10), "policy_freq": (1, 1_000_000),
        "eval_every": (1, None), "eval_episodes": (1, 10_000), "checkpoint_every": (1, None),
        "seed": (0, 2**31 - 1), "threads": (1, 1024), "select_tol": (0, 1), "select_episodes": (1, 10_000),
        "select_shortlist": (1, 10_000), "keep_return": (0, 1, "open"), "finetune": (0, 1),
        "unit_kl": (0, 1e6)})
    if cfg.pair_partners and (cfg.finetune == 0 or cfg.student != "bayesian"):
        raise BpdError("--pair-partners acts at the fine-tune's start: it needs --finetune above 0 and the "
                       "Bayesian student")
    if cfg.student == "bayesian" and cfg.prune_to is not None and (cfg.finetune == 0 or cfg.pair_partners):
        raise BpdError("--prune-to on the Bayesian student cuts the mask at the fine-tune's start: it needs "
                       "--finetune above 0, and not --pair-partners (which adds weights back)")
    if cfg.prune_to_pairs is not None and (cfg.finetune == 0 or cfg.student != "bayesian" or cfg.prune_to_pairs < 1
                                           or cfg.prune_to is not None):
        raise BpdError("--prune-to-pairs (at least 1) cuts the Bayesian student's mask at the fine-tune's start: it "
                       "needs --finetune above 0, and not --prune-to as well")
    if cfg.prune_fraction is not None and (cfg.finetune == 0 or cfg.student != "bayesian"
                                           or not 0 < cfg.prune_fraction <= 1
                                           or cfg.prune_to is not None or cfg.prune_to_pairs is not None):
        raise BpdError("--prune-fraction (above 0, at most 1) cuts the Bayesian student's mask at the fine-tune's "
                       "start: it needs --finetune above 0, and neither --prune-to nor --prune-to-pairs")
    cut = cfg.prune_to is not None or cfg.prune_to_pairs is not None or cfg.prune_fraction is not None
    if cfg.max_units is not None and (not cut or cfg.student != "bayesian" or cfg.max_units < 1):
        raise BpdError("--max-units (at least 1) caps the units where --prune-to, --prune-to-pairs or "
                       "--prune-fraction cuts the Bayesian student's mask")



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
    n_bias = sum(cfg.hidden) + act_dim
    n_weights = sum(i * o for i, o in zip([obs_dim, *cfg.hidden], [*cfg.hidden, act_dim]))
    if cfg.prune_to is not None and not n_bias < cfg.prune_to <= n_bias + n_weights:
        raise BpdError(f"--prune-to must lie in ({n_bias}, {n_bias + n_weights}]: the student has "
                       f"{n_bias} biases and {n_weights} weights")
