"""training/live.py: the collapsed student's nonzero count, and cutting weights in order to a budget of it."""

import numpy as np
import pytest
import torch

from bpd.errors import BpdError
from export.collapse import remove_dead_neurons
from training.live import collapsed_nonzero, cut_in_order, least_collapsed, live_masks


def test_hand_built_masks_count_what_the_collapse_keeps():
    # 2 inputs, hidden 3 then 2, 1 output
    w1 = np.array([[1, 1], [1, 0], [0, 1]], bool)
    w2 = np.array([[1, 0, 0], [0, 1, 0]], bool)  # hidden-2 unit 1 reads hidden-1 unit 1 only
    w3 = np.array([[1, 1]], bool)
    # hidden-1 unit 2 has no output: it goes with its weight. Left: 3 + 2 + 2 weights, 2 + 2 + 1 biases
    assert collapsed_nonzero([w1, w2, w3]) == 12
    w2_cut = np.array([[1, 0, 0], [0, 0, 0]], bool)  # now hidden-2 unit 1 has no input; hidden-1 unit 1 no output
    live = live_masks([w1, w2_cut, w3])
    assert live[0].tolist() == [[1, 1], [0, 0], [0, 0]] and live[2].tolist() == [[1, 0]]
    assert collapsed_nonzero([w1, w2_cut, w3]) == (2 + 1 + 1) + (1 + 1) + 1  # 4 weights, 2 hidden biases, 1 out
    # torch masks count the same
    assert collapsed_nonzero([torch.as_tensor(m) for m in (w1, w2_cut, w3)]) == 7
    assert least_collapsed([2, 3, 2, 1]) == 3 + 2 + 1


@pytest.mark.parametrize("seed", range(40))
def test_count_agrees_with_the_export_collapse_on_random_pruned_nets(seed):
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(1, 6)) for _ in range(int(rng.integers(3, 5)))]
    density = rng.uniform(0.1, 0.8)
    masks = [rng.random((o, i)) < density for i, o in zip(widths, widths[1:])]
    ws = [np.where(m, rng.normal(size=m.shape) + 3.0, 0.0) for m in masks]  # nonzero where kept
    bs = [rng.normal(size=o) for o in widths[1:]]
    try:
        cw, cb = remove_dead_neurons(ws, bs, "tanh")
    except BpdError:  # a hidden layer lost every unit: no network to count
        return
    shipped = sum(int((w != 0).sum()) for w in cw) + sum(b.size for b in cb)
    assert collapsed_nonzero(masks) == shipped


def test_cut_takes_the_longest_prefix_then_fills_with_later_weights_that_fit():
    # 2-2-1: flat indices 0..3 are the first layer's [out, in] weights, 4 and 5 the second's
    shapes = [torch.Size([2, 2]), torch.Size([1, 2])]
    order = torch.tensor([0, 2, 5, 1, 4, 3])
    # prefix counts: {0} 1 (only the output bias), {0,2} 1, {0,2,5} 4 (unit 1 joins: 2 weights, its bias),
    # {..,1} 4, {..,4} 8 (unit 0 joins with weights 0, 1, 4 and its bias), {..,3} 9
    masks = cut_in_order(order, shapes, 6, 6)
    # the longest prefix within 6 is {0, 2, 5, 1}; weight 4 steps past it; weight 3 (into unit 1) costs one: 5
    assert masks[0].tolist() == [[True, True], [True, True]] and masks[1].tolist() == [[False, True]]
    assert collapsed_nonzero(masks) == 5
    # a budget every prefix fits keeps the first `most` weights only
    masks = cut_in_order(order, shapes, 3, 100)
    assert sorted(np.flatnonzero(np.concatenate([m.flatten().numpy() for m in masks])).tolist()) == [0, 2, 5]


@pytest.mark.parametrize("seed", range(10))
def test_cut_stays_within_the_budget_and_keeps_the_longest_prefix_that_fits(seed):
    rng = np.random.default_rng(seed)
    widths = [4, 8, 8, 2]
    shapes = [torch.Size([o, i]) for i, o in zip(widths, widths[1:])]
    total = sum(int(np.prod(s)) for s in shapes)
    order = torch.from_numpy(rng.permutation(total))
    budget = int(rng.integers(least_collapsed(widths), 60))
    masks = cut_in_order(order, shapes, total, budget)
    assert collapsed_nonzero(masks) <= budget
    flat = np.concatenate([m.flatten().numpy() for m in masks])
    # brute force: the longest prefix of the order whose count is within the budget is kept whole
    sizes = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    longest = 0
    for k in range(1, total + 1):
        f = np.zeros(total, bool)
        f[order[:k].numpy()] = True
        if collapsed_nonzero([p.reshape(tuple(s)) for p, s in zip(np.split(f, sizes), shapes)]) <= budget:
            longest = k
    assert flat[order[:longest].numpy()].all()


def test_a_budget_whose_cut_leaves_no_path_is_refused_in_one_line():
    # 1-1-2: the two output weights rank first and cost nothing while the unit has no input; the input weight then
    # brings both along (3 weights, a bias, 2 output biases: 6), so a budget of 5 keeps no path in this order,
    # though {input, one output weight} would make 5
    shapes = [torch.Size([1, 1]), torch.Size([2, 1])]
    with pytest.raises(BpdError, match="leaves no path from input to output"):
        cut_in_order(torch.tensor([1, 2, 0]), shapes, 3, 5)
    assert collapsed_nonzero(cut_in_order(torch.tensor([0, 1, 2]), shapes, 3, 5)) == 5  # input first: it fits
