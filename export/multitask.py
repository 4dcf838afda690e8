"""Export a multi-task student to C: one shared trunk in flash, one entry point per task.

A multi-task student (training/multitask.py) has, per task, an input layer and an output layer,
and between them hidden trunk layers every task shares. Each task's network is an ordinary MLP
[input_t, trunk..., output_t], so the C kernel (policy.c) runs it unchanged; the generated
policy_weights.c stores every trunk layer once and each task's layer table points at them.

    const bpd_model_t bpd_<task>_model;                   one per task
    int bpd_<task>_run(const float *obs, float *action, float *scratch);   BPD_<TASK>_OBS_DIM, ...

The observation normalisation folds into each task's input layer (mean and scale; `bpd export`
keeps the mean as an input offset instead, and the parity check below is against float64). Dead units
are not removed (a unit dead for one task may carry another). Parity: the compiled C against the
float64 forward of each task's network, on the task's dataset states or on random ones.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bpd.config import check_ranges, field
from bpd.errors import BpdError
from bpd.io import StagedDir, check_output_dir, write_json
from export.c_export import (
    ACT,
    _floats,
    compile_shared,
    emit_layer,
    model_descriptor,
    plan_layer,
    write_c_sources,
)
from export.collapse import fold_normalisation
from export.parity import tolerance as parity_tolerance

if TYPE_CHECKING:
    from training.multitask import MultiTask



def c_name(env_id: str) -> str:
    """A C identifier for a task: 'bpd/desktop-cartpole-v0' -> 'desktop_cartpole_v0'."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", env_id.split("/")[-1].split(":")[-1]).strip("_").lower()
    return s if s and not s[0].isdigit() else f"t_{s}"


@dataclass
class TaskNet:
    """One task's network on raw observations: y = W_L act(... act(W_0 x + b_0)); action = offset + scale tanh(y)."""

    name: str
    env_id: str
    weights: list[np.ndarray]   # [input_t, trunk..., output_t], normalisation folded into input_t
    biases: list[np.ndarray]
    action_low: np.ndarray
    action_high: np.ndarray

    def act(self, obs: np.ndarray, activation: str, dtype: type = np.float64) -> np.ndarray:
        """The forward pass in float64 (the parity reference) or, with dtype=np.float32, in the C's
        precision on the float32 weights the C holds (the rounding floor the tolerance allows for)."""
        h: np.ndarray = np.asarray(obs, dtype)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T.astype(dtype) + b.astype(dtype)
            if i < len(self.weights) - 1:
                h = np.tanh(h) if activation == "tanh" else np.maximum(h, dtype(0))
        low: np.ndarray = self.action_low.astype(dtype)
        high: np.ndarray = self.action_high.astype(dtype)
        return (high + low) / 2 + (high - low) / 2 * np.tanh(h)


def task_nets(mt: MultiTask) -> list[TaskNet]:
    """Per-task networks of a MultiTask model (training/multitask.py), normalisation folded in.
    Shared trunk arrays are the same numpy objects in every task's list."""
    out = []
    for t in mt.tasks:
        w0, b0 = fold_normalisation(t.w_in, t.b_in, t.obs_mean.astype(np.float64), t.obs_std.astype(np.float64))
        out.append(TaskNet(c_name(t.env_id), t.env_id, [w0, *mt.trunk_w, t.w_out], [b0, *mt.trunk_b, t.b_out],
                           t.action_low, t.action_high))
    return out


