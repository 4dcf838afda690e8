"""Generate a straight-line C kernel for one collapsed network (`bpd export --kernel generated`).

The generic kernel walks layer descriptors and index arrays at run time. This one is written for
one model: every surviving weight is a literal in a multiply-add, every bias the first value of its
accumulator, the action scaling and bounds literals too, and the compiler keeps the few hidden
values in registers. There are no index arrays and no loops. The entry point, header and error
behaviour are the generic kernel's (policy.h): NaN or Inf in the observation gives
BPD_ERR_NONFINITE and the safe action.

The hidden tanh is chosen to fit an accuracy budget (`select_tanh`): odd rational approximations
p(x)/q(x) of growing degree, near-minimax on [0, c] and +-1 beyond c, tried cheapest first
until the compiled kernel keeps the budget against torch on the parity states; libm tanhf when
none does.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpd.errors import BpdError
from bpd.io import write_text
from export.c_export import KERNEL_DIR, c_float, model_descriptor, model_hash
from export.collapse import CollapsedNet

# (coefficients of p in x^2, coefficients of q in x^2 after the leading 1): cheapest first
RATIONAL_ORDERS = ((2, 1), (2, 2), (3, 2), (3, 3), (4, 3), (4, 4), (5, 4))


@dataclass(frozen=True)
class TanhForm:
    """One way to compute tanh in C: libm; x*P(x^2)/Q(x^2) for |x| < clamp and +-1 beyond; or (table) a
    cubic in |x| per interval of 1/TABLE_STEPS on [0, clamp), coefficients from a table, the sign
    restored, +-1 beyond."""

    name: str
    p: tuple[float, ...] = ()
    q: tuple[float, ...] = ()
    clamp: float = 0.0
    table: tuple[float, ...] = ()  # per interval: c0..c3 of c0 + (c1 + (c2 + c3 |x|) |x|) |x|

    @property
    def libm(self) -> bool:
        return not self.p and not self.table

    @property
    def cost(self) -> int:
        """Multiply-adds plus a divide and two clamps; the table form's index, three loads and two
        multiply-adds but no divide count as cheapest; libm counts as expensive."""
        if self.table:
            return 5
        return 1000 if self.libm else len(self.p) + len(self.q) + 3

    def numpy(self, x: np.ndarray) -> np.ndarray:
        """The same approximation evaluated in float32 (Horner order as in C)."""
        if self.table:
            x = np.asarray(x, np.float32)
            inside = np.abs(x) < np.float32(self.clamp)
            a = np.where(inside, np.abs(x), np.float32(0))  # beyond the clamp the answer is the sign
            i = (a * np.float32(TABLE_STEPS)).astype(np.int64)
            t = np.asarray(self.table, np.float32).reshape(-1, 4)
            y = t[i, 0] + (t[i, 1] + (t[i, 2] + t[i, 3] * a) * a) * a
            return np.where(inside, np.where(x < 0, -y, y), np.sign(x)).astype(np.float32)
        if self.libm:
            return np.tanh(np.asarray(x, np.float32))
        x = np.asarray(x, np.float32)
        x2 = x * x
        p = np.float32(self.p[-1])
        for c in self.p[-2::-1]:
            p = p * x2 + np.float32(c)
        q = np.float32(self.q[-1])
        for c in self.q[-2::-1]:
            q = q * x2 + np.float32(c)
        q = q * x2 + np.float32(1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            y = (x * p / q).astype(np.float32)
        return np.where(np.abs(x) < np.float32(self.clamp), y, np.sign(x)).astype(np.float32)

    def max_error(self) -> float:
        """Max abs error against tanh in float64 on [-10, 10] (40,001 points)."""
        x = np.linspace(-10, 10, 40_001)
        return float(np.abs(self.numpy(x).astype(np.float64) - np.tanh(x)).max())

    def c_decls(self) -> str:
        """File-scope declarations the body needs (the table form's coefficients)."""
        if not self.table:
            return ""
        return (f"/* tanh on [0, {self.clamp:g}): c0 + (c1 + (c2 + c3 a) a) a per interval of 1/{TABLE_STEPS} */\n"
                f"static const float bpd_tanh_table[{len(self.table)}] = {{ "
                + ", ".join(c_float(v) for v in self.table) + " };\n")

    def c_body(self) -> str:
        """The body of `static float tanh_approx(float x)`."""
        if self.table:
            return (f"    const float a = fabsf(x);\n    const float *c;\n    float y;\n"
                    f"    if (!(a < {c_float(self.clamp)})) return x > 0.0f ? 1.0f : -1.0f;\n"
                    f"    c = bpd_tanh_table + 4 * (int)(a * {c_float(TABLE_STEPS)});\n"
                    "    y = BPD_MAC(c[0], BPD_MAC(c[1], BPD_MAC(c[2], c[3], a), a), a);\n"
                    "    return x < 0.0f ? -y : y;\n")
        if self.libm:
            return "    return tanhf(x);\n"
        c = c_float(self.clamp)
        lines = ["    float x2, p, q;", f"    if (!(fabsf(x) < {c})) return x > 0.0f ? 1.0f : -1.0f;",
                 "    x2 = x * x;", f"    p = {c_float(self.p[-1])};"]
        lines += [f"    p = BPD_MAC({c_float(k)}, p, x2);" for k in self.p[-2::-1]]
        lines.append(f"    q = {c_float(self.q[-1])};")
        lines += [f"    q = BPD_MAC({c_float(k)}, q, x2);" for k in self.q[-2::-1]]
        lines += ["    q = BPD_MAC(1.0f, q, x2);", "    return x * p / q;"]
        return "\n".join(lines) + "\n"


def _fit(n_p: int, n_q: int, clamp: float, iters: int = 40) -> tuple[np.ndarray, np.ndarray] | None:
    """Near-minimax x*P(x^2)/(1 + x^2 Q(x^2)) for tanh on [0, clamp]: linearised least squares with
    Lawson reweighting towards the largest errors."""
    u = (1 - np.cos(np.linspace(0, np.pi / 2, 800)))[1:]  # x / clamp, denser near 0
    f = np.tanh(clamp * u)
    x, x2 = u, u * u  # fitted in u for conditioning, mapped back to x below
    A = np.concatenate([np.stack([x * x2 ** i for i in range(n_p)], 1),
                        np.stack([-f * x2 ** (j + 1) for j in range(n_q)], 1)], 1)
    w = np.ones_like(x)
    q_prev = np.ones_like(x)
    best, best_err = None, np.inf
    for _ in range(iters):
        sw = np.sqrt(w) / q_prev
        coef, *_ = np.linalg.lstsq(A * sw[:, None], f * sw, rcond=None)
        p = np.stack([x * x2 ** i for i in range(n_p)], 1) @ coef[:n_p]
        q = 1 + np.stack([x2 ** (j + 1) for j in range(n_q)], 1) @ coef[n_p:]
        if (q <= 0).any():  # a pole on the interval: keep the last good fit
            break
        err = np.abs(p / q - f)
        if err.max() < best_err:
            best, best_err = coef, err.max()
        q_prev = q
        w = w * (err + 1e-300)
        w /= w.sum()
    if best is None:
        return None
    return (best[:n_p] / clamp ** (2 * np.arange(n_p) + 1), best[n_p:] / clamp ** (2 * np.arange(n_q) + 2))


@functools.cache
def rational_forms() -> tuple[TanhForm, ...]:
    """The rational candidates, each with the clamp (from a small grid) that minimises its max error."""
    forms = []
    for n_p, n_q in RATIONAL_ORDERS:
        best = None
        for clamp in np.arange(3.0, 9.01, 0.5):
            fit = _fit(n_p, n_q, float(clamp))
            if fit is None:
                continue
            p, q = fit
            form = TanhForm(f"rational-{2 * n_p - 1}/{2 * n_q}", tuple(map(float, p)), tuple(map(float, q)),
                            float(np.float32(clamp)))
            err = form.max_error()
            if best is None or err < best[0]:
                best = (err, form)
        if best is None:
            raise BpdError(f"no rational tanh of order {n_p}/{n_q} could be fitted")
        forms.append(best[1])
    return tuple(forms)


TABLE_STEPS = 16  # intervals per unit of |x| in the table form


@functools.cache
def table_form(clamp: float = 8.0) -> TanhForm:
    """tanh by a cubic per interval of 1/TABLE_STEPS on [0, clamp): each fitted by least squares on
    Chebyshev points of its interval (near-minimax; the first through the origin), +-1 beyond the clamp
    (1 - tanh(8) = 2.3e-7)."""
    n = int(clamp * TABLE_STEPS)
    coef = []
    k = np.arange(16)
    cheb = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / 32)
    for i in range(n):
        a = (i + cheb) / TABLE_STEPS
        powers = np.stack([a ** k for k in range(4)], 1)
        if i == 0:  # through the origin, so that tanh(0) is exactly 0 and the form stays odd
            c, *_ = np.linalg.lstsq(powers[:, 1:], np.tanh(a), rcond=None)
            c = np.concatenate([[0.0], c])
        else:
            c, *_ = np.linalg.lstsq(powers, np.tanh(a), rcond=None)
        coef += [float(v) for v in c]
    return TanhForm(f"table-{TABLE_STEPS}", clamp=float(np.float32(clamp)), table=tuple(coef))


