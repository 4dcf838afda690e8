"""The integer kernel on Thumb-1 cores (Cortex-M0, M0+): one straight-line ARMv6-M function from the observations'
IEEE bits to the output sums.

`name`(const float *obs, const uint32_t *table, const int16_t *tanh, int32_t *out) returns 0 with the output sums
(int32) in out, or 1 (out untouched) where an observation's exponent is 255 (NaN or +-Inf). Activations sit in its
own stack frame as int32 words, two regions of `width` words (a layer reads one and writes the other), each load
and store a single SP-relative LDR/STR (8-bit word offset: both regions within 256 words); out's pointer waits in
lr, the tanh table's (its first entry, index -2^(bits-1)) in r2 or ip.

Inputs, converted as fixed_point.to_fixed does, straight into the first region: the bits two at a time by LDMIA;
per input the exponent (LSLS, LSRS) and one compare against 142 - f. Below it: the shift 158 - f - exponent (MOVS,
SUBS), the significand with its leading one (LSLS, ORRS with 2^31 held in r7) shifted right by it (LSRS: 32 or more
gives 0, as zero and subnormals need). Not below (out of line): 255 leaves, anything else is 32767. Then negated
where the sign is set (CMP, BGE, NEGS) and stored: 12 instructions and half a load, one more for a negative input.
An input no weight reads is only checked (LSLS, ASRS, ADDS, BNE). Every exit is one branch away (repeated along a
long input stage).

Layers: the weights are one table of int32 words in the order the code uses them, streamed by LDMIA into whichever
of the stream's registers are free (a load takes as many words as there are, across rows and across layers of one
register set). A layer's rows run one at a time or in groups of two or three that share inputs (whichever is fewest
instructions): sums in r3 (r0, then r2 or r5), each input the group reads loaded once into r4 (LDR), then per
nonzero weight MULS and ADDS, a row's bias added by its first ADDS (no move of its own). The stream has the low
registers left: r0, r5, r6, r7 less the sums, and r2 where tanh's pointer waits in ip instead (moved to r4 once per
group); the pointer's place is whichever gives fewer instructions. Hidden rows nobody in the next layer reads are
left out.

Activation, from the row's bound (every input at its range's ends: +-32767, the tanh table's extremes, or ReLU's
[0, 32767]; the quantiser keeps every sum within int32). A row shifted by s to [lo, hi] (hi - lo all ones, n bits)
is in range where acc + H is in [0, 2^(n+s)), H = -lo shifted by s, which the bias carries (mod 2^32): one LSRS of
the sum by n + s into a free register and BEQ tell it; out of range (rare) ASRS #31, MVNS and LSRS make the range's
end from the sign (where acc + H can pass 2^31 - 1, H is first taken off again: the true sum's sign). A row whose
bound keeps it in range has no check; one that can only fall below has BPL (on the last ADDS's flags, else after
CMP). Then the shift (LSRS; LSLS for a negative one), for tanh the index doubled (LSLS) and one LDRSH; a tanh row
shifted by 22 or more (always within the table, H past 32 bits) has ASRS, then -lo from the stream added; a ReLU row
shifted by 18 or more (H = 0) cannot pass 32767 and has at most the lower check. STR to the frame. The output
layer stores its sums through lr's pointer for the C that maps them to actions. The numbers equal the scalar C form's
and the numpy model's exactly (fixed_point.py): every product is int16 x int16, MULS keeps the low 32 bits, and the
quantiser bounds every sum for any input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpd.errors import BpdError
from export.int_tanh import SAT, tanh_table

FRAME_WORDS = 256  # SP-relative LDR/STR reach 255 words: both regions within it
# per place of tanh's pointer (r2; ip, or no tanh layer), for a group of one, two and three rows: the sums'
# registers and the stream's
STREAMS = {"r2": ((("r3",), ("r0", "r5", "r6", "r7")), (("r3", "r0"), ("r5", "r6", "r7")),
                  (("r3", "r0", "r5"), ("r6", "r7"))),
           "ip": ((("r3",), ("r0", "r2", "r5", "r6", "r7")), (("r3", "r0"), ("r2", "r5", "r6", "r7")),
                  (("r3", "r0", "r2"), ("r5", "r6", "r7")))}
REACH = 1900  # bytes a B back to the nonfinite exit may span (+-2 KB)
MASK = 0xFFFFFFFF


class FrameTooSmall(BpdError):
    """The network does not fit the Thumb-1 form (its widest layer twice in the 256 words SP-relative loads
    reach, an input's format in the conversion's immediates, more than 32 outputs): scalar C."""


def _layer_bounds(kind: str, bits: int) -> tuple[int, int]:
    """A hidden layer's clamp after its shift: the tanh table's signed index, or ReLU's [0, 32767]."""
    if kind == "tanh":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, SAT


