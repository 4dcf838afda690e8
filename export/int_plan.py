"""The table form's plan and its policy.c (`--kernel integer-table`): which layers, or which of a layer's
rows, run as dsp.py's straight-line code in the flash the budget leaves, the rest walking int_table.py's
streams.

A layer is a table (dense or sparse, int_table.py), straight-line code, or split: its first k slots (in the
order it writes the next layer's pair layout) as straight-line code writing them in place, the rest as
the table form's loop from slot k on. Straight-line code costs about 3-8 bytes more a weight pair than
the table and saves 4-5 cycles on it, alike across layers, so the plan with the room spends it on whole
layers where it can and on the head of one more layer where a whole one does not fit: a straight-line
kernel just over the room keeps most of its speed. On cores without the DSP extension the C loops walk
every layer's whole streams.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.collapse import CollapsedNet
from export.dsp import Act, OffsetRange, asm_block, best_layer, layer_asm, slots
from export.fixed_point import (
    _PRELUDE,
    SAT,
    TANH_BITS,
    IntNet,
    _hex,
    run_head,
    run_tail,
    tanh_c,
    write_kernel,
)
from export.fp_inputs import fp_c, fp_call, fp_inputs_asm, input_bytes, loop_inputs_asm
from export.int_table import (
    _CYCLES,
    _LOOPS,
    FULL_TANH_BYTES,
    HALF,
    INTERP_CYCLES,
    KIND_CODE,
    NEAR_WORDS,
    TABLE_FORM,
    TableLayer,
    TableRange,
    check_asm,
    dense_asm,
    estimated_flash,
    sparse_asm,
    table_form,
)


@dataclass
class Straight:
    """A layer, or some of its rows, as dsp.py's straight-line code."""
    body: list[str]
    table: list[int]
    rcg: tuple[int, int, int]

    def cycles(self) -> int:
        total = 0
        for line in self.body:
            m = line.split()[0]
            if m.startswith("ldm"):  # one, then one a register
                total += 1 + len(line[line.index("{") + 1:line.index("}")].split(","))
            elif m.startswith("ldrd"):
                total += 3
            else:
                total += _CYCLES["load" if m.startswith("ldr") else "store" if m.startswith("str") else "alu"]
        return total

    def flash(self) -> int:
        return 4 * len(self.body) + 4 * len(self.table)


def straight(q: IntNet, li: int, pairs: list[list[tuple[int, int | None]]], full: bool,
             rows: list[int] | None = None) -> Straight:
    """Layer li's rows (all of them by default) as straight-line code: each writes its own slot of the next
    layer's pair layout (an output row its own word), so any subset of rows computes in place."""
    L = q.layers[li]
    idx = np.arange(L.wq.shape[0]) if rows is None else np.asarray(rows, dtype=int)
    if L.kind == "output":
        if not np.array_equal(idx, np.arange(len(idx))):
            raise ValueError("straight-line output rows are a prefix of the outputs")
        act = Act("store", L.shift[idx])
    else:
        dest = slots(pairs[li + 1])
        act = Act(L.kind, L.shift[idx], TANH_BITS, {i: dest[int(r)] for i, r in enumerate(idx) if int(r) in dest},
                  full=full and L.kind == "tanh")
    body, table, rcg = best_layer(L.wq[idx], L.bq[idx], pairs[li], act)
    return Straight(body, table, rcg)


@dataclass
class Plan:
    """How each layer is computed ("dense", "sparse" or "straight"), which tanh table ("interpolated", "full"),
    and the layers split: layer -> its first k slots straight-line, the rest in its form."""
    forms: list[str]
    tanh: str
    split: dict[int, int] = field(default_factory=dict)

    def label(self) -> str:
        return "+".join(f if li not in self.split else f"{f} after {self.split[li]} straight-line slots"
                        for li, f in enumerate(self.forms)) + f", {self.tanh} tanh table"


TANH_FORMS = {True: ("interpolated", "full"), False: ("interpolated",)}  # by whether the network uses tanh