LIBM = TanhForm("libm-tanhf")


def tanh_forms() -> list[TanhForm]:
    """Every candidate, cheapest first, libm last."""
    return sorted([table_form(), *rational_forms()], key=lambda f: f.cost) + [LIBM]


def tanh_form(name: str) -> TanhForm:
    for f in tanh_forms():
        if f.name == name:
            return f
    raise KeyError(name)


# ------------------------------------------------------------------------------- code generation

_PRELUDE = """\
#include "policy.h"
#include "policy_weights.h"

#include <math.h>
#include <stddef.h>

/* acc + w * x, as one fused multiply-add where the core has one (Cortex-M4F/M7: vfma.f32) */
#if defined(__ARM_FEATURE_FMA) || defined(FP_FAST_FMAF)
#define BPD_MAC(acc, w, x) fmaf((w), (x), (acc))
#else
#define BPD_MAC(acc, w, x) ((acc) + (w) * (x))
#endif

#if defined(__GNUC__)
#define BPD_INLINE static inline __attribute__((always_inline))
#else
#define BPD_INLINE static inline
#endif
"""


def _act_line(kind: str, var: str) -> str:
    if kind == "tanh":
        return f"    {var} = tanh_approx({var});\n"
    if kind == "relu":
        return f"    {var} = {var} > 0.0f ? {var} : 0.0f;\n"
    return ""