@dataclass
class _Op:
    text: str  # an instruction or label; {0}, {1}, ... are its stream words' registers
    words: tuple[int, ...] = ()  # indices into the table
    rare: bool = False  # off the common path: an out-of-range clamp, a saturated input, the nonfinite exit
    regs: tuple[str, ...] = ()  # the stream's registers where it runs


class _Prog:
    def __init__(self) -> None:
        self.ops: list[_Op] = []
        self.words: list[int] = []
        self.regs: tuple[str, ...] = ()

    def word(self, v: int) -> int:
        self.words.append(int(v) & MASK)
        return len(self.words) - 1

    def e(self, text: str, *words: int, rare: bool = False) -> None:
        self.ops.append(_Op(text, words, rare, self.regs))

    def size(self) -> int:
        """Bytes so far (every instruction here is 16-bit)."""
        return 2 * sum(1 for op in self.ops if not op.text.endswith(":"))


def _allocate(p: _Prog) -> tuple[list[str], int]:
    """The program's lines with its stream words in registers: before an instruction whose word is not loaded,
    one LDMIA of as many next words as registers are free (ascending, as LDMIA fills them), within the run of
    instructions of one register set; a register frees after its word's last use. Also the instructions on the
    common path."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    seg: list[int] = []
    for k, op in enumerate(p.ops):
        seg.append(seg[-1] + (op.regs != p.ops[k - 1].regs) if k else 0)
        for w in op.words:
            first.setdefault(w, k)
            last[w] = k
    assert sorted(first) == list(range(len(p.words))) and sorted(first, key=first.__getitem__) == sorted(first)
    held: dict[int, str] = {}
    nxt, lines, common = 0, [], 0
    for k, op in enumerate(p.ops):
        if any(w not in held for w in op.words):
            free = [r for r in op.regs if r not in held.values()]
            n = 0
            while n < len(free) and nxt + n < len(p.words) and seg[first[nxt + n]] == seg[k]:
                n += 1
            assert all(w < nxt + n for w in op.words)
            lines.append(f"    ldmia r1!, {{{', '.join(free[:n])}}}")
            held |= {nxt + i: free[i] for i in range(n)}
            nxt += n
            common += 1
        label = op.text.endswith(":")
        text = op.text.format(*(held[w] for w in op.words)) if op.words else op.text  # braces: register lists
        lines.append(text if label else "    " + text)
        common += not (label or op.rare)
        for w in set(op.words):
            if last[w] == k:
                del held[w]
    return lines, common


def _exit(p: _Prog, frame: int, code: int, rare: bool) -> None:
    left = frame
    while left:
        p.e(f"add sp, #{min(left, 508)}", rare=rare)
        left -= min(left, 508)
    p.e(f"movs r0, #{code}", rare=rare)
    p.e("pop {r4, r5, r6, r7, pc}", rare=rare)


def _inputs(p: _Prog, name: str, in_frac: list[int], used: np.ndarray, frame: int) -> None:
    """Every observation checked, the used ones converted into region 0 (r0 walks them, r7 = 2^31)."""
    bad: list[int] = []  # positions of the nonfinite exits so far (inline in a stub)

    def leave() -> None:
        if bad and p.size() - bad[-1] < REACH:
            p.e(f"b .L{name}_bad{len(bad) - 1}", rare=True)
            return
        bad.append(p.size())
        p.e(f".L{name}_bad{len(bad) - 1}:")
        _exit(p, frame, 1, True)

    regs = ("r3", "r4")
    for j0 in range(0, len(in_frac), 2):
        k = min(2, len(in_frac) - j0)
        p.e(f"ldmia r0!, {{{', '.join(regs[:k])}}}")
        for i in range(k):
            j, b = j0 + i, regs[i]
            p.e(f"lsls r5, {b}, #1")
            if not used[j]:  # checked only: an exponent of 255 gives -1 here
                p.e("asrs r5, r5, #24")
                p.e("adds r5, #1")
                p.e("bne 1f")
                leave()
                p.e("1:")
                continue
            big = 158 - int(in_frac[j])  # x 2^f = significand (leading one at bit 31) / 2^(big - exponent)
            if not 16 <= big <= 255:
                raise FrameTooSmall(f"input {j}'s format Q{in_frac[j]} is past the conversion's immediates: scalar C")
            p.e("lsrs r5, r5, #24")
            p.e(f"cmp r5, #{big - 16}")
            p.e("blo 2f")
            p.e("cmp r5, #255", rare=True)  # not below: NaN or +-Inf leaves, anything else saturates
            p.e("bne 4f", rare=True)
            leave()
            p.e("4:")
            p.e("lsrs r5, r7, #16", rare=True)
            p.e("subs r5, #1", rare=True)
            p.e("b 3f", rare=True)
            p.e("2:")
            p.e(f"movs r6, #{big}")
            p.e("subs r6, r6, r5")
            p.e(f"lsls r5, {b}, #8")
            p.e("orrs r5, r7")
            p.e("lsrs r5, r5, r6")
            p.e("3:")
            p.e(f"cmp {b}, #0")
            p.e("bge 1f")
            p.e("negs r5, r5")
            p.e("1:")
            p.e(f"str r5, [sp, #{4 * j}]")


@dataclass
class _Row:
    r: int
    cols: dict[int, int]  # its nonzero weights by input
    bias: int  # its table word's value (H added where folded)
    act: tuple  # what _activation emits


def _plan_row(L, r: int, xlo: int, xhi: int, bits: int) -> _Row:
    """The row's bias word and activation: see the module's docstring."""
    wq = np.asarray(L.wq[r], np.int64)
    cols = {int(c): int(wq[c]) for c in np.flatnonzero(wq)}
    bq = int(L.bq[r])
    if L.kind == "output":
        return _Row(r, cols, bq, ("out",))
    lo, hi = _layer_bounds(L.kind, bits)
    n, s = (hi - lo).bit_length(), int(L.shift[r])
    assert (hi - lo) & (hi - lo + 1) == 0  # all ones: the out-of-range answer is a shift of -1
    if n + s > 32 and L.kind == "tanh":  # tanh shifted by 22 or more: always within the table
        return _Row(r, cols, bq, ("add", s, -lo))
    big = int(np.maximum(wq * xlo, wq * xhi).sum())
    small = int(np.minimum(wq * xlo, wq * xhi).sum())
    h = (-lo) << s if s >= 0 else (-lo) >> -s
    assert s >= 0 or h << -s == -lo
    v_lo, v_hi = bq + small + h, bq + big + h
    assert -(1 << 31) <= bq + small and bq + big < 1 << 31
    wrap = v_hi >= 1 << 31  # acc + H may pass 2^31 - 1: its sign is not the true sum's
    return _Row(r, cols, bq + h, ("fold", s, n + s, v_lo < 0, v_hi >= 1 << (n + s), wrap, h))


def _activation(p: _Prog, row: _Row, acc: str, flags: bool, kind: str, tanh: str, scratch: str, dst: int) -> None:
    """The activation of the sum in acc (flags: the last ADDS set its flags; scratch: a free register), stored to the
    frame; tanh's pointer in tanh (r2, r4), or "ip" (moved to r4 here)."""
    if row.act[0] == "add":
        _, s, h = row.act
        p.e(f"asrs {acc}, {acc}, #{s}")
        p.e(f"adds {acc}, {acc}, {{0}}", p.word(h))
    else:
        _, s, top, need_lo, need_hi, wrap, h = row.act
        if need_hi or (need_lo and wrap):
            assert top <= 31
            p.e(f"lsrs {scratch}, {acc}, #{top}")
            p.e("beq 1f")
            if wrap:  # the true sum's sign: acc + H - H
                p.e(f"movs {scratch}, #1", rare=True)
                p.e(f"lsls {scratch}, {scratch}, #{h.bit_length() - 1}", rare=True)
                p.e(f"subs {acc}, {acc}, {scratch}", rare=True)
            p.e(f"asrs {acc}, {acc}, #31", rare=True)  # below gives 0, above 2^top - 1
            p.e(f"mvns {acc}, {acc}", rare=True)
            p.e(f"lsrs {acc}, {acc}, #{32 - top}", rare=True)
            p.e("1:")
        elif need_lo:
            if not flags:
                p.e(f"cmp {acc}, #0")
            p.e("bpl 1f")
            p.e(f"movs {acc}, #0", rare=True)
            p.e("1:")
        if s > 0:
            p.e(f"lsrs {acc}, {acc}, #{s}")
        elif s < 0 and kind != "tanh":
            p.e(f"lsls {acc}, {acc}, #{-s}")
    if kind == "tanh":
        s = row.act[1]
        p.e(f"lsls {acc}, {acc}, #{1 - min(s, 0) if row.act[0] == 'fold' else 1}")
        if tanh == "ip":
            p.e("mov r4, ip")
        p.e(f"ldrsh {acc}, [{'r4' if tanh == 'ip' else tanh}, {acc}]")
    p.e(f"str {acc}, [sp, #{4 * (dst + row.r)}]")


