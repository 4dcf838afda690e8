"""The DSP kernel's cost read off its code for a mask (firmware_host/measure/dsp_meter.py), and the cut of a
Bayesian student's mask to a budget of it (`bpd distill --prune-to-cycles`)."""

import json

import numpy as np
import pytest
import torch

from bpd.errors import BpdError
from firmware_host.measure.cycle_model import estimate_cycles
from firmware_host.measure.dsp_meter import asm_mix, mask_cycles
from tests.conftest import run_bpd
from training.student import BayesianStudent, budget_masks


def test_asm_mix_costs_each_line_as_the_emulator_classes_it():
    """ldmia of 3 registers: 1 + 3 cycles; smlad: 1 (an ALU-class instruction); ldr: 2; strh: 1; pop with pc:
    a multi-register branch 3 + 2. Labels and directives cost nothing: 13 cycles on the Cortex-M4F."""
    asm = "\n".join(["    .global f", "f:", "    ldmia r1!, {r4, r5, r6}", "    smlad r4, r5, r6, r4",
                     "    ldr r7, [r0, #4]", "    strh r4, [r2, #0]", "    pop {r4, pc}"])
    mix = asm_mix(asm)
    assert mix == {"mem_multi": 1, "mem_multi_regs": 3, "alu": 1, "load": 1, "store": 1, "branch_multi": 1,
                   "branch_multi_regs": 2}
    assert estimate_cycles("cortex-m4f", mix) == 4 + 1 + 2 + 1 + 5


def test_a_filled_pair_partner_costs_nothing_and_a_new_pair_costs():
    """Row 0 keeps column 0 of the pair (0, 1): filling column 1 adds a weight and no instruction; a weight in
    a pair the row did not use (columns 2, 3) adds at least its SMLAD. A layer with no unit left: inf."""
    w1 = np.zeros((2, 4), bool)
    w1[0, 0] = w1[1, 0] = w1[1, 1] = True
    w2 = np.ones((1, 2), bool)
    base = mask_cycles([w1, w2])
    filled = w1.copy()
    filled[0, 1] = True
    assert mask_cycles([filled, w2]) == base
    more = filled.copy()
    more[0, 2] = True
    assert mask_cycles([more, w2]) >= base + 1
    assert mask_cycles([np.zeros((2, 4), bool), w2]) == float("inf")


def _student() -> BayesianStudent:
    torch.manual_seed(0)
    s = BayesianStudent(3, 1, [4])
    with torch.no_grad():
        for i, layer in enumerate(s.layers):
            layer.log_sigma2.fill_(-10.0)
            layer.theta.copy_(torch.arange(1, layer.theta.numel() + 1, dtype=torch.float32).view_as(layer.theta)
                              / (10.0 * (i + 1)))
    return s


def test_budget_masks_cuts_to_the_largest_set_a_cost_allows():
    """Cost = kept weights + 3: budget 10 keeps the 7 of lowest log alpha (the largest thetas, since log
    sigma^2 is equal everywhere); a cost no cut meets is an error."""
    s = _student()
    cost = lambda ms: float(sum(int(m.sum()) for m in ms)) + 3
    masks = budget_masks(s, None, cost=cost, budget=10)
    assert sum(int(m.sum()) for m in masks) == 7
    la = torch.cat([layer.log_alpha.flatten() for layer in s.layers])
    kept = torch.cat([m.flatten() for m in masks])
    assert la[kept].max() <= la[~kept].min()
    with pytest.raises(BpdError, match="no cut"):
        budget_masks(s, None, cost=cost, budget=2)


def test_distill_cuts_to_the_cycles_asked(tiny_pipeline, tmp_path):
    """A run cut at its fine-tune's start to 500 estimated cycles of the DSP kernel's layers (the dense
    4-16-16-1 network's cost 734, its three layers in one function: 778 when each was a function of its own)
    hands over a student whose masks cost at most that (its pair partners filled at no cycle)."""
    from training.student import load_student

    out = tmp_path / "run"
    run_bpd("distill", "--teacher", str(tiny_pipeline / "teacher.npz"), "--dataset", str(tiny_pipeline / "dataset.npz"),
            "--out", str(out), "--steps", "200", "--eval-every", "50", "--eval-episodes", "1", "--select-episodes",
            "1", "--hidden", "16", "16", "--critic-hidden", "32", "32", "--no-progress", "--kl-warmup", "none",
            "--finetune", "0.5", "--prune-to-cycles", "500")
    s, meta, stats = load_student(out / "student.pt")
    assert meta["step"] > 100  # a student of the fine-tune, on the cut mask: the budget is kept
    pol = s.collapse(**stats)
    cycles = mask_cycles([w != 0 for w in pol.weights])
    full = mask_cycles([np.ones_like(w, bool) for w in pol.weights])
    assert full == 734 and 0 < cycles <= 500
    assert json.loads((out / "summary.json").read_text())["layer_cycles"] == cycles
    r = run_bpd("distill", "--teacher", "t.npz", "--dataset", "d.npz", "--out", str(tmp_path / "x"), "--finetune",
                "0", "--prune-to-cycles", "300", check=False)
    assert r.returncode != 0 and "--prune-to-cycles (above 0)" in r.stderr


