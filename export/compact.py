"""The compact kernel (`bpd export --kernel compact`): straight-line code over a table of weights.

The generated kernel (codegen.py) makes every weight a literal of its own multiply-add, so its flash
grows by a literal load, a pool word and often a spilled input per weight. This kernel keeps the
weights in one const table in the order the code uses them and walks it with a pointer:

- on Cortex-M4F/M7 (Armv7E-M with an FPU) each layer is assembly emitted for this model: the layer's
  inputs are loaded 16 at a time into s16-s31 with one VLDMIA, and for every output row that has
  weights among those inputs one VLDMIA takes its weights (bias first) from the table into s1-s15 and
  one VFMA per weight accumulates into s0. The accumulator goes through the output buffer between
  input chunks (VLDR/VSTR with an immediate offset). A weight costs one VFMA (4 bytes of code) and
  its 4 bytes of table, no index, no loop;
- everywhere else (the host, Cortex-M0+, cores without an FPU) the same schedule is C in the same
  order, with a fused multiply-add where the core has one (then the bits equal the assembly's) and a
  multiply and an add elsewhere (float32 rounding apart: within the parity check's tolerance).

The hidden tanh is applied by one loop per layer over the layer's outputs (its code exists once,
not once per unit), in the form chosen as for the generated kernel (`codegen.select_tanh`: the
cheapest within the budget on actions, measured; `bpd export --kernel auto` measures the table form
and the cheapest rational one as separate candidates). Entry point, header, banner and NaN/Inf
behaviour are the generic kernel's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from bpd.io import write_text
from export.c_export import KERNEL_DIR, c_float
from export.codegen import LIBM, TanhForm, banner_for, descriptor_sources
from export.collapse import CollapsedNet

CHUNK = 16  # inputs held in s16-s31 at once
GROUP = 15  # weights loaded by one VLDMIA into s1-s15 (s0 is the accumulator)
NEAR = 1020  # VLDR/VSTR reach this many bytes from a base register


def _address(reg: str, base: str, offset: int) -> list[str]:
    """reg = base + offset (ADDW takes 12 bits; beyond, the offset through MOVW)."""
    if offset < 4096:
        return [f"    add {reg}, {base}, #{offset}"]
    return [f"    movw {reg}, #{offset}", f"    add {reg}, {base}, {reg}"]


def _row_ref(r: int) -> tuple[list[str], str]:
    """(set-up instructions, address operand) of output row r: from r1 directly while in reach, else
    through r12."""
    if 4 * r <= NEAR:
        return [], f"[r1, #{4 * r}]"
    return _address("r12", "r1", 4 * r), "[r12]"


def schedule(w: np.ndarray, b: np.ndarray) -> tuple[list[tuple[int, int, list[tuple[int, list[int]]]]], np.ndarray]:
    """The order in which a layer's weights are used: per chunk of CHUNK inputs, per row, its bias (at
    the row's first appearance) then its nonzero weights in that chunk in column order.

    Returns ([(chunk start, chunk length, [(row, columns)])], table). A row without any weight is
    listed once, in the first chunk, with no columns (its output is its bias)."""
    rows, cols = w.shape
    table: list[float] = []
    chunks = []
    seen = np.zeros(rows, bool)
    for c0 in range(0, max(cols, 1), CHUNK):
        clen = min(CHUNK, cols - c0)
        entries = []
        for r in range(rows):
            js = [int(j) for j in np.flatnonzero(w[r, c0:c0 + clen]) + c0]
            first = not seen[r]
            if not js and not (first and not w[r].any()):
                continue
            if first:
                table.append(float(b[r]))
                seen[r] = True
            table.extend(float(w[r, j]) for j in js)
            entries.append((r, js))
        chunks.append((c0, clen, entries))
    return chunks, np.asarray(table, np.float32)


def _rows_first_chunk(chunks: list) -> dict[int, int]:
    first: dict[int, int] = {}
    for ci, (_, _, es) in enumerate(chunks):
        for r, _ in es:
            first.setdefault(r, ci)
    return first


def layer_asm(name: str, chunks: list) -> str:
    """Thumb-2 assembly of one layer: void name(const float *in, float *out, const float *table)."""
    lines = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:"]
    top = 15 + max((clen for _, clen, es in chunks if any(js for _, js in es)), default=0)
    saved = f"{{s16-s{top}}}" if top > 16 else "{s16}"
    if top >= 16:  # s16-s31 are callee-saved (AAPCS)
        lines.append(f"    vpush {saved}")
    first = _rows_first_chunk(chunks)
    for ci, (c0, clen, entries) in enumerate(chunks):
        if not entries:
            continue
        if any(js for _, js in entries):
            lines += _address("r3", "r0", 4 * c0)
            lines.append(f"    vldmia r3, {{s16-s{15 + clen}}}" if clen > 1 else "    vldr s16, [r3]")
        for r, js in entries:
            fresh = first[r] == ci
            setup, ref = _row_ref(r)
            lines += setup
            if not fresh:
                lines.append(f"    vldr s0, {ref}")
            k = 0
            if fresh:  # the bias into s0 and up to GROUP weights into s1.. with one load
                g = min(GROUP, len(js))
                lines.append(f"    vldmia r2!, {{s0-s{g}}}" if g else "    vldmia r2!, {s0}")
                lines += [f"    vfma.f32 s0, s{1 + i}, s{16 + js[i] - c0}" for i in range(g)]
                k = g
            while k < len(js):
                g = min(GROUP, len(js) - k)
                lines.append(f"    vldmia r2!, {{s1-s{g}}}" if g > 1 else "    vldmia r2!, {s1}")
                lines += [f"    vfma.f32 s0, s{1 + i}, s{16 + js[k + i] - c0}" for i in range(g)]
                k += g
            lines.append(f"    vstr s0, {ref}")
    if top >= 16:
        lines.append(f"    vpop {saved}")
    lines += ["    bx lr", f"    .size {name}, .-{name}"]
    return "\n".join(lines) + "\n"


def layer_c(name: str, chunks: list) -> str:
    """The same schedule in C (every other target), in the order the assembly uses: fused multiply-adds
    where the core has them (the same bits as the assembly), else a multiply and an add (no libm call on
    cores without an FPU)."""
    out = [f"static void {name}(const float *in, float *out, const float *t)\n{{\n    float a;\n"]
    first = _rows_first_chunk(chunks)
    for ci, (_, _, entries) in enumerate(chunks):
        for r, js in entries:
            out.append("    a = *t++;\n" if first[r] == ci else f"    a = out[{r}];\n")
            out += [f"    a = BPD_MAC(a, *t++, in[{j}]);\n" for j in js]
            out.append(f"    out[{r}] = a;\n")
    out.append("}\n")
    return "".join(out)


_PRELUDE = """\
#include "policy.h"
#include "policy_weights.h"