# what a split layer's second call costs beyond a whole layer's one (the cycle model's figures): the argument
# set-up and BL (4 + 3), the straight-line function's PUSH and POP of r2-r11 and lr (12 + 12, and 3 for the
# return); 6 instructions' code
SPLIT_CALL_CYCLES = 34
SPLIT_CALL_BYTES = 24
# past the most slots bisection finds within the room, this many more are tried: the tail's code shrinks when
# its longest row moves into the head, so the extra flash is not monotone in the slots
SPLIT_SCAN = 3


@dataclass
class Head:
    """A split layer: its first k slots straight-line, the rest (the tail) a table."""
    k: int
    code: Straight
    tail: TableLayer
    cycles: int
    extra: int  # bytes beyond the whole layer as a table


def table_cycles(T: TableLayer, full: bool) -> int:
    """A table layer's estimated cycles with tanh by one lookup (full) or interpolated."""
    return T.cycles() + (INTERP_CYCLES * len(T.order) if not full and T.kind == "tanh" else 0)


def head_rows(T: TableLayer, k: int) -> list[int]:
    """The rows that write the first k slots of a layer (gaps left out)."""
    return [r for r in T.order[:k] if r is not None]


def split_layer(q: IntNet, li: int, pairs: list[list[tuple[int, int | None]]], T: TableLayer, k: int,
                full: bool) -> Head:
    if not 1 <= k < len(T.order):
        raise ValueError(f"layer {li}: a split after {k} of its {len(T.order)} slots leaves no head or no tail")
    code = straight(q, li, pairs, full, head_rows(T, k))
    tail = table_form(q, li, pairs, k, T.form)
    return Head(k, code, tail, code.cycles() + table_cycles(tail, full) + SPLIT_CALL_CYCLES,
                code.flash() + tail.flash() - T.flash() + SPLIT_CALL_BYTES)


def plan(q: IntNet, pairs: list[list[tuple[int, int | None]]], room: int) -> tuple[Plan, dict]:
    """The plan with the fewest estimated cycles whose estimated flash is at most `room` bytes beyond the
    all-table plan's (every layer a table, tanh interpolated), and what it estimated. Every subset of
    the whole-layer upgrades (a layer straight-line, the table of every tanh result) is tried, there are few,
    and with each the room it leaves spent on the head of one more layer (the most slots that fit, by
    bisection, and SPLIT_SCAN more). With no room, code is straight-line only where that is estimated smaller
    too (an output row of a few terms)."""
    tables = [table_form(q, li, pairs) for li in range(len(q.layers))]
    uses_tanh = any(L.kind == "tanh" for L in q.layers) or q.output == "tanh"
    est = {"table_flash": estimated_flash(q, tables, pairs[0]),
           "table_cycles": sum(table_cycles(T, False) for T in tables)}
    room = max(room, 0)
    cands: dict[int, dict[str, Straight]] = {}
    for li, T in enumerate(tables):
        if 8 * T.terms > room + T.flash():  # an SMLAD and a word a term at the least: cannot fit
            continue
        try:
            cands[li] = {t: straight(q, li, pairs, t == "full") for t in TANH_FORMS[uses_tanh]}
        except OffsetRange:
            continue
    heads: dict[tuple[int, bool, int], Head | None] = {}

    def head(li: int, full: bool, k: int) -> Head | None:
        if (li, full, k) not in heads:
            try:
                heads[li, full, k] = split_layer(q, li, pairs, tables[li], k, full)
            except OffsetRange:
                heads[li, full, k] = None
        return heads[li, full, k]

    def best_head(li: int, full: bool, room_left: int) -> Head | None:
        """Of the heads of layer li within room_left bytes, the fastest among the most slots bisection finds and
        the SPLIT_SCAN after it."""
        n = len(tables[li].order)
        lo, hi, k = 1, n - 1, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            h = head(li, full, mid)
            if h is not None and h.extra <= room_left:
                k, lo = mid, mid + 1
            else:
                hi = mid - 1
        fits = [h for j in range(max(k, 1), min(k + SPLIT_SCAN, n - 1) + 1)
                if (h := head(li, full, j)) is not None and h.extra <= room_left]
        return min(fits, key=lambda h: (h.cycles, h.extra), default=None)

    best = (est["table_cycles"], 0, Plan([T.form for T in tables], "interpolated"))
    for tanh in TANH_FORMS[uses_tanh]:
        full = tanh == "full"
        for n in range(len(cands) + 1):
            for chosen in itertools.combinations(sorted(cands), n):
                extra = (FULL_TANH_BYTES if full else 0) + sum(cands[li][tanh].flash() - tables[li].flash()
                                                                for li in chosen)
                cycles = sum(cands[li][tanh].cycles() if li in chosen else table_cycles(T, full)
                             for li, T in enumerate(tables))
                forms = ["straight" if li in chosen else T.form for li, T in enumerate(tables)]
                if extra <= room and (cycles, extra) < best[:2]:
                    best = (cycles, extra, Plan(forms, tanh))
                for li, T in enumerate(tables):  # the room left on the head of one more layer
                    h = None if li in chosen or len(T.order) < 2 else best_head(li, full, room - extra)
                    if h is not None and (c := cycles - table_cycles(T, full) + h.cycles, extra + h.extra) < best[:2]:
                        best = (c, extra + h.extra, Plan(forms, tanh, {li: h.k}))
    return best[2], est | {"extra_flash": best[1], "cycles": best[0]}


