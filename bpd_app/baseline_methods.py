"""The distillation baselines the experiment runner knows (registered into the runner's methods when bpd_app.methods
is imported): Rusu et al. 2016 and Czarnecki et al. 2019 (training/baselines.py), each judged at the size of the BPD
cell of the same environment and seed."""

from __future__ import annotations

import functools
from collections.abc import Callable

from bpd.errors import BpdError
from bpd_app.method_base import (
    CellInputs,
    Method,
    bpd_collapsed_widths,
    flags,
    needed_label,
    register,
    resume_flag,
)
from training.baseline_rules import REWARD_RULES, control_in_force

# Plan args: size (pruned: BPD's architecture magnitude-pruned to BPD's
# nonzero count; dense: a dense network of BPD's collapsed widths; large: the teacher's widths, the
# papers' reference size), size_from (the label of the BPD cell: the one the plan's `needs: {bpd: LABEL}`
# names, by default bpd), and any option of `bpd baseline train`.

BASELINE_SIZES = ("pruned", "dense", "large")


def baseline_size(c: CellInputs, size: str, label: str) -> dict:
    """hidden widths and nonzero budget of a baseline cell from the BPD cell it is judged against."""
    if size == "large":
        from training.teacher import load_teacher
        return {"hidden": load_teacher(c.teacher).hidden, "nonzero": None}
    if size == "dense":
        return {"hidden": bpd_collapsed_widths(c, label), "nonzero": None}
    if size == "pruned":
        dep = c.deps.get(label) or {}
        hidden = (dep.get("train") or {}).get("hidden")
        if not hidden or dep.get("params_nonzero") is None:
            raise BpdError(f"the {label} cell of {c.env} seed {c.seed} records no architecture or nonzero count")
        return {"hidden": list(hidden), "nonzero": int(dep["params_nonzero"])}
    raise BpdError(f"size must be one of {', '.join(BASELINE_SIZES)}, not {size!r}")


def baseline_revision(rule: str, args: dict) -> int:
    """A baseline cell's revision: +1 for the policy-gradient rules' clipped importance-weighted surrogate
    (training/baselines.py); +1 for size pruned, its budget counted on the collapsed student (training/live.py)
    where it counted every bias and kept weight, so that it ships as many parameters as BPD, not fewer; +1 for online
    control, its episodes seeded from a range of their own (training/seed_blocks.py collect_seed) where run seed 0's
    were the reporting episodes' seeds."""
    online = control_in_force(rule, args.get("control")) != "teacher"
    return 1 + (rule in REWARD_RULES) + (str(args.get("size", "pruned")) == "pruned") + online


def revision_for(rule: str) -> Callable[[dict], int]:
    """The revision function a rule's Method carries (baseline_revision with the rule bound)."""
    return functools.partial(baseline_revision, rule)


def baseline_command(rule: str) -> Callable[[CellInputs], list[str]]:
    def command(c: CellInputs) -> list[str]:
        args = dict(c.args)
        size = str(args.pop("size", "pruned"))
        if size not in BASELINE_SIZES:  # before the needed cell is read, so that a plan's typo is refused when read
            raise BpdError(f"size must be one of {', '.join(BASELINE_SIZES)}, not {size!r}")
        label = needed_label(c, args.pop("size_from", None))
        args = {"seed": c.seed, "progress": False} | baseline_size(c, size, label) | args
        from training.baseline_rules import BaselineConfig

        return ["baseline", "train", "--method", rule, "--teacher", c.teacher, "--dataset", c.dataset,
                "--out", str(c.out), *flags(args, BaselineConfig), *resume_flag(c.out)]
    return command


for _name, _rule, _help in [
        ("rusu-nll", "nll", "Rusu et al.: Gaussian student, negative log-likelihood of the teacher's mean action"),
        ("rusu-mse", "mse", "Rusu et al.: mean squared error on the teacher's pre-squash outputs"),
        ("rusu-kl", "kl", "Rusu et al.: KL from the teacher tempered by T (0.01) to the Gaussian student"),
        ("teacher-distill", "teacher-distill", "Czarnecki et al.: cross-entropy to the teacher on teacher-driven data"),
        ("on-policy-distill", "on-policy-distill", "Czarnecki et al.: cross-entropy to the teacher on student-driven "
         "data (DAgger-style, online)"),
        ("entropy-regularised", "entropy-regularised", "Czarnecki et al.: policy gradient on the teacher's "
         "log-likelihood of the student's actions (online)"),
        ("n-distill", "n-distill", "Czarnecki et al.: cross-entropy plus the future cross-entropies as negative "
         "reward (online)"),
        ("expected-entropy-regularised", "expected-entropy-regularised", "Czarnecki et al.: reverse cross-entropy plus "
         "the teacher's log-likelihood of the next actions as reward (online)"),
        ("teacher-v-reward", "teacher-v-reward", "Czarnecki et al.: one-step advantage r + gamma V_T(s') - V_theta(s), "
         "V_T from the teacher's critic or fitted (online)")]:
    register(Method(_name, _help, baseline_command(_rule), product="policy.npz", needs=("bpd",),
                    revision_of=revision_for(_rule)))
