"""Where the DSP integer kernel's instructions go, set against the scalar floor's terms (cost_benchmark.py's table).

The kernel is straight-line code, so each layer's instructions by kind (export/dsp.py `mix`, recorded in the
export report's `int.dsp_layers`) are the ones an inference runs; what the emulated count holds beyond the layers
(the input stage, the call, the output map) is the kernel's total less their sum.
"""

from __future__ import annotations

from export.dsp import MIX

HEAD = {"multiplies": "multiplies", "weight_loads": "weight and bias loads", "input_loads": "input loads",
        "activations": "activations", "stores": "stores", "other": "r2, r3 reloaded"}


def dsp_mix(rep: dict, total: int) -> dict | None:
    """The layers' instructions by kind summed over the network, and `around` (total: the emulated count of the
    whole kernel) less their sum; None for an export without the DSP layers' record."""
    layers = (rep.get("int") or {}).get("dsp_layers") or []
    if not layers or any("mix" not in L for L in layers):
        return None
    out = {k: sum(L["mix"][k] for L in layers) for k in MIX}
    return out | {"around": total - sum(out.values())}


def mix_table(rows: list[dict]) -> list[str]:
    """Markdown lines: per row with a mix, the floor's multiply-adds and the rest of it beside the kernel's
    instructions by kind ([] where no row has one)."""
    rows = [r for r in rows if r.get("dsp_mix")]
    if not rows:
        return []
    lines = ["", "Where the Cortex-M4F DSP integer kernel's instructions go (tanh by lookup; the layers' straight-line "
             "code by kind, export/dsp.py `mix`, and what the emulated count holds around them: the input stage, the "
             "call, the output map), against the floor's one instruction per nonzero multiply-add and one per bias, "
             "activation and output operation. Below 1.0x the floor, the multiplies saved by pairs (the nonzero "
             "weights less the multiplies) must pay for every load and for the activations beyond one each:", "",
             "| student | floor: multiply-adds + the rest | " + " | ".join(HEAD[k] for k in MIX)
             + " | around the layers | total (x floor) | multiplies saved - loads |",
             "|---|---|" + "---|" * (len(MIX) + 3)]
    for r in rows:
        m = r["dsp_mix"]
        total = r["cortex-m4f"]["integer"]["instructions"]  # the layers' kinds and `around` sum to it (dsp_mix)
        saved = r["nonzero_weights"] - m["multiplies"] - m["weight_loads"] - m["input_loads"]
        lines.append(f"| {r['cell']} | {r['nonzero_weights']} + {r['floor'] - r['nonzero_weights']} | "
                     + " | ".join(str(m[k]) for k in MIX) + f" | {m['around']} | {total} ({total / r['floor']:.2f}x) "
                     f"| {saved:+d} |")
    return lines
