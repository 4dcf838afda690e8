"""What a network's masks cost the DSP integer kernel on a Cortex-M4F, read off its code without building it.

The layers of the integer kernel on cores with the DSP extension are straight-line assembly whose every
instruction depends on which weights are nonzero, not on their values (export/dsp.py: the column pairs, the
row groups, the loads and one multiply a row and pair: SMLAD, or SMLA<w><x> on half a table word where the
pair carries one weight). So a mask's cost can be counted before any weight is
trained: the masks become a network of unit weights, collapsed and quantised as the export does (dead units
removed), its layers' assembly generated as the export generates it (tanh by lookup), and each instruction
costed by the cycle model (cycle_model.py; its class from emulate.classify, as the emulator costs what it
runs). Straight-line code (but for the inputs' never-taken error branch): the estimate is nearly the one
emulating the same code would give (unit weights may shift an activation's rounding by an instruction a row
against the trained weights'), without the C around the layers (the observations' conversion and the actions'
mapping, which depend on the task's dimensions alone). `bpd distill --prune-to-cycles` cuts a mask to a budget
of these cycles.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from bpd.errors import BpdError

TARGET = "cortex-m4f"


def asm_mix(asm: str) -> Counter:
    """The cycle model's instruction mix of a straight-line assembly text (directives and labels skipped)."""
    from firmware_host.measure.emulate import classify

    mix: Counter = Counter()
    for line in asm.splitlines():
        s = line.strip()
        if not s or s.startswith(".") or s.endswith(":"):
            continue
        mnemonic, _, ops = s.partition(" ")
        cls, n = classify(mnemonic, ops.strip())
        mix[cls] += 1
        if cls.endswith("multi"):
            mix[cls + "_regs"] += n
    return mix


def mask_cycles(masks: list[np.ndarray], activation: str = "tanh") -> float:
    """Estimated Cortex-M4F cycles of the DSP integer kernel's layers (tanh by lookup) for a network whose
    nonzero weights are `masks` (each rows = outputs x columns = inputs); inf where a hidden layer keeps no
    unit that reaches the output."""
    from export.collapse import collapse
    from export.fixed_point import dsp_layers, quantise
    from firmware_host.measure.cycle_model import estimate_cycles
    from training.mlp import MLPPolicy

    ms = [np.asarray(m, bool) for m in masks]
    obs_dim, act_dim = ms[0].shape[1], ms[-1].shape[0]
    pol = MLPPolicy([0.5 * m.astype(np.float32) for m in ms], [np.full(m.shape[0], 0.1, np.float32) for m in ms],
                    activation, "tanh", np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32),
                    -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32))
    try:
        net = collapse(pol)
    except BpdError:  # a hidden layer lost every unit: no network within any budget
        return float("inf")
    calib = np.random.default_rng(0).uniform(-1.0, 1.0, (64, obs_dim))
    # with the integer input stage (a cost of the task's dimensions alone, as the students plan's budgets were
    # sized: bpd_app/methods.py bpd_cycles_budget), not the FPU stage a Cortex-M4F build runs first
    layers, *_, (inputs, _fp) = dsp_layers(quantise(net, calib, "mask meter"), lookup=True)
    return estimate_cycles(TARGET, asm_mix(inputs + layers))