def test_a_cost_cut_that_chooses_its_units_keeps_more_signal():
    """Cost = 10 a live hidden unit + 1 a weight, budget 40, on a 3-4-1 student whose unit 3 has the largest
    output weight (5.5) and a 2.9 input, unit 2 a 3.0 input and output. By log alpha alone (equal sigma: the
    largest thetas first) the cut stops at 9 weights (unit 3's output, units 0 and 1 whole): the next, unit
    2's input, makes a fourth unit live (50). Choosing the units too drops unit 2, the least signal, and
    keeps unit 3's 2.9 input as well: 10 weights at exactly 40."""
    from training.distill_config import UNIT_SHARES
    from training.student import live_units

    s = BayesianStudent(3, 1, [4])
    with torch.no_grad():
        s.layers[0].theta.copy_(torch.tensor([[5.0, 5, 5], [4, 4, 4], [3.0, 0.1, 0.1], [2.9, 0.1, 0.1]]))
        s.layers[1].theta.copy_(torch.tensor([[5.0, 4, 3, 5.5]]))
        for layer in s.layers:
            layer.log_sigma2.fill_(-2.0)
    cost = lambda ms: 10.0 * live_units([torch.as_tensor(m) for m in ms]) + sum(int(m.sum()) for m in ms)
    plain = budget_masks(s, None, cost=cost, budget=40)
    chosen = budget_masks(s, None, cost=cost, budget=40, unit_shares=UNIT_SHARES)
    assert [m.int().tolist() for m in plain] == [[[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], [[1, 1, 0, 1]]]
    assert [m.int().tolist() for m in chosen] == [[[1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]], [[1, 1, 0, 1]]]
    assert cost([m.numpy() for m in chosen]) == 40


def test_a_cut_whose_cost_is_infinite_until_it_reaches_the_output():
    """Cost: inf while no output weight is kept (no network), else the kept weights. The first layer's weights
    have the lowest log alpha, so the 12 first cuts cost inf; budget 14 keeps them and the two largest
    output weights. A search that assumed costs rise with the cut would have stopped below them."""
    s = BayesianStudent(3, 1, [4])
    with torch.no_grad():
        s.layers[0].theta.fill_(5.0)
        s.layers[1].theta.copy_(torch.tensor([[1.0, 1.4, 1.2, 1.1]]))
        for layer in s.layers:
            layer.log_sigma2.fill_(-2.0)
    cost = lambda ms: float("inf") if not ms[-1].any() else float(sum(int(m.sum()) for m in ms))
    masks = budget_masks(s, None, cost=cost, budget=14)
    assert int(masks[0].sum()) == 12 and masks[1].int().tolist() == [[0, 1, 1, 0]]
    with pytest.raises(BpdError, match="reach the output cost 13"):
        budget_masks(s, None, cost=cost, budget=12.5)


def test_prune_to_cycles_is_refused_before_training_without_the_meter_or_below_the_least_network():
    """The trainer is refused at construction: without a meter, and with a budget below what a network of one
    unit a hidden layer costs (4-1-1-1 dense here)."""
    from training.distill import BPDTrainer, DistillConfig

    cfg = DistillConfig(teacher="t.npz", dataset="d.npz", hidden=[16, 16], prune_to_cycles=500.0)
    with pytest.raises(BpdError, match="needs the Cortex-M4F meter"):
        BPDTrainer(cfg, 4, 1, 100)
    least = mask_cycles([np.ones((1, 4), bool), np.ones((1, 1), bool), np.ones((1, 1), bool)])
    BPDTrainer(DistillConfig(teacher="t.npz", dataset="d.npz", hidden=[16, 16], prune_to_cycles=least), 4, 1, 100,
               meter=mask_cycles)
    with pytest.raises(BpdError, match=f"even one unit a hidden layer costs {least:g} cycles"):
        BPDTrainer(DistillConfig(teacher="t.npz", dataset="d.npz", hidden=[16, 16], prune_to_cycles=least - 1),
                   4, 1, 100, meter=mask_cycles)


def test_a_cycle_budget_distill_admits_is_met_below_the_smallest_share_of_units():
    """Distill admits a --prune-to-cycles budget as low as a network of one unit a hidden layer costs (its check
    at construction: 140 cycles for 4-1-1-1 here); the cut at the fine-tune's start chose units only among 100 to
    40 % of the live ones (32 here: 13 at the least, whose cut reaching the output costs more), so such a budget
    failed there, after the warm-up and schedule
    had run ('no cut ... at any of 5 unit counts'). It now tries fewer units, down to one a hidden layer: at that
    budget, one unit in each, whose masks cost at most the budget."""
    from training.distill_config import UNIT_SHARES
    from training.student import live_units

    torch.manual_seed(0)
    s = BayesianStudent(4, 1, [16, 16]).eval()
    with torch.no_grad():  # the output's weights last by log alpha: a cut reaches the output with every other kept
        for layer, scale in zip(s.layers, (5.0, 3.0, 0.5)):
            layer.theta.copy_(scale * (1 + 0.1 * torch.rand_like(layer.theta)))
            layer.log_sigma2.fill_(-10.0)
    least = mask_cycles([np.ones((1, 4), bool), np.ones((1, 1), bool), np.ones((1, 1), bool)])
    assert least == 140 and live_units([layer.mask().bool() for layer in s.layers]) == 32
    masks = budget_masks(s, None, cost=mask_cycles, budget=least, unit_shares=UNIT_SHARES)
    assert [int((m.any(1) | n.any(0)).sum()) for m, n in zip(masks[:-1], masks[1:])] == [1, 1]
    assert mask_cycles([m.numpy() for m in masks]) <= least
    with pytest.raises(BpdError, match="down to one unit a hidden layer, costs at most 100 "):
        budget_masks(s, None, cost=mask_cycles, budget=100, unit_shares=UNIT_SHARES)
