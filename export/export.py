"""`bpd export`: a student (or teacher) to ONNX, C weights and the C kernel, with parity proven.

An export directory holds:
  policy.onnx            float32, input obs [batch, obs_dim], output action [batch, act_dim]
  policy_weights.c/.h    generated const arrays (banner names the source hash and the command)
  policy.c/.h            the hand-written C99 kernel
  export.json            what the export is: env id, dims, bounds, hashes, widths, the command
  export_report.json     per-layer storage, flash/RAM/MAC totals, the dense teacher's, parity, returns
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bpd
from bpd.config import check_ranges
from bpd.errors import BpdError
from bpd.io import StagedDir, check_output_dir, path_for_record, path_from_record, read_json, sha256_file, write_json
from export.c_export import CPolicy, LayerPlan, generate_c, layer_cost, model_hash, scratch_width
from export.collapse import CollapsedNet, collapse
from export.export_config import ExportConfig
from export.kernels import LEVEL, KernelMeter, off_host
from export.onnx_export import (
    OnnxPolicy,
    build_onnx,
    reference_evaluator_run,
    save_onnx,
)
from export.package import CHOICES as PACKAGE_CHOICES
from export.parity import PARITY_TOL
from export.parity import failure as parity_failure
from export.parity import tolerance as parity_tolerance
from export.selftest import selftest_banner, selftest_for_kernel
from export.verify import manifest, verify_export
from training.mlp import MLPPolicy


@dataclass
class Source:
    policy: MLPPolicy
    torch_forward: Callable[[torch.Tensor], torch.Tensor]
    env_id: str
    sha256: str
    path: Path
    kind: str
    threshold: float | None
    dataset: str | None
    teacher: str | None


def load_source(path: str | Path, each_call: bool = False) -> Source:
    """A student (run directory or .pt) or teacher (.npz) as the export reads it. each_call: a student's torch
    forward is its module's own, the masks computed at every call (what `bpd bench` times as torch's cost)."""
    from training.student import load_student
    from training.teacher import is_sb3_zip, load_teacher

    p = Path(path)
    exp = p if p.is_dir() else p.parent
    if (p.suffix == ".onnx" and not p.is_dir()) or (p / "export.json").is_file():  # an export's model or directory
        rec = read_json(exp / "export.json", "export record") if (exp / "export.json").is_file() else None
        came = f", {path_from_record(rec['source'], exp)}" if isinstance(rec, dict) and isinstance(
            rec.get("source"), str) else " (a run directory or student.pt) or a teacher .npz"
        raise BpdError(f"{path}: {'an export directory' if p.is_dir() else 'an ONNX model'}, not what bpd export "
                       f"reads: give the student it came from{came}")
    if (p / "multitask.npz").is_file() and not (p / "student.pt").is_file():
        raise BpdError(f"{path}: a multi-task run (multitask.npz): export it with bpd multitask export {path}")
    if p.is_dir():
        from training.checkpoint import check_finished
        check_finished(p)
        p = p / "student.pt"
    if not p.is_file():
        raise BpdError(f"{path}: no student or teacher file there")
    if p.suffix == ".npz" or is_sb3_zip(p):  # a stable-baselines3 zip: load_teacher names the import it needs
        t = load_teacher(p)
        if t.mean_clip is not None:  # the exported kernels have no clip between the last layer and the output
            raise BpdError(f"{p}: the teacher clips its mean to +-{t.mean_clip:g} before the {t.output} (SAC trained "
                           "with gSDE), which bpd's exported kernels do not hold; export a student distilled from it")
        mlp = MLPPolicy(t.weights, t.biases, t.activation, t.output, t.obs_mean, t.obs_std, t.action_low,
                        t.action_high)
        return Source(mlp, _torch_mlp(mlp), t.env_id, sha256_file(p), p, "teacher", None, None, str(p))
    student, meta, stats = load_student(p)
    run_cfg, run_dir = student_run(p, meta)
    keys = ("obs_mean", "obs_std", "action_low", "action_high")
    mlp = student.collapse(**{k: stats[k] for k in keys})
    mean, std, low, high = (torch.as_tensor(stats[k]) for k in keys)
    # the student's function in each precision, its weights as the masks leave them taken once (a rollout calls it a
    # step at a time); `bench` times the module's own forward instead, as torch runs it (each_call)
    copies: dict[torch.dtype, Callable[[torch.Tensor], torch.Tensor]] = {
        torch.float32: student.float() if each_call else student.float().frozen_forward()}

    def forward(obs: torch.Tensor) -> torch.Tensor:
        """In the observation's precision: float64 gives the exact function of the stored weights."""
        if obs.dtype not in copies:
            copy_ = copy.deepcopy(student).to(obs.dtype)
            copies[obs.dtype] = copy_ if each_call else copy_.frozen_forward()
        m, s, lo, hi = (a.to(obs.dtype) for a in (mean, std, low, high))
        return lo + (copies[obs.dtype]((obs - m) / s) + 1) * 0.5 * (hi - lo)

    return Source(mlp, forward, meta["env_id"], sha256_file(p), p, "student", meta["threshold"],
                  recorded_input(run_cfg.get("dataset"), run_dir), recorded_input(run_cfg.get("teacher"), run_dir))