def _groups(rows: list[_Row], size: int) -> list[list[_Row]]:
    """Rows in groups of up to size sharing inputs: the row of most weights, then one after another the row
    sharing most inputs with the group (at least one), then again; rows sharing none apart."""
    left = list(rows)
    out = []
    while left:
        group = [max(left, key=lambda x: len(x.cols))]
        left.remove(group[0])
        while len(group) < size and left:
            cols = {c for row in group for c in row.cols}
            share = [(len(cols & set(b.cols)), -i) for i, b in enumerate(left)]
            if max(share)[0] == 0:
                break
            group.append(left.pop(-max(share)[1]))
        out.append(group)
    return out


def _macs(p: _Prog, group: list[_Row], sums: tuple[str, ...], src: int) -> str:
    """The sums of a group of rows (in sums' registers), each input the group reads loaded once into r4; returns
    the register whose sum the last instruction set the flags of."""
    if len(group) == 1 and not group[0].cols:
        p.e(f"movs {sums[0]}, {{0}}", p.word(group[0].bias))
        return sums[0]
    started: set[int] = set()
    flags = sums[0]
    for c in sorted({c for row in group for c in row.cols}):
        p.e(f"ldr r4, [sp, #{4 * (src + c)}]")
        users = [(row, acc) for row, acc in zip(group, sums) if c in row.cols]
        for i, (row, acc) in enumerate(users):
            w = p.word(row.cols[c])
            words: tuple[int, ...] = ()
            if i == len(users) - 1:  # the input's last use: the product in r4
                p.e("muls r4, {0}, r4", w)
                prod = "r4"
            else:
                p.e("muls {0}, r4, {0}", w)
                prod, words = "{0}", (w,)
            if row.r not in started:  # the bias with the first product
                started.add(row.r)
                p.e(f"adds {acc}, {prod}, {{{len(words)}}}", *words, p.word(row.bias))
            else:
                p.e(f"adds {acc}, {acc}, {prod}", *words)
            flags = acc
    assert len(started) == len(group)  # a row without weights is alone
    return flags


