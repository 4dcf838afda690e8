"""What of a pruned network the collapse keeps (export/collapse.py remove_dead_neurons), counted from its masks.

The collapse drops every hidden unit without a kept weight in or out, again until none is left, folding a unit
without inputs into the next layer's biases. What it ships is the weights on a path from an input to an output,
the biases of the hidden units on such a path and every output's bias. A pruning budget in nonzero parameters
means that count: the one `bpd distill` reports for BPD's collapsed student, so that a method pruned to BPD's
count ships as many parameters as BPD, not fewer once its dead units are gone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bpd.errors import BpdError


def _live(masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    ms = [m.copy() for m in masks]
    changed = True
    while changed:
        changed = False
        for i in range(len(ms) - 1):  # hidden layer i: the rows of ms[i], the columns of ms[i + 1]
            dead = ~ms[i].any(1) | ~ms[i + 1].any(0)
            if ms[i][dead].any() or ms[i + 1][:, dead].any():
                ms[i][dead, :] = False
                ms[i + 1][:, dead] = False
                changed = True
    return ms


def _count(masks: Sequence[np.ndarray]) -> int:
    live = _live(masks)
    return int(sum(int(m.sum()) for m in live) + sum(int(m.any(1).sum()) for m in live[:-1]) + live[-1].shape[0])


def _numpy(masks: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    return [(m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)) != 0 for m in masks]


def live_masks(masks: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    """Each layer's [out, in] mask less the weights the collapse drops: those into or out of a hidden unit that
    has no path from an input or none to an output."""
    return _live(_numpy(masks))


def collapsed_nonzero(masks: Sequence[torch.Tensor | np.ndarray]) -> int:
    """Nonzero parameters of the collapsed network (every kept weight and every bias taken as nonzero): the live
    weights, one bias per live hidden unit and one per output."""
    return _count(_numpy(masks))


def least_collapsed(widths: Sequence[int]) -> int:
    """The fewest nonzero parameters a collapsed network of these widths can have while its output still depends
    on its input: one weight a layer on one path, its hidden units' biases and every output's bias."""
    layers = len(widths) - 1
    return layers + (layers - 1) + int(widths[-1])


def cut_in_order(order: torch.Tensor, shapes: Sequence[torch.Size], most: int, budget: int) -> list[torch.Tensor]:
    """Boolean masks of these [out, in] shapes keeping weights of the flat index `order` (all layers' weights in
    a row, the first most to keep first) so that the collapsed count is at most budget: the longest prefix of the
    order within it (the count never falls as the prefix grows), then, in order among the first most, each further
    weight that keeps the count within it (one weight that joins a unit to a path brings the unit's bias and its
    other weights along, so the count steps: the prefix alone can stop short of the budget). The masks can keep
    weights the collapse drops (into a unit with no output) or folds into a bias (out of one with no input, whose
    constant then shifts the next layer's biases): those cost nothing in the count. A small budget can leave no path
    at all (weights kept early at no cost come along when a path joins them, so the path no longer fits): a
    BpdError then, not a constant network."""
    sizes = [int(np.prod(s)) for s in shapes]
    idx = order[:most].cpu().numpy()
    flat = np.zeros(sum(sizes), bool)

    def masks() -> list[np.ndarray]:
        return [f.reshape(tuple(s)) for f, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]

    flat[idx] = True
    if _count(masks()) > budget:
        lo, hi = 0, most  # count(prefix lo) <= budget < count(prefix hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            flat[:] = False
            flat[idx[:mid]] = True
            if _count(masks()) <= budget:
                lo = mid
            else:
                hi = mid
        flat[:] = False
        flat[idx[:lo]] = True
        count = _count(masks())
        for j in idx[lo + 1:]:  # idx[lo] is the weight that stepped past the budget
            if count == budget:
                break
            flat[j] = True
            if (c := _count(masks())) <= budget:
                count = c
            else:
                flat[j] = False
    result = masks()
    if budget < _count([np.ones(tuple(s), bool) for s in shapes]) and not _live(result)[-1].any():
        # weights kept early at no cost (out of units with no input yet) come along when a path joins them
        least = least_collapsed([shapes[0][1], *(s[0] for s in shapes)])
        raise BpdError(f"a budget of {budget} nonzero parameters leaves no path from input to output when the "
                       "weights are kept in this order (" + (f"the least any network of these widths needs is {least}"
                       if budget < least else f"above the {least} a network of these widths needs at least, but this "
                       "order's first weights, kept at no cost, come along when a path joins them") +
                       "): give a larger budget")
    return [torch.from_numpy(m.copy()) for m in result]