def generate_multitask_c(nets: list[TaskNet], activation: str, trunk_w: list[np.ndarray], trunk_b: list[np.ndarray],
                         out_dir: Path, banner: str, fmt: str = "auto") -> dict:
    """Write policy_weights.c/.h, policy_config.h and the kernel; returns per-array byte counts."""
    names = [n.name for n in nets]
    if len(set(names)) != len(names):
        raise BpdError(f"two tasks share the C name {names}")
    c = [banner, '#include "policy_weights.h"\n']
    used: set[str] = set()
    weight_bytes = 0

    def emit(name: str, w: np.ndarray, b: np.ndarray, act: int) -> str:
        nonlocal weight_bytes
        p = plan_layer(w, fmt, False)
        used.add(p.storage)
        weight_bytes += p.total_bytes
        return emit_layer(c, name, w, b, p, act, False).strip()

    act = ACT[activation]
    trunk_inits = [emit(f"bpd_trunk{j}", w, b, act) for j, (w, b) in enumerate(zip(trunk_w, trunk_b))]
    h = [banner, "#ifndef BPD_MULTITASK_WEIGHTS_H\n#define BPD_MULTITASK_WEIGHTS_H\n", "#include <stddef.h>\n",
         '#include "policy.h"\n']
    for n in nets:
        p = f"bpd_{n.name}"
        first = emit(f"{p}_in", n.weights[0], n.biases[0], act)
        last = emit(f"{p}_out", n.weights[-1], n.biases[-1], ACT["none"])
        layers = [first, *trunk_inits, last]
        ad = n.weights[-1].shape[0]
        safe = np.clip(np.zeros(ad, np.float32), n.action_low, n.action_high)
        for nm, arr in (("out_scale", (n.action_high - n.action_low) / 2),
                        ("out_offset", (n.action_high + n.action_low) / 2),
                        ("low", n.action_low), ("high", n.action_high), ("safe", safe)):
            c.append(f"static const float {p}_{nm}[{ad}] = {{ {_floats(arr)} }};\n")
        c.append(f"static const bpd_layer_t {p}_layers[{len(layers)}] = {{\n    " + ",\n    ".join(layers) + "\n};\n")
        mw = max(w.shape[0] for w in n.weights)
        c.append(model_descriptor(p, n.weights[0].shape[1], ad, mw, len(layers), "tanh", f"{p}_layers"))
        c.append(f"int {p}_run(const float *obs, float *action, float *scratch)\n{{\n"
                 f"    return bpd_policy_run(&{p}_model, obs, action, scratch);\n}}\n")
        up = p.upper()
        h.append(f"#define {up}_OBS_DIM {n.weights[0].shape[1]}\n#define {up}_ACT_DIM {ad}\n"
                 f"#define {up}_SCRATCH_FLOATS {2 * mw}\nextern const bpd_model_t {p}_model;\n"
                 f"int {p}_run(const float *obs, float *action, float *scratch);\n")
    h.append("#endif\n")
    write_c_sources(out_dir, banner, c, h, used, False)
    return {"weights_flash_bytes": weight_bytes}


class MultiTaskC:
    """The compiled multi-task C policy: one callable per task."""

    def __init__(self, export_dir: Path, tasks: list[str], obs_dims: list[int], act_dims: list[int]) -> None:
        digest = hashlib.sha256()
        for f in ("policy.c", "policy.h", "policy_weights.c", "policy_weights.h", "policy_config.h"):
            digest.update((export_dir / f).read_bytes())
        lib = export_dir / "build" / f"libmultitask-{digest.hexdigest()[:12]}.so"
        if not lib.exists():
            compile_shared(export_dir, lib)
        self.lib = ctypes.CDLL(str(lib))
        self.fns, self.dims = {}, {}
        fp = ctypes.POINTER(ctypes.c_float)
        for t, od, ad in zip(tasks, obs_dims, act_dims):
            fn = getattr(self.lib, f"bpd_{t}_run")
            fn.restype, fn.argtypes = ctypes.c_int, [fp, fp, fp]
            self.fns[t], self.dims[t] = fn, (od, ad)

    def run(self, task: str, obs: np.ndarray) -> tuple[int, np.ndarray]:
        od, ad = self.dims[task]
        x = np.ascontiguousarray(obs, np.float32).reshape(od)
        y = np.zeros(ad, np.float32)
        scratch = np.zeros(1024, np.float32)
        fp = ctypes.POINTER(ctypes.c_float)
        rc = self.fns[task](x.ctypes.data_as(fp), y.ctypes.data_as(fp), scratch.ctypes.data_as(fp))
        return rc, y