def _layer(p: _Prog, li: int, rows: list[_Row], width: int, size: int, stream: str, kind: str) -> None:
    """A layer's rows in groups of up to size (1, 2, 3), tanh's pointer in stream's register (r2, ip)."""
    src, dst = (li % 2) * width, ((li + 1) % 2) * width
    sums, p.regs = STREAMS[stream][size - 1]
    for group in _groups(rows, size):
        flags = _macs(p, group, sums, src)
        if kind == "output":
            p.e("mov r4, lr")
            for row, acc in zip(group, sums):
                p.e(f"str {acc}, [r4, #{4 * row.r}]")
            continue
        order = sorted(zip(group, sums), key=lambda t: t[1] != flags)  # the one with valid flags first
        tanh, scratch = stream, "r4"
        for row, acc in order:
            _activation(p, row, acc, acc == flags, kind, tanh, scratch, dst)
            if tanh == "ip" and kind == "tanh":  # its pointer now in r4, the checks in the row's register
                tanh, scratch = "r4", acc


def network_asm(name: str, layers: list, in_frac: list[int], bits: int) -> tuple[str, list[int], dict]:
    """ARMv6-M assembly of `name` (see the module's docstring) for the integer layers (fixed_point.IntLayer) and
    the inputs' Q formats; the weight table it streams (int32 words); what the export report records of it (frame
    words, instructions on the common path, table words, tanh's pointer and the layers run in pairs)."""
    obs_dim = len(in_frac)
    widths = [obs_dim] + [int(L.wq.shape[0]) for L in layers[:-1]]
    width = max(widths)
    if 2 * width > FRAME_WORDS:
        raise FrameTooSmall(f"a layer of {width} units does not fit the Thumb-1 assembly's frame (at most "
                            f"{FRAME_WORDS // 2}): scalar C")
    if layers[-1].wq.shape[0] > 32:
        raise FrameTooSmall("more than 32 outputs: scalar C")
    table = tanh_table()
    plans: list[list[_Row]] = []
    xlo, xhi = -SAT, SAT
    for li, L in enumerate(layers):
        rows = list(range(L.wq.shape[0]))
        if li < len(layers) - 1:
            reads = np.asarray(layers[li + 1].wq) != 0
            rows = [r for r in rows if reads[:, r].any()]  # a unit nobody reads is left out
        plans.append([_plan_row(L, r, xlo, xhi, bits) for r in rows])
        xlo, xhi = (int(table.min()), int(table.max())) if L.kind == "tanh" else (0, SAT)
    used = (np.asarray(layers[0].wq) != 0).any(0)
    frame = 4 * 2 * width
    kinds = [L.kind for L in layers]
    best: tuple | None = None
    for stream in ("r2", "ip") if "tanh" in kinds[:-1] else ("ip",):
        sizes = []
        for li, L in enumerate(layers):  # each layer alone, its rows in groups of one, two or three: the fewest
            cost = []  # instructions
            for size in (1, 2, 3):
                q = _Prog()
                _layer(q, li, plans[li], width, size, stream, L.kind)
                cost.append((_allocate(q)[1], size))
            sizes.append(min(cost)[1])
        p = _Prog()
        p.e("push {r4, r5, r6, r7, lr}")
        left = frame
        while left:
            p.e(f"sub sp, #{min(left, 508)}")
            left -= min(left, 508)
        p.e("mov lr, r3")
        if stream == "ip" and "tanh" in kinds[:-1]:
            p.e("mov ip, r2")
        p.e("movs r7, #1")
        p.e("lsls r7, r7, #31")
        _inputs(p, name, in_frac, used, frame)
        for li, L in enumerate(layers):
            _layer(p, li, plans[li], width, sizes[li], stream, L.kind)
        _exit(p, frame, 0, False)
        lines, common = _allocate(p)
        if best is None or common < best[1]:
            best = (lines, common, p.words, stream, sizes)
    assert best is not None
    lines, common, words, stream, sizes = best
    body = [f"    .global {name}", f"    .type {name}, %function", "    .thumb_func", f"{name}:", *lines,
            f"    .size {name}, . - {name}"]
    return "\n".join(body) + "\n", words, {
        "frame_words": 2 * width, "instructions": common, "table_words": len(words),
        "tanh_pointer": stream if "tanh" in kinds[:-1] else None,
        "rows_per_group": sizes}


