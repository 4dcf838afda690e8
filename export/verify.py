"""The check every consumer of an export runs before using it.

An export directory is trusted only when its export.json records a passed parity check, every file
the export wrote still has the sha256 recorded in export.json's file manifest, and the model hash
recomputed from the weights in policy.onnx equals the recorded one. Evaluation, firmware builds,
the simulated rig, trials and benchmarks all call `verify_export` first, so an edited weight, a
half-written directory or an export whose parity never passed never reaches a device.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from bpd.errors import BpdError
from bpd.io import read_json, sha256_file

if TYPE_CHECKING:
    import onnx

FORMAT = "bpd-export"
MANIFEST_SKIP = ("export.json",)  # the record itself; build/ directories hold compiler output


def manifest(d: str | Path) -> dict[str, str]:
    """sha256 of every file under an export directory, by relative path (build outputs excluded)."""
    d = Path(d)
    files = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if not p.is_file() or rel.as_posix() in MANIFEST_SKIP or any(part.startswith("build") for part in rel.parts):
            continue
        files[rel.as_posix()] = sha256_file(p)
    return files


def onnx_model_hash(model: onnx.ModelProto, action_low: list[float], action_high: list[float]) -> str:
    """The model hash of the network held by an exported ONNX graph, computed from its weights."""
    import onnx.numpy_helper as nh

    from export.c_export import model_hash

    inits = {t.name: nh.to_array(t) for t in model.graph.initializer}
    n = sum(1 for k in inits if k[:1] == "W" and k[1:].isdigit())
    try:
        weights = [inits[f"W{i}"] for i in range(n)]
        biases = [inits[f"B{i}"] for i in range(n)]
    except KeyError as e:
        raise BpdError(f"the ONNX graph has no initializer {e}") from None
    ops = {node.name: node.op_type for node in model.graph.node}
    activation = {"Tanh": "tanh", "Relu": "relu"}.get(ops.get("act0", "Tanh"), "?")
    net = SimpleNamespace(activation=activation, output="tanh" if "squash" in ops else "clip",
                          widths=[int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights] if n else [],
                          weights=weights, biases=biases, in_offset=inits.get("in_offset"),
                          action_low=np.asarray(action_low, np.float32),
                          action_high=np.asarray(action_high, np.float32))
    return model_hash(net)


def verify_onnx(path: str | Path) -> str:
    """Check that an .onnx file's weights are the ones its recorded model hash names; returns the hash."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        low, high = json.loads(meta["action_low"]), json.loads(meta["action_high"])
        recorded = meta["model_hash"]
    except FileNotFoundError:
        raise BpdError(f"{path}: no such file") from None
    except (KeyError, ValueError, TypeError):
        raise BpdError(f"{path}: not a bpd ONNX export (no model hash or action bounds recorded)") from None
    except Exception as e:  # onnx raises its own decode errors for corrupt files
        raise BpdError(f"{path}: not a loadable ONNX model ({e.__class__.__name__})") from None
    import onnx.numpy_helper as nh

    for t in model.graph.initializer:
        if not np.isfinite(nh.to_array(t)).all():
            raise BpdError(f"{path}: initializer {t.name} holds NaN or Inf")
    if onnx_model_hash(model, low, high) != recorded:
        raise BpdError(f"{path}: the weights do not match the model hash recorded with them (edited after export?)")
    return recorded


def verify_export(d: str | Path) -> dict:
    """Check an export directory before use and return its export.json record; a one-line BpdError
    names the first problem (not an export, no passed parity, a changed or missing file, a model hash
    that does not match the weights)."""
    d = Path(d)
    if not d.is_dir():
        raise BpdError(f"{d}: no export directory there")
    if not (d / "export.json").is_file():
        raise BpdError(f"{d}: not an export directory (no export.json); run `bpd export` to make one")
    info = read_json(d / "export.json", "export record")
    if isinstance(info, dict) and info.get("format") == "bpd-classical":
        return _verify_classical(d, info)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BpdError(f"{d / 'export.json'}: not a bpd export record")
    parity = info.get("parity")
    if not isinstance(parity, dict) or parity.get("pass") is not True:
        raise BpdError(f"{d}: the export records no passed parity check; run `bpd export` again")
    files = info.get("files")
    if not isinstance(files, dict) or "policy.onnx" not in files:
        raise BpdError(f"{d}: the export records no file hashes (made by an older bpd); run `bpd export` again")
    _verify_files(d, files)
    try:
        recorded = info["model_hash"]  # the fields every consumer of an export reads
        list(info["action_low"]), list(info["action_high"]), int(info["obs_dim"]), int(info["act_dim"])
    except (KeyError, TypeError, ValueError):
        raise BpdError(f"{d / 'export.json'}: export record is missing fields") from None
    onnx_hash = verify_onnx(d / "policy.onnx")
    if onnx_hash != recorded:
        raise BpdError(f"{d}: policy.onnx is model {onnx_hash[:16]}, export.json names {str(recorded)[:16]}")
    return info


def _verify_files(d: Path, files: object) -> None:
    if not isinstance(files, dict) or not files:
        raise BpdError(f"{d}: the export records no file hashes (made by an older bpd); run the export again")
    for rel, digest in files.items():
        p = d / rel
        if not p.is_file():
            raise BpdError(f"{d}: {rel} is missing; run `bpd export` again")
        if sha256_file(p) != digest:
            raise BpdError(f"{p}: changed after export (sha256 differs from export.json); run `bpd export` again")


def _verify_classical(d: Path, info: dict) -> dict:
    """A classical controller's export: passed C-vs-Python parity, unchanged files, and a model hash
    that is the hash of its C source and design parameters."""
    import hashlib
    import json

    parity = info.get("parity")
    if not isinstance(parity, dict) or parity.get("pass") is not True:
        raise BpdError(f"{d}: the export records no passed parity check; run `bpd classical export` again")
    _verify_files(d, info.get("files"))
    try:
        text = (d / "policy.c").read_text() + json.dumps(info["design"], sort_keys=True)
    except (OSError, KeyError):
        raise BpdError(f"{d}: classical export is missing policy.c or its design") from None
    if hashlib.sha256(text.encode()).hexdigest() != info.get("model_hash"):
        raise BpdError(f"{d}: the controller does not match the model hash recorded with it (edited after export?)")
    return info