def student_run(p: Path, meta: dict) -> tuple[dict, Path]:
    """The configuration and directory of the run a student file (p, its record meta) was distilled in: the file's
    own directory (student.pt, or the file `bpd student select` wrote in the run), else the run `student select`
    recorded writing it elsewhere, else for `bpd compress`'s hand-over (OUT/student.pt) the chosen method's run
    (OUT/METHOD, compress.json's choice). The run's dataset and teacher calibrate the integer kernel, draw the parity
    states and give the teacher's figures: only where the student was distilled from them (the content hashes of the
    run and the student record agree; a student copied into another run's directory is not that run's).
    ({}, p.parent): no such run."""
    recorded = (meta.get("selection") or {}).get("run")
    dirs = [p.parent] + ([path_from_record(recorded, p.parent)] if isinstance(recorded, str) and recorded else [])
    if (p.parent / "compress.json").is_file():
        chosen = read_json(p.parent / "compress.json", "bpd compress record")
        if isinstance(chosen, dict) and isinstance(chosen.get("chosen"), str) and "/" not in chosen["chosen"]:
            dirs.append(p.parent / chosen["chosen"])
    for d in dirs:
        if not (d / "config.json").is_file():
            continue
        run_cfg = read_json(d / "config.json", "run configuration")
        if not isinstance(run_cfg, dict):
            raise BpdError(f"{d / 'config.json'}: corrupt run configuration")
        if not any(run_cfg.get(h) and meta.get(h) and run_cfg[h] != meta[h]
                   for h in ("teacher_sha256", "dataset_sha256")):
            return run_cfg, d
    return {}, p.parent


def recorded_input(path: str | None, run_dir: Path) -> str | None:
    """A run's recorded teacher or dataset: a file path as distill was given it (tried beside the run first,
    then from the working directory), or a Minari dataset's name as it is."""
    if not path or path.startswith("minari:"):
        return path
    return str(path_from_record(path, run_dir))


def _torch_mlp(m: MLPPolicy):
    ws = [torch.as_tensor(w) for w in m.weights]
    bs = [torch.as_tensor(b) for b in m.biases]
    mean, std, low, high = (torch.as_tensor(a) for a in (m.obs_mean, m.obs_std, m.action_low, m.action_high))

    def forward(obs: torch.Tensor) -> torch.Tensor:
        """In the observation's precision, like the student's forward."""
        t = obs.dtype
        h = (obs - mean.to(t)) / std.to(t)
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = torch.nn.functional.linear(h, w.to(t), b.to(t))
            if i < len(ws) - 1:
                h = torch.tanh(h) if m.activation == "tanh" else torch.relu(h)
        if m.output == "tanh":
            return low.to(t) + (torch.tanh(h) + 1) * 0.5 * (high - low).to(t)
        return torch.maximum(torch.minimum(h, high.to(t)), low.to(t))

    return forward