def kernel_source(net: CollapsedNet, form: TanhForm, banner: str) -> str:
    """The generated policy.c for this network and tanh form."""
    obs_dim, act_dim = net.obs_dim, net.act_dim
    safe = np.clip(np.zeros(act_dim, np.float32), net.action_low, net.action_high)
    uses_tanh = net.activation == "tanh" or net.output == "tanh"
    out = [banner, _PRELUDE]
    if uses_tanh:
        out.append(f"\n/* tanh: {form.name}, max abs error {form.max_error():.1e} on [-10, 10] */\n"
                   f"{form.c_decls()}BPD_INLINE float tanh_approx(float x)\n{{\n{form.c_body()}}}\n\n"
                   "float bpd_tanh(float x) { return tanh_approx(x); }\n")
    else:
        out.append("\nfloat bpd_tanh(float x) { return tanhf(x); }\n")
    out.append("\nstatic void safe_output(float *action)\n{\n"
               + "".join(f"    action[{i}] = {c_float(v)};\n" for i, v in enumerate(safe)) + "}\n")
    out.append("\n/* The weights are compiled in: model is checked for NULL only, as the generic kernel does, and\n"
               " * scratch is not used. */\n"
               "int bpd_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch)\n{\n")
    out.append("    if (model == NULL || action == NULL) return BPD_ERR_ARG;\n"
               "    if (obs == NULL || scratch == NULL) {\n        safe_output(action);\n        return BPD_ERR_ARG;\n"
               "    }\n")
    off = net.in_offset
    out += [f"    const float x{j} = obs[{j}]{'' if off is None else ' - ' + c_float(off[j])};\n"
            for j in range(obs_dim)]
    out.append("    /* x - x is 0 for every number and NaN for NaN and +-Inf */\n"
               "    if (!((" + ") + (".join(f"x{j} - x{j}" for j in range(obs_dim)) + ") == 0.0f)) {\n"
               "        safe_output(action);\n        return BPD_ERR_NONFINITE;\n    }\n")
    prev = [f"x{j}" for j in range(obs_dim)]
    n = len(net.weights)
    for li, (w, b) in enumerate(zip(net.weights, net.biases)):
        last = li == n - 1
        kind = "none" if last else net.activation
        out.append(f"    /* layer {li}: {w.shape[1]} -> {w.shape[0]}, {np.count_nonzero(w)} weights, "
                   f"{'output' if last else kind} */\n")
        names = [f"y{r}" if last else f"h{li}_{r}" for r in range(w.shape[0])]
        for r in range(w.shape[0]):
            out.append(f"    float {names[r]} = {c_float(b[r])};\n")
            for j in np.flatnonzero(w[r]):
                out.append(f"    {names[r]} = BPD_MAC({names[r]}, {c_float(w[r, j])}, {prev[j]});\n")
            out.append(_act_line(kind, names[r]))
        prev = names
    out.append("    /* action units and bounds */\n")
    for i in range(act_dim):
        lo, hi = c_float(net.action_low[i]), c_float(net.action_high[i])
        if net.output == "tanh":
            out.append(f"    y{i} = BPD_MAC({c_float(net.out_offset[i])}, {c_float(net.out_scale[i])}, "
                       f"tanh_approx(y{i}));\n")
        out.append(f"    action[{i}] = y{i} < {lo} ? {lo} : (y{i} > {hi} ? {hi} : y{i});\n")
    out.append("    return BPD_OK;\n}\n")
    return "".join(out)


