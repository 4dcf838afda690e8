"""`bpd evaluate`: the return and size of any form of a policy, measured in its environment; with
--robustness, its robustness score (training/robustness.py) instead."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import numpy as np

from bpd.config import check_ranges, field
from bpd.errors import BpdError

VARIATION_EPISODES = 3  # --robustness: episodes per variation, by default
EPISODES = 10  # an evaluation's episodes, by default
KIND_NAMES = {"c": "C kernel", "onnx": "ONNX policy"}  # a kind in a sentence, where its short name is not one


@dataclass
class EvaluateConfig:
    model: str = field(help="teacher .npz, student .pt, run directory, policy.onnx or export directory",
                       positional=True)
    env: str | None = field(None, help="environment id (default: the one recorded in the model)")
    episodes: int | None = field(None, help=f"episodes to run (default {EPISODES})")
    seed: int = field(0, help="seed of the first episode (episode i uses seed + i); seeds the model's files "
                      "record as having chosen it (a teacher's training evaluations, 10000 + 100 x its seed on; a "
                      "run's periodic and selection evaluations; an export's source's, where it is there) are "
                      "refused")
    randomize: str | None = field(None, help="draw each episode's plant from this rig's domain randomisation "
                                  "(its YAML randomization block, e.g. desktop-cartpole): masses, friction and "
                                  "motor gain of a MuJoCo environment; a rig's own environment uses its own block")
    json: bool = field(False, help="print one JSON object instead of a table")
    robustness: bool = field(False, help="score robustness instead: six categories of variations (model error, "
                             "velocity and torque noise, torque response, delay, pushes) from the rig's robustness "
                             "block or a MuJoCo task's defaults; per-category and overall share of successes, and the "
                             "share on the unvaried plant")
    out: str | None = field(None, help="with --robustness: directory to write robustness.json (grid, every "
                            "variation's success) and robustness.png (success against each variation)")
    variation_episodes: int | None = field(None, help="with --robustness: episodes per variation (seeds seed, seed + "
                                           f"1, ...; default {VARIATION_EPISODES})")


@dataclass
class Loaded:
    kind: str
    env_id: str
    act: Callable[[np.ndarray], np.ndarray]
    params_total: int
    params_nonzero: int
    extra: dict
    obs_dim: int
    act_dim: int
    chosen_on: list[tuple[str, int, int]] = dataclass_field(default_factory=list)  # (what, first, last) seeds


def load_any(path: str | Path) -> Loaded:
    """Recognise a model file or directory by its contents."""
    p = Path(path)
    if p.is_dir():
        if (p / "student.pt").is_file():
            return _student(p / "student.pt")
        if (p / "export.json").is_file():
            return _export_dir(p)
        if (p / "policy.npz").is_file():  # a baseline run: its student in the teacher format
            return _teacher_file(p / "policy.npz")
        if (p / "multitask.npz").is_file():
            tasks = " ".join(str(t) for t in sorted(p.glob("task*.npz")))
            raise BpdError(f"{p}: a multi-task run; evaluate one task's network ({tasks or 'its task<i>.npz'})")
        from training.checkpoint import check_finished
        check_finished(p)
        raise BpdError(f"{p}: not a run directory or an export directory")
    if not p.is_file():
        raise BpdError(f"{p}: no such file or directory")
    with open(p, "rb") as f:
        head = f.read(4)
    if p.suffix == ".onnx":
        return _onnx(p)
    if head[:2] == b"PK" and p.suffix == ".npz":
        return _teacher_file(p)
    if head[:2] == b"PK":
        from training.teacher import is_sb3_zip
        if is_sb3_zip(p):
            raise BpdError(f"{p}: a stable-baselines3 model; import it first (bpd teacher import {p} --env ENV "
                           "--out teacher.npz) and evaluate the teacher file")
        return _student(p)
    raise BpdError(f"{p}: unrecognised model file")


def _teacher_file(p: Path) -> Loaded:
    """A network in the teacher format: a teacher, a baseline's policy.npz, a multi-task run's task<i>.npz."""
    from training.teacher import load_teacher
    try:
        t = load_teacher(p)
    except BpdError as e:
        if "'bpd-multitask' file" not in str(e):
            raise
        raise BpdError(f"{p}: a multi-task student; evaluate one task's network, the task<i>.npz beside it") \
            from None
    train = t.train if isinstance(t.train, dict) else {}
    return Loaded(_teacher_format_kind(t.source), t.env_id, t.act, t.params_total, t.params_nonzero,
                  {"algo": t.algo, "hidden": t.hidden}, t.obs_dim, t.act_dim,
                  seed_ranges([("its training evaluations", train.get("train_eval_seeds"))]))


def _teacher_format_kind(source: str) -> str:
    """What a network in the teacher format is, by the source its file records: a baseline's student (`bpd baseline
    train` writes "bpd baseline train --method ..."), one task's network of a multi-task student, else a teacher."""
    if source.startswith("bpd baseline train"):
        return "baseline student"
    return "multi-task student" if source == "multi-task student" else "teacher"


def seed_ranges(recorded: list[tuple[str, object]]) -> list[tuple[str, int, int]]:
    """The [first, last] seed ranges a model's files record as having chosen it, the malformed ones left out."""
    return [(what, int(r[0]), int(r[1])) for what, r in recorded
            if isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)]


def check_disjoint(chosen_on: list[tuple[str, int, int]], first: int, last: int, flag: str) -> None:
    """Refuse reporting episodes whose seeds chose the model (its return there is the one it was picked for)."""
    for what, lo, hi in chosen_on:
        if first <= hi and lo <= last:
            raise BpdError(f"{flag}: this evaluation's seeds {first}..{last} overlap {lo}..{hi}, those of {what} "
                           "that chose the model (its return there is what it was picked for); move --seed or run "
                           "fewer episodes")


def _student(path: Path) -> Loaded:
    from training.student import load_student
    student, meta, stats = load_student(path)
    pol = student.collapse(**stats)
    teacher_total = int(meta.get("teacher_params_total", 0))
    extra = {"hidden": pol.hidden, "threshold": meta["threshold"], "teacher_params_total": teacher_total,
             "nonzero_vs_teacher": pol.params_nonzero / teacher_total if teacher_total else None,
             "compression_vs_teacher": teacher_total / max(pol.params_nonzero, 1) if teacher_total else None}
    own = meta.get("selection")  # `bpd student select`'s, in the file it wrote (compress hands that file over)
    # a run directory's summary records the seeds its periodic evaluations and its selection used
    chosen = seed_ranges([*_run_chose(_json_dict(path.parent / "summary.json"), "the run's"),
                          ("its selection (bpd student select)",
                           own.get("select_seeds") if isinstance(own, dict) else None),
                          *_compress_chose(path)])
    return Loaded("student", meta["env_id"], pol.act, pol.params_total, pol.params_nonzero, extra, pol.obs_dim,
                  pol.act_dim, chosen)


def _compress_chose(path: Path) -> list[tuple[str, object]]:
    """What chose a student `bpd compress` handed over beyond its file's own selection: the further selection
    episodes compress judged it on again (compress.json's confirm) and, for the hand-over OUT/student.pt (no run
    beside it), its run's periodic evaluations and selection (OUT/METHOD/summary.json). The chosen method's
    OUT/METHOD/selected.pt is the same student: its further episodes are refused too."""
    for out, handed in ((path.parent, True), (path.parent.parent, False)):
        try:
            res = _json_dict(out / "compress.json")
            row = next(r for r in res["rows"] if r["method"] == res["chosen"])
            if not (path.name == "student.pt" if handed else
                    path.parent.name == row["method"] and Path(row["student"]).name == path.name):
                continue
            c = row.get("confirm")
            further = [int(c["first_seed"]), int(c["first_seed"]) + int(c["episodes"]) - 1] if c else None
        except (OSError, ValueError, KeyError, TypeError, StopIteration, AttributeError):
            continue
        run = _json_dict(out / str(row["method"]) / "summary.json") if handed else {}
        return [("bpd compress's further selection episodes", further),
                *_run_chose(run, "its run's", " (bpd compress)")]
    return []


def _json_dict(path: Path) -> dict:
    """A JSON object from a file beside a model, {} where it is missing, unreadable or not an object."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _run_chose(summary: dict, whose: str, by: str = "") -> list[tuple[str, object]]:
    """The seed ranges a run's summary.json records as choosing its student: its periodic evaluations and its
    selection."""
    sel = summary.get("selection")
    return [(f"{whose} periodic evaluations{by}", summary.get("train_eval_seeds")),
            (f"{whose} selection{by}", sel.get("select_seeds") if isinstance(sel, dict) else None)]


def _onnx(path: Path) -> Loaded:
    """An .onnx file: inside an export directory the whole export is verified first, a lone file's
    weights are checked against the model hash recorded in it."""
    from export.onnx_export import OnnxPolicy
    from export.verify import verify_export, verify_onnx

    chosen = []
    if path.name == "policy.onnx" and (path.parent / "export.json").is_file():
        chosen = _source_chosen(verify_export(path.parent), path.parent)
    verify_onnx(path)
    pol = OnnxPolicy(path)
    import onnx.numpy_helper as nh
    weights = [nh.to_array(t) for t in pol.model.graph.initializer if t.name[:1] in "WB" and t.name[1:].isdigit()]
    total = sum(w.size for w in weights)
    nonzero = sum(int(np.count_nonzero(w)) for w in weights)
    return Loaded("onnx", pol.meta.get("env_id", ""), pol.act, total, nonzero,
                  {"model_hash": pol.meta.get("model_hash")}, int(pol.obs_dim), int(pol.meta.get("act_dim", 1)),
                  chosen)


def _export_dir(path: Path) -> Loaded:
    """The exported C kernel itself, compiled on the host and called through ctypes."""
    from export.c_export import CPolicy
    from export.verify import verify_export
    info = verify_export(path)
    pol = CPolicy(path)
    if pol.model_hash != info["model_hash"]:
        raise BpdError(f"{path}: policy_weights.c does not match export.json (model hash differs)")
    return Loaded("c", info["env_id"], pol.act, info["params_total"], info["params_nonzero"],
                  {"model_hash": info["model_hash"], "widths": info["widths"],
                   "source_params_total": info["source_params_total"]}, pol.obs_dim, pol.act_dim,
                  _source_chosen(info, path))


def _source_chosen(info: dict, export_dir: Path) -> list[tuple[str, int, int]]:
    """The seeds that chose an export's source (a run's student, a teacher), read from the source's own records
    where it is still there (the export names it) and is still the file exported (its content hash); none where it
    is gone or was made again in its place (another run's seeds are not this export's)."""
    from bpd.io import path_from_record, sha256_file

    rec = info.get("source")
    src = path_from_record(rec, export_dir) if isinstance(rec, str) else None
    if src is None or not src.exists() or (src / "export.json").exists():
        return []
    if info.get("source_sha256") and src.is_file() and sha256_file(src) != info["source_sha256"]:
        return []
    try:
        return load_any(src).chosen_on
    except BpdError:  # a source that no longer loads: its export is what is evaluated
        return []


def run_evaluate(cfg: EvaluateConfig) -> dict:
    """Return distribution (mean, std, min, quartiles), early terminations and size of a model."""
    from training.envs import env_dims, rollouts

    check_ranges(cfg, {"episodes": (1, 100_000), "seed": (0, 2**31 - 1), "variation_episodes": (1, 1000)})
    if cfg.robustness and cfg.randomize:
        raise BpdError("--robustness varies the plant itself: leave out --randomize")
    if cfg.out is not None and not cfg.robustness:
        raise BpdError("--out is for --robustness")
    if cfg.variation_episodes is not None and not cfg.robustness:
        raise BpdError("--variation-episodes is for --robustness (--episodes sets an evaluation's)")
    if cfg.robustness and cfg.episodes is not None:
        raise BpdError("--robustness runs --variation-episodes episodes per variation: leave out --episodes")
    if cfg.out is not None:
        from bpd.io import check_output_dir
        check_output_dir(cfg.out)
    m = load_any(cfg.model)
    env_id = cfg.env or m.env_id
    if m.kind == "c":
        from firmware_host.rig.classical import check_evaluated_in
        check_evaluated_in(cfg.model, env_id)  # a classical controller's design is its rig's, or it is refused
    od, ad = env_dims(env_id)
    if (od, ad) != (m.obs_dim, m.act_dim):
        raise BpdError(f"{cfg.model}: the {KIND_NAMES.get(m.kind, m.kind)} maps {m.obs_dim} observations to "
                       f"{m.act_dim} actions, {env_id} has {od} and {ad}")
    if cfg.robustness:
        per = VARIATION_EPISODES if cfg.variation_episodes is None else cfg.variation_episodes
        check_disjoint(m.chosen_on, cfg.seed, cfg.seed + per - 1, "--seed")
        return _robustness(cfg, m, env_id)
    check_disjoint(m.chosen_on, cfg.seed, cfg.seed + (EPISODES if cfg.episodes is None else cfg.episodes) - 1,
                   "--seed")
    rig, ranges = None, None
    if cfg.randomize:
        from firmware_host.rig import randomization
        rig, ranges = randomization(cfg.randomize)
    ep = rollouts(env_id, m.act, EPISODES if cfg.episodes is None else cfg.episodes, cfg.seed, ranges, rig)
    rand = {"rig": rig, "ranges": {k: list(v) for k, v in ranges.items()}} if ranges else None
    return {"model": str(cfg.model), "kind": m.kind, "env_id": env_id, "randomize": rand} | ep.summary() | {
        "params_total": m.params_total, "params_nonzero": m.params_nonzero,
        "sparsity": 1.0 - m.params_nonzero / m.params_total} | m.extra


def _robustness(cfg: EvaluateConfig, m: Loaded, env_id: str) -> dict:
    """The robustness score of a loaded model in its environment, written to cfg.out when given."""
    from bpd.io import write_json
    from training.envs import make_env
    from training.robustness import CATEGORIES, grid_for, plot, robustness

    probe = make_env(env_id)
    try:
        grid = grid_for(probe)
    finally:
        probe.close()
    per = VARIATION_EPISODES if cfg.variation_episodes is None else cfg.variation_episodes
    n = sum(len(grid.variations_of(c)) for c in CATEGORIES)
    print(f"robustness: {n} variations x {per} episode(s) of {env_id}; each category's score as it ends",
          file=sys.stderr, flush=True)  # minutes on a locomotion task: on stderr, --json's stdout stays one object
    r = robustness(lambda: make_env(env_id), m.act, grid, per, cfg.seed,
                   progress=lambda line: print(f"robustness: {line}", file=sys.stderr, flush=True))
    record = {"model": str(cfg.model), "kind": m.kind, "env_id": env_id} | r
    out = {"model": str(cfg.model), "kind": m.kind, "env_id": env_id, "robustness/overall": r["overall"]} | {
        f"robustness/{c}": v["score"] for c, v in r["categories"].items()} | {
        "episodes_per_variation": per, "success_rule": r["success_rule"],
        # the same episodes on the unvaried plant: a controller that fails there scores low for that, not fragility
        "nominal_success": r["nominal"]["success"], "nominal_returns": r["nominal"]["returns"]}
    if cfg.out:
        d = Path(cfg.out)
        d.mkdir(parents=True, exist_ok=True)
        # the plot first, the record last (each atomic): stopped while plotting, the directory keeps the record and
        # plot of the run before (or none), never this run's record beside that run's plot or none
        plot({Path(cfg.model).name or str(cfg.model): r}, d / "robustness.png", f"{env_id}: robustness")
        write_json(d / "robustness.json", record)
        out |= {"json": str(d / "robustness.json"), "plot": str(d / "robustness.png")}
    return out