def c_parts(asm: str, table: list[int], names: list[str], uses_tanh: bool) -> tuple[str, str]:
    """The C around the assembly in policy.c (under BPD_INT_T1): its table, prototype and text; and the call in
    bpd_policy_run, which leaves the output sums in names (a nonfinite observation: the safe action)."""
    decl = ["\n#if BPD_INT_T1\n/* each row's bias (the activation's offset added) and int32 weights, in the order "
            f"the assembly uses them */\nstatic const uint32_t bpd_t1_table[{max(len(table), 1)}] = {{\n"]
    decl += ["    " + ", ".join(f"0x{v:08X}u" for v in table[i:i + 8]) + ",\n" for i in range(0, len(table), 8)]
    decl.append("};\nint bpd_t1_net(const float *obs, const uint32_t *t, const int16_t *tanh, int32_t *out);\n"
                "__asm__(\n    \".syntax unified\\n\"\n    \".text\\n\"\n    \".balign 2\\n\"\n")
    decl += [f"    \"{line}\\n\"\n" for line in asm.splitlines()]
    decl.append(");\n#endif\n")
    call = ["#if BPD_INT_T1\n    {\n", f"        int32_t acc[{len(names)}];\n",
            "        /* every observation checked (exponent 255: NaN or +-Inf) and converted in the assembly */\n",
            f"        if (bpd_t1_net(obs, bpd_t1_table, {'bpd_tanh_q15' if uses_tanh else 'NULL'}, acc)) {{\n",
            "            safe_output(action);\n            return BPD_ERR_NONFINITE;\n        }\n"]
    call += [f"        {v} = acc[{i}];\n" for i, v in enumerate(names)]
    call.append("    }\n#else\n")
    return "".join(decl), "".join(call)