def parity_states(src: Source, dataset: str | None, n: int, seed: int) -> tuple[np.ndarray, str]:
    """Dataset states plus uniform random states within the observed bounds: n in all. The dataset (which calibrates
    the integer kernel too) is of the policy's environment, or the one its run distilled or its teacher collected."""
    from training.collect import dataset_exists, dataset_hash, load_dataset
    from training.envs import env_key

    rng = np.random.default_rng(seed)
    obs_dim = src.policy.obs_dim
    if dataset and dataset_exists(dataset):  # a .npz or a Minari dataset (training/minari_io.py)
        ds = load_dataset(dataset)
        env = str(ds.meta.get("env_id") or "")
        if ds.meta.get("obs_dim") != obs_dim:
            raise BpdError(f"{dataset}: observations have {ds.meta.get('obs_dim')} dimensions, the {src.kind} takes "
                           f"{obs_dim}; give --dataset one of {src.env_id}")
        # the policy's teacher: itself, or the teacher its run distilled from (a dataset that teacher collected)
        taught = {src.sha256} | ({sha256_file(src.teacher)} if src.teacher and Path(src.teacher).is_file() else set())
        if env and env_key(env) != env_key(src.env_id) and dataset != src.dataset \
                and ds.meta.get("teacher_sha256") not in taught \
                and not (dataset_exists(src.dataset) and dataset_hash(dataset) == dataset_hash(str(src.dataset))):
            raise BpdError(f"{dataset}: a dataset of {env}, but the {src.kind} is of {src.env_id}; give --dataset "
                           f"one of {src.env_id} (the parity states and the integer kernel's calibration)")
        take = ds.observations[rng.choice(len(ds), size=min(n // 2, len(ds)), replace=False)]
        lo, hi = ds.observations.min(0), ds.observations.max(0)
        origin = f"{len(take)} dataset states + {n - len(take)} uniform within the dataset's bounds"
    else:
        take = np.zeros((0, obs_dim), np.float32)
        lo = src.policy.obs_mean - 3 * src.policy.obs_std
        hi = src.policy.obs_mean + 3 * src.policy.obs_std
        origin = f"{n} uniform within mean +- 3 std (no dataset found)"
    rand = rng.uniform(lo, hi, size=(n - len(take), obs_dim))
    return np.concatenate([take, rand]).astype(np.float32), origin


def dense_figures(net: CollapsedNet) -> dict:
    """Flash, activation RAM and MACs of the network stored densely in float32, counted by totals as the student
    is (its output's constants and input offset too): the figures of `bpd bench`'s dense export of the teacher, so
    that the student's share of them compares like with like."""
    tot = totals(net, [layer_cost(w, "dense", False) for w in net.weights])
    return {"widths": net.widths, **{k: tot[k] for k in ("flash_bytes", "ram_activation_bytes", "macs")},
            "params": sum(w.size + b.size for w, b in zip(net.weights, net.biases))}


def layer_table(net: CollapsedNet, plans: list[LayerPlan]) -> list[dict]:
    before = net.widths_before
    return [{"layer": i, "shape_before": [before[i + 1], before[i]], "shape_after": [p.rows, p.cols], "nnz": p.nnz,
             "storage": p.storage, "int8": p.int8, "value_bytes": p.value_bytes, "index_bytes": p.index_bytes,
             "bias_bytes": p.bias_bytes, "scale_bytes": p.scale_bytes, "total_bytes": p.total_bytes}
            for i, p in enumerate(plans)]


def totals(net: CollapsedNet, plans: list[LayerPlan]) -> dict:
    """Flash and activation RAM as generate_c lays them out: the input offset is obs_dim floats of flash,
    and the centred observation takes one of the two scratch buffers."""
    out_bytes = 4 * net.act_dim * 5  # out_scale, out_offset, low, high, safe action
    offset = net.in_offset is not None
    return {"flash_bytes": sum(p.total_bytes for p in plans) + out_bytes + (4 * net.obs_dim if offset else 0),
            "ram_activation_bytes": 4 * 2 * scratch_width(net),
            "macs": sum(p.nnz if p.storage != "dense" else p.rows * p.cols for p in plans),
            "nonzero_weights": sum(p.nnz for p in plans), "params_nonzero": net.params_nonzero}


def _check_config(cfg: ExportConfig) -> None:
    check_ranges(cfg, {"parity_samples": (1, 10_000_000), "episodes": (0, 100_000), "seed": (0, 2**31 - 1),
                       "flash_budget": (1, 2**31 - 1), "int_budget": (0.0, 1.0),
                       "int_flash_ratio": (0.0, 1000.0)})
    if cfg.package not in PACKAGE_CHOICES:
        raise BpdError(f"--package {cfg.package!r}: choose one of {', '.join(PACKAGE_CHOICES)}")
    if cfg.package_url and cfg.package == "none":
        raise BpdError("--package-url names the web page of the library --package writes: give --package too")
    if cfg.package_name != "bpd" and cfg.package == "none":
        raise BpdError("--package-name names the library --package writes: give --package too")
    from export.package import check_name, check_url

    check_name(cfg.package_name)
    check_url(cfg.package_url)
    from training.collect import require_dataset

    if cfg.dataset is not None:
        require_dataset(cfg.dataset)
    if cfg.teacher is not None and not Path(cfg.teacher).is_file():
        raise BpdError(f"{cfg.teacher}: no such file (--teacher)")


def run_export(cfg: ExportConfig, meter: KernelMeter | None = None) -> dict:
    """Export into a staging directory beside --out and swap it in only once parity passed and the
    staged export verifies: a failed export leaves any previous one byte for byte, and nothing else.
    meter: measures a kernel on a Cortex-M core for `--kernel auto` (the firmware room's; None ships
    auto's fallback), and the kernel a --kernel forces, for its report."""
    _check_config(cfg)
    out = Path(cfg.out)
    check_output_dir(out, "export.json", "an export directory")  # new, empty or a previous export (replaced whole)
    with StagedDir(out) as stage:
        report = _write_export(cfg, stage.path, meter)
        verify_export(stage.path)
        stage.commit()
    return report


def _integer_candidate(cfg: ExportConfig, src: Source, net: CollapsedNet, d: Path, sha: str, command: str,
                       obs: np.ndarray, ref: np.ndarray, lookup: bool = True) -> dict:
    """The integer kernel (tanh by lookup, or interpolated) built in d; its report entry (the error against
    the float student as a share of the action range: `max_error_vs_action_range`)."""
    from export.integer import integer_kernel

    entry, _ = integer_kernel(net, d, sha, command + " (int)", obs, ref, cfg.dataset or src.dataset, lookup=lookup)
    entry["dir"] = f"build/kernels/{d.name}"
    entry["int_budget"] = cfg.int_budget
    return entry


# The closed-loop check choosing the kernel runs its episodes from this seed on (plus --seed; at most
# CHECK_BATCHES x --episodes of them): a choice, so off the reporting seeds (0 .. 99_999, training/envs.py) and
# the export's own `returns` (--seed + 5000 on)
KERNEL_CHOICE_SEED = 300_000


def _keeps_return(cfg: ExportConfig, src: Source, d_int: Path, d_float: Path) -> tuple[bool, str]:
    """Whether the integer kernel in d_int keeps KEEP_RETURN of the float kernel's closed-loop return (d_float):
    export.kernels.return_check over batches of the export's episodes, both kernels from the same starts
    (seeds of their own: the export then reports the kernel it chose on other seeds), and the figures as a
    sentence."""
    from export.kernels import CHECK_BATCHES, return_check
    from training.envs import evaluate

    if cfg.episodes == 0:
        return False, "no closed-loop check with --episodes 0"
    pols = {"integer": CPolicy(d_int).act, "float": CPolicy(d_float).act}
    r: dict[str, list[float]] = {"integer": [], "float": []}
    for batch in range(CHECK_BATCHES):
        seed = KERNEL_CHOICE_SEED + cfg.seed + batch * cfg.episodes
        for name, act in pols.items():
            r[name] += evaluate(src.env_id, act, cfg.episodes, seed=seed)[0]
        keep, why = return_check(r["integer"], r["float"], final=batch == CHECK_BATCHES - 1)
        if keep is not None:
            return keep, why
    raise AssertionError("return_check decides at its last batch")


def _over_parity(d: Path, obs: np.ndarray, ref: np.ndarray, tol: float) -> str | None:
    """Why the kernel built in d is over tol of ref on obs, or None."""
    err = float(np.abs(CPolicy(d).act(obs) - ref).max())
    return None if err <= tol else f"not shipped: c_vs_torch {err:.2e}, over the parity tolerance {tol:.2e}"


def _choose_kernel(cfg: ExportConfig, src: Source, net: CollapsedNet, out: Path, sha: str, command: str,
                   obs: np.ndarray, ref: np.ndarray, meter: KernelMeter | None, tol: float) -> dict:
    """Build the requested kernel (or, for auto, every kernel), measure them where a meter is given, and
    leave the chosen one in out (which holds the generic kernel on entry). The report's `kernel` entry."""
    from export.fixed_point import IntRange
    from export.kernels import KINDS, MEASURED_ON, build_straight_line, choose, install, too_big

    kinds = KINDS if cfg.kernel == "auto" else tuple(k for k in KINDS if k == cfg.kernel)
    cands: dict[str, dict] = {"generic": {}} if "generic" in kinds else {}
    skipped = {}
    nonzero = sum(int(np.count_nonzero(w)) for w in net.weights)
    uses_tanh = "tanh" in (net.activation, net.output)
    for kind in kinds:
        why = too_big(kind, nonzero, cfg.flash_budget) if cfg.kernel == "auto" else None
        if why:
            skipped[kind] = why
        elif kind != "generic":
            # auto measures each straight-line kernel with a rational tanh and with the table tanh
            for variant, table in ((kind, False), (f"{kind}-table", True)) if cfg.kernel == "auto" and uses_tanh \
                    else ((kind, None),):
                built = build_straight_line(kind, net, out / "build" / "kernels" / variant, sha, command, obs, ref,
                                            cfg.tanh_budget, PARITY_TOL, table)
                if table and built["tanh"] == "libm-tanhf":  # the table form missed the budget: nothing new
                    skipped[variant] = "the table tanh is not within --tanh-budget on this network"
                    continue
                cands[variant] = built
    measuring = cfg.kernel == "auto" and meter is not None
    why_not = too_big("integer", nonzero, cfg.flash_budget) if measuring else None
    out_of_range = None  # auto: the weights are past the integer kernel's formats, whose every form it then skips
    if why_not:
        skipped["integer"] = why_not
    else:
        # the straight-line integer kernel, tanh by lookup and (auto, a tanh network) interpolated: the same integers
        for k, lookup in (("integer", True), ("integer-interp", False)):
            if out_of_range is None and (cfg.kernel == k or (measuring and (lookup or uses_tanh))):
                try:
                    cands[k] = _integer_candidate(cfg, src, net, out / "build" / "kernels" / k, sha, command, obs,
                                                  ref, lookup)
                except IntRange as e:
                    if cfg.kernel != "auto":
                        raise
                    out_of_range = f"not built: {e}"
            if out_of_range is not None and (k == "integer" or uses_tanh):  # each form auto would have built
                skipped[k] = out_of_range
    where = {k: out if k == "generic" else out / "build" / "kernels" / k for k in cands}
    figures = {k: meter(d) if meter else None for k, d in where.items()} if cfg.kernel == "auto" else {}
    # the integer forms' limit: the budget, and --int-flash-ratio times the generic kernel's flash
    generic = figures.get("generic")
    limit = min(cfg.flash_budget, int(cfg.int_flash_ratio * generic["flash_bytes"])) \
        if generic and cfg.int_flash_ratio > 0 else cfg.flash_budget
    # the table form where the straight-line integer kernel is over the limit (within it, the straight-line
    # kernel is what the table form would spend the room on)
    straight_fits = any((f := figures.get(k)) is not None and f["flash_bytes"] <= limit
                        for k in ("integer", "integer-interp"))
    table_too_big = too_big("integer-table", nonzero, limit)
    if cfg.kernel == "integer-table" or (measuring and not straight_fits and table_too_big is None
                                         and out_of_range is None):
        from export.integer import fitted_table_kernel

        cands["integer-table"], where["integer-table"], cost = fitted_table_kernel(
            net, out / "build" / "kernels", sha, command, obs, ref, cfg.dataset or src.dataset, cfg.int_budget, meter,
            limit)
        if cfg.kernel == "auto":
            figures["integer-table"] = cost
    elif measuring:
        fits = [k for k in ("integer", "integer-interp") if (f := figures.get(k)) and f["flash_bytes"] <= limit]
        skipped["integer-table"] = table_too_big or out_of_range or (
            f"not built: the straight-line integer kernel ({', '.join(fits)}) is within its flash limit, which the "
            "table form would spend on becoming it")
    if cfg.kernel == "auto":
        floats = {k: f for k, f in figures.items() if not k.startswith("integer")}
        chosen, rule = choose(floats, cfg.flash_budget)
        # a float kernel over the parity tolerance on this network (its order of sums rounds otherwise than
        # torch's: large weights that cancel) gives way to the rule's next choice; the generic kernel is the last
        # (and one whose build for the core, which the meter ran, gives other actions than the host build checked)
        left_out: dict[str, list[str]] = {}
        while chosen != "generic":
            off = off_host(figures.get(chosen), tol)
            over = f"not shipped: {off}" if off else _over_parity(where[chosen], obs, ref, max(tol, cfg.tanh_budget))
            if not over:
                break
            cands[chosen]["verdict"] = over
            left_out.setdefault("off its host build" if off else "over the parity tolerance on this network",
                                []).append(chosen)
            del floats[chosen]
            chosen, rule = choose(floats, cfg.flash_budget)
        rule += "".join(f" (left out, {why}: {', '.join(ks)})" for why, ks in left_out.items())
        ints: dict[str, dict | None] = {}
        for k in ("integer", "integer-interp", "integer-table"):
            cost = figures.get(k)
            if not cost:
                continue
            share = cands[k]["max_error_vs_action_range"]
            if dsp := off_host(cost, 0.0):  # the assembly that runs on the core must give the checked host build's bits
                cands[k]["verdict"] = dsp
            elif share > cfg.int_budget:
                cands[k]["verdict"] = (f"action error {100 * share:.2f} % of the range, over --int-budget "
                                       f"{100 * cfg.int_budget:g} %")
            elif cost["flash_bytes"] > limit:
                cands[k]["verdict"] = (f"over the integer kernel's flash limit ({limit} B: " + (
                    f"--int-flash-ratio {cfg.int_flash_ratio:g} times the generic kernel's flash, within --flash-budget"
                    if limit < cfg.flash_budget else "--flash-budget") + ")")
            else:
                ints[k] = cost
        if ints:  # the forms give the same integers: one closed-loop check for the one the rule picks
            pick = choose({chosen: figures[chosen]} | ints, cfg.flash_budget)
            why = ""
            if pick[0] in ints:
                keep, why = _keeps_return(cfg, src, where[pick[0]], where[chosen])
                if keep:
                    chosen, rule = pick[0], f"{pick[1]}; {why}"
            fc = (figures.get(chosen) or {}).get("cycles", 0.0)
            for k in ints:  # a float pick: within LEVEL of the fewest cycles with less flash, or fewer cycles
                cands[k]["verdict"] = (
                    (f"within {100 * LEVEL:g} % of the cycles of the float kernel the rule picks, which takes less "
                     "flash" if (ints[k] or {}).get("cycles", fc) < fc else "not cheaper than the float kernel the "
                     "rule picks") if pick[0] not in ints else why if k == pick[0]
                    else f"the rule picks {pick[0]}" if chosen == pick[0]
                    else f"the same integers as {pick[0]}, not shipped: {why}")  # the pick did not ship: its reason
    else:
        chosen, rule = cfg.kernel, "forced by --kernel"
    if chosen != "generic":
        install(where[chosen], out)
    entry: dict[str, Any] = {"kind": "integer" if chosen.startswith("integer") else chosen.removesuffix("-table"),
                             "variant": chosen, "requested": cfg.kernel, "rule": rule}
    if cfg.kernel == "auto":
        entry |= {"flash_budget": cfg.flash_budget, "int_flash_limit": limit, "int_flash_ratio": cfg.int_flash_ratio,
                  "measured_on": MEASURED_ON if any(figures.values()) else None,
                  "candidates": {k: cands[k] | {"cost": figures.get(k)} for k in cands}, "skipped": skipped}
    return entry | cands.get(chosen, {})


def _write_export(cfg: ExportConfig, out: Path, meter: KernelMeter | None = None) -> dict:
    t0 = time.time()
    src = load_source(cfg.source)
    net = collapse(src.policy)
    command = "bpd export " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["export"] \
        else f"bpd export {shlex.quote(str(cfg.source))} --out {shlex.quote(str(cfg.out))}"
    mh = model_hash(net)
    sparsity = 1.0 - net.params_nonzero / max(src.policy.params_total, 1)
    meta = {"env_id": src.env_id, "obs_dim": net.obs_dim, "act_dim": net.act_dim,
            "action_low": json.dumps(net.action_low.tolist()), "action_high": json.dumps(net.action_high.tolist()),
            "sparsity": f"{sparsity:.6f}", "params_nonzero": net.params_nonzero, "source_sha256": src.sha256,
            "model_hash": mh, "bpd_version": bpd.__version__, "threshold": src.threshold}
    model = build_onnx(net, meta)
    save_onnx(model, out / "policy.onnx")
    plans = generate_c(net, out, cfg.format, False, src.sha256, command)

    # parity: torch (collapsed student) vs onnxruntime, ReferenceEvaluator and the C kernel. The torch
    # reference runs in float64 on the float32 weights and states: the exact function every float32
    # form approximates, so each is judged by its own rounding and not by torch's as well.
    obs, origin = parity_states(src, cfg.dataset or src.dataset, cfg.parity_samples, cfg.seed)
    with torch.no_grad():
        ref = src.torch_forward(torch.as_tensor(obs, dtype=torch.float64)).numpy()
        torch32 = src.torch_forward(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    ort_out = OnnxPolicy(out / "policy.onnx").act(obs)
    refev = reference_evaluator_run(model, obs)
    # the rule is export/parity.py's: 1e-5 of the half action range, or 4x torch's own float32 error here
    float32_floor = float(np.abs(torch32 - ref).max())
    tol = parity_tolerance(net.action_low, net.action_high, float32_floor)
    kernel = {"kind": "generic", "requested": "generic", "rule": "forced by --kernel"} if cfg.kernel == "generic" \
        else _choose_kernel(cfg, src, net, out, src.sha256, command, obs, ref, meter, tol)
    cpol = CPolicy(out)
    c_out = cpol.act(obs)
    c_tol = max(tol, cfg.tanh_budget) if kernel["kind"] != "generic" else tol
    int_tol = cfg.int_budget * float(np.min(net.action_high - net.action_low))
    if kernel["kind"] == "integer":  # bit-exact against its numpy model (checked); against torch, the budget
        c_tol = max(c_tol, int_tol)
    by = "int_budget" if kernel["kind"] == "integer" and c_tol == int_tol else "tanh_budget" if c_tol > tol else None
    parity: dict[str, Any] = {"states": len(obs), "origin": origin, "tolerance": tol, "c_tolerance": c_tol,
              **({"c_tolerance_by": by} if by else {}),
              "reference": "torch float64", "torch_float32_vs_float64": float32_floor,
              "onnxruntime_vs_torch": float(np.abs(ort_out - ref).max()),
              "reference_evaluator_vs_torch": float(np.abs(refev - ref).max()),
              "c_vs_onnx": float(np.abs(c_out - ort_out).max()),
              "c_vs_torch": float(np.abs(c_out - ref).max())}
    limit = (f"--int-budget {cfg.int_budget:g} of the action range" if by == "int_budget" else
             f"--tanh-budget {cfg.tanh_budget:g}" if by == "tanh_budget" else "the parity tolerance")  # what set it
    if kernel["kind"] == "integer":
        parity["c_check"] = ("integer kernel: bit-exact against its numpy model on the host build; against torch "
                             f"within {limit}")
    parity["pass"] = all(v <= (c_tol if k.startswith("c_") else tol)
                         for k, v in parity.items() if k.endswith(("_torch", "_onnx")))
    if not parity["pass"]:
        raise BpdError(parity_failure(parity, tol, c_tol, kernel["kind"], limit))
    if cfg.kernel != "auto" and meter is not None and (cost := meter(out)):  # a forced kernel's cost, as auto's
        kernel |= {"measured_on": cost.get("target"), "candidates": {kernel.get("variant", kernel["kind"]):
                                                                     {"cost": cost}}}
        if off := off_host(cost, 0.0 if kernel["kind"] == "integer" else tol):  # what the core runs, as auto holds it
            raise BpdError(f"--kernel {cfg.kernel}: {off}; a bug of bpd, worth reporting with the student file "
                           "(--kernel auto leaves such a kernel out; a previous export in --out is kept)")
    # the shipped kernel's working memory, which its caller declares (float scratch[BPD_SCRATCH_FLOATS])
    if m := re.search(r"#define BPD_SCRATCH_FLOATS (\d+)", (out / "policy_weights.h").read_text()):
        kernel["scratch_bytes"] = 4 * int(m[1])

    # the boot self-test: a parity state and the shipped kernel's own action for it (export/selftest.py)
    selftest = selftest_for_kernel(out, obs, kernel["kind"], parity, net.action_low, net.action_high,
                                   selftest_banner(mh, command))

    teacher_path = cfg.teacher or src.teacher
    dense = None
    if teacher_path and Path(teacher_path).is_file():
        from training.teacher import load_teacher
        dense = dense_figures(collapse(load_teacher(teacher_path)))  # as bench exports it (its clip aside)
    else:
        dense = dense_figures(collapse(src.policy, remove_dead=False)) | {
            "note": "dense figures of the student's own shape (no teacher)"}
    tot = totals(net, plans)
    source = path_for_record(src.path, out)  # relative to the export: read from any working directory
    report = {"source": source, "source_kind": src.kind, "source_sha256": src.sha256, "model_hash": mh,
              "env_id": src.env_id, "threshold": src.threshold, "widths_before": net.widths_before,
              "widths_after": net.widths, "input_offset": net.in_offset is not None,
              "layers": layer_table(net, plans), "totals": tot, "dense_teacher": dense,
              "flash_vs_teacher": tot["flash_bytes"] / dense["flash_bytes"],
              "macs_vs_teacher": tot["macs"] / dense["macs"], "parity": parity, "kernel": kernel, "command": command}
    if cfg.int8:
        int8_dir = out / "int8"
        iplans = generate_c(net, int8_dir, cfg.format, True, src.sha256, command + " (int8)")
        ic = CPolicy(int8_dir)
        err = np.abs(ic.act(obs) - ref)
        report["int8"] = {"layers": layer_table(net, iplans), "totals": totals(net, iplans),
                          "max_abs_error_vs_torch": float(err.max()), "mean_abs_error_vs_torch": float(err.mean())}
    if cfg.integer:
        from export.integer import integer_kernel
        report["int"], int_pol = integer_kernel(net, out / "int", src.sha256, command + " (int)", obs, ref,
                                                cfg.dataset or src.dataset)
        report["int"]["dir"] = "int"  # in the export (out is its staging directory until it is verified)
        int_selftest = selftest_for_kernel(out / "int", obs, "integer", parity, net.action_low, net.action_high,
                                           selftest_banner(mh, command + " (int)"))
    if cfg.episodes > 0:
        from training.envs import evaluate
        rets = {}
        forms = {"torch": lambda o: src.torch_forward(torch.as_tensor(o, dtype=torch.float32)[None])[0].numpy(),
                 "c": cpol.act}
        if cfg.int8:
            forms["c_int8"] = ic.act
        if cfg.integer:
            forms["c_int"] = int_pol.act
        with torch.no_grad():
            for name, fn in forms.items():
                r, _ = evaluate(src.env_id, fn, cfg.episodes, seed=cfg.seed + 5000)
                rets[name] = {"return_mean": float(np.mean(r)), "return_std": float(np.std(r))}
        report["returns"] = rets | {"episodes": cfg.episodes}
    if cfg.package != "none":  # the chosen kernel's C as a library, listed in export.json's file record below
        from export.package import write_package
        example = net.in_offset if net.in_offset is not None else np.zeros(net.obs_dim, np.float32)
        report["package"] = write_package(out, cfg.package, {"env_id": src.env_id, "obs_dim": net.obs_dim,
                                                             "act_dim": net.act_dim, "model_hash": mh,
                                                             "kernel": kernel["kind"], "url": cfg.package_url,
                                                             "name": cfg.package_name},
                                          example, cpol.act(np.asarray(example, np.float32)[None])[0])
    report["seconds"] = round(time.time() - t0, 2)
    write_json(out / "export_report.json", report)
    write_json(out / "export.json", {"format": "bpd-export", "format_version": 1, "env_id": src.env_id,
                                     "obs_dim": net.obs_dim, "act_dim": net.act_dim, "model_hash": mh,
                                     "source_sha256": src.sha256, "source": source, "kind": src.kind,
                                     "widths": net.widths, "activation": net.activation, "output": net.output,
                                     "action_low": net.action_low, "action_high": net.action_high,
                                     "params_total": net.params_total, "params_nonzero": net.params_nonzero,
                                     "source_params_total": src.policy.params_total, "bpd_version": bpd.__version__,
                                     "command": command, "parity": parity, "kernel": kernel["kind"],
                                     "selftest": selftest, "files": manifest(out)})
    if cfg.integer:  # the integer kernel is an export directory of its own (evaluate, firmware, rig)
        import shutil
        info = json.loads((out / "export.json").read_text())
        shutil.copyfile(out / "policy.onnx", out / "int" / "policy.onnx")  # the float model it was derived from
        ir = report["int"]
        write_json(out / "int" / "export.json", info | {
            "kernel": "integer", "command": command + " (int)", "selftest": int_selftest,
            "source": path_for_record(src.path, out / "int"),  # the record's paths are relative to its directory
            "parity": {"pass": bool(ir["c_matches_numpy_model"]), "check": "integer C bit-exact against its numpy "
                       "model on the host build (the scalar C form; the DSP assembly for Cortex-M4/M7 is "
                       "held to the same numbers by the project's emulated tests); error against the float "
                       "student recorded", "states": ir["states"],
                       "max_abs_error_vs_float": ir["max_abs_error_vs_float"]},
            "files": manifest(out / "int")})
    return report
