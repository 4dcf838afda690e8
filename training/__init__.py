"""Training room: teacher, offline dataset and the Bayesian student (BPD)."""