def descriptor_sources(net: CollapsedNet, banner: str, kernel: str, prefix: str = "bpd",
                       scratch_floats: int = 0) -> tuple[str, str, str]:
    """policy_weights.c/.h and policy_config.h for a generated kernel: the model descriptor keeps the
    generic API (dims, bounds, safe action, hash) so every caller builds unchanged. scratch_floats: what
    the kernel needs of the caller's scratch (0: none)."""
    mh = model_hash(net)
    safe = np.clip(np.zeros(net.act_dim, np.float32), net.action_low, net.action_high)
    fl = lambda a: "{ " + ", ".join(c_float(float(v)) for v in a) + " }"
    c = [banner, '#include "policy_weights.h"\n',
         f"/* {kernel} kernel: the weights are compiled into policy.c; this descriptor carries the dims,\n"
         " * bounds and safe action for callers that read them. */\n"]
    for nm, arr in (("out_scale", net.out_scale), ("out_offset", net.out_offset), ("low", net.action_low),
                    ("high", net.action_high), ("safe", safe)):
        c.append(f"static const float {prefix}_{nm}[{net.act_dim}] = {fl(arr)};\n")
    c.append(model_descriptor(prefix, net.obs_dim, net.act_dim, max(scratch_floats // 2, 1), len(net.weights),
                              net.output))
    c.append(f"const char {prefix}_model_hash[] = \"{mh}\";\n")
    up = prefix.upper()
    h = [banner, f"#ifndef {up}_POLICY_WEIGHTS_H\n#define {up}_POLICY_WEIGHTS_H\n", "#include <stddef.h>\n",
         '#include "policy.h"\n', f"#define {up}_OBS_DIM {net.obs_dim}\n#define {up}_ACT_DIM {net.act_dim}\n",
         (f"/* the {kernel} kernel needs no scratch; one float keeps callers' arrays legal C */\n"
          f"#define {up}_SCRATCH_FLOATS 1\n" if not scratch_floats else
          f"/* two buffers of the widest layer */\n#define {up}_SCRATCH_FLOATS {scratch_floats}\n"),
         f"extern const bpd_model_t {prefix}_model;\nextern const char {prefix}_model_hash[];\n", "#endif\n"]
    cfg = [banner, "#ifndef BPD_POLICY_CONFIG_H\n#define BPD_POLICY_CONFIG_H\n",
           f"/* {kernel} kernel: no storage paths, the weights are code in policy.c */\n",
           "#define BPD_USE_DENSE 0\n#define BPD_USE_CSR8 0\n#define BPD_USE_CSR16 0\n#define BPD_USE_INT8 0\n#endif\n"]
    return "\n".join(c), "".join(h), "".join(cfg)


def banner_for(net: CollapsedNet, source_hash: str, command: str) -> str:
    return (f"/* generated - do not edit.\n * source sha256: {source_hash}\n * model hash: {model_hash(net)}\n"
            f" * regenerate with: {command}\n */\n")


def generate_kernel(net: CollapsedNet, out_dir: Path, source_hash: str, command: str,
                    form: TanhForm = LIBM) -> None:
    """Write the generated float kernel (policy.c), its descriptor files and policy.h into out_dir."""
    banner = banner_for(net, source_hash, command)
    wc, wh, cfg = descriptor_sources(net, banner, "generated")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "policy.c", kernel_source(net, form, banner))
    write_text(out_dir / "policy_weights.c", wc)
    write_text(out_dir / "policy_weights.h", wh)
    write_text(out_dir / "policy_config.h", cfg)
    shutil.copyfile(KERNEL_DIR / "policy.h", out_dir / "policy.h")


