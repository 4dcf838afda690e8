"""Which of a layer's inputs share a word on cores with the DSP extension.

The integer kernel on Cortex-M4/M7 (export/dsp.py) multiplies two int16 inputs by two int16 weights in
one SMLAD, so it packs a layer's inputs in pairs of columns; a row pays one SMLAD for each pair in which
it has a nonzero weight, whether one or both of the pair's weights are nonzero. The export pairs the
columns by this function, and BPD's fine-tune with the pair partners (distill's default) keeps the partner of every kept
weight (training/svdo.py), which then costs the integer kernel no instruction (a pair with one weight takes
half a table word, export/dsp.py pack_words, so a filled partner costs its half word's load).
"""

from __future__ import annotations

import numpy as np


def pair_columns(w: np.ndarray) -> list[tuple[int, int | None]]:
    """Pairs of a layer's inputs (columns of w, rows: outputs) for the dual 16-bit multiply-add: greedily
    the two columns whose nonzero weights share the most rows, so that few rows carry a pair with one
    weight zero. Columns without any weight are left out; an odd one out is paired with None (a zero
    half)."""
    nz = np.asarray(w) != 0
    cols = [j for j in range(nz.shape[1]) if nz[:, j].any()]
    overlap = (nz[:, cols].T.astype(np.int64) @ nz[:, cols].astype(np.int64))
    cand = sorted(((int(overlap[a, b]), -a, -b) for a in range(len(cols)) for b in range(a + 1, len(cols))),
                  reverse=True)
    used: set[int] = set()
    pairs: list[tuple[int, int | None]] = []
    for _, na, nb in cand:
        a, b = -na, -nb
        if a not in used and b not in used:
            used |= {a, b}
            pairs.append((cols[a], cols[b]))
    pairs += [(cols[a], None) for a in range(len(cols)) if a not in used]
    return sorted(pairs)


def with_partners(keep: np.ndarray) -> np.ndarray:
    """The mask keep (rows x columns, bool) with, in every row, both weights of each pair (pair_columns of
    keep) in which the row keeps one: the weights the DSP kernel multiplies anyway."""
    out = np.asarray(keep, bool).copy()
    for a, b in pair_columns(out):
        if b is not None:
            both = out[:, a] | out[:, b]
            out[:, a] = both
            out[:, b] = both
    return out


def multiply_slots(keep: np.ndarray, pairs: list[tuple[int, int | None]] | None = None) -> int:
    """SMLADs the integer kernel on Cortex-M4/M7 spends on a layer of this mask (rows x columns): one per
    (row, pair of columns) in which the row keeps a weight, the columns paired by pair_columns (or by `pairs`)."""
    nz = np.asarray(keep) != 0
    return int(sum((nz[:, a] | nz[:, b]).sum() if b is not None else nz[:, a].sum()
                   for a, b in (pair_columns(nz) if pairs is None else pairs)))


def network_slots(weights) -> int:
    """multiply_slots summed over a network's layers (each rows = outputs x columns = inputs)."""
    return sum(multiply_slots(w) for w in weights)


def network_with_partners(masks) -> list[np.ndarray]:
    """Each layer's mask (rows = outputs x columns = inputs) with_partners among its live columns (the units of
    the layer before with a kept weight; every input for the first layer), as the fine-tune fills them
    (training/svdo.py freeze): the masks a cut with the pair partners hands over, costed before it is made."""
    out: list[np.ndarray] = []
    live: np.ndarray | None = None
    for m in masks:
        out.append(with_partners_among(m, live))
        live = np.asarray(out[-1].any(1))
    return out


def with_partners_among(keep: np.ndarray, live: np.ndarray | None = None) -> np.ndarray:
    """keep with_partners among the live columns alone (bool per column; all where None): a dead unit of the layer
    before neither pairs nor is filled."""
    k = np.asarray(keep, bool).copy()
    cols = np.ones(k.shape[1], bool) if live is None else np.asarray(live, bool)
    k[:, cols] = with_partners(k[:, cols])
    return k
