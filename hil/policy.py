"""Host-side policies for trials: an ONNX file (onnxruntime) or an export directory (onnxruntime
on its policy.onnx by default, or the exported C kernel through ctypes; a classical controller's
export, `bpd classical export`, has only its C)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    env_id: str | None = None  # the environment the policy was trained on, where its export records one


def load_host_policy(path: str | Path, runtime: str = "onnxruntime") -> HostPolicy:
    """The policy of an export directory (or its policy.onnx), verified before use: an export without a
    passed parity check, or whose files differ from those it recorded, never drives a rig."""
    from export.onnx_export import OnnxPolicy
    from export.verify import verify_export

    p = Path(path)
    if p.suffix == ".onnx" and p.is_file():
        if runtime == "c":
            raise BpdError("the C runtime needs an export directory, not an .onnx file")
        if p.name != "policy.onnx" or not (p.parent / "export.json").is_file():
            raise BpdError(f"{p}: an .onnx file outside its export directory has no parity record; "
                           "give the export directory")
        p = p.parent
    if not p.is_dir():
        raise BpdError(f"{p}: give an export directory or its policy.onnx")
    info = verify_export(p)
    if runtime == "c" or info.get("format") == "bpd-classical":  # a classical export is C only: no policy.onnx
        from export.c_export import CPolicy
        c = CPolicy(p)
        return HostPolicy(c.act, c.obs_dim, c.act_dim, info["model_hash"], "c", str(p), info.get("env_id"))
    o = OnnxPolicy(p / "policy.onnx")
    return HostPolicy(o.act, int(info["obs_dim"]), int(info["act_dim"]), info["model_hash"], "onnxruntime", str(p),
                      info.get("env_id"))