def select_tanh(net: CollapsedNet, out_dir: Path, source_hash: str, command: str, obs: np.ndarray,
                ref: np.ndarray, budget: float, work: Path, gen=generate_kernel,
                forms: list[TanhForm] | None = None) -> tuple[TanhForm, list[dict]]:
    """The cheapest tanh form (of forms, default every one) whose compiled kernel (gen: the generated or
    the compact one) stays within budget of ref on obs (measured, each candidate compiled on the host);
    libm tanhf when none does. Leaves that kernel in out_dir."""
    from export.c_export import CPolicy

    if not (net.activation == "tanh" or net.output == "tanh"):
        gen(net, out_dir, source_hash, command, LIBM)
        return LIBM, []
    tried = []
    for form in forms or tanh_forms():
        d = work / form.name
        gen(net, d, source_hash, command, form)
        err = float(np.abs(CPolicy(d, build_dir=work / "build").act(obs) - ref).max())
        tried.append({"tanh": form.name, "cost": form.cost, "tanh_max_abs_error": form.max_error(),
                      "c_vs_torch": err, "within_budget": err <= budget})
        if err <= budget:
            gen(net, out_dir, source_hash, command, form)
            return form, tried
    gen(net, out_dir, source_hash, command, LIBM)
    return LIBM, tried


def collapsed_from_export(export_dir: str | Path) -> CollapsedNet:
    """The collapsed network an export directory holds, read back from its policy.onnx and export.json
    (for exports whose source checkpoint is not at hand)."""
    import json

    import onnx
    from onnx import numpy_helper

    d = Path(export_dir)
    info = json.loads((d / "export.json").read_text())
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(d / "policy.onnx")).graph.initializer}
    n = len(info["widths"]) - 1
    off = init.get("in_offset")
    return CollapsedNet([init[f"W{i}"].astype(np.float32) for i in range(n)],
                        [init[f"B{i}"].astype(np.float32) for i in range(n)], info["activation"], info["output"],
                        np.asarray(info["action_low"], np.float32), np.asarray(info["action_high"], np.float32),
                        widths_before=list(info["widths"]), in_offset=None if off is None else off.astype(np.float32))
