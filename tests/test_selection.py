"""Which candidates a distillation run judges on the selection seeds: the shortlist by periodic return, and
every student of the fine-tune whatever its periodic return."""

import numpy as np
import torch

from training.selection import Candidate, finetuned, select
from training.student import BayesianStudent


def _student(frozen: bool, seed: int) -> BayesianStudent:
    torch.manual_seed(seed)
    s = BayesianStudent(4, 1, [4])
    with torch.no_grad():
        for layer in s.layers:
            layer.log_sigma2.fill_(-8.0)  # every weight kept
    if frozen:
        with torch.no_grad():
            for layer in s.layers:
                layer.freeze()
    return s


def test_finetuned_reads_the_frozen_layers_from_the_state_alone():
    assert not finetuned(_student(False, 0).state_dict())
    assert finetuned(_student(True, 0).state_dict())
    assert not finetuned({"weights.0": torch.zeros(2)})  # no variational layer at all: not a fine-tune's


def test_the_fine_tunes_candidates_are_judged_whatever_their_periodic_return():
    """Shortlist of 1 by periodic return: the variational candidate of step 20 (return 100) alone; the
    fine-tune's candidate of step 40 (periodic return 5, a noisy evaluation) is judged as well, and the
    variational one of step 30 (return 50) is not."""
    cands = [Candidate(20, 100.0, 29, _student(False, 1).state_dict()),
             Candidate(30, 50.0, 29, _student(False, 2).state_dict()),
             Candidate(40, 5.0, 29, _student(True, 3).state_dict())]
    meta = {"obs_dim": 4, "act_dim": 1, "hidden": [4], "activation": "tanh", "threshold": 3.0,
            "log_alpha_clip": 8.0}
    stats = {"obs_mean": np.zeros(4, np.float32), "obs_std": np.ones(4, np.float32),
             "action_low": -3 * np.ones(1, np.float32), "action_high": 3 * np.ones(1, np.float32)}
    out = select(cands, meta, stats, "InvertedPendulum-v5", 0, "sparsest-within", 0.02, 1, shortlist=1)
    assert [r["step"] for r in out["rows"]] == [20, 40]
    # without a shortlist every candidate is judged, once
    out = select(cands, meta, stats, "InvertedPendulum-v5", 0, "sparsest-within", 0.02, 1, shortlist=None)
    assert [r["step"] for r in out["rows"]] == [20, 30, 40]
