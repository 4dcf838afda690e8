"""The layout of the seeds a run draws its episodes from (training/envs.py tells it whole): in each range a block of
SEED_BLOCK seeds per run seed (the visits past their first block and the online baselines' episodes: larger blocks of
their own), and the checks that keep a run's episodes inside its own blocks, where more episodes
(or a higher run seed) ran on into the next run seed's block (or the next range) unsaid. Apart from training/envs.py
so that the options' checks read it without gymnasium."""

from __future__ import annotations

from bpd.errors import BpdError

TRAIN_EVAL_BASE = 100_000  # periodic evaluations during training: TRAIN_EVAL_BASE + SEED_BLOCK x run seed + i
SELECT_EVAL_BASE = 200_000  # choosing among a run's evaluated students (and compress's confirmation after them)
VISIT_BASE = 400_000  # the fine-tune's visits (training/visits.py), their first SEED_BLOCK episodes
VISIT_MORE_BASE = 10_000_000  # visit episodes past a run seed's first SEED_BLOCK: VISIT_MORE_BASE + VISIT_MORE_BLOCK
VISIT_MORE_BLOCK = 20_000_000  # x run seed + (i - SEED_BLOCK), each episode at least a step: --finetune-visits' bound
SEED_BLOCK = 1000  # seeds of one run seed in each range
DATASET_SEED = 900_000  # `bpd collect`'s default --seed (and the plans'): a dataset's first episode, past every range
# a run chooses or reports on, where the default of 0 started it where reporting episode 0 does
COLLECT_BASE = 2_010_000_000  # the online baselines' episodes (training/baseline_trainer.py), past the visits' range:
COLLECT_BLOCK = 1_300_000  # COLLECT_BASE + COLLECT_BLOCK x run seed + i, i < COLLECT_BLOCK (the last below 2**31)
COLLECT_MAX_STEPS = 1_000_000  # --env-steps' bound: an episode takes at least a step, and each resume skips one
# seed, so the block leaves room for 300,000 resumes
MAX_RUN_SEED = (SELECT_EVAL_BASE - TRAIN_EVAL_BASE) // SEED_BLOCK - 1  # the last whose blocks stay in their ranges


def check_run_seed(seed: int, flag: str = "--seed") -> None:
    """A run seed whose blocks stay in their ranges: seed 100's training evaluations were seed 0's selection seeds."""
    if not 0 <= seed <= MAX_RUN_SEED:
        apart = SELECT_EVAL_BASE - TRAIN_EVAL_BASE
        raise BpdError(f"{flag} must be between 0 and {MAX_RUN_SEED} (got {seed}): a run seed has {SEED_BLOCK} "
                       f"evaluation seeds in each range, the ranges {apart} apart from {TRAIN_EVAL_BASE} on, and a "
                       "higher one's run into the next range")


def check_block(episodes: int, flag: str, what: str, first: int = 0) -> None:
    """`episodes` from the `first` seed of a run seed's block stay inside it: past its end they are the next run
    seed's (its selection, its training evaluations), and runs of two seeds meant as independent share episodes."""
    if first + episodes > SEED_BLOCK:
        raise BpdError(f"{flag} must be at most {SEED_BLOCK - first} (got {episodes}): {what} would run past the run "
                       f"seed's block of {SEED_BLOCK} seeds into the next run seed's")


def check_training_run(seed: int, eval_episodes: int) -> None:
    """A training run's (distill, baseline, multitask) seed and its periodic evaluations inside the seed's block."""
    check_run_seed(seed)
    check_block(eval_episodes, "--eval-episodes", "the periodic evaluations")


def collect_seed(run_seed: int, episode: int) -> int:
    """The seed of the online baselines' episode `episode` of run seed `run_seed`: in a range of its own, where it was
    run seed x 1_000_003 + episode, so that run seed 0's first episodes were the reporting episodes' seeds."""
    check_run_seed(run_seed)
    if not 0 <= episode < COLLECT_BLOCK:
        raise BpdError(f"online collection reached episode {episode}, past its block of {COLLECT_BLOCK} seeds: give "
                       f"fewer --env-steps (at most {COLLECT_MAX_STEPS})")
    return COLLECT_BASE + COLLECT_BLOCK * run_seed + episode
