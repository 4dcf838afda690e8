"""Generate policy_weights.c/.h for the C kernel, compile it on the host, and run it via ctypes.

Per layer the storage is dense, CSR with uint8 column indices (inputs <= 256) or CSR with uint16
indices, whichever costs fewer bytes (or as forced). Weights are float32, or int8 with one float
scale per row.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bpd.errors import BpdError
from bpd.io import write_text
from export.cc import OPT, STRICT, compile_to, find_cc
from export.collapse import CollapsedNet

KERNEL_DIR = Path(__file__).resolve().parent
KERNEL_FILES = ("policy.c", "policy.h")
GENERATED = ("policy_weights.c", "policy_weights.h", "policy_config.h")
STORAGE = {"dense": 0, "csr8": 1, "csr16": 2}
ACT = {"none": 0, "tanh": 1, "relu": 2}


@dataclass
class LayerPlan:
    rows: int
    cols: int
    nnz: int
    storage: str
    int8: bool
    value_bytes: int
    index_bytes: int
    bias_bytes: int
    scale_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.value_bytes + self.index_bytes + self.bias_bytes + self.scale_bytes


def layer_cost(w: np.ndarray, storage: str, int8: bool) -> LayerPlan:
    rows, cols = w.shape
    nnz = int(np.count_nonzero(w))
    vb = 1 if int8 else 4
    if storage == "dense":
        values, index = rows * cols * vb, 0
    else:
        values, index = nnz * vb, nnz * (1 if storage == "csr8" else 2) + (rows + 1) * 2
    return LayerPlan(rows, cols, nnz, storage, int8, values, index, rows * 4, rows * 4 if int8 else 0)


ROW_PTR_MAX = 65535  # CSR row starts are uint16 (policy.h)


def plan_layer(w: np.ndarray, fmt: str, int8: bool) -> LayerPlan:
    """Choose storage: fmt "auto" takes the cheapest; "dense" or "csr" force the kind. CSR holds at most
    ROW_PTR_MAX nonzeros per layer (its row pointer is uint16): auto falls back to dense beyond it, a
    forced CSR is refused."""
    csr = "csr8" if w.shape[1] <= 256 else "csr16"
    fits = np.count_nonzero(w) <= ROW_PTR_MAX
    if fmt == "csr" and not fits:
        raise BpdError(f"a {w.shape[0]}x{w.shape[1]} layer with {np.count_nonzero(w)} nonzero weights cannot be "
                       f"stored as CSR (at most {ROW_PTR_MAX}, the row pointer is 16-bit); use --format auto or dense")
    options = {"auto": ["dense", csr] if fits else ["dense"], "dense": ["dense"], "csr": [csr]}[fmt]
    return min((layer_cost(w, s, int8) for s in options), key=lambda p: (p.total_bytes, p.storage != "dense"))


def quantise_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: w ~= q * scale, scale = max|w_row| / 127."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def c_float(x: float) -> str:
    """A C float literal that reads back to exactly this float32 value."""
    s = f"{x:.9g}"
    if not any(ch in s for ch in ".e"):
        s += ".0"
    return s + "f"


def _floats(a: np.ndarray) -> str:
    return ", ".join(c_float(float(x)) for x in np.asarray(a, np.float32).ravel())


def _ints(a: np.ndarray) -> str:
    return ", ".join(str(int(x)) for x in np.asarray(a).ravel())


def _wrap(s: str, width: int = 100) -> str:
    out, line = [], "    "
    for tok in s.split(", "):
        if len(line) + len(tok) + 2 > width:
            out.append(line.rstrip())
            line = "    "
        line += tok + ", "
    out.append(line.rstrip().rstrip(","))
    return "\n".join(out)


def model_hash(net: CollapsedNet | SimpleNamespace) -> str:
    """Identity of the computed function: structure and every float32 parameter (of a collapsed
    network, or of the same fields read back from an ONNX file)."""
    h = hashlib.sha256()
    h.update(f"{net.activation}|{net.output}|{net.widths}".encode())
    if getattr(net, "in_offset", None) is not None:
        h.update(b"in_offset" + np.ascontiguousarray(net.in_offset, np.float32).tobytes())
    for w, b in zip(net.weights, net.biases):
        h.update(np.ascontiguousarray(w, np.float32).tobytes())
        h.update(np.ascontiguousarray(b, np.float32).tobytes())
    for a in (net.action_low, net.action_high):
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


def model_descriptor(prefix: str, in_dim: int, out_dim: int, max_width: int, n_layers: int, output: str,
                     layers: str = "NULL", in_offset: str = "NULL", arrays: str | None = None) -> str:
    """The C definition of `const bpd_model_t <prefix>_model` (policy.h), every field in order.
    arrays: the prefix of the out_scale/out_offset/low/high/safe arrays (default prefix)."""
    a = arrays or prefix
    kind = "BPD_OUT_TANH" if output == "tanh" else "BPD_OUT_CLIP"
    return (f"const bpd_model_t {prefix}_model = {{ {in_dim}, {out_dim}, {max_width}, {n_layers}, {kind}, {layers}, "
            f"{a}_out_scale, {a}_out_offset, {a}_low, {a}_high, {a}_safe, {in_offset} }};\n")


def scratch_width(net: CollapsedNet) -> int:
    """max_width of the model descriptor: scratch is two buffers of it, and with an input offset the
    centred observation takes one of them."""
    return max([w.shape[0] for w in net.weights] + ([net.obs_dim] if net.in_offset is not None else []))


def emit_layer(c: list[str], name: str, w: np.ndarray, b: np.ndarray, p: LayerPlan, act: int, int8: bool) -> str:
    """Append one layer's arrays (values or int8 values with row scales, CSR indices, bias) to c; returns
    its bpd_layer_t initialiser (policy.h)."""
    vals, scale = quantise_rows(w) if int8 else (w, None)
    if p.storage == "dense":
        flat = vals.ravel()
    else:
        rows_idx, cols_idx = np.nonzero(w)
        flat = vals[rows_idx, cols_idx]
        row_ptr = np.concatenate([[0], np.cumsum(np.count_nonzero(w, axis=1))]).astype(np.uint16)
        ctype = "uint8_t" if p.storage == "csr8" else "uint16_t"
        cols = _wrap(_ints(cols_idx)) if len(cols_idx) else "    0"  # C has no empty arrays
        c.append(f"static const {ctype} {name}_cols[{max(len(cols_idx), 1)}] = {{\n{cols}\n}};\n")
        c.append(f"static const uint16_t {name}_row_ptr[{len(row_ptr)}] = {{\n{_wrap(_ints(row_ptr))}\n}};\n")
    if scale is not None:
        q = _wrap(_ints(flat)) if len(flat) else "    0"
        c.append(f"static const int8_t {name}_q[{max(len(flat), 1)}] = {{\n{q}\n}};\n")
        c.append(f"static const float {name}_scale[{len(scale)}] = {{\n{_wrap(_floats(scale))}\n}};\n")
    else:
        v = _wrap(_floats(flat)) if len(flat) else "    0.0f"
        c.append(f"static const float {name}_w[{max(len(flat), 1)}] = {{\n{v}\n}};\n")
    c.append(f"static const float {name}_b[{len(b)}] = {{\n{_wrap(_floats(b))}\n}};\n")
    fields = [f"{p.rows}", f"{p.cols}", f"{STORAGE[p.storage]}", f"{act}",
              "NULL" if int8 else f"{name}_w", f"{name}_q" if int8 else "NULL", f"{name}_scale" if int8 else "NULL",
              f"{name}_cols" if p.storage == "csr8" else "NULL", f"{name}_cols" if p.storage == "csr16" else "NULL",
              "NULL" if p.storage == "dense" else f"{name}_row_ptr", f"{name}_b"]
    return "    { " + ", ".join(fields) + " }"


def generate_c(net: CollapsedNet, out_dir: Path, fmt: str, int8: bool, source_hash: str, command: str,
               prefix: str = "bpd") -> list[LayerPlan]:
    """Write policy_weights.c/.h and copy the kernel into out_dir; returns the per-layer plans."""
    plans = [plan_layer(w, fmt, int8) for w in net.weights]
    mh = model_hash(net)
    banner = (f"/* generated - do not edit.\n * source sha256: {source_hash}\n * model hash: {mh}\n"
              f" * regenerate with: {command}\n */\n")
    max_width = scratch_width(net)
    n = len(net.weights)
    safe = np.clip(np.zeros(net.act_dim, np.float32), net.action_low, net.action_high)
    c = [banner, '#include "policy_weights.h"\n']
    if net.in_offset is not None:
        c.append(f"static const float {prefix}_in_offset[{net.obs_dim}] = {{\n{_wrap(_floats(net.in_offset))}\n}};\n")
    layer_inits = [emit_layer(c, f"{prefix}_l{i}", w, b, p, ACT[net.activation] if i < n - 1 else ACT["none"], int8)
                   for i, (w, b, p) in enumerate(zip(net.weights, net.biases, plans))]
    for nm, arr in (("out_scale", net.out_scale), ("out_offset", net.out_offset), ("low", net.action_low),
                    ("high", net.action_high), ("safe", safe)):
        c.append(f"static const float {prefix}_{nm}[{net.act_dim}] = {{ {_floats(arr)} }};\n")
    c.append(f"static const bpd_layer_t {prefix}_layers[{n}] = {{\n" + ",\n".join(layer_inits) + "\n};\n")
    c.append(model_descriptor(prefix, net.obs_dim, net.act_dim, max_width, n, net.output, f"{prefix}_layers",
                              f"{prefix}_in_offset" if net.in_offset is not None else "NULL"))
    c.append(f"const char {prefix}_model_hash[] = \"{mh}\";\n")
    up = prefix.upper()
    h = [banner, f"#ifndef {up}_POLICY_WEIGHTS_H\n#define {up}_POLICY_WEIGHTS_H\n", '#include <stddef.h>\n',
         '#include "policy.h"\n', f"#define {up}_OBS_DIM {net.obs_dim}\n#define {up}_ACT_DIM {net.act_dim}\n",
         f"#define {up}_SCRATCH_FLOATS {2 * max_width}\n",
         f"extern const bpd_model_t {prefix}_model;\nextern const char {prefix}_model_hash[];\n", "#endif\n"]
    write_c_sources(out_dir, banner, c, h, {p.storage for p in plans}, int8)
    return plans


def write_c_sources(out_dir: Path, banner: str, weights_c: list[str], weights_h: list[str], storage: set[str],
                    int8: bool) -> None:
    """policy_weights.c/.h and policy_config.h (the storage paths the kernel compiles) beside a copy of
    the generic kernel."""
    config = [banner, "#ifndef BPD_POLICY_CONFIG_H\n#define BPD_POLICY_CONFIG_H\n",
              "/* storage paths this model uses: the kernel compiles only these */\n"]
    for flag, on in (("DENSE", "dense" in storage), ("CSR8", "csr8" in storage), ("CSR16", "csr16" in storage),
                     ("INT8", int8)):
        config.append(f"#define BPD_USE_{flag} {int(on)}\n")
    config.append("#endif\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "policy_config.h", "".join(config))
    write_text(out_dir / "policy_weights.c", "\n".join(weights_c))
    write_text(out_dir / "policy_weights.h", "\n".join(weights_h))
    for f in KERNEL_FILES:
        shutil.copyfile(KERNEL_DIR / f, out_dir / f)


def check_export_dir(d: str | Path) -> Path:
    """An export directory holding the kernel and the generated C files, or a one-line error."""
    d = Path(d)
    missing = [f for f in KERNEL_FILES + GENERATED if not (d / f).is_file()]
    if missing:
        raise BpdError(f"{d}: not a complete export directory (missing {', '.join(missing)}); "
                       "run `bpd export` to make one")
    return d


def compile_flags(fast_tanh: bool = False) -> list[str]:
    return STRICT + OPT + ["-fPIC", "-shared"] + (["-DBPD_FAST_TANH"] if fast_tanh else [])


def compile_shared(src_dir: Path, out: Path, fast_tanh: bool = False, cc: str | None = None) -> Path:
    """Compile the kernel and weights in src_dir into a shared library, warnings as errors."""
    flags = compile_flags(fast_tanh)
    srcs = [str(src_dir / "policy.c"), str(src_dir / "policy_weights.c")]
    return compile_to(out, [*flags, *srcs, "-lm"], "C compilation", cc)


class _Model(ctypes.Structure):
    """The leading fields of bpd_model_t (the rest is only read by C)."""

    _fields_ = [("in_dim", ctypes.c_uint16), ("out_dim", ctypes.c_uint16), ("max_width", ctypes.c_uint16)]


class CPolicy:
    """The exported C kernel, compiled on the host and called through ctypes."""

    def __init__(self, export_dir: str | Path, fast_tanh: bool = False, build_dir: Path | None = None,
                 prefix: str = "bpd") -> None:
        """prefix: the export's names (<prefix>_model, _policy_run, _model_hash); a classical export for
        hand-over mode is named bpd_classical."""
        from bpd.cache import Key, cache_dir, toolchain

        export_dir = check_export_dir(export_dir)
        digest = hashlib.sha256()
        for f in KERNEL_FILES + GENERATED:
            digest.update((export_dir / f).read_bytes())
        digest.update(str(fast_tanh).encode())
        build_dir = build_dir or export_dir / "build"
        lib = build_dir / f"libpolicy-{digest.hexdigest()[:12]}.so"
        shared = cache_dir("host-lib")  # the same sources, flags and toolchain: one library for every export
        if shared is not None and not lib.exists():
            cc, flags = find_cc(), compile_flags(fast_tanh)
            key = Key("host-lib").text(flags, toolchain(cc)).preprocessed(
                cc, [f for f in flags if f != "-shared"], [export_dir / "policy.c", export_dir / "policy_weights.c"]
            ).hexdigest()
            if key:
                lib = shared / f"libpolicy-{key[:24]}.so"
        if not lib.exists():
            compile_shared(export_dir, lib, fast_tanh)
        try:
            self.lib = ctypes.CDLL(str(lib))
        except OSError:  # a library cut short (the machine stopped while it was written, say): built again
            lib.unlink(missing_ok=True)
            compile_shared(export_dir, lib, fast_tanh)
            self.lib = ctypes.CDLL(str(lib))
        self.model = _Model.in_dll(self.lib, f"{prefix}_model")
        self.obs_dim, self.act_dim = self.model.in_dim, self.model.out_dim
        self._scratch = np.zeros(2 * self.model.max_width, np.float32)
        self._run = getattr(self.lib, f"{prefix}_policy_run")
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p] * 4  # addresses: a batch is a loop of integer offsets
        self._model_ptr = ctypes.addressof(self.model)
        self.model_hash = (ctypes.c_char * 65).in_dll(self.lib, f"{prefix}_model_hash").value.decode()

    def run(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        """One call of bpd_policy_run: (return code, action)."""
        x = np.ascontiguousarray(obs, np.float32).reshape(self.obs_dim)
        y = np.zeros(self.act_dim, np.float32)
        rc = self._run(self._model_ptr, x.ctypes.data, y.ctypes.data, self._scratch.ctypes.data)
        return rc, y

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 2:
            return self.run(obs)[1]
        x = np.ascontiguousarray(obs).reshape(len(obs), self.obs_dim)
        y = np.zeros((len(obs), self.act_dim), np.float32)
        run, model, scratch = self._run, self._model_ptr, self._scratch.ctypes.data
        xa, ya, xs, ys = x.ctypes.data, y.ctypes.data, x.strides[0], y.strides[0]
        for i in range(len(x)):
            run(model, xa + i * xs, ya + i * ys, scratch)
        return y