def _array(ctype: str, name: str, values: list[int], per_line: int, fmt) -> str:
    body = ",\n".join("    " + ", ".join(fmt(v) for v in values[i:i + per_line])
                      for i in range(0, len(values), per_line))
    return f"static const {ctype} {name}[{max(len(values), 1)}] = {{\n{body or '    0'}\n}};\n"


def _guarded(text: str, cond: str | None) -> str:
    return text if cond is None else f"#if {cond}\n{text}#endif\n"


def kernel_source(q: IntNet, banner: str, room: int = 0, tables_only: bool = False,
                  forced: Plan | None = None) -> tuple[str, dict]:
    """policy.c of the table form with `room` bytes of flash to spend on speed (plan; tables_only: every
    layer a table, tanh interpolated; forced: this plan, for tests), and what the report records of it (the
    plan, each layer's form, the streams' sizes, the estimates)."""
    from training.pairs import pair_columns

    obs_dim, act_dim = len(q.in_frac), len(q.out_frac)
    pairs = [pair_columns(L.wq) for L in q.layers]
    tables = [table_form(q, li, pairs) for li in range(len(q.layers))]
    uses_tanh = q.output == "tanh" or any(L.kind == "tanh" for L in q.layers)
    try:
        check_asm(q, tables)
        asm_why = None
        p, est = plan(q, pairs, room) if not tables_only and forced is None else (
            forced or Plan([T.form for T in tables], "interpolated"),
            {"table_flash": estimated_flash(q, tables, pairs[0])})
    except TableRange as e:
        asm_why = str(e)
        p, est = Plan([T.form for T in tables], "interpolated"), {"table_flash": estimated_flash(q, tables, pairs[0])}
    est["flash"] = est["table_flash"] + est.get("extra_flash", 0)
    full = p.tanh == "full"
    guard = "#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && defined(__thumb2__)\n"
    assert guard in _PRELUDE
    out = [banner, _PRELUDE if asm_why is None else
           _PRELUDE.replace(guard, f"#if 0 /* {asm_why}: the C loops on every core */\n")]
    if uses_tanh:  # the plan's table where the assembly runs; the C loops interpolate elsewhere
        out.append(tanh_c("BPD_INT_DSP" if full else None))
    tanh_arg = (f"(bpd_tanh_q15 + {HALF})" if full else "TANH_WORDS_MID") if uses_tanh else "NULL"
    # straight-line code: whole layers, and the heads of split ones (whose tails walk their streams from slot k)
    straight_layers = {li: straight(q, li, pairs, full) for li, f in enumerate(p.forms) if f == "straight"}
    tails: dict[int, TableLayer] = {}
    for li, k in p.split.items():
        hd = split_layer(q, li, pairs, tables[li], k, full)
        straight_layers[li], tails[li] = hd.code, hd.tail

    def streams(li: int, T: TableLayer, what: str, cond: str | None) -> None:
        out.append(f"\n/* layer {li}{what}: {len(T.order)} rows, {T.terms} weight pairs; per row its bias and weight "
                   "pairs" + (", its count of pairs and their indices" if T.form == "sparse" else "")
                   + (", its shift" if T.kind != "output" else "") + " */\n")
        out.append(_guarded(_array("uint32_t", f"bpd_it_w{li}", T.words, 8, _hex)
                            + _array("uint8_t", f"bpd_it_b{li}", T.bytes, 24, str), cond))

    for li, T in enumerate(tables):
        if li in tails:
            streams(li, tails[li], f" from slot {p.split[li]} (the slots before it straight-line)", "BPD_INT_DSP")
        streams(li, T, "", "!BPD_INT_DSP" if li in straight_layers else None)
        if li in straight_layers:
            what = f"its first {p.split[li]} slots" if li in tails else "it"
            out.append(_guarded(f"/* layer {li}: {what} as straight-line code: biases and weight pairs in the order "
                                "the code takes them */\n" + _array("uint32_t", f"bpd_dsp_t{li}",
                                                                    straight_layers[li].table, 8, _hex),
                                "BPD_INT_DSP"))
    dest = slots(pairs[0])
    ins = input_bytes([int(f) for f in q.in_frac], dest)
    out.append("/* per observation: its halfword in the first layer's pair layout (255: unused), 150 - its Q "
               "format */\n")
    out.append(_array("uint8_t", "bpd_it_in", ins, 24, str))
    fp = fp_inputs_asm("bpd_fp_inputs", [int(f) for f in q.in_frac], pairs[0]) if asm_why is None else None
    if asm_why is None:
        asm = [loop_inputs_asm("bpd_it_inputs")]
        decl = ["int bpd_it_inputs(const float *obs, int16_t *x, const uint8_t *in, int n);\n"]
        for li, T in enumerate(tables):
            if li in straight_layers:
                asm.append(layer_asm(f"bpd_dsp_layer{li}", straight_layers[li].body))
                decl.append(f"void bpd_dsp_layer{li}(const void *x, const uint32_t *t, void *out, "
                            "const void *tanh);\n")
            if li not in straight_layers or li in tails:
                T = tails.get(li, T)
                asm.append((dense_asm if T.form == "dense" else sparse_asm)(f"bpd_it_layer{li}", T, full))
                decl.append(f"void bpd_it_layer{li}(const void *x, const uint32_t *w, void *out, const uint8_t *b, "
                            "const void *tanh);\n")
        out.append("\n#if BPD_INT_DSP\n" + "".join(decl))
        out.append(asm_block("".join(asm)) + fp_c(fp) + "#endif\n")
    relu = f"sat_shift(acc, s, 0, {SAT})"
    if uses_tanh:
        tanh = f"tanh_q15(sat_shift(acc, s, -{HALF}, {HALF - 1}))"
        out.append(_LOOPS.replace("KIND_TANH", f"kind == 0 ? {tanh} : {relu}"))
    else:
        out.append(_LOOPS.replace("KIND_TANH", relu).replace("int32_t kind)\n{",
                                                             "int32_t kind)\n{\n    (void)kind;"))
    out.append("\n/* the assembly loads the pairs as words */\n#if BPD_INT_DSP\n"
               "#define BPD_IT_ALIGN __attribute__((aligned(4)))\n#else\n#define BPD_IT_ALIGN\n#endif\n")
    names = [f"y{i}" for i in range(act_dim)]
    out.append(run_head(q, names))
    width = max(T.in_words for T in tables)
    bufs = ("xa", "xb")
    xb = f", xb[{2 * width}] BPD_IT_ALIGN" if len(tables) > 1 else ""  # no hidden layer: no second buffer
    out.append(f"    {{\n        /* the layers' inputs: int16 pairs, a word each */\n"
               f"        int16_t xa[{2 * width}] BPD_IT_ALIGN{xb};\n"
               f"        int32_t acc[{act_dim}];\n")
    out.append("#if BPD_INT_DSP\n        /* every observation checked (exponent 255: NaN or +-Inf), the used ones in "
               "Q formats */\n" + fp_call(f"bpd_it_inputs(obs, xa, bpd_it_in, {obs_dim})", fp, obs_dim) +
               "            safe_output(action);\n            return BPD_ERR_NONFINITE;\n        }\n")
    for li, T in enumerate(tables):
        src, dst = bufs[li % 2], bufs[(li + 1) % 2]
        o = "acc" if T.kind == "output" else dst
        if li in straight_layers:
            out.append(f"        bpd_dsp_layer{li}({src}, bpd_dsp_t{li}, {o}, {tanh_arg});\n")
        if li not in straight_layers or li in tails:
            o += f" + {p.split[li]}" if li in tails else ""  # the tail from its first slot (a word for an output)
            out.append(f"        bpd_it_layer{li}({src}, bpd_it_w{li}, {o}, bpd_it_b{li}, {tanh_arg});\n")
    out.append("#else\n        int32_t j;\n        memset(xa, 0, sizeof xa); /* the zero half of an odd pair */\n"
               + ("        memset(xb, 0, sizeof xb);\n" if xb else "") +
               f"        for (j = 0; j < {obs_dim}; j++) {{\n            const uint32_t bits = load_bits(&obs[j]);\n"
               "            if (((bits >> 23) & 0xFFu) == 0xFFu) { /* NaN or +-Inf */\n"
               "                safe_output(action);\n                return BPD_ERR_NONFINITE;\n            }\n"
               "            if (bpd_it_in[2 * j] != 255u)\n"
               "                xa[bpd_it_in[2 * j]] = (int16_t)to_fixed(bits, (int32_t)bpd_it_in[2 * j + 1] + 8);\n"
               "        }\n")
    for li, T in enumerate(tables):
        src, dst = bufs[li % 2], bufs[(li + 1) % 2]
        h, y = ("NULL", "acc") if T.kind == "output" else (dst, "NULL")
        k = KIND_CODE[T.kind]
        if T.form == "dense":
            out.append(f"        walk_dense({src}, {T.in_words}, bpd_it_w{li}, bpd_it_b{li}, {len(T.order)}, {k}, "
                       f"{h}, {y});\n")
        else:
            sh = 2 if T.in_words <= NEAR_WORDS else 0
            out.append(f"        walk_sparse({src}, {sh}, bpd_it_w{li}, bpd_it_b{li}, {len(T.order)}, {k}, {h}, "
                       f"{y});\n")
    out.append("#endif\n")
    out += [f"        {v} = acc[{i}];\n" for i, v in enumerate(names)]
    out.append("    }\n")
    out.append(run_tail(q, names))
    src = "".join(out)
    if not any(T.form == "dense" for T in tables):
        src = _drop_function(src, "walk_dense")
    if not any(T.form == "sparse" for T in tables):
        src = _drop_function(src, "walk_sparse")
    info = {"form": TABLE_FORM, "plan": p.label(), "room": room, "assembly": asm_why is None,
            "scalar_reason": asm_why, "estimate": est, "fpu_inputs": fp is not None,
            "layers": [{"form": f, "rows": len(T.order), "input_words": T.in_words, "weight_pairs": T.terms,
                        "longest_row": T.longest} | ({"straight_slots": p.split[li]} if li in tails else {})
                       | ({"rows_per_group": straight_layers[li].rcg[0], "words_per_chunk": straight_layers[li].rcg[1],
                           "weight_registers": straight_layers[li].rcg[2]} if li in straight_layers else {})
                       for li, (f, T) in enumerate(zip(p.forms, tables))]}
    return src, info


def _drop_function(src: str, name: str) -> str:
    """src without the C function `name` and the comment above it (unused: -Werror would refuse it)."""
    start = src.index(f"static void {name}(")
    start = src.rindex("\n/*", 0, start) + 1
    end = src.index("\n}\n", start) + 3
    return src[:start] + src[end:]


def generate_int_table_kernel(net: CollapsedNet, q: IntNet, out_dir: Path, source_hash: str, command: str,
                              room: int = 0, tables_only: bool = False) -> dict:
    """Write the table form of the integer kernel with `room` bytes of flash to spend on speed (policy.c;
    tables_only: every layer a table), its descriptor files and policy.h into out_dir; returns what the
    report records of the form."""
    return write_kernel(net, out_dir, source_hash, command, "integer-table",
                        lambda banner: kernel_source(q, banner, room, tables_only))
