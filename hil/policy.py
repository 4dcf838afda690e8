"""Host-side policies for trials: an ONNX file (onnxruntime) or an export directory (onnxruntime
on its policy.onnx by default, or the exported C kernel through ctypes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bpd.errors import BpdError


@dataclass
class HostPolicy:
    act: Callable[[np.ndarray], np.ndarray]
    obs_dim: int
    act_dim: int
    model_hash: str | None
    runtime: str
    source: str


def load_host_policy(path: str | Path, runtime: str = "onnxruntime") -> HostPolicy:
    from export.onnx_export import OnnxPolicy

    p = Path(path)
    if p.is_dir():
        if not (p / "export.json").is_file():
            raise BpdError(f"{p}: not an export directory (no export.json)")
        info = json.loads((p / "export.json").read_text())
        if runtime == "c":
            from export.c_export import CPolicy
            c = CPolicy(p)
            return HostPolicy(c.act, c.obs_dim, c.act_dim, info["model_hash"], "c", str(p))
        o = OnnxPolicy(p / "policy.onnx")
        return HostPolicy(o.act, info["obs_dim"], info["act_dim"], info["model_hash"], "onnxruntime", str(p))
    if p.suffix == ".onnx":
        if runtime == "c":
            raise BpdError("the C runtime needs an export directory, not an .onnx file")
        o = OnnxPolicy(p)
        return HostPolicy(o.act, int(o.meta.get("obs_dim", o.obs_dim)), int(o.meta.get("act_dim", 1)),
                          o.meta.get("model_hash"), "onnxruntime", str(p))
    raise BpdError(f"{p}: give an export directory or an .onnx file")
