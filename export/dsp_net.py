"""The straight-line integer kernel's DSP assembly for a whole network (Cortex-M4, M7): every layer's body by
export/dsp.py's tiling, the layers in one function (`dsp.net_asm`), the weight table, and the input stages (integer,
and by VCVT where the core has an FPU: export/fp_inputs.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from export.dsp import Act, best_layer, inputs_asm, mix, net_asm, slots
from export.fp_inputs import fp_inputs_asm
from export.int_tanh import TANH_BITS
from training.pairs import pair_columns


def dsp_layers(q: Any, lookup: bool = True
               ) -> tuple[str, np.ndarray, list[list[tuple[int, int | None]]], list[dict], tuple[str, str | None]]:
    """The DSP assembly of every layer of q (a fixed_point.IntNet; tanh by lookup, or interpolated) after the
    integer input stage, the weight table (the layers' words one after the other, as the function reads them), each
    layer's input pairs, each layer's chosen (R, C, G) with its instruction count and their mix (dsp.mix), and the
    FPU input stage (None where it cannot take the inputs)."""

    pairs = [pair_columns(L.wq) for L in q.layers]
    fracs = [int(f) for f in q.in_frac]
    inputs = inputs_asm("bpd_dsp_inputs", fracs, slots(pairs[0])), fp_inputs_asm("bpd_fp_inputs", fracs, pairs[0])
    bodies = []
    table: list[int] = []
    chosen: list[dict] = []
    for li, L in enumerate(q.layers):
        if L.kind == "output":
            act = Act("store", L.shift)
        else:
            act = Act(L.kind, L.shift, TANH_BITS, slots(pairs[li + 1]), full=lookup)
        body, words, rcg = best_layer(L.wq, L.bq, pairs[li], act)
        table += words
        bodies.append(body)
        chosen.append({"rows_per_group": rcg[0], "words_per_chunk": rcg[1], "weight_registers": rcg[2],
                       "instructions": len(body), "table_words": len(words), "mix": mix(body)})
    return net_asm("bpd_dsp_net", bodies), np.array(table, np.uint32), pairs, chosen, inputs
