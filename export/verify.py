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
# what a consumer reads from an export directory: the model and the C it compiles (any top-level C
# source or header is on the compiler's include path), every one of which export.json must list
USED = ("policy.onnx", "policy.c", "policy.h", "policy_weights.c", "policy_weights.h", "policy_config.h")
USED_SUFFIXES = (".onnx", ".c", ".h", ".s", ".S", ".inc")
PROBES = 96  # observations the C is run on against policy.onnx by every consumer


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


def verify_export(d: str | Path, handover: bool = False) -> dict:
    """Check an export directory before use and return its export.json record; a one-line BpdError
    names the first problem (not an export, no passed parity, a changed or missing file, a model hash
    that does not match the weights). handover: the export is the classical controller linked beside a
    policy for hand-over mode (`bpd classical export --handover`, its names prefixed), which is taken there
    alone, and only there."""
    d = Path(d)
    if d.is_file():  # a file of the export (its policy.onnx, its export.json) given for the directory
        raise BpdError(f"{d}: a file, not an export directory" + (f"; give the export it is in, {d.parent}" if (
            d.parent / "export.json").is_file() else ""))
    if not d.is_dir():
        raise BpdError(f"{d}: no export directory there")
    if not (d / "export.json").is_file():
        owner = next((e for e in d.resolve().parents[:2] if (e / "export.json").is_file()
                      and d.resolve().is_relative_to(e / "package")), None)
        if owner is not None:  # `cd OUT/package` then the command on `.`: the export is the folder above
            raise BpdError(f"{d}: the package of the export {owner} (`bpd export --package`), not an export; give "
                           f"the export directory, {owner}")
        raise BpdError(f"{d}: not an export directory (no export.json); run `bpd export` to make one")
    info = read_json(d / "export.json", "export record")
    named = info.get("prefix", "bpd") if isinstance(info, dict) and info.get("format") == "bpd-classical" else "bpd"
    if handover and named == "bpd":
        raise BpdError(f"{d}: not a hand-over controller (--classical takes `bpd classical export --handover`)")
    if named != "bpd" and not handover:
        raise BpdError(f"{d}: the classical controller exported for hand-over mode (its names {named}_*): it links "
                       "beside a policy (--classical); for it alone, `bpd classical export` without --handover")
    if isinstance(info, dict) and info.get("format") == "bpd-classical":
        return _verify_classical(d, info)
    if isinstance(info, dict) and (info.get("format") == "bpd-multitask-export"
                                   or ("format" not in info and isinstance(info.get("tasks"), dict))):
        raise BpdError(f"{d}: a multi-task export (`bpd multitask export`, one bpd_<task>_run per task); this "
                       "command takes one policy's export: compile its policy.c and policy_weights.c into your "
                       "firmware (export/README.md, Multi-task students)")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BpdError(f"{d / 'export.json'}: not a bpd export record")
    parity = info.get("parity")
    if not isinstance(parity, dict) or parity.get("pass") is not True:
        raise BpdError(f"{d}: the export records no passed parity check; run `bpd export` again")
    files = info.get("files")
    if not isinstance(files, dict) or "policy.onnx" not in files:
        raise BpdError(f"{d}: the export records no file hashes (made by an older bpd); run `bpd export` again")
    used = set(USED) | {p.name for p in d.iterdir() if p.is_file() and p.suffix in USED_SUFFIXES}
    # the package's src/ is what a build system compiles whole (PlatformIO and Arduino every file there): nothing
    # in it that the export did not write (its examples and their build folders may gain files)
    built = [p.relative_to(d).as_posix() for p in (d / "package" / "src").rglob("*") if p.is_file()]
    added = sorted(set(built) - set(files))
    if added:
        raise BpdError(f"{d}: {added[0]} is not the export's own: its package's src/ is built whole; remove it, or "
                       "copy the package out to change it")
    unlisted = sorted(used - set(files))
    if unlisted:
        raise BpdError(f"{d}: export.json's file list leaves out {', '.join(unlisted)}, which the export uses; "
                       "run `bpd export` again")
    _verify_files(d, files)
    try:
        recorded = info["model_hash"]  # the fields every consumer of an export reads
        list(info["action_low"]), list(info["action_high"]), int(info["obs_dim"]), int(info["act_dim"])
    except (KeyError, TypeError, ValueError):
        raise BpdError(f"{d / 'export.json'}: export record is missing fields") from None
    onnx_hash = verify_onnx(d / "policy.onnx")
    if onnx_hash != recorded:
        raise BpdError(f"{d}: policy.onnx is model {onnx_hash[:16]}, export.json names {str(recorded)[:16]}")
    verify_c(d, info)
    return info