#include <math.h>
#include <stddef.h>

/* Armv7E-M with single-precision FP (Cortex-M4F, M7): the layers are the assembly below */
#if defined(__ARM_ARCH_7EM__) && defined(__ARM_FP) && (__ARM_FP & 4) && defined(__thumb2__)
#define BPD_COMPACT_ASM 1
#else
#define BPD_COMPACT_ASM 0
#endif

/* acc + w * x, as one fused multiply-add where the core has one (Cortex-M4F/M7: vfma.f32) */
#if defined(__ARM_FEATURE_FMA) || defined(FP_FAST_FMAF)
#define BPD_MAC(acc, w, x) fmaf((w), (x), (acc))
#else
#define BPD_MAC(acc, w, x) ((acc) + (w) * (x))
#endif
"""


def kernel_source(net: CollapsedNet, form: TanhForm, banner: str) -> tuple[str, int]:
    """The compact policy.c for this network and tanh form, and the table's length in floats."""
    obs_dim, act_dim = net.obs_dim, net.act_dim
    safe = np.clip(np.zeros(act_dim, np.float32), net.action_low, net.action_high)
    uses_tanh = net.activation == "tanh" or net.output == "tanh"
    n = len(net.weights)
    scheds = [schedule(w, b) for w, b in zip(net.weights, net.biases)]
    table = np.concatenate([t for _, t in scheds])
    starts = np.concatenate([[0], np.cumsum([len(t) for _, t in scheds])]).astype(int)
    out = [banner, _PRELUDE]
    vals = ", ".join(c_float(float(v)) for v in table)
    out.append(f"\n/* every bias and nonzero weight, in the order the layers use them */\n"
               f"static const float bpd_table[{max(len(table), 1)}] = {{ {vals or '0.0f'} }};\n")
    if uses_tanh:
        out.append(f"\n/* tanh: {form.name}, max abs error {form.max_error():.1e} on [-10, 10] */\n"
                   f"{form.c_decls()}static inline float tanh_approx(float x)\n{{\n{form.c_body()}}}\n\n"
                   "float bpd_tanh(float x) { return tanh_approx(x); }\n")
        if net.activation == "tanh" and n > 1:
            out.append("/* one loop for every hidden layer: its code exists once */\n"
                       "#if defined(__GNUC__)\n__attribute__((noinline))\n#endif\n"
                       "static void tanh_all(float *h, int n)\n{\n    int i;\n"
                       "    for (i = 0; i < n; ++i) h[i] = tanh_approx(h[i]);\n}\n")
    else:
        out.append("\nfloat bpd_tanh(float x) { return tanhf(x); }\n")
    out.append("\n#if BPD_COMPACT_ASM\n")
    for li in range(n):
        out.append(f"void bpd_layer{li}(const float *in, float *out, const float *t);\n")
    out.append("__asm__(\n    \".syntax unified\\n\"\n    \".text\\n\"\n    \".balign 4\\n\"\n")
    asm = "".join(layer_asm(f"bpd_layer{li}", chunks) for li, (chunks, _) in enumerate(scheds))
    for line in asm.splitlines():
        out.append(f"    \"{line}\\n\"\n")
    out.append(");\n#else\n")
    for li, (chunks, _) in enumerate(scheds):
        out.append(layer_c(f"bpd_layer{li}", chunks))
    out.append("#endif\n")
    out.append("\nstatic void safe_output(float *action)\n{\n"
               + "".join(f"    action[{i}] = {c_float(v)};\n" for i, v in enumerate(safe)) + "}\n")
    widths = net.widths
    buf = max([obs_dim] + widths[1:])
    off = net.in_offset
    # b: the offset observations and every other layer's output (a network of one layer without an offset: none)
    decl = f"*a = scratch, *b = scratch + {buf}" if n > 1 or off is not None else "*a = scratch"
    out.append("\n/* scratch: two buffers of the widest layer (policy_weights.h: BPD_SCRATCH_FLOATS) */\n"
               "int bpd_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch)\n{\n"
               f"    float {decl};\n    int i;\n"
               "    if (model == NULL || action == NULL) return BPD_ERR_ARG;\n"
               "    if (obs == NULL || scratch == NULL) {\n        safe_output(action);\n        return BPD_ERR_ARG;\n"
               "    }\n")
    out.append(f"    for (i = 0; i < {obs_dim}; ++i) {{\n"
               "        const float x = obs[i];\n"
               "        /* x - x is 0 for every number and NaN for NaN and +-Inf */\n"
               "        if (!(x - x == 0.0f)) {\n            safe_output(action);\n"
               "            return BPD_ERR_NONFINITE;\n        }\n    }\n")
    if off is not None:
        out.append(f"    {{\n        static const float off[{obs_dim}] = {{ "
                   + ", ".join(c_float(float(v)) for v in off) + " };\n"
                   f"        for (i = 0; i < {obs_dim}; ++i) b[i] = obs[i] - off[i];\n    }}\n")
    src = "b" if off is not None else "obs"
    bufs = ("a", "b")
    for li in range(n):
        dst = bufs[li % 2]
        out.append(f"    bpd_layer{li}({src}, {dst}, bpd_table + {starts[li]});\n")
        if li < n - 1 and net.activation != "none":
            if net.activation == "tanh":
                out.append(f"    tanh_all({dst}, {widths[li + 1]});\n")
            else:
                out.append(f"    for (i = 0; i < {widths[li + 1]}; ++i) if ({dst}[i] < 0.0f) {dst}[i] = 0.0f;\n")
        src = dst
    out.append("    /* action units and bounds */\n")
    for i in range(act_dim):
        lo, hi = c_float(net.action_low[i]), c_float(net.action_high[i])
        y = f"{src}[{i}]"
        if net.output == "tanh":
            out.append(f"    {{\n        const float y = BPD_MAC({c_float(net.out_offset[i])}, "
                       f"{c_float(net.out_scale[i])}, tanh_approx({y}));\n")
        else:
            out.append(f"    {{\n        const float y = {y};\n")
        out.append(f"        action[{i}] = y < {lo} ? {lo} : (y > {hi} ? {hi} : y);\n    }}\n")
    out.append("    return BPD_OK;\n}\n")
    return "".join(out), buf


def generate_compact(net: CollapsedNet, out_dir: Path, source_hash: str, command: str,
                     form: TanhForm = LIBM) -> None:
    """Write the compact kernel (policy.c), its descriptor files and policy.h into out_dir."""
    banner = banner_for(net, source_hash, command)
    src, buf = kernel_source(net, form, banner)
    wc, wh, cfg = descriptor_sources(net, banner, "compact", scratch_floats=2 * buf)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "policy.c", src)
    write_text(out_dir / "policy_weights.c", wc)
    write_text(out_dir / "policy_weights.h", wh)
    write_text(out_dir / "policy_config.h", cfg)
    shutil.copyfile(KERNEL_DIR / "policy.h", out_dir / "policy.h")
