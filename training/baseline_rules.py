"""Names of the distillation baselines' update rules and control policies (training/baselines.py).

Kept apart from baselines.py, which needs torch, so that the experiment runner's method registry
(bpd_app/methods.py) can read them without importing it.
"""

RUSU_RULES = ("nll", "mse", "kl")
CZARNECKI_RULES = ("teacher-distill", "on-policy-distill", "entropy-regularised", "n-distill",
                   "expected-entropy-regularised", "teacher-v-reward")
RULES = RUSU_RULES + CZARNECKI_RULES
# the rules with a reward (policy-gradient) term
REWARD_RULES = ("entropy-regularised", "n-distill", "expected-entropy-regularised", "teacher-v-reward")
CONTROLS = ("teacher", "student", "mixed", "uniform")
DEFAULT_CONTROL = {r: "teacher" for r in RUSU_RULES + ("teacher-distill",)} | {
    r: "student" for r in CZARNECKI_RULES if r != "teacher-distill"}