def verify_c(d: Path, info: dict) -> None:
    """Tie the C to the model hash: compiled on the host (in a temporary directory), the C must name the
    recorded model hash and compute policy.onnx's function, within the export's own C tolerance, on
    PROBES observations drawn around the operating range the first layer implies. An edited weight
    whose file hash was re-signed fails here. The integer kernel's error against the float function
    is bounded only on the states it was calibrated on, so for it the model hash and sizes are checked
    and the function is left to its own parity (bit-exact against its numpy model at export)."""
    import tempfile

    from export.c_export import CPolicy
    from export.onnx_export import OnnxPolicy

    with tempfile.TemporaryDirectory(prefix="bpd-verify-") as tmp:
        c = CPolicy(d, build_dir=Path(tmp))
    if c.model_hash != info["model_hash"]:
        raise BpdError(f"{d}: the C names model {c.model_hash[:16]}, export.json {str(info['model_hash'])[:16]}; "
                       "run `bpd export` again")
    if (c.obs_dim, c.act_dim) != (int(info["obs_dim"]), int(info["act_dim"])):
        raise BpdError(f"{d}: the C maps {c.obs_dim} observations to {c.act_dim} actions, export.json "
                       f"{info['obs_dim']} to {info['act_dim']}")
    if info.get("kernel") == "integer":
        return
    parity = info["parity"]
    try:
        tol = float(parity.get("c_tolerance", parity["tolerance"]))
    except (KeyError, TypeError, ValueError):
        raise BpdError(f"{d / 'export.json'}: the parity record names no tolerance; run `bpd export` again") from None
    obs = probe_observations(d / "policy.onnx", c.obs_dim)
    err = float(np.abs(c.act(obs) - OnnxPolicy(d / "policy.onnx").act(obs)).max())
    if not err <= tol:
        raise BpdError(f"{d}: the C weights do not compute policy.onnx's function (max abs difference {err:.2e} "
                       f"over {len(obs)} observations, tolerance {tol:.1e}): the C was changed after export; "
                       "run `bpd export` again")


def probe_observations(onnx_path: Path, obs_dim: int, n: int = PROBES) -> np.ndarray:
    """Observations around the network's operating point: its input offset (the observation mean), each
    input spread by the scale its first-layer weights imply (normalisation is folded into them),
    at half, one and two of that scale. Seeded: the same probes for the same model."""
    import onnx
    import onnx.numpy_helper as nh

    inits = {t.name: nh.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    w0 = np.asarray(inits.get("W0", np.ones((1, obs_dim))), np.float64)
    offset = np.asarray(inits.get("in_offset", np.zeros(obs_dim)), np.float64).reshape(-1)
    reach = np.abs(w0).max(axis=0) if w0.shape[1] == obs_dim else np.ones(obs_dim)
    scale = np.where(reach > 0, 1.0 / (np.maximum(reach, 1e-12) * np.sqrt(obs_dim)), 1.0)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, obs_dim)) * np.repeat([0.5, 1.0, 2.0], -(-n // 3))[:n, None]
    return (offset + z * scale).astype(np.float32)


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