FORMAT = "bpd-multitask-export"  # export.json's format: verify_export tells it from a single policy's


@dataclass
class MultiTaskExportConfig:
    source: str = field(help="multi-task student file (multitask.npz) or its run directory", positional=True)
    out: str = field("export-multitask", help="export directory")
    format: str = field("auto", help="per-layer weight storage", choices=("auto", "dense", "csr"))
    parity_samples: int = field(2000, help="observations per task in the parity check")
    seed: int = field(0, help="seed of the random parity states")


def run_multitask_export(cfg: MultiTaskExportConfig) -> dict:
    """Generate the C, compile it on the host, and check every task's entry point against float64."""
    from training.multitask import load_multitask

    check_ranges(cfg, {"parity_samples": (1, 1_000_000), "seed": (0, 2**31 - 1)})
    src = Path(cfg.source)
    if src.is_dir() and not (src / "multitask.npz").is_file() and (src / "student.pt").is_file():
        raise BpdError(f"{src}: a single-task run (student.pt, no multitask.npz): export it with bpd export {src}")
    if src.is_dir():
        src = src / "multitask.npz"
    out = Path(cfg.out)
    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "export.json").is_file():
        raise BpdError(f"{out}: is not an export directory (and not empty); choose another --out")
    mt = load_multitask(src)
    # built beside --out and swapped in only once parity passed: a failed export leaves any previous one
    with StagedDir(out) as stage:
        report = _write_multitask_export(cfg, mt, stage.path)
        stage.commit()
    return report


def _write_multitask_export(cfg: MultiTaskExportConfig, mt: MultiTask, out: Path) -> dict:
    nets = task_nets(mt)
    banner = f"/* generated - do not edit.\n * source: multi-task student, {len(nets)} tasks\n */\n"
    sizes = generate_multitask_c(nets, mt.activation, mt.trunk_w, mt.trunk_b, out, banner, cfg.format)
    cpol = MultiTaskC(out, [n.name for n in nets], [n.weights[0].shape[1] for n in nets],
                      [n.weights[-1].shape[0] for n in nets])
    rng = np.random.default_rng(cfg.seed)
    parity = {}
    for n, t in zip(nets, mt.tasks):
        obs = (t.obs_mean + t.obs_std * rng.standard_normal((cfg.parity_samples, len(t.obs_mean)))).astype(np.float32)
        ref = n.act(obs, mt.activation)
        floor = float(np.abs(n.act(obs, mt.activation, np.float32) - ref).max())
        tol = parity_tolerance(n.action_low, n.action_high, floor)
        got = np.stack([cpol.run(n.name, o)[1] for o in obs])
        err = float(np.abs(got - ref).max())
        parity[n.name] = {"env_id": n.env_id, "max_abs_error": err, "samples": cfg.parity_samples,
                          "float32_vs_float64": floor, "tolerance": tol, "ok": err <= tol,
                          "entry_point": f"bpd_{n.name}_run"}
    report = {"format": FORMAT, "tasks": parity, "params_nonzero": mt.params_nonzero, "activation": mt.activation,
              # the widths --trunk gave: the task input layers' outputs, then every shared layer's
              "trunk_widths": [int(mt.tasks[0].w_in.shape[0]), *(int(w.shape[0]) for w in mt.trunk_w)],
              "reference": "float64"} | sizes
    write_json(out / "export.json", report)
    bad = [f"{k} ({v['max_abs_error']:.2e} > {v['tolerance']:.2e})" for k, v in parity.items() if not v["ok"]]
    if bad:
        raise BpdError(f"C parity failed for {', '.join(bad)}")
    return report
