"""bpd: Bayesian Policy Distillation from a teacher policy to a microcontroller."""

__version__ = "0.1.0"
